package upstream

import (
	"bufio"
	"bytes"
	"io"
	"testing"
)

// FuzzReadResponse feeds arbitrary bytes to the response reader as a
// homeserver's answer: it must never panic, a head it accepts has a real
// status and no hop-by-hop field, and its body reads without panicking.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 404 Not Found\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n\r\nbody",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"HTTP/1.1 099 x\r\n\r\n",
		"garbage\r\n\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		resp, err := readResponse(bufio.NewReader(bytes.NewReader(data)), method)
		if err != nil {
			return
		}
		if resp.StatusCode < 100 || resp.StatusCode > 999 {
			t.Fatalf("status %d accepted", resp.StatusCode)
		}
		for name := range resp.Header {
			if skipResponseField(name) {
				t.Fatalf("hop-by-hop field %s kept", name)
			}
		}
		if resp.src != nil {
			io.Copy(io.Discard, io.LimitReader(resp.src, 1<<20))
		}
	})
}

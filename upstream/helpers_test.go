package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawServer accepts connections on loopback and hands each to serve, on
// its own goroutine. It returns the address.
func rawServer(t testing.TB, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	return ln.Addr().String()
}

// keepAliveServer is rawServer for a homeserver that keeps connections
// open: answer gets each request head read from c in turn, until the
// client closes the connection. It returns the address.
func keepAliveServer(t testing.TB, answer func(c net.Conn, head string)) string {
	t.Helper()
	return rawServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			head, _, err := readRequestHead(br)
			if err != nil {
				return
			}
			answer(c, head)
		}
	})
}

// readRequestHead reads one request head (up to the blank line) and, when
// it has a Content-Length, the body; it returns both as text.
func readRequestHead(br *bufio.Reader) (head string, body []byte, err error) {
	var b strings.Builder
	n := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", nil, err
		}
		b.WriteString(line)
		if line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			for _, r := range strings.TrimSpace(v) {
				n = n*10 + int(r-'0')
			}
		}
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return "", nil, err
	}
	return b.String(), body, nil
}

// newMember builds a Member for url with short timeouts for tests.
func newMember(t *testing.T, opts Options) *Member {
	t.Helper()
	if opts.HeaderTimeout == 0 {
		opts.HeaderTimeout = 5 * time.Second
	}
	if opts.BodyTimeout == 0 {
		opts.BodyTimeout = 5 * time.Second
	}
	if opts.MaxIdleConns == 0 {
		opts.MaxIdleConns = 8
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// get sends a GET and reads the whole answer.
func get(t *testing.T, m *Member, target string) (*Response, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := m.RoundTrip(ctx, &Request{Method: http.MethodGet, Target: target, Host: "hs.test"})
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := resp.Body.ReadAll(1 << 20)
	return resp, body, err
}

// kindOf returns the Kind of an *Error, or 0.
func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

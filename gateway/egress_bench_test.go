package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkEgressWorkerProxy measures one worker-proxy round trip over
// loopback on a kept-alive connection: credential and route checks,
// policy, signature check against our key, fresh signature, delivery over
// a pooled TLS connection to the remote, and the relayed answer.
func BenchmarkEgressWorkerProxy(b *testing.B) {
	for _, size := range []int{0, 64 << 10} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			env := startEgress(b, egressOptions{loopbackAllowed: true, noAccessLog: true, extra: "[rate_limit]\nper_destination = { rate = \"0\" }\n"})
			env.remote.quiet.Store(true)
			method, target, body := "GET", "/_matrix/federation/v1/event/%24e%3Aremote.test", ""
			if size > 0 {
				method, target = "PUT", "/_matrix/federation/v1/send/1"
				body = `{"origin":"gw.test","pdus":[{"content":{"body":"` + strings.Repeat("x", size) + `"}}],"edus":[]}`
			}
			request := workerRequest(method, "remote.test", target, body, bearer(testSecret), env.sign(method, target, "remote.test", body))
			conn, err := net.Dial("tcp", env.egressAddr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := io.WriteString(conn, request); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

// BenchmarkEgressIntercept measures one request inside an intercepted
// tunnel (HTTP/2, the tunnel and the remote connection kept open).
func BenchmarkEgressIntercept(b *testing.B) {
	env := startEgress(b, egressOptions{loopbackAllowed: true, noAccessLog: true, extra: "[rate_limit]\nper_destination = { rate = \"0\" }\n"})
	env.remote.quiet.Store(true)
	client := env.proxyClient(env.egressCA, nil)
	const target = "/_matrix/federation/v1/event/%24e%3Aremote.test"
	authz := env.sign("GET", target, "remote.test", "")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest("GET", "https://remote.test:8448/", nil)
		req.URL.Opaque = target
		req.Header.Set("Authorization", strings.TrimPrefix(authz, "Authorization: "))
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// workerRequest renders a worker-proxy request.
func workerRequest(method, server, target, body string, headers ...string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s %s%s%s HTTP/1.1\r\nHost: %s\r\n", method, workerProxyScheme, server, target, server)
	for _, h := range headers {
		s.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&s, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return s.String()
}

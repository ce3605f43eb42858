package fedtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestDNSServer(t *testing.T) {
	d := StartDNS(t,
		"_matrix-fed._tcp.example.org. 300 IN SRV 10 5 8448 host.example.org.",
		"host.example.org. 300 IN A 127.0.0.1",
		"alias.example.org. 300 IN CNAME host.example.org.",
	)
	c := &dns.Client{Timeout: 2 * time.Second}
	ask := func(name string, qtype uint16, net string) *dns.Msg {
		t.Helper()
		c.Net = net
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		r, _, err := c.ExchangeContext(context.Background(), m, d.Addr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return r
	}
	if r := ask("_matrix-fed._tcp.example.org.", dns.TypeSRV, "udp"); len(r.Answer) != 1 {
		t.Fatalf("SRV %v", r)
	}
	if r := ask("alias.example.org.", dns.TypeA, "udp"); len(r.Answer) != 2 {
		t.Fatalf("CNAME chase %v", r)
	}
	if r := ask("missing.example.org.", dns.TypeA, "tcp"); r.Rcode != dns.RcodeNameError {
		t.Fatalf("NXDOMAIN expected: %v", r)
	}
	d.Set("host.example.org", TruncateUDP)
	if r := ask("host.example.org.", dns.TypeA, "udp"); !r.Truncated || len(r.Answer) != 0 {
		t.Fatalf("truncation %v", r)
	}
	if r := ask("host.example.org.", dns.TypeA, "tcp"); len(r.Answer) != 1 {
		t.Fatalf("TCP retry %v", r)
	}
	if n := d.CountQueries("host.example.org", "A"); n != 2 {
		t.Fatalf("queries %d", n)
	}
}

func TestCAAndHomeserver(t *testing.T) {
	ca := NewCA(t)
	cert := ca.Issue(t, "hs.example", "127.0.0.1")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "hs.example"})
	if err != nil {
		t.Fatalf("TLS with the test CA: %v", err)
	}
	conn.Close()

	hs := StartHomeserver(t)
	c, err := net.Dial("tcp", hs.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "PUT /_matrix/federation/v1/send/%21a?b=2&a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.Close()
	got := hs.Requests()
	if len(got) != 1 || got[0].RequestURI != "/_matrix/federation/v1/send/%21a?b=2&a=1" || string(got[0].Body) != "{}" {
		t.Fatalf("recorded %+v", got)
	}
}

// TestRunUntilCleanup: the loop runs while the test does, and at cleanup
// it is cancelled and has returned before the closers run, in order.
func TestRunUntilCleanup(t *testing.T) {
	var events []string
	var mu sync.Mutex
	note := func(s string) {
		mu.Lock()
		events = append(events, s)
		mu.Unlock()
	}
	started := make(chan struct{})
	t.Run("inner", func(t *testing.T) {
		RunUntilCleanup(t, func(ctx context.Context) {
			close(started)
			<-ctx.Done()
			note("loop returned")
		}, func() error { note("first closer"); return nil }, func() error { note("second closer"); return nil })
		<-started
		note("test body")
	})
	want := []string{"test body", "loop returned", "first closer", "second closer"}
	if fmt.Sprint(events) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", events, want)
	}
}

// TestRedisAddressInUse: a redis-server that cannot bind its address is
// reported as such (StartRedis then tries another), not taken for the
// one that answers there, here another test's.
func TestRedisAddressInUse(t *testing.T) {
	other := StartRedis(t)
	r := &Redis{t: t, binary: RedisBinary(t), dir: t.TempDir(), out: &SyncBuffer{}, Addr: other.Addr}
	t.Cleanup(r.Kill)
	if err := r.start(); !errors.Is(err, errAddrInUse) {
		t.Fatalf("start on another redis-server's address: %v, want %v", err, errAddrInUse)
	}
	if !other.serves() {
		t.Fatal("the other redis-server does not answer from its own folder")
	}
}

// TestStartProcess: the output is collected and exited closes when the
// process ends; one still running when the test ends is killed then.
func TestStartProcess(t *testing.T) {
	out, exited := StartProcess(t, "sh", exec.Command("sh", "-c", "echo started; exit 3"))
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("exited not closed after the process ended")
	}
	if got := out.String(); got != "started\n" {
		t.Fatalf("output %q", got)
	}
	var running <-chan struct{}
	t.Run("inner", func(t *testing.T) {
		_, running = StartProcess(t, "sleep", exec.Command("sleep", "60"))
	})
	select {
	case <-running:
	default:
		t.Fatal("a process still running when its test ended was not killed and waited for")
	}
}

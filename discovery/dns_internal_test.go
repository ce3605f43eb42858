package discovery

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestResolverAddrs(t *testing.T) {
	t.Parallel()
	got, err := resolverAddrs([]string{"192.0.2.53", "[2001:db8::53]:5353", "::1"}, "")
	want := []string{"192.0.2.53:53", "[2001:db8::53]:5353", "[::1]:53"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"dns.example", "1.2.3.4:0", "1.2.3.4:x", ""} {
		if _, err := resolverAddrs([]string{bad}, ""); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	os.WriteFile(conf, []byte("search corp.example\nnameserver 192.0.2.1\nnameserver 2001:db8::1\noptions ndots:5\n"), 0o644)
	got, err = resolverAddrs(nil, conf)
	if err != nil || !slices.Equal(got, []string{"192.0.2.1:53", "[2001:db8::1]:53"}) {
		t.Fatalf("from resolv.conf: %v %v", got, err)
	}
	os.WriteFile(conf, []byte("search corp.example\n"), 0o644)
	if _, err := resolverAddrs(nil, conf); err == nil {
		t.Fatal("resolv.conf without nameservers accepted")
	}
	if _, err := resolverAddrs(nil, filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing resolv.conf accepted")
	}
}

func msg(t *testing.T, answer, ns []string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	for _, l := range answer {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	for _, l := range ns {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		m.Ns = append(m.Ns, rr)
	}
	return m
}

func TestDNSAnswerTTL(t *testing.T) {
	t.Parallel()
	now := time.Unix(1e9, 0)
	tests := []struct {
		name   string
		answer []string
		ns     []string
		ttl    time.Duration
		kept   int
	}{
		{"smallest TTL", []string{"a.example. 300 IN CNAME b.example.", "b.example. 60 IN A 192.0.2.1"}, nil, time.Minute, 2},
		{"capped at an hour", []string{"a.example. 86400 IN A 192.0.2.1"}, nil, time.Hour, 1},
		{"other types dropped", []string{"a.example. 10 IN TXT \"x\"", "a.example. 300 IN A 192.0.2.1"}, nil, 300 * time.Second, 1},
		{"negative from SOA minimum", nil, []string{"example. 3600 IN SOA ns. host. 1 2 3 4 120"}, 2 * time.Minute, 0},
		{"negative from SOA TTL", nil, []string{"example. 30 IN SOA ns. host. 1 2 3 4 120"}, 30 * time.Second, 0},
		{"negative capped", nil, []string{"example. 86400 IN SOA ns. host. 1 2 3 4 86400"}, maxNegativeTTL, 0},
		{"negative without SOA", nil, nil, defaultNegative, 0},
	}
	for _, tt := range tests {
		a := newDNSAnswer(msg(t, tt.answer, tt.ns), now)
		if a.expires != now.Add(tt.ttl) || len(a.records) != tt.kept {
			t.Errorf("%s: expires in %v with %d records", tt.name, a.expires.Sub(now), len(a.records))
		}
	}
}

func TestChase(t *testing.T) {
	t.Parallel()
	recs := msg(t, []string{"a.example. 1 IN CNAME B.example.", "b.example. 1 IN CNAME c.example.", "c.example. 1 IN A 192.0.2.1"}, nil).Answer
	final, chain, err := chase(recs, "a.example.")
	if err != nil || final != "c.example." || !slices.Equal(chain, []string{"b.example.", "c.example."}) {
		t.Fatalf("%q %v %v", final, chain, err)
	}
	loop := msg(t, []string{"a.example. 1 IN CNAME b.example.", "b.example. 1 IN CNAME a.example."}, nil).Answer
	if _, _, err := chase(loop, "a.example."); err == nil {
		t.Fatal("loop accepted")
	}
	self := msg(t, []string{"a.example. 1 IN CNAME a.example."}, nil).Answer
	if _, _, err := chase(self, "a.example."); err == nil {
		t.Fatal("self-loop accepted")
	}
}

func TestEarliest(t *testing.T) {
	t.Parallel()
	a, b := time.Unix(100, 0), time.Unix(200, 0)
	for _, tt := range []struct{ x, y, want time.Time }{
		{a, b, a}, {b, a, a}, {time.Time{}, b, b}, {a, time.Time{}, a}, {time.Time{}, time.Time{}, time.Time{}},
	} {
		if got := earliest(tt.x, tt.y); !got.Equal(tt.want) {
			t.Errorf("earliest(%v, %v) = %v", tt.x, tt.y, got)
		}
	}
}

// startHandlerDNS serves h on a loopback UDP port, for behaviours that
// differ per question type (fedtest's server varies per name only).
func startHandlerDNS(t *testing.T, h dns.HandlerFunc) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(ready) }}
	go srv.ActivateAndServe()
	<-ready
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestLookupAddrsPartial: when AAAA fails but A answers, the A addresses
// are used, the failure is noted, and the cache lifetime is A's.
func TestLookupAddrsPartial(t *testing.T) {
	t.Parallel()
	addr := startHandlerDNS(t, func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		switch req.Question[0].Qtype {
		case dns.TypeAAAA:
			m.Rcode = dns.RcodeServerFailure
		case dns.TypeA:
			rr, _ := dns.NewRR(req.Question[0].Name + " 120 IN A 192.0.2.10")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	now := time.Unix(1e9, 0)
	o := Options{Now: func() time.Time { return now }}.withDefaults()
	d := newDNSClient([]string{addr}, o)
	a, err := d.lookupAddrs(context.Background(), "host.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.list) != 1 || a.list[0].String() != "192.0.2.10" || a.partial == nil || !a.expires.Equal(now.Add(120*time.Second)) {
		t.Fatalf("%+v", a)
	}
	if !strings.Contains(a.partial.Error(), "SERVFAIL") {
		t.Fatalf("partial error %v", a.partial)
	}
}

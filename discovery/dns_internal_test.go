package discovery

import (
	"os"
	"path/filepath"
	"slices"
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

package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
)

func newTestEgressCA(tb testing.TB, clock *fedtest.Clock, size int) *EgressCA {
	tb.Helper()
	o := EgressCAOptions{Dir: tb.TempDir(), CacheSize: size}
	if clock != nil {
		o.Now = clock.Now
	}
	ca, err := NewEgressCA(o)
	if err != nil {
		tb.Fatal(err)
	}
	return ca
}

func (ca *EgressCA) mintCount() uint64 {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.minted
}

func TestEgressConcurrentRequestsShareOneMint(t *testing.T) {
	t.Parallel()
	ca := newTestEgressCA(t, nil, 0)
	const callers = 64
	var wg sync.WaitGroup
	leaves := make([]*x509.Certificate, callers)
	errs := make([]error, callers)
	start := make(chan struct{})
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := ca.CertificateFor("matrix.example.org")
			errs[i] = err
			if err == nil {
				leaves[i] = c.Leaf
			}
		}()
	}
	close(start)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if leaves[i] != leaves[0] {
			t.Fatal("callers got different leaves")
		}
	}
	if n := ca.mintCount(); n != 1 {
		t.Fatalf("%d mints for one name, want 1", n)
	}
}

func TestEgressCacheRefreshAndBound(t *testing.T) {
	t.Parallel()
	clock := fedtest.NewClock(time.Now())
	ca := newTestEgressCA(t, clock, 3)

	first, err := ca.CertificateFor("a.example")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ca.CertificateFor("A.EXAMPLE."); got != first {
		t.Fatal("same name in another spelling was minted again")
	}
	// Two thirds into its life the leaf is still served...
	clock.Advance(DefaultEgressLeafValidity*2/3 - time.Minute)
	if got, _ := ca.CertificateFor("a.example"); got != first {
		t.Fatal("leaf replaced too early")
	}
	// ...and then replaced, before it expires.
	clock.Advance(2 * time.Minute)
	second, _ := ca.CertificateFor("a.example")
	if second == first {
		t.Fatal("leaf not replaced in the last third of its life")
	}
	if !second.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Fatal("replacement does not outlive the old leaf")
	}

	// The cache holds 3 names; the least recently used goes first.
	for _, n := range []string{"b.example", "c.example", "a.example", "d.example"} {
		if _, err := ca.CertificateFor(n); err != nil {
			t.Fatal(err)
		}
	}
	ca.mu.Lock()
	_, hasA := ca.leaves["a.example"]
	_, hasB := ca.leaves["b.example"]
	size := ca.lru.Len()
	ca.mu.Unlock()
	if size != 3 || !hasA || hasB {
		t.Fatalf("cache size %d, a cached %v, b cached %v; want 3, true, false", size, hasA, hasB)
	}
}

func TestEgressLeafCappedByCA(t *testing.T) {
	t.Parallel()
	clock := fedtest.NewClock(time.Now())
	ca := newTestEgressCA(t, clock, 0)
	clock.Advance(ca.cert.NotAfter.Sub(clock.Now()) - time.Hour)
	c, err := ca.CertificateFor("late.example")
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf.NotAfter.After(ca.cert.NotAfter) {
		t.Fatal("leaf outlives its CA")
	}
	clock.Advance(2 * time.Hour)
	if _, err := ca.CertificateFor("later.example"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("minting with an expired CA: %v", err)
	}
}

func TestLeafName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"matrix.example.org", "matrix.example.org"},
		{"Matrix.Example.ORG.", "matrix.example.org"},
		{"localhost", "localhost"},
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"[2001:DB8::1]", "2001:db8::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"", ""},
		{".", ""},
		{"example.org:443", ""},
		{"[::1]:443", ""},
		{"[192.0.2.7]", ""},
		{"fe80::1%eth0", ""},
		{"*.example.org", ""},
		{"bücher.example", ""},
		{"a_b.example", ""},
		{strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 126) + "a"},
		{strings.Repeat("a.", 127) + "a", ""},
	} {
		got, err := leafName(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrBadLeafName) {
				t.Errorf("leafName(%q) = %q, %v; want ErrBadLeafName", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("leafName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// FuzzLeafName feeds arbitrary requested names (SNI or CONNECT hosts from
// the homeserver) to the egress CA: it must refuse or mint a leaf that is
// valid for exactly the normalised name, never panic.
func FuzzLeafName(f *testing.F) {
	for _, s := range []string{"matrix.example.org", "Example.ORG.", "[::1]", "127.0.0.1", "::ffff:10.0.0.1", "a..b", "*.x", "x:1", "fe80::1%25eth0", "", "\xff"} {
		f.Add(s)
	}
	ca := newTestEgressCA(f, nil, 64)
	f.Fuzz(func(t *testing.T, s string) {
		name, err := leafName(s)
		if err != nil {
			if !errors.Is(err, ErrBadLeafName) {
				t.Fatalf("leafName(%q): untyped error %v", s, err)
			}
			return
		}
		if again, err := leafName(name); err != nil || again != name {
			t.Fatalf("leafName not idempotent: %q -> %q -> %q, %v", s, name, again, err)
		}
		if name != strings.ToLower(name) || len(name) > maxLeafName {
			t.Fatalf("leafName(%q) = %q", s, name)
		}
		c, err := ca.CertificateFor(s)
		if err != nil {
			t.Fatalf("CertificateFor(%q): %v", s, err)
		}
		if err := c.Leaf.VerifyHostname(name); err != nil {
			t.Fatalf("leaf for %q: %v", s, err)
		}
		if n := len(c.Leaf.DNSNames) + len(c.Leaf.IPAddresses); n != 1 {
			t.Fatalf("leaf for %q has %d names", s, n)
		}
	})
}

func BenchmarkEgressCertificateForCached(b *testing.B) {
	ca := newTestEgressCA(b, nil, 0)
	if _, err := ca.CertificateFor("matrix.example.org"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.CertificateFor("matrix.example.org"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEgressCertificateForMint(b *testing.B) {
	ca := newTestEgressCA(b, nil, 1<<20)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := ca.CertificateFor(fmt.Sprintf("h%d.example.org", i)); err != nil {
			b.Fatal(err)
		}
	}
}

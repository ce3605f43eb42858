package policy_test

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fedgate/fedgate/policy"
)

// bigPolicy is 1,000 entries, half exact names and half globs, in the deny
// list (open federation) or the allow list (closed), plus 1,000 networks.
func bigPolicy(closed bool) string {
	var names, nets []string
	for i := range 500 {
		names = append(names, "host"+strconv.Itoa(i)+".exact.example")
		names = append(names, "*.zone"+strconv.Itoa(i)+".example")
	}
	for i := range 1000 {
		nets = append(nets, "10."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250)+".0/24")
	}
	list := "deny"
	if closed {
		// The servers the hot-path inputs name must be allowed.
		names = append(names, "matrix.org", "*.matrix.org", "partner.example", "remote.example.com")
		list = "default = \"deny\"\nallow"
	}
	return "[policy]\n" + list + " = " + tomlList(names) + "\ndeny_networks = " + tomlList(nets) + `
deny_endpoints = ["media"]
deny_rooms = ["*:evil.example", "!bad:example.net"]
[policy.origins."partner.example"]
allow_endpoints = ["media"]
[rate_limit]
per_ip = { rate = "1000000000/s", burst = 1000000 }
per_origin = { rate = "1000000000/s", burst = 1000000 }
per_destination = { rate = "1000000000/s", burst = 1000000 }
concurrent_per_origin = 1000
[rate_limit.classes]
media = { rate = "1000000000/s", burst = 1000000 }
`
}

// hotPath lists the per-request calls that must not allocate when they
// allow, with inputs a busy server sees.
func hotPath(t testing.TB, e *env) map[string]func() {
	s := e.snap()
	l := e.engine.Limiters()
	join, joinQ := match(t, "GET", "/_matrix/federation/v1/make_join/%21room%3Aexample.org/%40alice%3Amatrix.org?ver=10&ver=11")
	profile, profileQ := match(t, "GET", "/_matrix/federation/v1/query/profile?user_id=%40bob%3Aexample.org&field=displayname")
	state, stateQ := match(t, "GET", "/_matrix/federation/v1/state/%21abcdefghijklmnop%3Aremote.example.com?event_id=%24e")
	keys, _ := match(t, "POST", "/_matrix/federation/v1/user/keys/query")
	send, _ := match(t, "PUT", "/_matrix/federation/v1/send/1700000000000")
	joinOut, _ := match(t, "GET", "/_matrix/federation/v1/make_join/%21room%3Aremote.example.com/%40me%3Aexample.org")
	joinPartner, joinPartnerQ := match(t, "GET", "/_matrix/federation/v1/make_join/%21room%3Aexample.org/%40p%3Apartner.example")
	keysBody := []byte(`{"device_keys": {"@alice:example.org": [], "@bob:example.org": ["ABCDEFGH"], "@\u0063arol:example.org": []}}`)
	peer := netip.MustParseAddr("2001:db8::42")
	must := func(d policy.Decision) {
		if !d.Allowed || d.Denied() {
			t.Fatalf("hot-path input denied: %+v", d)
		}
	}
	mustL := func(r policy.LimitResult) {
		if !r.Allowed || r.Limited() {
			t.Fatalf("hot-path input limited: %+v", r)
		}
	}
	return map[string]func(){
		"CheckPeer":                 func() { must(s.CheckPeer(peer)) },
		"CheckOrigin":               func() { must(s.CheckOrigin("matrix.org")) },
		"CheckOrigin/upper+port":    func() { must(s.CheckOrigin("Synapse.Matrix.ORG:8448")) },
		"CheckDestination":          func() { must(s.CheckDestination("a.b.c.matrix.org")) },
		"CheckRequest/make_join":    func() { must(s.CheckRequest("matrix.org", join, joinQ, nil)) },
		"CheckRequest/profile":      func() { must(s.CheckRequest("matrix.org", profile, profileQ, nil)) },
		"CheckRequest/state":        func() { must(s.CheckRequest("matrix.org", state, stateQ, nil)) },
		"CheckRequest/user_keys":    func() { must(s.CheckRequest("matrix.org", keys, "", keysBody)) },
		"CheckRequest/send":         func() { must(s.CheckRequest("matrix.org", send, "", nil)) },
		"CheckOutbound/make_join":   func() { must(s.CheckOutbound("remote.example.com", joinOut, "")) },
		"CheckRoom":                 func() { must(s.CheckRoom("!abcdefghijklmnop:remote.example.com")) },
		"AllowIP":                   func() { mustL(l.AllowIP(peer)) },
		"AllowOrigin":               func() { mustL(l.AllowOrigin("matrix.org", send.Endpoint)) },
		"AllowDestination":          func() { mustL(l.AllowDestination("matrix.org")) },
		"AcquireOrigin":             func() { rel, r := l.AcquireOrigin(context.Background(), "matrix.org"); mustL(r); rel() },
		"CheckRequest/join+partner": func() { must(s.CheckRequest("partner.example", joinPartner, joinPartnerQ, nil)) },
	}
}

// TestHotPathDoesNotAllocate pins the zero-allocation promise of the
// request path (not parallel: AllocsPerRun counts every goroutine's
// allocations).
func TestHotPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	for _, closed := range []bool{false, true} {
		e := newEnv(t, bigPolicy(closed))
		for name, f := range hotPath(t, e) {
			f() // first use creates limiter keys
			if n := testing.AllocsPerRun(200, f); n != 0 {
				t.Errorf("closed=%v %s: %v allocations per call, want 0", closed, name, n)
			}
		}
	}
}

// realTimeEnv is newEnv on the real clock, so that buckets refill during
// a benchmark.
func realTimeEnv(b *testing.B, extra string) *env {
	e := newEnv(b, "")
	o := e.optionsFor(loadConfig(b, e.dir, extra))
	o.Now = time.Now
	eng, err := policy.New(o)
	if err != nil {
		b.Fatal(err)
	}
	e.engine = eng
	return e
}

// BenchmarkPolicy measures one call per hot-path operation against 1,000
// list entries and 1,000 networks. Run with:
//
//	go test -run '^$' -bench BenchmarkPolicy -benchmem ./policy/
func BenchmarkPolicy(b *testing.B) {
	e := realTimeEnv(b, bigPolicy(true))
	ops := hotPath(b, e)
	names := make([]string, 0, len(ops))
	for n := range ops {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		f := ops[n]
		b.Run(n, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				f()
			}
		})
	}
}

// BenchmarkPolicyDenied measures a denial, which builds a message.
func BenchmarkPolicyDenied(b *testing.B) {
	e := newEnv(b, bigPolicy(false))
	s := e.snap()
	b.ReportAllocs()
	for b.Loop() {
		if d := s.CheckOrigin("a.zone321.example"); d.Allowed {
			b.Fatal("not denied")
		}
	}
}

// BenchmarkAllowIPParallel measures limiter contention across goroutines
// and distinct addresses.
func BenchmarkAllowIPParallel(b *testing.B) {
	e := realTimeEnv(b, bigPolicy(false))
	l := e.engine.Limiters()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var a [4]byte
		i := 0
		for pb.Next() {
			i++
			a = [4]byte{192, 0, byte(i >> 8), byte(i)}
			l.AllowIP(netip.AddrFrom4(a))
		}
	})
}

package discovery_test

import (
	"net/http"
	"testing"

	"github.com/fedgate/fedgate/discovery"
)

// BenchmarkResolveCached measures the per-request cost of discovery once
// every input is cached: well-known delegation, SRV and address lookups.
func BenchmarkResolveCached(b *testing.B) {
	e := wkEnv(b)
	e.srv.WellKnown("wk.test", delegation(`{"m.server":"deleg.test"}`))
	e.zone("_matrix-fed._tcp.deleg.test. 300 IN SRV 10 5 {port} target.test.",
		"_matrix-fed._tcp.deleg.test. 300 IN SRV 20 5 {port} other.test.",
		"target.test. 300 IN A 127.0.0.1", "target.test. 300 IN AAAA ::1")
	r := e.client(e.options()).Resolver()
	ctx := ctxT(b)
	if _, err := r.Resolve(ctx, "wk.test"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Resolve(ctx, "wk.test"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDo measures a whole GET over a pooled loopback TLS connection:
// cached discovery, guard, pool lookup, request, response.
func BenchmarkDo(b *testing.B) {
	e := newEnv(b)
	e.zone("host.test. 300 IN A 127.0.0.1")
	c := e.client(e.options())
	name := e.expand("host.test:{port}")
	ctx := ctxT(b)
	get := func() {
		req, _ := http.NewRequest(http.MethodGet, "/_matrix/federation/v1/version", nil)
		resp, err := c.Do(ctx, name, req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := discovery.ReadBody(name, resp, 1<<10); err != nil {
			b.Fatal(err)
		}
	}
	get()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		get()
	}
}

package discovery_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/fedgate/fedgate/discovery"
)

// BenchmarkResolveCached measures the per-request cost of discovery once
// every input is cached: well-known delegation, SRV and address lookups.
// The sub-benchmarks compare answering the SRV targets' addresses from
// DNS (cached), from a hosts file that lists them, and with a hosts file
// that lists other names only (a map miss, then the DNS cache).
func BenchmarkResolveCached(b *testing.B) {
	hostsLines := "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
	for _, bc := range []struct{ name, hosts string }{
		{"dns", ""},
		{"hosts-file", hostsLines + "127.0.0.1 target.test other.test\n::1 target.test\n"},
		{"hosts-file-miss", hostsLines + "192.0.2.1 unrelated.test\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := wkEnv(b)
			e.srv.WellKnown("wk.test", delegation(`{"m.server":"deleg.test"}`))
			e.zone("_matrix-fed._tcp.deleg.test. 300 IN SRV 10 5 {port} target.test.",
				"_matrix-fed._tcp.deleg.test. 300 IN SRV 20 5 {port} other.test.",
				"target.test. 300 IN A 127.0.0.1", "target.test. 300 IN AAAA ::1")
			o := e.options()
			if bc.hosts != "" {
				o.HostsFile = filepath.Join(b.TempDir(), "hosts")
				if err := os.WriteFile(o.HostsFile, []byte(bc.hosts), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			r := e.client(o).Resolver()
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
		})
	}
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

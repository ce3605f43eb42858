package gateway

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkInboundPools runs whole requests through the handler, as
// BenchmarkInbound does, in front of one homeserver and in front of pools
// (a default pool of two members taken in turn, and /send routed to four
// workers by origin), so that the two compare in one run:
//
//	go test -run '^$' -bench InboundPools -benchmem ./gateway/
func BenchmarkInboundPools(b *testing.B) {
	var urls []string
	for range 6 {
		urls = append(urls, startBenchUpstream(b))
	}
	quote := func(us []string) string { return `["` + strings.Join(us, `", "`) + `"]` }
	setups := []struct{ name, upstream string }{
		{"one-member", fmt.Sprintf("url = %q\n", urls[0])},
		{"pools", fmt.Sprintf("urls = %s\n[[upstream.route]]\nendpoints = [\"send\"]\nurls = %s\nbalance = \"origin\"\n", quote(urls[:2]), quote(urls[2:]))},
	}
	for _, s := range setups {
		e := newBenchEnvUpstream(b, s.upstream)
		for _, c := range e.cases(b) {
			if c.name != "GET-profile" && c.name != "PUT-send-2KiB" {
				continue
			}
			b.Run(s.name+"/"+c.name, func(b *testing.B) {
				b.SetBytes(int64(len(c.reqs[0].body)))
				b.ReportAllocs()
				e.serveLoop(b, c.reqs)
			})
		}
	}
}

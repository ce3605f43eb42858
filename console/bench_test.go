package console

import (
	"io"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRecord measures what the console costs every request, from
// all cores at once: a forwarded request from one of a few hundred
// servers already tracked.
func BenchmarkRecord(b *testing.B) {
	rec := NewRecorder(RecorderOptions{})
	names := make([]string, 256)
	for i := range names {
		names[i] = "server" + strconv.Itoa(i) + ".example"
	}
	now := time.Now()
	var next atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 37
		for pb.Next() {
			i++
			rec.Record(&Request{Time: now, Server: names[i%len(names)], Outcome: Forwarded, Status: 200})
		}
	})
}

// BenchmarkRecordHotOrigin is the worst case for contention: every core
// records requests of the same origin.
func BenchmarkRecordHotOrigin(b *testing.B) {
	rec := NewRecorder(RecorderOptions{})
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec.Record(&Request{Time: now, Server: "matrix.org", Outcome: Forwarded, Status: 200})
		}
	})
}

// BenchmarkRecordDeniedFlood: a rate-limited origin's flood of denials,
// which the recent-denials ring folds into one line.
func BenchmarkRecordDeniedFlood(b *testing.B) {
	rec := NewRecorder(RecorderOptions{})
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec.Record(&Request{Time: now, Server: "busy.example", Peer: netip.MustParseAddr("192.0.2.7"), Outcome: Denied, Status: 429,
				Reason: "rate_per_origin", Stage: "origin_limits", Limiter: "per_origin"})
		}
	})
}

// BenchmarkRecordDistinctNames: every request names a server never seen
// (a scan with made-up origins), the table's worst case.
func BenchmarkRecordDistinctNames(b *testing.B) {
	rec := NewRecorder(RecorderOptions{})
	now := time.Now()
	names := make([]string, 1<<16)
	for i := range names {
		names[i] = "junk" + strconv.Itoa(i) + ".example"
	}
	var next atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec.Record(&Request{Time: now, Server: names[next.Add(1)%uint32(len(names))], Outcome: Forwarded, Status: 200})
		}
	})
}

// BenchmarkRender measures building the traffic section and rendering the
// whole page, after a light and after a heavy hour: the two should cost
// the same, since rendering reads fixed-size structures. The third case
// is a hosting provider's gateway: 50 hosted servers, each with its keys,
// a signed list and 20 policy rooms; it costs more rows, bounded by the
// configuration, never by traffic.
func BenchmarkRender(b *testing.B) {
	for _, load := range []struct {
		name     string
		requests int
		servers  int
		hosted   int // hosted servers, each but the first with a signed list
		rooms    int // policy rooms of each of those
	}{{"light", 1_000, 10, 1, 0}, {"heavy", 1_000_000, 100_000, 1, 0}, {"hosted50-rooms20", 1_000, 10, 50, 20}} {
		b.Run(load.name, func(b *testing.B) {
			now := fixtureNow
			rec := NewRecorder(RecorderOptions{})
			for i := range load.requests {
				out := Forwarded
				if i%5 == 0 {
					out = Denied
				}
				rec.Record(&Request{Time: now.Add(-time.Duration(i%3600) * time.Second), Server: "s" + strconv.Itoa(i%load.servers) + ".example",
					Outcome: out, Status: 403, Reason: "origin_denied", Rule: "policy.deny[" + strconv.Itoa(i%9) + "]"})
			}
			st := multiStatus(now, load.hosted, load.rooms)
			r, err := newRenderer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				st.Traffic = rec.Traffic(now, 10, Names{})
				if err := r.render(io.Discard, st, 15); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

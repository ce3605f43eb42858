package cluster_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
)

// BenchmarkLimiterTake measures one request's shared rate-limit call
// (per_ip, per_origin and a class, as a verified request takes them)
// against a real redis-server, from many goroutines at once as under load.
// CPU per op here is fedgate's side only; redis-server's is not counted.
func BenchmarkLimiterTake(b *testing.B) {
	r := fedtest.StartRedis(b)
	l := newClient(b, r, "bench").Limiter("example.org")
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16)
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		id := strconv.Itoa(int(n.Add(1)))
		buckets := []policy.SharedBucket{
			{Limiter: "per_ip", Key: "192.0.2." + id, Rate: 1e7, Burst: 1e7},
			{Limiter: "per_origin", Key: "origin" + id + ".example", Rate: 1e7, Burst: 1e7},
			{Limiter: "class:media", Key: "origin" + id + ".example", Rate: 1e7, Burst: 1e7},
		}
		for pb.Next() {
			if _, _, err := l.Take(ctx, buckets); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLimiterTakeSerial is one caller at a time: the latency of the
// round trip with nothing to batch.
func BenchmarkLimiterTakeSerial(b *testing.B) {
	r := fedtest.StartRedis(b)
	l := newClient(b, r, "bench").Limiter("example.org")
	buckets := []policy.SharedBucket{{Limiter: "per_origin", Key: "origin.example", Rate: 1e7, Burst: 1e7}}
	ctx := context.Background()
	b.ReportAllocs()
	defer reportCPU(b)()
	for b.Loop() {
		if _, _, err := l.Take(ctx, buckets); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU reports this process's CPU time (user and system, all threads)
// per operation as "cpu-ns/op": what a request costs fedgate, waiting
// excluded. Call it as defer reportCPU(b)().
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((processCPU()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

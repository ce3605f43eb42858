package cluster_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
)

// BenchmarkLimiterTake measures one request's shared rate-limit call
// (per_ip, per_origin and a class, as a verified request takes them)
// against a real redis-server, from many goroutines at once as under load.
// CPU per op here is fedgate's side only; redis-server's is not counted.
func BenchmarkLimiterTake(b *testing.B) {
	r := fedtest.StartRedis(b)
	l := benchClient(b, r).Limiter("example.org")
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
	l := benchClient(b, r).Limiter("example.org")
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

// BenchmarkTakeBatch compares the two ways of sending a batch of takes
// to a real redis-server: "pipeline", one EVALSHA per take in a go-redis
// pipeline (fedgate's way before, kept in export_test.go as the
// baseline), and "script", the one script call per batch that fedgate
// sends now; for a batch of one also "one-take-script", the batch path's
// single command with the old one-take script, which tells what sending a
// lone take with a script of its own would save. Each take holds three
// buckets of its own origin (per_ip, per_origin and a class, as a
// verified request takes them). Besides
// ns/op and allocs/op per batch it reports per take: ns/take,
// allocs/take, cpu-ns/take (this process: fedgate's side) and
// redis-cpu-ns/take (redis-server's CPU, in 10ms ticks, so trust it only
// over a second or more).
func BenchmarkTakeBatch(b *testing.B) {
	r := fedtest.StartRedis(b)
	l := benchClient(b, r).Limiter("example.org")
	for _, size := range []int{1, 4, 16} {
		takes := make([][]policy.SharedBucket, size)
		for i := range takes {
			id := strconv.Itoa(i)
			takes[i] = []policy.SharedBucket{
				{Limiter: "per_ip", Key: "192.0.2." + id, Rate: 1e7, Burst: 1e7},
				{Limiter: "per_origin", Key: "origin" + id + ".example", Rate: 1e7, Burst: 1e7},
				{Limiter: "class:media", Key: "origin" + id + ".example", Rate: 1e7, Burst: 1e7},
			}
		}
		ways := []string{"pipeline", "script"}
		if size == 1 {
			ways = append(ways, "one-take-script")
		}
		for _, way := range ways {
			b.Run(way+"/takes="+strconv.Itoa(size), func(b *testing.B) {
				batch := l.BatchForTest(takes...)
				exec := batch.Exec
				switch way {
				case "pipeline":
					exec = batch.ExecPipelined
				case "one-take-script":
					exec = batch.ExecLegacyOne
				}
				exec() // load the script
				for i, res := range batch.Results() {
					if res.Err != nil || res.Res != [2]int64{} {
						b.Fatalf("take %d: %v %v", i, res.Res, res.Err)
					}
				}
				b.ReportAllocs()
				perTake := reportPerTake(b, r, size)
				for b.Loop() {
					exec()
				}
				perTake()
				for i, res := range batch.Results() {
					if res.Err != nil {
						b.Fatalf("take %d: %v", i, res.Err)
					}
				}
			})
		}
	}
}

// benchClient is newClient with a generous timeout: on a busy machine a
// round trip slower than a test's 200ms must not fail a benchmark.
func benchClient(b *testing.B, r *fedtest.Redis) *cluster.Client {
	return startClient(b, cluster.Options{URL: r.URL, Node: "bench", Prefix: "test:", Timeout: 2 * time.Second})
}

// reportPerTake reports time, allocations and CPU (this process's and
// redis-server's) per take of a batch of size takes. Call it right
// before the benchmark's loop, and what it returns right after.
func reportPerTake(b *testing.B, r *fedtest.Redis, size int) func() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	mallocs, cpu := m.Mallocs, processCPU()
	rcpu, rerr := r.CPU()
	start := time.Now()
	return func() {
		elapsed := time.Since(start)
		ownCPU := processCPU() - cpu
		rcpuEnd, rerr2 := r.CPU()
		runtime.ReadMemStats(&m)
		n := float64(b.N * size)
		if n == 0 {
			return
		}
		b.ReportMetric(float64(elapsed.Nanoseconds())/n, "ns/take")
		b.ReportMetric(float64(m.Mallocs-mallocs)/n, "allocs/take")
		b.ReportMetric(float64(ownCPU.Nanoseconds())/n, "cpu-ns/take")
		if rerr == nil && rerr2 == nil {
			b.ReportMetric(float64((rcpuEnd-rcpu).Nanoseconds())/n, "redis-cpu-ns/take")
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

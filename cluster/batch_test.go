package cluster_test

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
)

// bucket is a bucket that refills too slowly to matter during a test
// (one token in 1000 s): what a test takes from it stays taken.
func bucket(limiter, key string, burst int) policy.SharedBucket {
	return policy.SharedBucket{Limiter: limiter, Key: key, Rate: 0.001, Burst: burst}
}

// TestLimiterBatchScript sends several takes as one script call and
// checks each take's answer: later takes see what earlier ones took, a
// take is all or none, and a refused take writes nothing. The same takes
// sent one at a time, through Take and through the one-take script
// fedgate used before (each in a namespace of its own), must get the
// same answers: batching changes the cost, not the outcome.
func TestLimiterBatchScript(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	c := newClient(t, r, "a")
	a, b, cc := bucket("per_origin", "a.example", 2), bucket("per_origin", "b.example", 1), bucket("class:media", "c.example", 3)
	five := bucket("per_origin", "five.example", 5)
	fresh, empty := bucket("per_ip", "192.0.2.7", 5), bucket("per_origin", "empty.example", 1)
	off := policy.SharedBucket{Limiter: "per_ip", Key: "192.0.2.8"} // no rate: skipped
	tests := []struct {
		name  string
		setup [][]policy.SharedBucket // taken one at a time first
		takes [][]policy.SharedBucket
		// want is Take's answer per take: -1 allowed, else the index of
		// the caller's bucket without room.
		want []int
		// unwritten buckets must not exist in Redis afterwards.
		unwritten []policy.SharedBucket
	}{{
		name:  "one bucket across the batch honours the burst",
		takes: repeat([]policy.SharedBucket{five}, 8),
		want:  []int{-1, -1, -1, -1, -1, 0, 0, 0},
	}, {
		name: "mixed takes",
		takes: [][]policy.SharedBucket{
			{a},        // a 2 -> 1
			{a, b},     // a 1 -> 0, b 1 -> 0
			{b},        // b empty
			{cc, b},    // b empty: cc keeps its 3 tokens
			{cc}, {cc}, // cc 3 -> 1
			{off, cc}, // cc 1 -> 0; the skipped bucket maps back
			{cc},      // cc empty
			{a, cc},   // a empty first
		},
		want: []int{-1, -1, 0, 1, -1, -1, -1, 0, 0},
	}, {
		name:      "a refused take writes nothing",
		setup:     [][]policy.SharedBucket{{empty}},
		takes:     [][]policy.SharedBucket{{fresh, empty}, {fresh, empty}},
		want:      []int{1, 1},
		unwritten: []policy.SharedBucket{fresh},
	}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, way := range []string{"batch", "serial", "legacy"} {
				l := c.Limiter(way + strconv.Itoa(i))
				for _, s := range tt.setup {
					if _, _, err := l.Take(context.Background(), s); err != nil {
						t.Fatal(err)
					}
				}
				got := make([]int, len(tt.takes))
				if way == "batch" {
					batch := l.BatchForTest(tt.takes...)
					batch.Exec()
					for j, res := range batch.Results() {
						if res.Err != nil {
							t.Fatalf("take %d: %v", j, res.Err)
						}
						got[j] = callerIndex(tt.takes[j], res.Res[0])
						if res.Res[0] == 0 && res.Res[1] != 0 || res.Res[0] != 0 && res.Res[1] <= 0 {
							t.Errorf("take %d: answer %v", j, res.Res)
						}
					}
				} else if way == "legacy" {
					for j, take := range tt.takes {
						one := l.BatchForTest(take)
						one.ExecPipelined()
						res := one.Results()[0]
						if res.Err != nil {
							t.Fatalf("take %d: %v", j, res.Err)
						}
						got[j] = callerIndex(take, res.Res[0])
					}
				} else {
					for j, take := range tt.takes {
						d, _, err := l.Take(context.Background(), take)
						if err != nil {
							t.Fatalf("take %d: %v", j, err)
						}
						got[j] = d
					}
				}
				if !equal(got, tt.want) {
					t.Errorf("%s: got %v, want %v", way, got, tt.want)
				}
				for _, u := range tt.unwritten {
					key := "test:rl:" + way + strconv.Itoa(i) + ":" + u.Limiter + ":" + u.Key
					if got := r.Do("EXISTS " + key); got != ":0" {
						t.Errorf("%s: %s was written (EXISTS %s)", way, key, got)
					}
				}
			}
		})
	}
}

// TestLimiterScriptStoresLikeBefore: the batch script rounds a bucket's
// new TAT to whole microseconds as the one-take script's %.0f did (half
// to even), so the values in Redis are the same whichever wrote them. The
// stored TATs lie far ahead (at 4e15 a double's step is half a
// microsecond, so ties happen) and the burst is large enough that they
// are taken as they are.
func TestLimiterScriptStoresLikeBefore(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	c := newClient(t, r, "a")
	for _, stored := range []string{"4000000000000000", "4000000000000001"} {
		for _, interval := range []string{"0.500", "0.250", "0.750", "1.500", "2.500", "333333.333"} {
			var got [2]string
			for i, key := range []string{"test:round:batch", "test:round:legacy"} {
				r.Do("SET " + key + " " + stored)
				var err error
				if i == 0 {
					_, err = c.EvalRateLimitScriptForTest([]string{key}, 1, interval, "100000000000000000")
				} else {
					_, err = c.EvalLegacyScriptForTest([]string{key}, interval, "100000000000000000")
				}
				if err != nil {
					t.Fatal(err)
				}
				if got[i], err = c.GetForTest(key); err != nil {
					t.Fatal(err)
				}
			}
			if got[0] != got[1] {
				t.Errorf("stored %s, interval %s: batch script wrote %s, one-take script %s", stored, interval, got[0], got[1])
			}
		}
	}
}

// TestLimiterBatchThroughTake holds the flusher while callers queue, so
// that their takes really go to Redis as one batch, one round trip, and
// checks that the bucket's burst holds exactly across it, also when Redis
// has just forgotten the script (SCRIPT FLUSH: the batch goes again as
// EVAL) and when the takes hold more keys than one call may carry (two
// calls).
func TestLimiterBatchThroughTake(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	c := newClient(t, r, "a")
	classes := make([]policy.SharedBucket, cluster.MaxTakeKeys-1)
	for i := range classes {
		classes[i] = bucket("class:c"+strconv.Itoa(i), "many.example", 1000)
	}
	tests := []struct {
		name        string
		callers     int
		burst       int
		extra       []policy.SharedBucket // more buckets in every take, with room
		flushScript bool
		roundTrips  uint64
	}{
		{name: "burst 5, 8 callers", callers: 8, burst: 5, roundTrips: 1},
		{name: "burst 5, 8 callers, script cache lost", callers: 8, burst: 5, flushScript: true, roundTrips: 1},
		{name: "burst 40, 40 callers", callers: 40, burst: 40, roundTrips: 1},
		{
			name: "more keys than one call carries", callers: cluster.MaxBatchKeys/cluster.MaxTakeKeys + 8, burst: 20, extra: classes,
			roundTrips: 2,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := c.Limiter("through" + strconv.Itoa(i))
			take := append([]policy.SharedBucket{bucket("per_origin", "busy.example", tt.burst)}, tt.extra...)
			if tt.flushScript {
				if got := r.Do("SCRIPT FLUSH"); got != "+OK" {
					t.Fatalf("SCRIPT FLUSH: %q", got)
				}
			}
			before := c.Stats()
			release := c.HoldFlushForTest()
			results := make(chan int, tt.callers)
			var wg sync.WaitGroup
			for range tt.callers {
				wg.Go(func() {
					d, _, err := l.Take(context.Background(), take)
					if err != nil {
						t.Error(err)
						d = -2
					}
					results <- d
				})
			}
			waitFor(t, "the callers to queue", 10*time.Second, func() bool { return c.QueuedForTest() == tt.callers })
			release()
			wg.Wait()
			close(results)
			allowed := 0
			for d := range results {
				switch d {
				case -1:
					allowed++
				case 0:
				default:
					t.Errorf("answer %d, want -1 or 0 (the shared bucket)", d)
				}
			}
			if want := min(tt.burst, tt.callers); allowed != want {
				t.Errorf("%d of %d allowed, want %d", allowed, tt.callers, want)
			}
			after := c.Stats()
			if got := after.RoundTrip.Count - before.RoundTrip.Count; got != tt.roundTrips {
				t.Errorf("%d round trips, want %d", got, tt.roundTrips)
			}
			if got := after.Calls["rate_limit"] - before.Calls["rate_limit"]; got != uint64(tt.callers) {
				t.Errorf("rate_limit calls went up by %d, want one per take (%d)", got, tt.callers)
			}
			if after.Errors["rate_limit"] != before.Errors["rate_limit"] || after.Fallbacks["rate_limit"] != before.Fallbacks["rate_limit"] {
				t.Errorf("errors or fallbacks: before %+v, after %+v", before, after)
			}
		})
	}
}

// TestLimiterBatchScriptRefusesMalformedCalls: the script checks its
// counts before it reads or writes anything, so a call whose ARGV does
// not match KEYS is an error reply and changes nothing.
func TestLimiterBatchScriptRefusesMalformedCalls(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	c := newClient(t, r, "a")
	keys := func(n int) []string {
		k := make([]string, n)
		for i := range k {
			k[i] = "test:malformed:" + strconv.Itoa(i)
		}
		return k
	}
	takes := func(takes, per int) []any {
		var a []any
		for range takes {
			a = append(a, per)
			for range per {
				a = append(a, "1000", "5")
			}
		}
		return a
	}
	tests := []struct {
		name string
		keys []string
		argv []any
		want string // "" for an answer of two zeros per take
	}{
		{"well formed", keys(2), []any{1, "1000", "5", 1, "1000", "5"}, ""},
		{"a take of the most keys", keys(cluster.MaxTakeKeys), takes(1, cluster.MaxTakeKeys), ""},
		{"a call of the most keys", keys(cluster.MaxBatchKeys), takes(cluster.MaxBatchKeys/cluster.MaxTakeKeys, cluster.MaxTakeKeys), ""},
		{"count past KEYS", keys(1), []any{2, "1000", "5", "1000", "5"}, "bad key count"},
		{"count past ARGV", keys(2), []any{2, "1000", "5"}, "bad key count"},
		{"zero count", keys(1), []any{0, 1, "1000", "5"}, "bad key count"},
		{"negative count", keys(1), []any{-1, "1000", "5"}, "bad key count"},
		{"fractional count", keys(1), []any{"1.5", "1000", "5"}, "bad key count"},
		{"count not a number", keys(1), []any{"x", "1000", "5"}, "bad key count"},
		{"a take of too many keys", keys(cluster.MaxTakeKeys + 1), takes(1, cluster.MaxTakeKeys+1), "bad key count"},
		{"a call of too many keys", keys(cluster.MaxBatchKeys + 1), append(takes(cluster.MaxBatchKeys/cluster.MaxTakeKeys, cluster.MaxTakeKeys), 1, "1000", "5"), "more than"},
		{"keys left over", keys(2), []any{1, "1000", "5"}, "KEYS holds 2"},
		{"no ARGV", keys(1), nil, "KEYS holds 1"},
		{"interval not a number", keys(1), []any{1, "soon", "5"}, "bad interval or burst"},
		{"negative interval", keys(1), []any{1, "-1", "5"}, "bad interval or burst"},
		{"infinite interval", keys(1), []any{1, "inf", "5"}, "bad interval or burst"},
		{"interval not a number (nan)", keys(1), []any{1, "nan", "5"}, "bad interval or burst"},
		{"zero burst", keys(1), []any{1, "1000", "0"}, "bad interval or burst"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.Do("FLUSHDB")
			res, err := c.EvalRateLimitScriptForTest(tt.keys, tt.argv...)
			if tt.want == "" {
				if err != nil || len(res) != 2*countTakes(tt.argv) {
					t.Fatalf("got %v %v, want every take allowed", res, err)
				}
				for _, v := range res {
					if v != 0 {
						t.Fatalf("got %v, want every take allowed", res)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v %v, want an error reply saying %q", res, err, tt.want)
			}
			if got := r.Do("DBSIZE"); got != ":0" {
				t.Errorf("a refused call wrote keys: DBSIZE %s", got)
			}
		})
	}
}

// TestLimiterBatchBadAnswer: an answer without two integers per take
// gives every take of the batch an error (each then uses its local
// buckets) and counts a failed round trip; Redis, which did answer, is
// not marked down.
func TestLimiterBatchBadAnswer(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	c := newClient(t, r, "a")
	refused := replyError("ERR something")
	tests := []struct {
		name    string
		takes   int
		res     []int64
		err     error
		wantErr bool
	}{
		{"two per take", 2, []int64{0, 0, 2, 1500}, nil, false},
		{"too few", 3, []int64{0, 0, 0, 0}, nil, true},
		{"too many", 1, []int64{0, 0, 0}, nil, true},
		{"none", 2, nil, nil, true},
		{"call failed", 2, nil, refused, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := c.Stats().Errors["rate_limit"]
			got := c.AnswerForTest(tt.takes, tt.res, tt.err)
			for i, g := range got {
				if (g.Err != nil) != tt.wantErr {
					t.Fatalf("take %d: %v %v", i, g.Res, g.Err)
				}
				if !tt.wantErr && (g.Res[0] != tt.res[2*i] || g.Res[1] != tt.res[2*i+1]) {
					t.Fatalf("take %d got %v, want %v", i, g.Res, tt.res[2*i:2*i+2])
				}
			}
			if d := c.Stats().Errors["rate_limit"] - errs; tt.wantErr && d != 1 || !tt.wantErr && d != 0 {
				t.Errorf("errors went up by %d", d)
			}
			if !c.Up() {
				t.Error("Redis marked down for an answer it gave")
			}
		})
	}
}

// TestLimiterTooManyBuckets: a request with more buckets than the script
// takes in one take uses its local buckets, without a round trip.
func TestLimiterTooManyBuckets(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	c := newClient(t, r, "a")
	many := make([]policy.SharedBucket, cluster.MaxTakeKeys+1)
	for i := range many {
		many[i] = bucket("class:c"+strconv.Itoa(i), "o.example", 5)
	}
	if _, _, err := c.Limiter("ns").Take(context.Background(), many); err == nil {
		t.Fatal("a take of too many buckets went through")
	}
	if st := c.Stats(); st.RoundTrip.Count != 0 || st.Fallbacks["rate_limit"] != 1 || !st.Up {
		t.Fatalf("stats %+v", st)
	}
	if d, _, err := c.Limiter("ns").Take(context.Background(), many[:cluster.MaxTakeKeys]); err != nil || d != -1 {
		t.Fatalf("a take of the most buckets: %d %v", d, err)
	}
}

// TestLimiterTakesNonStringValues: a bucket key that holds something
// other than a string (written by someone else) reads as a fresh bucket
// and is replaced, rather than failing the call and every take batched
// with it.
func TestLimiterTakesNonStringValues(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	c := newClient(t, r, "a")
	l := c.Limiter("ns")
	r.Do("HSET test:rl:ns:per_origin:hash.example f v")
	batch := l.BatchForTest(
		[]policy.SharedBucket{bucket("per_origin", "hash.example", 1)},
		[]policy.SharedBucket{bucket("per_origin", "other.example", 1)},
		[]policy.SharedBucket{bucket("per_origin", "hash.example", 1)},
	)
	batch.Exec()
	want := [][2]int64{{0, 0}, {0, 0}}
	got := batch.Results()
	for i, w := range want {
		if got[i].Err != nil || got[i].Res != w {
			t.Fatalf("take %d: %v %v, want %v", i, got[i].Res, got[i].Err, w)
		}
	}
	if got[2].Err != nil || got[2].Res[0] != 1 {
		t.Fatalf("second take of the replaced bucket: %v %v, want it empty", got[2].Res, got[2].Err)
	}
	if typ := r.Do("TYPE test:rl:ns:per_origin:hash.example"); typ != "+string" {
		t.Fatalf("bucket key is a %s now", typ)
	}
}

// replyError is an error reply from Redis (a [redis.Error]): the server
// answered, refusing the command.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// TestLimiterExtremeBuckets: configurations at the edges (a rate so
// small that 1/rate overflows, a huge burst far into which the bucket
// already is, so that its expiry would pass what Redis accepts, a rate so
// large the interval rounds to zero, NaN) still get answers, so they
// cannot fail the ordinary takes batched with them.
func TestLimiterExtremeBuckets(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	c := newClient(t, r, "a")
	l := c.Limiter("ns")
	tests := []struct {
		name   string
		bucket policy.SharedBucket
		stored string     // the bucket's value before the batch, if any
		want   [][2]int64 // the first two takes' answers; wait only as > 0
	}{
		{"rate that overflows 1/rate", policy.SharedBucket{Limiter: "per_origin", Key: "tiny.example", Rate: 5e-324, Burst: 1}, "", [][2]int64{{0, 0}, {1, 1}}},
		{"tiny rate, huge burst, far into it", policy.SharedBucket{Limiter: "per_origin", Key: "huge.example", Rate: 1e-9, Burst: 1 << 40}, "100000000000000000000000000", [][2]int64{{0, 0}, {0, 0}}},
		{"huge rate", policy.SharedBucket{Limiter: "per_origin", Key: "fast.example", Rate: 1e300, Burst: 1}, "", [][2]int64{{0, 0}, {0, 0}}},
		{"NaN rate counts as no rate", policy.SharedBucket{Limiter: "per_origin", Key: "nan.example", Rate: math.NaN(), Burst: 1}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.stored != "" {
				r.Do("SET test:rl:ns:" + tt.bucket.Limiter + ":" + tt.bucket.Key + " " + tt.stored)
			}
			ordinary := []policy.SharedBucket{bucket("per_origin", "ordinary.example", 1000)}
			takes := [][]policy.SharedBucket{{tt.bucket}, {tt.bucket}, ordinary}
			if tt.want == nil {
				takes = [][]policy.SharedBucket{ordinary, append([]policy.SharedBucket{tt.bucket}, ordinary...)}
			}
			batch := l.BatchForTest(takes...)
			batch.Exec()
			got := batch.Results()
			for i, g := range got {
				if g.Err != nil {
					t.Fatalf("take %d: %v", i, g.Err)
				}
			}
			for i, w := range tt.want {
				if g := got[i].Res; g[0] != w[0] || (w[1] == 0) != (g[1] == 0) {
					t.Errorf("take %d: got %v, want %v", i, g, w)
				}
			}
			if last := got[len(got)-1].Res; last != [2]int64{} {
				t.Errorf("the ordinary take got %v", last)
			}
		})
	}
}

func repeat(take []policy.SharedBucket, n int) [][]policy.SharedBucket {
	out := make([][]policy.SharedBucket, n)
	for i := range out {
		out[i] = take
	}
	return out
}

// callerIndex maps the script's 1-based index within a take (0: allowed)
// to Take's answer: -1, or the index in the caller's buckets, skipping
// buckets without a rate as Take does.
func callerIndex(take []policy.SharedBucket, i int64) int {
	if i == 0 {
		return -1
	}
	seen := int64(0)
	for j, b := range take {
		if b.Rate > 0 {
			seen++
		}
		if seen == i {
			return j
		}
	}
	return -2
}

func countTakes(argv []any) int {
	n := 0
	for i := 0; i < len(argv); {
		per, _ := argv[i].(int)
		n++
		i += 1 + 2*per
	}
	return n
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

package cluster

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Operations, as metric label values.
const (
	opRateLimit = iota // the per-request limiter script
	opKeyring          // keyring lookups, locks, publishing
	opBackoff          // egress backoff publishing and subscription
	opACME             // certmagic storage
	opPing             // health probes
	numOps
)

var opNames = [numOps]string{"rate_limit", "keyring", "backoff", "acme", "ping"}

// rttBuckets are the round-trip histogram's bounds, in seconds: Redis on
// a LAN answers in well under a millisecond; cluster.timeout is 50ms by
// default.
var rttBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}

// stats are the counters the request path bumps: atomic adds only.
type stats struct {
	calls     [numOps]atomic.Uint64
	errors    [numOps]atomic.Uint64
	fallbacks [numOps]atomic.Uint64 // answered locally: Redis down, slow or refusing
	downs     atomic.Uint64
	rtt       prometheus.Histogram
}

func newStats() *stats {
	return &stats{rtt: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "fedgate", Subsystem: "cluster", Name: "rate_limit_round_trip_seconds",
		Help:    "Time of the Redis round trip of one batch of rate-limit takes (one script call for the requests queued together).",
		Buckets: rttBuckets,
	})}
}

func (s *stats) observe(start time.Time) { s.rtt.Observe(time.Since(start).Seconds()) }

// Collector returns the Prometheus collector of the cluster metrics, for
// the gateway's registry:
//
//	fedgate_cluster_redis_up                      1 while Redis answers, else 0
//	fedgate_cluster_info{node,prefix}             always 1
//	fedgate_cluster_redis_calls_total{op}         round trips by operation; for rate_limit, takes (requests)
//	fedgate_cluster_redis_errors_total{op}        failed round trips by operation
//	fedgate_cluster_fallbacks_total{op}           answered from local state instead
//	fedgate_cluster_redis_down_total              times Redis was marked down
//	fedgate_cluster_rate_limit_round_trip_seconds the request path's round trip, one per batch of takes
//
// The rate_limit calls count the requests that asked for their buckets
// (one take each), as they did when every take was a command of its own;
// the takes queued together go in one script call, one round trip, and
// the histogram's count is the number of those. Its errors count failed
// round trips (a failed batch once), its fallbacks the takes answered
// locally.
func (c *Client) Collector() prometheus.Collector { return &collector{c: c} }

type collector struct{ c *Client }

var (
	descUp        = prometheus.NewDesc("fedgate_cluster_redis_up", "1 while Redis answers within cluster.timeout, 0 while fedgate uses local state.", nil, nil)
	descInfo      = prometheus.NewDesc("fedgate_cluster_info", "Cluster mode is on; labels name this instance and the key prefix.", []string{"node", "prefix"}, nil)
	descCalls     = prometheus.NewDesc("fedgate_cluster_redis_calls_total", "Redis round trips by operation; for op=\"rate_limit\" the requests that took shared buckets (those queued together share one round trip: fedgate_cluster_rate_limit_round_trip_seconds counts round trips).", []string{"op"}, nil)
	descErrors    = prometheus.NewDesc("fedgate_cluster_redis_errors_total", "Failed Redis round trips (unreachable, slower than cluster.timeout, refused) by operation.", []string{"op"}, nil)
	descFallbacks = prometheus.NewDesc("fedgate_cluster_fallbacks_total", "Operations answered from this instance's own state because Redis was down, slow or refused, by operation.", []string{"op"}, nil)
	descDowns     = prometheus.NewDesc("fedgate_cluster_redis_down_total", "Times Redis was marked down.", nil, nil)
)

func (k *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descInfo, descCalls, descErrors, descFallbacks, descDowns} {
		ch <- d
	}
	k.c.stats.rtt.Describe(ch)
}

func (k *collector) Collect(ch chan<- prometheus.Metric) {
	c, s := k.c, k.c.stats
	up := 0.0
	if c.up.Load() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, c.opts.Node, c.prefix)
	for op := range numOps {
		ch <- prometheus.MustNewConstMetric(descCalls, prometheus.CounterValue, float64(s.calls[op].Load()), opNames[op])
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(s.errors[op].Load()), opNames[op])
		ch <- prometheus.MustNewConstMetric(descFallbacks, prometheus.CounterValue, float64(s.fallbacks[op].Load()), opNames[op])
	}
	ch <- prometheus.MustNewConstMetric(descDowns, prometheus.CounterValue, float64(s.downs.Load()))
	s.rtt.Collect(ch)
}

// Stats is a point-in-time view of the client, for tests and status pages.
type Stats struct {
	// Up reports whether Redis answered the last round trip or probe.
	Up bool
	// Since is when Redis was last marked down or up again; when the
	// client was created if neither happened since.
	Since time.Time
	// Calls, Errors and Fallbacks count round trips, failed round trips
	// and operations answered from local state, by operation name
	// ("rate_limit", "keyring", "backoff", "acme", "ping"). For
	// "rate_limit", Calls counts takes (one per request), several of
	// which share one round trip; RoundTrip.Count counts round trips.
	Calls     map[string]uint64
	Errors    map[string]uint64
	Fallbacks map[string]uint64
	// Downs counts the times Redis was marked down.
	Downs uint64
	// RoundTrip summarises the request path's rate-limit round trips
	// (one per batch of takes) since the client was created.
	RoundTrip RoundTrip
}

// RoundTrip summarises the rate-limit round trip histogram
// (fedgate_cluster_rate_limit_round_trip_seconds).
type RoundTrip struct {
	// Count is how many round trips were measured.
	Count uint64
	// Mean is their average time; P99 the time 99% of them stayed
	// within, estimated from the histogram's buckets as PromQL's
	// histogram_quantile does. Both are zero without round trips.
	Mean, P99 time.Duration
}

// Operations lists the operation names Stats uses, in a fixed order.
func Operations() []string { return append([]string(nil), opNames[:]...) }

// Stats returns the counters by operation name. It reads atomics and the
// histogram once; nothing on the request path waits for it.
func (c *Client) Stats() Stats {
	st := Stats{Up: c.up.Load(), Calls: map[string]uint64{}, Errors: map[string]uint64{}, Fallbacks: map[string]uint64{}, Downs: c.stats.downs.Load()}
	for op := range numOps {
		st.Calls[opNames[op]] = c.stats.calls[op].Load()
		st.Errors[opNames[op]] = c.stats.errors[op].Load()
		st.Fallbacks[opNames[op]] = c.stats.fallbacks[op].Load()
	}
	c.mu.Lock()
	st.Since = c.changedAt
	c.mu.Unlock()
	st.RoundTrip = c.stats.roundTrip()
	return st
}

// roundTrip reads the histogram.
func (s *stats) roundTrip() RoundTrip {
	var m dto.Metric
	if err := s.rtt.Write(&m); err != nil || m.Histogram == nil {
		return RoundTrip{}
	}
	h := m.Histogram
	rt := RoundTrip{Count: h.GetSampleCount()}
	if rt.Count == 0 {
		return rt
	}
	seconds := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	rt.Mean = seconds(h.GetSampleSum() / float64(rt.Count))
	rt.P99 = seconds(bucketQuantile(0.99, h.GetBucket(), rt.Count))
	return rt
}

// bucketQuantile estimates quantile q from cumulative buckets the way
// PromQL's histogram_quantile does: linear interpolation inside the
// bucket that holds the rank, and the largest finite bound when the rank
// falls past it.
func bucketQuantile(q float64, buckets []*dto.Bucket, count uint64) float64 {
	rank := q * float64(count)
	lower, below := 0.0, 0.0
	for _, b := range buckets {
		upper, cum := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if cum >= rank {
			if cum == below {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(cum-below)
		}
		lower, below = upper, cum
	}
	return lower
}

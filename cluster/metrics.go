package cluster

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
		Help:    "Time of the one Redis round trip a request makes for its rate limits.",
		Buckets: rttBuckets,
	})}
}

func (s *stats) observe(start time.Time) { s.rtt.Observe(time.Since(start).Seconds()) }

// Collector returns the Prometheus collector of the cluster metrics, for
// the gateway's registry:
//
//	fedgate_cluster_redis_up                      1 while Redis answers, else 0
//	fedgate_cluster_info{node,prefix}             always 1
//	fedgate_cluster_redis_calls_total{op}         round trips by operation
//	fedgate_cluster_redis_errors_total{op}        failed round trips by operation
//	fedgate_cluster_fallbacks_total{op}           answered from local state instead
//	fedgate_cluster_redis_down_total              times Redis was marked down
//	fedgate_cluster_rate_limit_round_trip_seconds the request path's round trip
func (c *Client) Collector() prometheus.Collector { return &collector{c: c} }

type collector struct{ c *Client }

var (
	descUp        = prometheus.NewDesc("fedgate_cluster_redis_up", "1 while Redis answers within cluster.timeout, 0 while fedgate uses local state.", nil, nil)
	descInfo      = prometheus.NewDesc("fedgate_cluster_info", "Cluster mode is on; labels name this instance and the key prefix.", []string{"node", "prefix"}, nil)
	descCalls     = prometheus.NewDesc("fedgate_cluster_redis_calls_total", "Redis round trips by operation.", []string{"op"}, nil)
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
	Up        bool
	Calls     map[string]uint64
	Errors    map[string]uint64
	Fallbacks map[string]uint64
	Downs     uint64
}

// Stats returns the counters by operation name.
func (c *Client) Stats() Stats {
	st := Stats{Up: c.up.Load(), Calls: map[string]uint64{}, Errors: map[string]uint64{}, Fallbacks: map[string]uint64{}, Downs: c.stats.downs.Load()}
	for op := range numOps {
		st.Calls[opNames[op]] = c.stats.calls[op].Load()
		st.Errors[opNames[op]] = c.stats.errors[op].Load()
		st.Fallbacks[opNames[op]] = c.stats.fallbacks[op].Load()
	}
	return st
}

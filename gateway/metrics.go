package gateway

import (
	"errors"
	"net/http"
	goruntime "runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/internal/endpoints"
)

// Metrics follow CoreDNS's habits: one struct built by the constructor and
// registered on the Gateway's own registry (no promauto, no global
// registry), names fedgate_<subsystem>_<thing>[_total|_seconds], and labels
// only from bounded sets: endpoint classes from the endpoint table, reason
// codes, limiter names from the configuration, HTTP status codes folded
// into a fixed list, and server names only for the peers listed in
// admin.peers (everyone else is "other"). Everything a request touches is
// resolved once and cached, so the hot path does atomic adds and no map
// allocations. docs/operations.md (section Metrics) lists every metric.

// Label values for the direction of a request.
const (
	directionInbound = "inbound"
	directionEgress  = "egress"
)

// Decisions, as logged and used as metric labels.
const (
	decisionForwarded = iota // reached the homeserver (inbound) or the remote server (egress)
	decisionLocal            // answered by fedgate itself
	decisionDenied           // refused by a check: policy, authentication, limits, routing
	decisionFailed           // allowed, but forwarding failed (upstream or remote unreachable)
	decisionTunnel           // egress: a CONNECT tunnel passed through
	decisionBackoff          // egress: answered at once, the destination is backed off
	numDecisions
)

func decisionName(d int) string {
	switch d {
	case decisionForwarded:
		return "forwarded"
	case decisionLocal:
		return "local"
	case decisionDenied:
		return "denied"
	case decisionFailed:
		return "failed"
	case decisionTunnel:
		return "tunnel"
	case decisionBackoff:
		return "backoff"
	}
	return "unknown"
}

// decisionIndex maps a decision name ("forwarded", "denied", ...) to its
// constant; unknown names count as failed.
func decisionIndex(name string) int {
	for d := range numDecisions {
		if decisionName(d) == name {
			return d
		}
	}
	return decisionFailed
}

// Endpoint classes outside the endpoint table.
const (
	classUnknown     = "unknown"     // the route matched no endpoint
	classPassthrough = "passthrough" // inbound.passthrough prefixes
)

// labelOther is the value that collects everything outside a bounded set.
const labelOther = "other"

// maxLabelValues caps the distinct values a lazily grown label (reason,
// limiter, phase) may take; the rest are counted as "other". The values
// come from code and configuration, never from the network, so the cap is
// a safety net against a bug, not a limit operators meet.
const maxLabelValues = 128

// metrics is everything fedgate counts. Built once per Gateway by
// newMetrics; all methods are safe for concurrent use.
type metrics struct {
	reg *prometheus.Registry
	own []prometheus.Collector // fedgate's own collectors, for the documentation test

	requests       *prometheus.CounterVec
	peerRequests   *prometheus.CounterVec
	serverRequests *prometheus.CounterVec
	denied         *prometheus.CounterVec
	failed         *prometheus.CounterVec
	rateLimited    *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	overhead       *prometheus.HistogramVec
	upstreamTime   *prometheus.HistogramVec
	bytesIn        *prometheus.CounterVec
	bytesOut       *prometheus.CounterVec
	inFlight       *prometheus.GaugeVec
	upstreamErrors *prometheus.CounterVec
	probes         *prometheus.CounterVec
	keyringEvents  *prometheus.CounterVec
	keyFetch       *prometheus.HistogramVec
	discLookups    *prometheus.CounterVec
	discFailures   *prometheus.CounterVec

	// classes holds the pre-resolved series of each endpoint class, per
	// direction; read-only after newMetrics.
	classes [2]map[string]*classSeries
	// statusSlot maps an HTTP status (0-599) to its index in statusLabel.
	statusSlot  [600]uint8
	statusLabel []string

	peers      atomic.Pointer[peerTable]
	peersMu    sync.Mutex // serialises setPeers
	deniedBy   [2]*labelCache
	failedBy   [2]*labelCache
	limitedBy  [2]*labelCache
	upstreamBy *labelCache
	phases     *labelCache

	inFlightBy   [2]prometheus.Gauge
	keyringBy    [int(auth.LastEvent) + 1][2]prometheus.Counter
	keyFetchBy   [2][2]prometheus.Observer // [direct, notary][ok, failed]
	lookups      map[string]*[2]prometheus.Counter
	lookupsOther *[2]prometheus.Counter
	probeOK      prometheus.Counter
	probeFailed  prometheus.Counter
}

// classSeries are the series of one endpoint class in one direction.
type classSeries struct {
	direction, class string
	duration         prometheus.Observer
	overhead         prometheus.Observer
	upstream         prometheus.Observer
	bytesIn          prometheus.Counter
	bytesOut         prometheus.Counter
	// requests is filled lazily: most (decision, status) pairs never occur
	// and should not be exported as zeros.
	requests [numDecisions][]atomic.Pointer[counterRef]
}

type counterRef struct{ c prometheus.Counter }

// peerTable holds the per-peer series for the admin.peers of one
// configuration. Immutable once built.
type peerTable struct {
	byName map[string]*peerSeries
	other  *peerSeries
	names  []string
}

type peerSeries [2][numDecisions]prometheus.Counter

// newMetrics builds and registers every metric; state collects the values
// read at scrape time. version is reported in fedgate_build_info.
func newMetrics(state prometheus.Collector, version string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	// Histogram buckets, in seconds. durationBuckets cover a federation
	// request end to end: a few milliseconds for a cached answer to a minute
	// for a slow state request. overheadBuckets cover fedgate's own share:
	// tens of microseconds for a request whose key is cached, seconds when
	// a key must be fetched first. fetchBuckets cover a key fetch, bounded
	// by keys.fetch_timeout.
	durationBuckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	overheadBuckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 2.5, 10}
	fetchBuckets := []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30}
	// These status codes get their own label; every other code is counted
	// as its class ("2xx", ...). 499 is a client that hung up.
	statusCodes := []int{200, 201, 202, 204, 206, 301, 302, 304, 307, 308,
		400, 401, 403, 404, 405, 408, 409, 411, 413, 414, 415, 429, 431, 499,
		500, 501, 502, 503, 504}
	counter := func(sub, name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "fedgate", Subsystem: sub, Name: name, Help: help}, labels)
	}
	histogram := func(sub, name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "fedgate", Subsystem: sub, Name: name, Help: help, Buckets: buckets}, labels)
	}
	m.requests = counter("gateway", "requests_total",
		"Requests handled, by direction, endpoint class, decision (forwarded, local, denied, failed) and HTTP status.",
		"direction", "class", "decision", "status")
	m.peerRequests = counter("gateway", "peer_requests_total",
		"Requests by authenticated peer server for the servers listed in admin.peers; every other server is \"other\".",
		"direction", "peer", "decision")
	m.serverRequests = counter("gateway", "server_requests_total",
		"Requests by hosted server (the configured server names only: server_name and each [[servers]] entry), direction and decision.",
		"server", "direction", "decision")
	m.denied = counter("gateway", "denied_requests_total",
		"Requests refused, by reason code.", "direction", "reason")
	m.failed = counter("gateway", "failed_requests_total",
		"Requests allowed but not completed (homeserver or remote server unreachable, client gone), by reason code.", "direction", "reason")
	m.rateLimited = counter("gateway", "rate_limited_total",
		"Requests refused by a rate or concurrency limiter, by limiter.", "direction", "limiter")
	m.duration = histogram("gateway", "request_duration_seconds",
		"Time from receiving a request to finishing its response.", durationBuckets, "direction", "class")
	m.overhead = histogram("gateway", "overhead_seconds",
		"fedgate's own share of a request: its duration minus the time spent waiting on the homeserver (inbound) or the remote server (egress).",
		overheadBuckets, "direction", "class")
	m.upstreamTime = histogram("gateway", "upstream_response_seconds",
		"Time the homeserver (inbound) or remote server (egress) took to send response headers.", durationBuckets, "direction", "class")
	m.bytesIn = counter("gateway", "request_bytes_total", "Request body bytes received.", "direction", "class")
	m.bytesOut = counter("gateway", "response_bytes_total", "Response body bytes sent.", "direction", "class")
	m.inFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "fedgate", Subsystem: "gateway", Name: "in_flight_requests",
		Help: "Requests being handled now."}, []string{"direction"})
	m.upstreamErrors = counter("upstream", "errors_total",
		"Forwarded requests the homeserver did not answer: unreachable, timeout (no headers within upstream.timeout) or broken (response cut off).", "reason")
	m.probes = counter("upstream", "probes_total",
		"Readiness probes of the homeserver (GET /_matrix/federation/v1/version), by result.", "result")
	m.keyringEvents = counter("keyring", "events_total",
		"Keyring events: cache hits, fetches, failures, notary use, backoff, evictions, cache file activity.", "event", "background")
	m.keyFetch = histogram("keyring", "fetch_duration_seconds",
		"Duration of key fetches from the server itself (direct) or a notary, by result.", fetchBuckets, "source", "result")
	m.discLookups = counter("discovery", "lookups_total",
		"Server discovery steps (well_known, srv, address, override, ip_literal), answered from the cache or not.", "step", "cache")
	m.discFailures = counter("discovery", "failures_total",
		"Failures reaching a remote server, by phase (server_name, well_known, dns, ssrf_guard, dial, tls, request, status).", "phase")

	m.own = []prometheus.Collector{m.requests, m.peerRequests, m.serverRequests, m.denied, m.failed, m.rateLimited, m.duration, m.overhead,
		m.upstreamTime, m.bytesIn, m.bytesOut, m.inFlight, m.upstreamErrors, m.probes, m.keyringEvents, m.keyFetch,
		m.discLookups, m.discFailures,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "fedgate", Name: "build_info", Help: "Always 1; labels say which fedgate runs.",
			ConstLabels: prometheus.Labels{"version": version, "goversion": goruntime.Version()},
		}, func() float64 { return 1 })}
	if state != nil {
		m.own = append(m.own, state)
	}
	m.reg.MustRegister(m.own...)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	for i := range m.statusSlot {
		m.statusSlot[i] = 255
	}
	m.statusLabel = append(m.statusLabel, "1xx", "2xx", "3xx", "4xx", "5xx", labelOther)
	for _, code := range statusCodes {
		m.statusSlot[code] = uint8(len(m.statusLabel))
		m.statusLabel = append(m.statusLabel, strconv.Itoa(code))
	}

	classes, _ := endpoints.Names()
	classes = append(classes, classUnknown, classPassthrough)
	for d, dir := range []string{directionInbound, directionEgress} {
		m.classes[d] = make(map[string]*classSeries, len(classes))
		for _, c := range classes {
			s := &classSeries{
				direction: dir, class: c,
				duration: m.duration.WithLabelValues(dir, c),
				overhead: m.overhead.WithLabelValues(dir, c),
				upstream: m.upstreamTime.WithLabelValues(dir, c),
				bytesIn:  m.bytesIn.WithLabelValues(dir, c),
				bytesOut: m.bytesOut.WithLabelValues(dir, c),
			}
			for i := range s.requests {
				s.requests[i] = make([]atomic.Pointer[counterRef], len(m.statusLabel))
			}
			m.classes[d][c] = s
		}
		m.deniedBy[d] = newLabelCache(func(v string) prometheus.Counter { return m.denied.WithLabelValues(dir, v) })
		m.failedBy[d] = newLabelCache(func(v string) prometheus.Counter { return m.failed.WithLabelValues(dir, v) })
		m.limitedBy[d] = newLabelCache(func(v string) prometheus.Counter { return m.rateLimited.WithLabelValues(dir, v) })
		m.inFlightBy[d] = m.inFlight.WithLabelValues(dir)
	}
	m.upstreamBy = newLabelCache(func(v string) prometheus.Counter { return m.upstreamErrors.WithLabelValues(v) })
	m.phases = newLabelCache(func(v string) prometheus.Counter { return m.discFailures.WithLabelValues(v) })
	m.probeOK = m.probes.WithLabelValues("ok")
	m.probeFailed = m.probes.WithLabelValues("failed")

	for k := auth.EventCacheHit; k <= auth.LastEvent; k++ {
		m.keyringBy[k][0] = m.keyringEvents.WithLabelValues(k.String(), "false")
		m.keyringBy[k][1] = m.keyringEvents.WithLabelValues(k.String(), "true")
	}
	for s, source := range []string{"direct", "notary"} {
		for r, result := range []string{"ok", "failed"} {
			m.keyFetchBy[s][r] = m.keyFetch.WithLabelValues(source, result)
		}
	}
	m.lookups = map[string]*[2]prometheus.Counter{}
	for _, step := range []string{discovery.StepOverride, discovery.StepIPLiteral, discovery.StepWellKnown, discovery.StepSRV, discovery.StepAddress} {
		label := snakeCase(step)
		m.lookups[step] = &[2]prometheus.Counter{m.discLookups.WithLabelValues(label, "miss"), m.discLookups.WithLabelValues(label, "hit")}
	}
	m.lookupsOther = &[2]prometheus.Counter{m.discLookups.WithLabelValues(labelOther, "miss"), m.discLookups.WithLabelValues(labelOther, "hit")}
	m.setPeers(nil)
	return m
}

// registry returns what /metrics serves.
func (m *metrics) registry() *prometheus.Registry { return m.reg }

// series returns the pre-resolved series for class in direction d.
func (m *metrics) series(d int, class string) *classSeries {
	if s, ok := m.classes[d][class]; ok {
		return s
	}
	return m.classes[d][classUnknown]
}

// count adds one request with the given decision and status.
func (m *metrics) count(s *classSeries, decision, status int) {
	var idx int
	switch {
	case status >= 0 && status < len(m.statusSlot) && m.statusSlot[status] != 255:
		idx = int(m.statusSlot[status])
	case status >= 100 && status < 600:
		idx = status/100 - 1 // "1xx" ... "5xx"
	default:
		idx = 5 // "other"
	}
	p := &s.requests[decision][idx]
	ref := p.Load()
	if ref == nil {
		ref = &counterRef{c: m.requests.WithLabelValues(s.direction, s.class, decisionName(decision), m.statusLabel[idx])}
		p.Store(ref) // a racing writer stores the same child
	}
	ref.c.Inc()
}

// setPeers installs the admin.peers of a (re)loaded configuration. Series
// of peers no longer listed are removed, so they do not linger at their
// last value.
func (m *metrics) setPeers(peers []string) {
	m.peersMu.Lock()
	defer m.peersMu.Unlock()
	old := m.peers.Load()
	t := &peerTable{byName: make(map[string]*peerSeries, len(peers)), names: append([]string(nil), peers...)}
	mk := func(name string) *peerSeries {
		var ps peerSeries
		for d, dir := range []string{directionInbound, directionEgress} {
			for dec := range numDecisions {
				ps[d][dec] = m.peerRequests.WithLabelValues(dir, name, decisionName(dec))
			}
		}
		return &ps
	}
	for _, p := range peers {
		if p == labelOther {
			continue
		}
		t.byName[p] = mk(p)
	}
	t.other = mk(labelOther)
	if old != nil {
		for _, p := range old.names {
			if _, kept := t.byName[p]; !kept && p != labelOther {
				m.peerRequests.DeletePartialMatch(prometheus.Labels{"peer": p})
			}
		}
	}
	m.peers.Store(t)
}

// peer returns the series for server: its own when listed in admin.peers,
// "other" otherwise (and for "", no authenticated server).
func (m *metrics) peer(server string) *peerSeries {
	t := m.peers.Load()
	if ps, ok := t.byName[server]; ok {
		return ps
	}
	return t.other
}

// requestRecord is what metrics need to know about one finished request,
// inbound or egress.
type requestRecord struct {
	direction int           // 0 inbound, 1 egress
	class     string        // endpoint class; "" or unknown classes count as "unknown"
	peer      string        // authenticated origin (inbound) or destination (egress); "" when none
	server    *serverSeries // the hosted server's series; nil counts no server
	decision  int
	status    int
	reason    string // reason code of a denial or failure
	limiter   string // the limiter that refused the request, if any
	total     time.Duration
	waiting   time.Duration // waiting on the homeserver or remote server
	upstream  time.Duration // until their response headers; 0 when nothing was sent
	sent      bool          // the request was handed to the homeserver or remote server
	bytesIn   int64
	bytesOut  int64
}

// observe records a finished request.
func (m *metrics) observe(r *requestRecord) {
	s := m.series(r.direction, r.class)
	m.count(s, r.decision, r.status)
	m.peer(r.peer)[r.direction][r.decision].Inc()
	if r.server != nil {
		r.server[r.direction][r.decision].Inc()
	}
	s.duration.Observe(r.total.Seconds())
	s.overhead.Observe(max(r.total-r.waiting, 0).Seconds())
	if r.sent {
		s.upstream.Observe(r.upstream.Seconds())
	}
	if r.bytesIn > 0 {
		s.bytesIn.Add(float64(r.bytesIn))
	}
	if r.bytesOut > 0 {
		s.bytesOut.Add(float64(r.bytesOut))
	}
	switch r.decision {
	case decisionDenied:
		if r.reason != "" {
			m.deniedBy[r.direction].get(r.reason).Inc()
		}
	case decisionFailed:
		if r.reason != "" {
			m.failedBy[r.direction].get(r.reason).Inc()
		}
		if r.direction == 0 {
			switch r.reason {
			case "upstream_unreachable", "upstream_timeout", "upstream_broken":
				m.upstreamBy.get(r.reason[len("upstream_"):]).Inc()
			}
		}
	}
	if r.limiter != "" {
		m.limitedBy[r.direction].get(r.limiter).Inc()
	}
}

// keyringEvent counts one keyring event.
func (m *metrics) keyringEvent(ev auth.KeyringEvent) {
	bg := 0
	if ev.Background {
		bg = 1
	}
	if ev.Kind >= auth.EventCacheHit && int(ev.Kind) < len(m.keyringBy) {
		m.keyringBy[ev.Kind][bg].Inc()
	}
	switch ev.Kind {
	case auth.EventFetched:
		m.keyFetchBy[0][0].Observe(ev.Duration.Seconds())
	case auth.EventFetchFailed:
		m.keyFetchBy[0][1].Observe(ev.Duration.Seconds())
	case auth.EventNotaryFetched:
		m.keyFetchBy[1][0].Observe(ev.Duration.Seconds())
	case auth.EventNotaryFailed:
		m.keyFetchBy[1][1].Observe(ev.Duration.Seconds())
	}
}

// discovery counts the steps of a resolution and, when err is a
// discovery failure, its phase. res may be nil (failed resolution: the
// steps come from the error).
func (m *metrics) discovery(res *discovery.Result, err error) {
	var steps []discovery.Step
	var de *discovery.Error
	switch {
	case res != nil:
		steps = res.Steps
	case errors.As(err, &de):
		steps = de.Steps
	}
	for _, st := range steps {
		c, ok := m.lookups[st.Kind]
		if !ok {
			c = m.lookupsOther
		}
		if st.Cached {
			c[1].Inc()
		} else {
			c[0].Inc()
		}
	}
	if err != nil {
		phase := labelOther
		if de != nil || errors.As(err, &de) {
			phase = snakeCase(string(de.Phase))
		}
		m.phases.get(phase).Inc()
	}
}

// probe counts one readiness probe of the homeserver.
func (m *metrics) probe(ok bool) {
	if ok {
		m.probeOK.Inc()
	} else {
		m.probeFailed.Inc()
	}
}

// snakeCase turns "ssrf guard" and "well-known" into label values.
func snakeCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == ' ' || c == '-' || c == '.' {
			b[i] = '_'
		}
	}
	return string(b)
}

// labelCache resolves the children of a metric with one lazily grown label
// (reason codes, limiter names). Reads are one atomic load and one map
// lookup; a new value copies the map. At most maxLabelValues values get
// their own child; the rest share "other".
type labelCache struct {
	mu    sync.Mutex
	m     atomic.Pointer[map[string]prometheus.Counter]
	child func(value string) prometheus.Counter
}

func newLabelCache(child func(string) prometheus.Counter) *labelCache {
	c := &labelCache{child: child}
	empty := map[string]prometheus.Counter{}
	c.m.Store(&empty)
	return c
}

func (c *labelCache) get(v string) prometheus.Counter {
	if ctr, ok := (*c.m.Load())[v]; ok {
		return ctr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := *c.m.Load()
	if ctr, ok := cur[v]; ok {
		return ctr
	}
	if len(cur) >= maxLabelValues {
		v = labelOther
		if ctr, ok := cur[v]; ok {
			return ctr
		}
	}
	next := make(map[string]prometheus.Counter, len(cur)+1)
	for k, ctr := range cur {
		next[k] = ctr
	}
	ctr := c.child(v)
	next[v] = ctr
	c.m.Store(&next)
	return ctr
}

// observeInbound records a finished inbound request. The origin gets its
// own peer label only once its signature was verified: a refused request
// only claims it.
func (g *Gateway) observeInbound(in *inbound, decision int, end time.Time) {
	rec := requestRecord{
		class:    classUnknown,
		decision: decision,
		status:   in.status,
		reason:   in.reason,
		limiter:  in.limiter,
		total:    end.Sub(in.start),
		bytesIn:  int64(len(in.body)),
		bytesOut: in.w.bytes,
	}
	if ep := in.match.Endpoint; ep != nil {
		rec.class = ep.Class
	}
	rec.server = in.hs.state.series
	if in.origin != "" && (in.stage == "" || g.verifiedStages[in.stage]) {
		rec.peer = in.origin
	}
	if !in.upstreamStart.IsZero() {
		rec.sent = true
		rec.waiting = end.Sub(in.upstreamStart)
		hdrs := in.upstreamHeaders
		if hdrs.IsZero() {
			hdrs = end
		}
		rec.upstream = hdrs.Sub(in.upstreamStart)
	}
	g.metrics.observe(&rec)
}

// stagesAfter returns the names of the stages that run after the named
// one.
func stagesAfter(stages []stage, name string) map[string]bool {
	out := map[string]bool{}
	after := false
	for _, s := range stages {
		if after {
			out[s.name] = true
		}
		after = after || s.name == name
	}
	return out
}

// countInFlight wraps a listener's handler to count its requests in
// flight: direction 0 for the federation listeners, 1 for the egress.
func (g *Gateway) countInFlight(direction int, h http.Handler) http.Handler {
	gauge := g.metrics.inFlightBy[direction]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gauge.Inc()
		defer gauge.Dec()
		h.ServeHTTP(w, r)
	})
}

// observeDiscovery counts a resolution (res, or the steps inside err when
// it failed) and, when err is set, the phase that failed. The egress calls
// it after each Resolve and DoResolved.
func (g *Gateway) observeDiscovery(res *discovery.Result, err error) {
	g.metrics.discovery(res, err)
}

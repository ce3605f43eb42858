package gateway

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/internal/endpoints"
)

// TestMetricsAfterTraffic sends a scripted mix of requests and checks that
// every counter moved by exactly what the script did.
func TestMetricsAfterTraffic(t *testing.T) {
	og := startOps(t, opsSetup{
		origins: []string{"origin.test", "partner.test"},
		extra: `
[admin]
peers = ["origin.test"]
[policy]
deny = ["re:^spam[0-9]+\\.test$"]
[rate_limit.classes]
media = { rate = "1/m", burst = 1 }
`,
	})
	origin, partner := og.origins[0], og.origins[1]
	const profile = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	const media = "/_matrix/federation/v1/media/download/abc"

	expect := func(resp *http.Response, status int) {
		t.Helper()
		if resp.StatusCode != status {
			t.Fatalf("status %d, want %d", resp.StatusCode, status)
		}
	}
	// 3 profile queries from origin.test (a listed peer), 2 from partner.test.
	for range 3 {
		expect(og.do("GET", profile, "", origin.sign("GET", profile, "gw.test", "")), 200)
	}
	for range 2 {
		expect(og.do("GET", profile, "", partner.sign("GET", profile, "gw.test", "")), 200)
	}
	// media: the class limit lets one through and refuses the next.
	expect(og.do("GET", media, "", origin.sign("GET", media, "gw.test", "")), 200)
	expect(og.do("GET", media, "", origin.sign("GET", media, "gw.test", "")), 429)
	// A flood of denied origins, each a different name: none may become a label.
	for i := range 40 {
		name := fmt.Sprintf("spam%d.test", i)
		key, _ := auth.GenerateSigningKey("s_1")
		expect(og.do("GET", profile, "", signWith(t, key, name, "GET", profile, "gw.test", "")), 403)
	}
	// Unknown endpoints and a bad signature.
	expect(og.do("GET", "/_matrix/federation/v1/nope", ""), 404)
	expect(og.do("GET", "/wp-login.php", ""), 404)
	stranger, _ := auth.GenerateSigningKey("o_1")
	expect(og.do("GET", profile, "", signWith(t, stranger, "origin.test", "GET", profile, "gw.test", "")), 401)
	// Unauthenticated, forwarded; and served locally.
	expect(og.do("GET", "/_matrix/federation/v1/version", ""), 200)
	expect(og.do("GET", "/_matrix/key/v2/server", ""), 200)
	// The homeserver goes away: the next forwarded request fails.
	og.hs.Close()
	expect(og.do("GET", "/_matrix/federation/v1/version", ""), 502)

	m := og.settle(53)
	const req = "fedgate_gateway_requests_total"
	wantValue(t, m, 5, req, "direction=inbound", "class=query_profile", "decision=forwarded", "status=200")
	wantValue(t, m, 1, req, "direction=inbound", "class=media", "decision=forwarded", "status=200")
	wantValue(t, m, 1, req, "direction=inbound", "class=media", "decision=denied", "status=429")
	wantValue(t, m, 40, req, "direction=inbound", "class=query_profile", "decision=denied", "status=403")
	wantValue(t, m, 1, req, "direction=inbound", "class=query_profile", "decision=denied", "status=401")
	wantValue(t, m, 2, req, "direction=inbound", "class=unknown", "decision=denied", "status=404")
	wantValue(t, m, 1, req, "direction=inbound", "class=version", "decision=forwarded", "status=200")
	wantValue(t, m, 1, req, "direction=inbound", "class=version", "decision=failed", "status=502")
	wantValue(t, m, 1, req, "direction=inbound", "class=keys", "decision=local", "status=200")
	wantValue(t, m, 53, req, "direction=inbound")

	// Per-peer labels: only origin.test; partner.test and the spam flood
	// are "other"; the forged origin.test request (bad signature) too.
	const peers = "fedgate_gateway_peer_requests_total"
	wantValue(t, m, 4, peers, "direction=inbound", "peer=origin.test", "decision=forwarded")
	wantValue(t, m, 1, peers, "direction=inbound", "peer=origin.test", "decision=denied")
	wantValue(t, m, 3, peers, "direction=inbound", "peer=other", "decision=forwarded") // partner.test and version
	if got := labelValues(m, peers, "peer"); strings.Join(got, ",") != "origin.test,other" {
		t.Errorf("peer label values %v", got)
	}
	status, body := og.get("/metrics")
	if status != 200 || strings.Contains(body, "spam") || strings.Contains(body, "partner.test") {
		t.Errorf("a server outside admin.peers appears in the metrics")
	}

	const denied = "fedgate_gateway_denied_requests_total"
	wantValue(t, m, 40, denied, "direction=inbound", "reason=origin_denied")
	wantValue(t, m, 2, denied, "direction=inbound", "reason=unknown_endpoint")
	wantValue(t, m, 1, denied, "direction=inbound", "reason=bad_signature")
	wantValue(t, m, 1, denied, "direction=inbound", "reason=rate_class")
	wantValue(t, m, 1, "fedgate_gateway_rate_limited_total", "direction=inbound", "limiter=class:media")
	wantValue(t, m, 1, "fedgate_gateway_failed_requests_total", "direction=inbound", "reason=upstream_unreachable")
	wantValue(t, m, 1, "fedgate_upstream_errors_total", "reason=unreachable")
	wantValue(t, m, 40, "fedgate_policy_denials_total", "reason=origin_denied", "mode=enforced")

	// Latency: every request is in the total and overhead histograms; only
	// those sent to the homeserver in the upstream histogram.
	wantValue(t, m, 46, "fedgate_gateway_request_duration_seconds_count", "direction=inbound", "class=query_profile")
	wantValue(t, m, 53, "fedgate_gateway_request_duration_seconds_count", "direction=inbound")
	wantValue(t, m, 53, "fedgate_gateway_overhead_seconds_count", "direction=inbound")
	wantValue(t, m, 8, "fedgate_gateway_upstream_response_seconds_count", "direction=inbound") // 5 profile, media, 2 version
	total, _ := value(m, "fedgate_gateway_request_duration_seconds_sum", "direction=inbound", "class=query_profile")
	overhead, _ := value(m, "fedgate_gateway_overhead_seconds_sum", "direction=inbound", "class=query_profile")
	if overhead <= 0 || overhead > total {
		t.Errorf("overhead %v s not within the total %v s", overhead, total)
	}

	// Keys: each reachable origin's keys fetched once, then cache hits;
	// the fetches went through discovery (overrides).
	wantValue(t, m, 2, "fedgate_keyring_events_total", "event=fetched", "background=false")
	if hits, _ := value(m, "fedgate_keyring_events_total", "event=cache_hit"); hits < 6 {
		t.Errorf("keyring cache hits %v, want at least 6", hits)
	}
	wantValue(t, m, 2, "fedgate_keyring_fetch_duration_seconds_count", "source=direct", "result=ok")
	wantValue(t, m, 2, "fedgate_discovery_lookups_total", "step=override", "cache=miss")
	wantValue(t, m, 2, "fedgate_keyring_servers")
	if v, _ := value(m, "fedgate_keys_document_valid_until_timestamp_seconds"); v < float64(time.Now().Add(23*time.Hour).Unix()) {
		t.Errorf("key document valid until %v", v)
	}
	wantValue(t, m, 1, "fedgate_keys_signing_keys", "key_id=ed25519:gw_1")
	wantValue(t, m, 1, "fedgate_build_info", "version=test")
	wantValue(t, m, 0, "fedgate_gateway_in_flight_requests", "direction=inbound")
	if _, ok := value(m, "go_goroutines"); !ok {
		t.Error("no Go runtime metrics")
	}
	if _, ok := value(m, "process_open_fds"); !ok {
		t.Error("no process metrics")
	}
}

// TestMetricLabelsBounded: every label value the request counters can take
// comes from a bounded set: endpoint classes, the fixed status list, the
// decisions.
func TestMetricLabelsBounded(t *testing.T) {
	m := newMetrics(nil, "test")
	classes, _ := endpoints.Names()
	if got, want := len(m.classes[0]), len(classes)+2; got != want {
		t.Fatalf("%d inbound class series, want %d", got, want)
	}
	if s := m.series(0, "no-such-class"); s.class != classUnknown {
		t.Fatalf("unknown class counted as %q", s.class)
	}
	tests := []struct {
		code int
		want string
	}{{200, "200"}, {429, "429"}, {499, "499"}, {418, "4xx"}, {299, "2xx"}, {599, "5xx"}, {0, "other"}, {99, "other"}, {600, "other"}, {-1, "other"}, {1 << 20, "other"}}
	for _, tt := range tests {
		if got := m.statusLabelOf(tt.code); got != tt.want {
			t.Errorf("status %d counted as %q, want %q", tt.code, got, tt.want)
		}
		m.count(m.series(0, "send"), decisionForwarded, tt.code) // must not panic
	}
	// The lazily grown labels stop at maxLabelValues.
	for i := range maxLabelValues + 50 {
		m.deniedBy[0].get(fmt.Sprintf("reason_%d", i))
	}
	if n := len(*m.deniedBy[0].m.Load()); n > maxLabelValues+1 {
		t.Fatalf("%d reason values", n)
	}
}

// TestEgressObservation: the hook the egress calls counts and logs an
// egress request like an inbound one, with the destination as peer.
func TestEgressObservation(t *testing.T) {
	og := startOps(t, opsSetup{extra: "\n[admin]\npeers = [\"remote.test\"]\n"})
	send := endpoints.All()
	var ep *endpoints.Endpoint
	for i := range send {
		if send[i].Name == "send" {
			ep = &send[i]
		}
	}
	start := time.Now().Add(-30 * time.Millisecond)
	og.gw.finishEgress(&egressRecord{
		id: "e1", mode: "worker_proxy", method: "PUT", endpoint: ep, destination: "remote.test", decision: decisionForwarded,
		status: 200, start: start, remoteStart: start.Add(time.Millisecond), remoteHdrs: start.Add(20 * time.Millisecond),
		bytesIn: 100, bytesOut: 2,
	})
	og.gw.finishEgress(&egressRecord{
		id: "e2", mode: "worker_proxy", method: "GET", destination: "evil.test", decision: decisionIndex("denied"),
		reason: "destination_denied", rule: `policy.deny[0] "evil.test"`, status: 403, start: start,
	})
	og.gw.finishEgress(&egressRecord{
		id: "e3", mode: "worker_proxy", method: "PUT", endpoint: ep, destination: "down.test", decision: decisionFailed,
		reason: "remote_unreachable", status: 502, start: start, remoteStart: start,
	})
	og.gw.observeEgress(&egressRecord{mode: "passthrough", method: "CONNECT", destination: "remote.test",
		decision: decisionIndex("tunnel"), status: 200, start: start, bytesIn: 10, bytesOut: 20})
	og.gw.observeEgress(&egressRecord{mode: "worker_proxy", method: "GET", destination: "down.test",
		decision: decisionIndex("backoff"), reason: "remote_backoff", status: 502, start: start})
	og.gw.observeDiscovery(nil, &discovery.Error{ServerName: "down.test", Phase: discovery.PhaseDial,
		Steps: []discovery.Step{{Kind: discovery.StepSRV, Cached: true}, {Kind: discovery.StepAddress}}})
	m := og.scrape()
	wantValue(t, m, 1, "fedgate_gateway_requests_total", "direction=egress", "class=send", "decision=forwarded", "status=200")
	wantValue(t, m, 1, "fedgate_gateway_requests_total", "direction=egress", "class=unknown", "decision=denied", "status=403")
	wantValue(t, m, 1, "fedgate_gateway_requests_total", "direction=egress", "class=send", "decision=failed", "status=502")
	wantValue(t, m, 1, "fedgate_gateway_peer_requests_total", "direction=egress", "peer=remote.test", "decision=forwarded")
	wantValue(t, m, 3, "fedgate_gateway_peer_requests_total", "direction=egress", "peer=other")
	wantValue(t, m, 1, "fedgate_gateway_denied_requests_total", "direction=egress", "reason=destination_denied")
	wantValue(t, m, 1, "fedgate_gateway_failed_requests_total", "direction=egress", "reason=remote_unreachable")
	wantValue(t, m, 2, "fedgate_gateway_upstream_response_seconds_count", "direction=egress", "class=send")
	wantValue(t, m, 100, "fedgate_gateway_request_bytes_total", "direction=egress", "class=send")
	wantValue(t, m, 1, "fedgate_gateway_requests_total", "direction=egress", "class=unknown", "decision=tunnel", "status=200")
	wantValue(t, m, 1, "fedgate_gateway_peer_requests_total", "direction=egress", "peer=remote.test", "decision=tunnel")
	wantValue(t, m, 1, "fedgate_gateway_requests_total", "direction=egress", "decision=backoff", "status=502")
	wantValue(t, m, 1, "fedgate_discovery_failures_total", "phase=dial")
	wantValue(t, m, 1, "fedgate_discovery_lookups_total", "step=srv", "cache=hit")
	wantValue(t, m, 1, "fedgate_discovery_lookups_total", "step=address", "cache=miss")

	var lines []map[string]any
	for _, e := range og.logs.FilterMessage("request").All() {
		if e.ContextMap()["direction"] == "egress" {
			lines = append(lines, e.ContextMap())
		}
	}
	if len(lines) != 3 {
		t.Fatalf("%d egress access lines", len(lines))
	}
	if l := lines[1]; l["destination"] != "evil.test" || l["decision"] != "denied" || l["reason"] != "destination_denied" || l["request_id"] != "e2" {
		t.Errorf("denied egress line %v", l)
	}
	if l := lines[0]; l["upstream_duration"] == nil || l["class"] != "send" || l["mode"] != "worker_proxy" {
		t.Errorf("forwarded egress line %v", l)
	}
}

// BenchmarkObserveInbound measures what metrics cost a request: the
// counter, peer, histogram and byte updates of one forwarded request.
func BenchmarkObserveInbound(b *testing.B) {
	m := newMetrics(nil, "bench")
	m.setPeers([]string{"partner.example"})
	rec := requestRecord{class: "send", peer: "other.example", decision: decisionForwarded, status: 200,
		total: 3 * time.Millisecond, waiting: 2 * time.Millisecond, upstream: time.Millisecond, sent: true, bytesIn: 2000, bytesOut: 20}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rec
		for pb.Next() {
			m.observe(&r)
		}
	})
}

// BenchmarkObserveDenied is the same for a request refused with a reason
// and a limiter.
func BenchmarkObserveDenied(b *testing.B) {
	m := newMetrics(nil, "bench")
	rec := requestRecord{class: "query_profile", decision: decisionDenied, status: 429, reason: "rate_per_ip", limiter: "per_ip",
		total: 50 * time.Microsecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rec
		for pb.Next() {
			m.observe(&r)
		}
	})
}

// TestMetricsDocumented: docs/operations.md's Metrics section lists every
// fedgate metric and no metric that does not exist.
func TestMetricsDocumented(t *testing.T) {
	doc := docSection(t, "operations.md", "Metrics")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(fedgate_[a-z_]+)`").FindAllStringSubmatch(doc, -1) {
		documented[m[1]] = true
	}
	g := &Gateway{}
	m := newMetrics(newStateCollector(g), "test")
	ch := make(chan *prometheus.Desc, 256)
	for _, c := range m.own {
		c.Describe(ch)
	}
	// Cluster mode's metrics are registered only with [cluster]; New does
	// not connect, so a client for an address nobody listens on describes
	// them.
	cl, err := cluster.New(cluster.Options{URL: "redis://127.0.0.1:1/0"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cl.Collector().Describe(ch)
	close(ch)
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	exported := map[string]bool{}
	for d := range ch {
		name := fqName.FindStringSubmatch(d.String())[1]
		exported[name] = true
		if !documented[name] {
			t.Errorf("%s is not in docs/operations.md's Metrics section", name)
		}
	}
	for name := range documented {
		if !exported[name] {
			t.Errorf("docs/operations.md's Metrics section lists %s, which does not exist", name)
		}
	}
}

package gateway

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// Cluster mode: two gateway instances, one real redis-server.

// startClusterClient connects a node to r with a prefix shared by the
// test's instances, and runs its health loop until the test ends.
func startClusterClient(t testing.TB, r *fedtest.Redis, prefix, node string) *cluster.Client {
	t.Helper()
	c, err := cluster.New(cluster.Options{URL: r.URL, Prefix: prefix, Node: node, Timeout: time.Second,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
	if err != nil {
		t.Fatal(err)
	}
	fedtest.RunUntilCleanup(t, c.Run, c.Close)
	return c
}

// clusterPair is two gateways fronting the same homeserver and server name,
// sharing one Redis, and the origins they can reach.
type clusterPair struct {
	redis   *fedtest.Redis
	gws     [2]*testGateway
	nodes   [2]*cluster.Client
	origins []*testOrigin
}

func startClusterPair(t *testing.T, extra string, names ...string) *clusterPair {
	t.Helper()
	p := &clusterPair{redis: fedtest.StartRedis(t)}
	ca := fedtest.NewCA(t)
	for _, n := range names {
		p.origins = append(p.origins, newOrigin(t, ca, n))
	}
	hs := fedtest.StartHomeserver(t)
	toml := outboundTOML(t, ca, p.origins...) + extra
	// The instances of a cluster share the server's signing key.
	key, err := auth.GenerateSigningKey("gw_1")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "signing.key")
	if err := auth.WriteKeyFile(keyFile, auth.FormatSynapse, []auth.SigningKey{key}); err != nil {
		t.Fatal(err)
	}
	for i := range p.gws {
		p.nodes[i] = startClusterClient(t, p.redis, "fgtest:", fmt.Sprintf("gw-%d", i))
		node := p.nodes[i]
		p.gws[i] = launchGateway(t, gatewaySetup{
			hs: hs, upstream: hs.URL,
			config: func(dataDir, upstream, _ string) string {
				return fmt.Sprintf(gatewayConfig, dataDir, upstream, toml+fmt.Sprintf("\n[keys]\nsigning_key = %q\n", keyFile))
			},
			logger:  zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
			options: func(o *Options) { o.Cluster = node },
		})
	}
	return p
}

// send makes one signed GET from origin to gateway i and returns the
// status, or 0 and the error when there was no answer.
func (p *clusterPair) send(i int, o *testOrigin, target string) (int, error) {
	tg := p.gws[i]
	req, err := http.NewRequest("GET", "https://"+tg.addr+target, nil)
	if err != nil {
		return 0, err
	}
	req.URL.Opaque = strings.SplitN(target, "?", 2)[0]
	req.Header.Set("Authorization", strings.TrimPrefix(o.sign("GET", target, "gw.test", ""), "Authorization: "))
	resp, err := tg.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

const clusterTarget = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"

// TestClusterOriginLimitHoldsAcrossInstances: an origin spreading its
// requests over two instances gets the per_origin allowance once, not
// twice: the 200s stay within burst + rate x time.
func TestClusterOriginLimitHoldsAcrossInstances(t *testing.T) {
	t.Parallel()
	p := startClusterPair(t, "[rate_limit]\nper_origin = { rate = \"2/s\", burst = 10 }\n", "origin.test")
	o := p.origins[0]
	start := time.Now()
	ok, limited := 0, 0
	for i := range 40 {
		status, err := p.send(i%2, o, clusterTarget)
		if err != nil {
			t.Fatal(err)
		}
		switch status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("request %d: status %d", i, status)
		}
	}
	elapsed := time.Since(start).Seconds()
	allowance := 10 + int(2*elapsed) + 1
	t.Logf("40 requests in %.2fs over two instances: %d allowed, %d limited (allowance %d)", elapsed, ok, limited, allowance)
	if ok < 10 || ok > allowance {
		t.Fatalf("%d requests allowed, want between the burst (10) and burst + rate x time (%d)", ok, allowance)
	}
	if got := len(p.gws[0].hs.Requests()); got != ok {
		t.Fatalf("homeserver saw %d requests, want %d", got, ok)
	}
}

// TestClusterOneKeyFetchPerOrigin: requests from one origin arriving at
// both instances at once make one key fetch in all, the other instance
// waiting for it; a failing origin is backed off by both after one failed
// fetch.
func TestClusterOneKeyFetchPerOrigin(t *testing.T) {
	t.Parallel()
	p := startClusterPair(t, "", "origin.test", "broken.test")
	o, broken := p.origins[0], p.origins[1]
	fetchOnceAcross(t, [2]*Gateway{p.gws[0].gw, p.gws[1].gw}, o, 40, func(i int) (int, error) {
		return p.send(i%2, o, clusterTarget)
	})

	broken.handle(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusInternalServerError) })
	if s, _ := p.send(0, broken, clusterTarget); s != http.StatusUnauthorized {
		t.Fatalf("broken origin on instance 0: %d", s)
	}
	if s, _ := p.send(1, broken, clusterTarget); s != http.StatusUnauthorized {
		t.Fatalf("broken origin on instance 1: %d", s)
	}
	if f := broken.fetches.Load(); f != 1 {
		t.Fatalf("%d fetches of a failing origin, want 1: the other instance shares the backoff", f)
	}
}

// keyringEvents returns what gw's fedgate_keyring_events_total counts for
// kind (requests' fetches, not background refreshes).
func keyringEvents(gw *Gateway, kind auth.EventKind) float64 {
	var m dto.Metric
	_ = gw.metrics.keyringBy[kind][0].Write(&m) // a counter's Write does not fail
	return m.GetCounter().GetValue()
}

// clusterState describes the nodes' view of Redis, for failure messages.
func clusterState(nodes ...*cluster.Client) string {
	var b strings.Builder
	for i, n := range nodes {
		st := n.Stats()
		fmt.Fprintf(&b, "node %d: up %v since %s, %d downs, errors %v, fallbacks %v; ", i, st.Up, st.Since.Format(time.StampMilli), st.Downs, st.Errors, st.Fallbacks)
	}
	return b.String()
}

// fetchOnceAcross sends n requests from o at once, request i by send(i),
// which spreads them over the two cluster instances gws, while o's key
// server holds every key fetch. It lets the fetch finish only once one
// instance is fetching and the other is seen waiting for that fetch
// (shared_wait in fedgate_keyring_events_total), so an instance that
// fetched on its own would never be seen waiting (and would count a
// second fetch). Then every request must succeed, the key must have been
// fetched once, by the instance that did not wait, and the waiting one
// must have taken the document the other stored (shared_hit).
func fetchOnceAcross(t *testing.T, gws [2]*Gateway, o *testOrigin, n int, send func(i int) (int, error)) {
	t.Helper()
	count := func(kind auth.EventKind) [2]float64 {
		return [2]float64{keyringEvents(gws[0], kind), keyringEvents(gws[1], kind)}
	}
	waits0, hits0, fetched0, fetches0 := count(auth.EventSharedWait), count(auth.EventSharedHit), count(auth.EventFetched), o.fetches.Load()
	gate := make(chan struct{})
	o.mu.Lock()
	o.gate = gate
	o.mu.Unlock()
	statuses := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], errs[i] = send(i)
		}()
	}
	opened := false
	release := func() {
		if !opened {
			opened = true
			close(gate)
			wg.Wait()
		}
	}
	defer func() {
		if t.Failed() {
			t.Logf("%d fetches; shared_wait %v, fetched %v, shared_hit %v; %s", o.fetches.Load()-fetches0,
				count(auth.EventSharedWait), count(auth.EventFetched), count(auth.EventSharedHit),
				clusterState(gws[0].opts.Cluster, gws[1].opts.Cluster))
		}
		release() // a failed wait must not leave the requests hanging
	}()
	waiter := -1
	waitFor(t, "one instance fetching the key and the other waiting for it", func() bool {
		waits := count(auth.EventSharedWait)
		for i := range waits {
			if waits[i] > waits0[i] {
				waiter = i
			}
		}
		return o.fetches.Load() > fetches0 && waiter >= 0
	})
	release()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("request %d: status %d, %v", i, s, errs[i])
		}
	}
	if f := o.fetches.Load() - fetches0; f != 1 {
		t.Fatalf("%d key fetches across two instances, want 1", f)
	}
	fetcher := 1 - waiter
	waits, hits, fetched := count(auth.EventSharedWait), count(auth.EventSharedHit), count(auth.EventFetched)
	if d := fetched[fetcher] - fetched0[fetcher]; d != 1 {
		t.Fatalf("instance %d (not waiting) counted %v fetches, want 1", fetcher, d)
	}
	if d := waits[fetcher] - waits0[fetcher]; d != 0 {
		t.Fatalf("instance %d held the fetch and waited too (%v shared_wait)", fetcher, d)
	}
	if d := hits[waiter] - hits0[waiter]; d != 1 {
		t.Fatalf("instance %d waited, then took %v documents from Redis, want 1", waiter, d)
	}
}

// TestClusterRedisKilledUnderLoad: Redis is SIGKILLed while two instances
// serve a steady load, and started again: no request fails, and the
// instances share their limits again without a restart.
func TestClusterRedisKilledUnderLoad(t *testing.T) {
	t.Parallel()
	p := startClusterPair(t, "[rate_limit]\nper_ip = { rate = \"10000/s\", burst = 10000 }\nper_origin = { rate = \"10000/s\", burst = 10000 }\n", "origin.test")
	o := p.origins[0]
	if s, err := p.send(0, o, clusterTarget); s != http.StatusOK {
		t.Fatalf("warm-up: %d %v", s, err)
	}
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s, err := p.send((w+i)%2, o, clusterTarget)
				sent.Add(1)
				if s != http.StatusOK {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("status %d, %v", s, err))
				}
			}
		}()
	}
	time.Sleep(400 * time.Millisecond)
	p.redis.Kill()
	waitFor(t, "both instances to notice", func() bool { return !p.nodes[0].Up() && !p.nodes[1].Up() })
	for i, tg := range p.gws {
		if ok, checks := tg.gw.Ready(); !ok {
			t.Fatalf("instance %d not ready while Redis is down: %+v", i, checks)
		}
	}
	sentDown := sent.Load()
	fallbacksDown := [2]uint64{p.nodes[0].Stats().Fallbacks["rate_limit"], p.nodes[1].Stats().Fallbacks["rate_limit"]}
	time.Sleep(400 * time.Millisecond)
	// "No request fails" means something only if requests were served
	// while Redis was gone, by both instances from their local buckets.
	if n := sent.Load() - sentDown; n == 0 {
		t.Fatal("no requests were served while Redis was down")
	}
	for i, node := range p.nodes {
		if node.Stats().Fallbacks["rate_limit"] == fallbacksDown[i] {
			t.Fatalf("instance %d made no local rate-limit decision while Redis was down", i)
		}
	}
	p.redis.Start()
	waitFor(t, "both instances to reconnect", func() bool { return p.nodes[0].Up() && p.nodes[1].Up() })
	time.Sleep(400 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d requests, %d failed", sent.Load(), failed.Load())
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d of %d requests failed while Redis was killed and restarted; first: %v", f, sent.Load(), firstFailure.Load())
	}
	// Shared again: requests make their round trip instead of falling back.
	before := [2]uint64{p.nodes[0].Stats().Fallbacks["rate_limit"], p.nodes[1].Stats().Fallbacks["rate_limit"]}
	calls := p.nodes[0].Stats().Calls["rate_limit"] + p.nodes[1].Stats().Calls["rate_limit"]
	for i := range 10 {
		if s, err := p.send(i%2, o, clusterTarget); s != http.StatusOK {
			t.Fatalf("after restart: %d %v", s, err)
		}
	}
	after := p.nodes[0].Stats().Calls["rate_limit"] + p.nodes[1].Stats().Calls["rate_limit"]
	if after-calls < 10 || p.nodes[0].Stats().Fallbacks["rate_limit"] != before[0] || p.nodes[1].Stats().Fallbacks["rate_limit"] != before[1] {
		t.Fatalf("limits not shared again after the restart: %d round trips for 10 requests, fallbacks %v -> %d %d",
			after-calls, before, p.nodes[0].Stats().Fallbacks["rate_limit"], p.nodes[1].Stats().Fallbacks["rate_limit"])
	}
	if p.redis.Do("EXISTS fgtest:rl:gw.test:per_origin:origin.test") != ":1" {
		t.Fatal("no per_origin bucket in Redis after the restart")
	}
}

// TestClusterEgressBackoffShared: a destination that failed on one
// instance is backed off by the other without it trying.
func TestClusterEgressBackoffShared(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	down := fedtest.FreeAddr(t)
	a := startEgress(t, egressOptions{overrides: map[string]string{"down.test": down}, cluster: startClusterClient(t, r, "fgeg:", "a")})
	b := startEgress(t, egressOptions{overrides: map[string]string{"down.test": down}, cluster: startClusterClient(t, r, "fgeg:", "b")})
	const target = "/_matrix/federation/v1/version"
	m := egressError(t, a.worker("GET", "down.test", target, "", bearer(testSecret)), http.StatusBadGateway, CodeUnknown, "err")
	if !strings.Contains(m["err"].(string), "remote_unreachable") {
		t.Fatalf("instance a: %v", m["err"])
	}
	waitFor(t, "the backoff to reach instance b", func() bool {
		_, kind, _ := b.gw.egress.backoff.check("down.test", b.clock.Now())
		return kind == backoffFailing
	})
	m = egressError(t, b.worker("GET", "down.test", target, "", bearer(testSecret)), http.StatusBadGateway, CodeUnknown, "err")
	if !strings.Contains(m["err"].(string), "remote_backoff") {
		t.Fatalf("instance b tried a destination instance a backs off: %v", m["err"])
	}
}

// TestClusterRedisSlow: Redis alive but holding every command (CLIENT
// PAUSE) past cluster.timeout: requests still succeed, each instance
// falls back, and both share again when Redis answers.
func TestClusterRedisSlow(t *testing.T) {
	t.Parallel()
	p := startClusterPair(t, "[rate_limit]\nper_ip = { rate = \"10000/s\", burst = 10000 }\nper_origin = { rate = \"10000/s\", burst = 10000 }\n", "origin.test")
	o := p.origins[0]
	for i := range 2 {
		if s, err := p.send(i, o, clusterTarget); s != http.StatusOK {
			t.Fatalf("warm-up on %d: %d %v", i, s, err)
		}
	}
	if got := p.redis.Do("CLIENT PAUSE 3000 ALL"); got != "+OK" {
		t.Fatalf("CLIENT PAUSE: %q", got)
	}
	for i := range 20 {
		start := time.Now()
		s, err := p.send(i%2, o, clusterTarget)
		if s != http.StatusOK {
			t.Fatalf("request %d while Redis is paused: %d %v", i, s, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("request %d took %v while Redis was paused (timeout 1s)", i, d)
		}
	}
	if p.nodes[0].Up() || p.nodes[1].Up() {
		t.Fatal("an instance did not notice the slow Redis")
	}
	waitFor(t, "both instances to share again", func() bool { return p.nodes[0].Up() && p.nodes[1].Up() })
}

package gateway

import (
	"io"
	"net/http"
	"testing"

	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// TestClusterEgressDestinationLimitShared: [rate_limit] per_destination
// holds cluster-wide (issue 15): two instances under one prefix spend one
// destination budget in the real redis-server, so the request past the
// burst is refused on either instance before anything is sent; a
// deployment under another prefix on the same Redis keeps its own budget.
func TestClusterEgressDestinationLimitShared(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	const limit = "[rate_limit]\nper_destination = { rate = \"1/h\", burst = 2 }\n"
	nodeA := startClusterClient(t, r, "fgdl:", "a")
	nodeB := startClusterClient(t, r, "fgdl:", "b")
	a := startEgress(t, egressOptions{loopbackAllowed: true, extra: limit, cluster: nodeA})
	b := startEgress(t, egressOptions{loopbackAllowed: true, extra: limit, cluster: nodeB})
	other := startEgress(t, egressOptions{loopbackAllowed: true, extra: limit, cluster: startClusterClient(t, r, "fgother:", "c")})
	const target = "/_matrix/federation/v1/version"

	// The burst of two, one request on each instance.
	for i, env := range []*egressEnv{a, b} {
		resp := env.worker("GET", "remote.test", target, "", bearer(testSecret))
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d within the shared burst: %d", i, resp.StatusCode)
		}
	}
	// Spent across the cluster: each instance refuses the next one,
	// although each has used only half of the burst on its own.
	for i, env := range []*egressEnv{a, b} {
		resp := env.worker("GET", "remote.test", target, "", bearer(testSecret))
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("instance %d: 429 without Retry-After", i)
		}
		egressError(t, resp, http.StatusTooManyRequests, CodeLimitExceeded, "error")
		line := env.waitAccess(func(m map[string]any) bool { return m["status"] == int64(429) })
		if line["limiter"] != "per_destination" {
			t.Errorf("instance %d access line %v", i, line)
		}
	}
	if n := len(a.remote.federationRequests()) + len(b.remote.federationRequests()); n != 2 {
		t.Fatalf("the remote saw %d requests from the two instances, want the shared burst of 2", n)
	}
	// The answers came from Redis, not from local fallback buckets.
	for i, node := range []*cluster.Client{nodeA, nodeB} {
		if !node.Up() {
			t.Fatalf("instance %d lost Redis during the test", i)
		}
	}
	if fa, fb := nodeA.Stats().Fallbacks["rate_limit"], nodeB.Stats().Fallbacks["rate_limit"]; fa != 0 || fb != 0 {
		t.Fatalf("rate limit fallbacks %d and %d, want none: the limit was not decided in Redis", fa, fb)
	}
	if got := r.Do("EXISTS fgdl:rl:gw.test:per_destination:remote.test"); got != ":1" {
		t.Fatalf("no per_destination bucket under the cluster's prefix in Redis: EXISTS = %q", got)
	}

	// Another deployment sharing the Redis under its own prefix is not
	// charged for this cluster's requests.
	resp := other.worker("GET", "remote.test", target, "", bearer(testSecret))
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a deployment under another prefix was limited by this cluster's bucket: %d", resp.StatusCode)
	}
}

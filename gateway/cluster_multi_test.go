package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// Cluster mode with several hosted servers: two instances sharing one
// real redis-server, each hosting a.test and b.test with the same signing
// keys, homeservers and egress secrets, as one deployment runs them.

// multiCluster is two instances of one multi-server deployment.
type multiCluster struct {
	redis *fedtest.Redis
	envs  [2]*multiEnv
	nodes [2]*cluster.Client
}

// multiClusterPrefix is the cluster.prefix of a multiCluster.
const multiClusterPrefix = "fgmc:"

// startMultiCluster starts redis-server and two instances of the
// deployment o describes (o.cluster is set here).
func startMultiCluster(t *testing.T, o multiOptions) *multiCluster {
	t.Helper()
	c := &multiCluster{redis: fedtest.StartRedis(t)}
	for i := range c.envs {
		c.nodes[i] = startClusterClient(t, c.redis, multiClusterPrefix, fmt.Sprintf("gw-%d", i))
		o.cluster = c.nodes[i]
		if i == 0 {
			c.envs[i] = startMulti(t, o)
		} else {
			c.envs[i] = c.envs[0].instance(o)
		}
	}
	return c
}

// instance starts another gateway for env's hosted servers (their keys,
// homeservers and egress secrets), origins and remote, configured by o
// (env's names when o names none), with its own data folder and
// listeners: a second instance of the same deployment.
func (env *multiEnv) instance(o multiOptions) *multiEnv {
	t := env.t
	t.Helper()
	if len(o.names) == 0 {
		o.names = env.o.names
	}
	in := &multiEnv{t: t, ca: env.ca, dir: t.TempDir(), servers: env.servers, origins: env.origins,
		remote: env.remote, dns: env.dns, clients: map[string]*http.Client{}}
	in.path = filepath.Join(in.dir, "gateway.toml")
	in.launch(o)
	return in
}

// profileOf is a profile query for a user of hosted server name.
func profileOf(name string) string {
	return "/_matrix/federation/v1/query/profile?user_id=%40u%3A" + name
}

// profile sends o's signed profile query for a user of hosted server dest
// to instance inst and fails the test unless it is answered 200.
func (c *multiCluster) profile(inst int, o *testOrigin, dest string) {
	t := c.envs[inst].t
	t.Helper()
	resp := c.envs[inst].signed(o, dest, "GET", profileOf(dest), "")
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s to %s on instance %d: %d %s", o.name, dest, inst, resp.StatusCode, b)
	}
	resp.Body.Close()
}

// TestClusterMultiLimitsPerServer: each hosted server's per_origin limit
// holds cluster-wide in its own namespace. One origin's requests to a.test
// and b.test, interleaved and spread over both instances, get exactly each
// server's burst (then 429): a.test's requests leave b.test's allowance
// untouched, whether b.test has a [rate_limit] of its own or inherits
// a.test's, and neither instance has a budget of its own.
func TestClusterMultiLimitsPerServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		what   string
		bursts []int // a.test, b.test
		own    bool  // b.test has its own [servers.rate_limit]
	}{
		{"b.test with its own limit", []int{4, 6}, true},
		{"b.test inheriting a.test's limit", []int{4, 4}, false},
	} {
		t.Run(tc.what, func(t *testing.T) {
			t.Parallel()
			names := []string{"a.test", "b.test"}
			c := startMultiCluster(t, multiOptions{
				origins: []string{"origin.test"},
				perServer: func(i int, section func(string) string) string {
					if i > 0 && !tc.own {
						return ""
					}
					// 1/h: nothing refills while the test runs.
					return fmt.Sprintf("%s\nper_origin = { rate = \"1/h\", burst = %d }\n", section("rate_limit"), tc.bursts[i])
				},
			})
			o := c.envs[0].origins[0]
			allowed := make([]int, len(names))
			for round := range 8 {
				for j, name := range names {
					inst := (round + j) % 2
					resp := c.envs[inst].signed(o, name, "GET", profileOf(name), "")
					switch {
					case resp.StatusCode == http.StatusOK && round == allowed[j]:
						allowed[j]++
						io.Copy(io.Discard, resp.Body)
					case resp.StatusCode == http.StatusTooManyRequests && round >= tc.bursts[j]:
						matrixError(t, resp, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
					default:
						b, _ := io.ReadAll(resp.Body)
						t.Fatalf("request %d to %s on instance %d: %d %s (%d allowed so far, burst %d)",
							round, name, inst, resp.StatusCode, b, allowed[j], tc.bursts[j])
					}
					resp.Body.Close()
				}
			}
			for j, name := range names {
				if allowed[j] != tc.bursts[j] {
					t.Errorf("%s: %d requests allowed over two instances, want its burst %d", name, allowed[j], tc.bursts[j])
				}
				if n := len(c.envs[0].servers[name].hs.Requests()); n != tc.bursts[j] {
					t.Errorf("%s's homeserver saw %d requests, want %d", name, n, tc.bursts[j])
				}
				key := multiClusterPrefix + "rl:" + name + ":per_origin:origin.test"
				if got := c.redis.Do("EXISTS " + key); got != ":1" {
					t.Errorf("no bucket %s in Redis: EXISTS = %q", key, got)
				}
			}
			// The answers came from Redis, not from each instance's local
			// buckets.
			for i, node := range c.nodes {
				if !node.Up() || node.Stats().Fallbacks["rate_limit"] != 0 {
					t.Errorf("instance %d decided limits locally: up %v, fallbacks %d", i, node.Up(), node.Stats().Fallbacks["rate_limit"])
				}
			}
		})
	}
}

// TestClusterMultiOneKeyFetch: the keyring is shared across hosted names
// and instances. An origin sending to a.test through instance 0 and then
// to b.test through instance 1 has its key fetched once, instance 1 taking
// the document from Redis; an origin sending to both names through both
// instances at once is fetched once too, one instance waiting for the
// other.
func TestClusterMultiOneKeyFetch(t *testing.T) {
	t.Parallel()
	c := startMultiCluster(t, multiOptions{origins: []string{"origin.test", "busy.test"}})
	o, busy := c.envs[0].origins[0], c.envs[0].origins[1]
	gws := [2]*Gateway{c.envs[0].gw, c.envs[1].gw}

	for _, step := range []struct {
		inst int
		dest string
	}{{0, "a.test"}, {1, "b.test"}, {0, "b.test"}, {1, "a.test"}} {
		c.profile(step.inst, o, step.dest)
	}
	if f := o.fetches.Load(); f != 1 {
		t.Fatalf("%s's key fetched %d times by two instances hosting two names, want 1", o.name, f)
	}
	if f, h := keyringEvents(gws[1], auth.EventFetched), keyringEvents(gws[1], auth.EventSharedHit); f != 0 || h != 1 {
		t.Fatalf("instance 1 fetched %v times and took %v documents from Redis, want 0 and 1", f, h)
	}

	// At the same time: request i goes to instance i%2 for a.test or
	// b.test in turn, so each instance serves both names.
	const n = 40
	destOf := func(i int) string { return []string{"a.test", "b.test"}[i/2%2] }
	headers := make([]string, n)
	for i := range n {
		headers[i] = busy.sign("GET", profileOf(destOf(i)), destOf(i), "")
	}
	fetchOnceAcross(t, gws, busy, n, func(i int) (int, error) {
		dest := destOf(i)
		resp, err := c.envs[i%2].roundTrip(dest, dest, "GET", profileOf(dest), "", headers[i])
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	})
}

// TestClusterMultiDestinationConfusion: in cluster mode too, a request
// signed for one hosted server and sent to the other's Host and SNI is
// refused with 401 by either instance and reaches neither homeserver,
// while the right server is reached; and each instance serves each hosted
// name its own key document.
func TestClusterMultiDestinationConfusion(t *testing.T) {
	t.Parallel()
	c := startMultiCluster(t, multiOptions{origins: []string{"origin.test"}})
	o := c.envs[0].origins[0]
	forwarded := map[string]int{}
	for inst, env := range c.envs {
		for _, tc := range []struct {
			what, signedFor, sentTo string
			status                  int
		}{
			{"signed for a, sent to b", "a.test", "b.test", http.StatusUnauthorized},
			{"signed for b, sent to a", "b.test", "a.test", http.StatusUnauthorized},
			{"signed for a, sent to a", "a.test", "a.test", http.StatusOK},
			{"signed for b, sent to b", "b.test", "b.test", http.StatusOK},
		} {
			target := profileOf(tc.signedFor)
			resp := env.do(tc.sentTo, tc.sentTo, "GET", target, "", o.sign("GET", target, tc.signedFor, ""))
			if tc.status == http.StatusUnauthorized {
				matrixError(t, resp, tc.status, "M_UNAUTHORIZED")
				continue
			}
			if resp.StatusCode != tc.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("instance %d, %s: %d %s", inst, tc.what, resp.StatusCode, b)
			}
			forwarded[tc.sentTo]++
		}
		for _, name := range []string{"a.test", "b.test"} {
			wantOwnKeyDocument(t, env.do(name, name, "GET", "/_matrix/key/v2/server", ""), env.servers[name], name)
		}
	}
	for _, name := range []string{"a.test", "b.test"} {
		got := c.envs[0].servers[name].hs.Requests()
		if len(got) != forwarded[name] {
			t.Fatalf("%s's homeserver saw %d requests, want the %d meant for it", name, len(got), forwarded[name])
		}
		for _, r := range got {
			if !strings.HasSuffix(r.RequestURI, "%3A"+name) {
				t.Fatalf("%s's homeserver got %s", name, r.RequestURI)
			}
		}
	}
	// Each instance refused the confused requests itself, for the reason
	// its access log names (a line is written after its response).
	for inst, env := range c.envs {
		mismatches := func() int {
			n := 0
			for _, l := range env.accessLines("inbound") {
				if l["reason"] == "destination_mismatch" {
					n++
				}
			}
			return n
		}
		waitFor(t, fmt.Sprintf("instance %d's destination_mismatch lines", inst), func() bool { return mismatches() >= 2 })
		if n := mismatches(); n != 2 {
			t.Errorf("instance %d logged %d destination_mismatch refusals, want 2", inst, n)
		}
	}
}

// TestClusterMultiEgressBackoffShared: the egress backoff is per
// destination and shared by the cluster, whichever hosted server sends. A
// destination that fails a.test's homeserver's request through instance 0
// is backed off by instance 1 for b.test's (and a.test's) homeserver, and
// by instance 0 for b.test's, without another request reaching it.
func TestClusterMultiEgressBackoffShared(t *testing.T) {
	t.Parallel()
	clock := newFakeClock() // both instances: the backoff window stays open
	c := startMultiCluster(t, multiOptions{origins: []string{"down.test"}, egressNow: clock.Now})
	down := c.envs[0].origins[0]
	var delivered atomic.Int64
	down.handle(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/_matrix/federation/") {
			delivered.Add(1)
		}
		http.Error(w, `{"errcode":"M_UNKNOWN","error":"down"}`, http.StatusInternalServerError)
	})
	const target = "/_matrix/federation/v1/query/profile?user_id=%40u%3Adown.test"
	send := func(inst int, from string) *http.Response {
		env := c.envs[inst]
		return env.worker(env.servers[from].secret, "GET", "down.test", target, "", env.signAs(from, "GET", target, "down.test", ""))
	}
	defer func() {
		if t.Failed() {
			t.Logf("%s", clusterState(c.nodes[:]...))
		}
	}()
	resp := send(0, "a.test")
	if resp.StatusCode != http.StatusInternalServerError {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("a.test through instance 0: %d %s, want the destination's 500 relayed", resp.StatusCode, b)
	}
	waitFor(t, "the backoff to reach instance 1", func() bool {
		_, kind, _ := c.envs[1].gw.egress.backoff.check("down.test", clock.Now())
		return kind == backoffFailing
	})
	for _, tc := range []struct {
		inst int
		from string
	}{{1, "b.test"}, {1, "a.test"}, {0, "b.test"}} {
		m := egressError(t, send(tc.inst, tc.from), http.StatusBadGateway, CodeUnknown, "err")
		if msg := m["err"].(string); !strings.Contains(msg, "remote_backoff") {
			t.Fatalf("%s through instance %d: %s, want remote_backoff", tc.from, tc.inst, msg)
		}
	}
	if n := delivered.Load(); n != 1 {
		t.Fatalf("the failing destination got %d requests, want the first only", n)
	}
}

// TestClusterMultiNotaryNoSeal: instances seal the key documents they
// share through Redis with the top-level server's key (a.test). A notary
// answer is another matter: whichever instance answers, and whether it
// fetched the origin's keys itself or took them from Redis, b.test's
// answer carries the origin's signature and b.test's, never a.test's seal
// (which would tell b.test's peers that a.test is hosted beside it), and
// a.test's carries the origin's and a.test's.
func TestClusterMultiNotaryNoSeal(t *testing.T) {
	t.Parallel()
	c := startMultiCluster(t, multiOptions{origins: []string{"origin.test"}})
	o := c.envs[0].origins[0]
	// Instance 0 fetches origin.test's keys; instance 1 takes them from
	// Redis, sealed.
	for inst, dest := range []string{"a.test", "b.test"} {
		c.profile(inst, o, dest)
	}
	if h := keyringEvents(c.envs[1].gw, auth.EventSharedHit); h != 1 || o.fetches.Load() != 1 {
		t.Fatalf("instance 1 took %v documents from Redis, %d fetches: the test needs one of each", h, o.fetches.Load())
	}
	for inst, env := range c.envs {
		for _, name := range []string{"a.test", "b.test"} {
			resp := env.do(name, name, "GET", "/_matrix/key/v2/query/origin.test", "")
			raw, _ := io.ReadAll(resp.Body)
			var answer struct {
				ServerKeys []struct {
					Signatures map[string]map[string]string `json:"signatures"`
				} `json:"server_keys"`
			}
			if err := json.Unmarshal(raw, &answer); err != nil || len(answer.ServerKeys) != 1 {
				t.Fatalf("instance %d, notary answer of %s: %d %s", inst, name, resp.StatusCode, raw)
			}
			signers := slices.Sorted(maps.Keys(answer.ServerKeys[0].Signatures))
			if want := []string{name, "origin.test"}; !slices.Equal(signers, want) {
				t.Errorf("instance %d: %s's notary answer for origin.test is signed by %v, want %v", inst, name, signers, want)
			}
		}
	}
}

package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/upstream"
)

// Upstream pools over real sockets: fedgate in front of several recording
// homeservers ("workers"), with origins whose keys are pinned so that
// many of them cost no key server each.

// worker is a recording homeserver on a fixed loopback address that a
// test can kill (connections cut, port closed) and start again.
type worker struct {
	t    *testing.T
	addr string

	mu      sync.Mutex
	srv     *http.Server
	reqs    []poolRequest
	probes  int
	handler http.HandlerFunc
}

// poolRequest is what a worker saw of one forwarded request.
type poolRequest struct {
	Method, URI, Origin, Auth, ContentType string
	Body                                   []byte
	Header                                 http.Header
}

func startWorker(t *testing.T) *worker {
	t.Helper()
	w := &worker{t: t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.addr = ln.Addr().String()
	w.serve(ln)
	t.Cleanup(w.kill)
	return w
}

func (w *worker) url() string { return "http://" + w.addr }

func (w *worker) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(w.record), ReadHeaderTimeout: 5 * time.Second}
	w.mu.Lock()
	w.srv = srv
	w.mu.Unlock()
	go srv.Serve(ln)
}

var originRE = regexp.MustCompile(`origin="?([^",]+)`)

func (w *worker) record(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.mu.Lock()
	if r.Header.Get("User-Agent") == probeUserAgent {
		w.probes++
		w.mu.Unlock()
		rw.Write([]byte(`{"server":{"name":"worker"}}`))
		return
	}
	auth := r.Header.Get("Authorization")
	origin := ""
	if m := originRE.FindStringSubmatch(auth); m != nil {
		origin = m[1]
	}
	w.reqs = append(w.reqs, poolRequest{Method: r.Method, URI: r.RequestURI, Origin: origin, Auth: auth,
		ContentType: r.Header.Get("Content-Type"), Body: body, Header: r.Header.Clone()})
	h := w.handler
	w.mu.Unlock()
	if h != nil {
		h(rw, r)
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.Write([]byte(`{"pdus":{}}`))
}

// kill cuts every connection and closes the port, as a crashed process.
func (w *worker) kill() {
	w.mu.Lock()
	srv := w.srv
	w.srv = nil
	w.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// restart serves again on the same address.
func (w *worker) restart() {
	w.t.Helper()
	ln, err := net.Listen("tcp", w.addr)
	if err != nil {
		w.t.Fatalf("restarting the worker on %s: %v", w.addr, err)
	}
	w.serve(ln)
}

func (w *worker) requests() []poolRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]poolRequest(nil), w.reqs...)
}

func (w *worker) handle(h http.HandlerFunc) {
	w.mu.Lock()
	w.handler = h
	w.mu.Unlock()
}

// reset forgets recorded requests.
func (w *worker) reset() {
	w.mu.Lock()
	w.reqs = nil
	w.mu.Unlock()
}

// poolOrigin is a remote server whose key the gateway has pinned.
type poolOrigin struct {
	name string
	key  auth.SigningKey
}

// poolEnv is a gateway in front of workers.
type poolEnv struct {
	*testGateway
	admin   string
	origins []poolOrigin
	render  func(upstreamTOML string) string
}

const poolsConfig = `
server_name = "gw.test"
data_dir = %q
[listen]
federation = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
[keys]
signing_key = %q
%s
[rate_limit]
per_ip = { rate = "1000000/s", burst = 1000000 }
per_origin = { rate = "1000000/s", burst = 1000000 }
concurrent_per_origin = 0
[log]
access = false
[admin]
ready_window = "1s"
[upstream]
timeout = "5s"
probe_interval = "100ms"
probe_timeout = "1s"
%s
`

// startPools starts a gateway whose [upstream] section ends with
// upstreamTOML, with n origins pinned.
func startPools(t *testing.T, n int, upstreamTOML string) *poolEnv {
	t.Helper()
	env := &poolEnv{}
	var pinned strings.Builder
	for i := range n {
		key, err := auth.GenerateSigningKey("o_1")
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("origin%d.test", i)
		env.origins = append(env.origins, poolOrigin{name, key})
		fmt.Fprintf(&pinned, "[[keys.pinned]]\nserver_name = %q\nkey_id = \"ed25519:o_1\"\npublic_key = %q\n", name, auth.EncodeBase64(key.Public()))
	}
	env.testGateway = launchGateway(t, gatewaySetup{
		config: func(dataDir, _, keyFile string) string {
			env.render = func(up string) string { return fmt.Sprintf(poolsConfig, dataDir, keyFile, pinned.String(), up) }
			return env.render(upstreamTOML)
		},
		logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
	})
	env.admin = env.gw.Addrs(ListenerAdmin)[0].String()
	return env
}

// reload rewrites the configuration with another [upstream] tail and
// applies it.
func (e *poolEnv) reload(upstreamTOML string) {
	e.t.Helper()
	path := filepath.Join(e.dir, "gateway.toml")
	if err := os.WriteFile(path, []byte(e.render(upstreamTOML)), 0o600); err != nil {
		e.t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.gw.Reload(c); err != nil {
		e.t.Fatal(err)
	}
}

// send sends a signed request from o and returns the status and body; it
// does not fail the test, so load goroutines can call it.
func (e *poolEnv) send(o poolOrigin, method, target, body string) (int, string, error) {
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	x, err := auth.SignRequest(o.key, method, target, o.name, "gw.test", b)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequest(method, "https://"+e.addr+"/", bytes.NewReader(b))
	if err != nil {
		return 0, "", err
	}
	path, query, _ := strings.Cut(target, "?")
	req.URL.Opaque, req.URL.RawQuery = path, query
	req.Header.Set("Authorization", x.String())
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(rb), err
}

// mustSend sends and wants 200.
func (e *poolEnv) mustSend(o poolOrigin, method, target, body string) string {
	e.t.Helper()
	status, rb, err := e.send(o, method, target, body)
	if err != nil || status != 200 {
		e.t.Fatalf("%s %s from %s: %d %v %s", method, target, o.name, status, err, rb)
	}
	return rb
}

var txnCounter atomic.Int64

// sendTxn sends one /send transaction from o.
func (e *poolEnv) sendTxn(o poolOrigin) (int, error) {
	target := fmt.Sprintf("/_matrix/federation/v1/send/t%d", txnCounter.Add(1))
	status, _, err := e.send(o, "PUT", target, `{"origin":"`+o.name+`","origin_server_ts":1700000000000,"pdus":[],"edus":[]}`)
	return status, err
}

// placement returns, per origin, the workers (by index in ws) that got
// its /send requests.
func placement(ws []*worker) map[string]map[int]bool {
	out := map[string]map[int]bool{}
	for i, w := range ws {
		for _, r := range w.requests() {
			if !strings.HasPrefix(r.URI, "/_matrix/federation/v1/send/") {
				continue
			}
			if out[r.Origin] == nil {
				out[r.Origin] = map[int]bool{}
			}
			out[r.Origin][i] = true
		}
	}
	return out
}

// onlyWorker returns the one worker an origin's requests went to, or -1.
func onlyWorker(set map[int]bool) int {
	if len(set) != 1 {
		return -1
	}
	for i := range set {
		return i
	}
	return -1
}

func urlList(ws ...*worker) string {
	quoted := make([]string, len(ws))
	for i, w := range ws {
		quoted[i] = fmt.Sprintf("%q", w.url())
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// TestPoolsRouteByClass: every endpoint reaches the pool its route names
// (by class or by operation), the rest the default pool, and every pool
// gets the request byte for byte: method, raw request-target (escapes,
// odd queries), Authorization, body.
func TestPoolsRouteByClass(t *testing.T) {
	main, sendA, sendB, media, backfill := startWorker(t), startWorker(t), startWorker(t), startWorker(t), startWorker(t)
	env := startPools(t, 3, fmt.Sprintf(`url = %q
[[upstream.route]]
endpoints = ["send"]
urls = %s
balance = "origin"
[[upstream.route]]
endpoints = ["media"]
urls = %s
[[upstream.route]]
name = "history"
endpoints = ["backfill", "get_missing_events"]
urls = %s
`, main.url(), urlList(sendA, sendB), urlList(media), urlList(backfill)))
	o := env.origins[0]
	cases := []struct {
		method, target, body string
		want                 *worker
	}{
		{"PUT", "/_matrix/federation/v1/send/txn%2F1", `{"origin":"origin0.test","pdus":[],"edus":[]}`, nil}, // one of the send pool
		{"GET", "/_matrix/federation/v1/media/download/abc%20def", "", media},
		{"GET", "/_matrix/media/v3/download/origin0.test/abc", "", media},
		{"GET", "/_matrix/federation/v1/backfill/%21room%3Agw.test?v=%24ev%3Aorigin0.test&limit=10&v=%24other", "", backfill},
		{"POST", "/_matrix/federation/v1/get_missing_events/%21room%3Agw.test", `{"earliest_events":[],"latest_events":["$a"],"limit":10}`, backfill},
		{"GET", "/_matrix/federation/v1/state/%21room%3Agw.test?event_id=%24ev%3Aorigin0.test", "", main},
		{"GET", "/_matrix/federation/v1/query/profile?user_id=%40alice%3Agw.test&field=displayname", "", main},
		{"GET", "/_matrix/federation/v1/version", "", main},
	}
	for _, c := range cases {
		for _, w := range []*worker{main, sendA, sendB, media, backfill} {
			w.reset()
		}
		var status int
		var err error
		if c.target == "/_matrix/federation/v1/version" {
			var resp *http.Response
			resp, err = env.client.Get("https://" + env.addr + c.target)
			if err == nil {
				status = resp.StatusCode
				resp.Body.Close()
			}
		} else {
			status, _, err = env.send(o, c.method, c.target, c.body)
		}
		if err != nil || status != 200 {
			t.Fatalf("%s %s: %d %v", c.method, c.target, status, err)
		}
		var got []*worker
		for _, w := range []*worker{main, sendA, sendB, media, backfill} {
			if len(w.requests()) > 0 {
				got = append(got, w)
			}
		}
		want := c.want
		if want == nil && len(got) == 1 && (got[0] == sendA || got[0] == sendB) {
			want = got[0]
		}
		if len(got) != 1 || got[0] != want {
			t.Fatalf("%s %s reached %d workers, not the one its route names", c.method, c.target, len(got))
		}
		r := want.requests()[0]
		if r.Method != c.method || r.URI != c.target || string(r.Body) != c.body {
			t.Fatalf("forwarded as %s %s %q, want %s %s %q", r.Method, r.URI, r.Body, c.method, c.target, c.body)
		}
		if c.target != "/_matrix/federation/v1/version" {
			// The signature the worker checks again is the one sent.
			if r.Origin != o.name || !strings.HasPrefix(r.Auth, "X-Matrix ") {
				t.Fatalf("Authorization %q", r.Auth)
			}
			x, _ := auth.SignRequest(o.key, c.method, c.target, o.name, "gw.test", []byte(c.body))
			if r.Auth != x.String() {
				t.Fatalf("Authorization changed: %q, sent %q", r.Auth, x.String())
			}
		}
	}
}

// TestPoolsOriginStickiness: over many origins, each origin's
// transactions all reach one worker of an origin pool, and the origins
// spread over every worker.
func TestPoolsOriginStickiness(t *testing.T) {
	main := startWorker(t)
	ws := []*worker{startWorker(t), startWorker(t), startWorker(t)}
	env := startPools(t, 48, fmt.Sprintf("url = %q\n[[upstream.route]]\nendpoints = [\"send\"]\nurls = %s\nbalance = \"origin\"\n", main.url(), urlList(ws...)))
	var wg sync.WaitGroup
	errs := make(chan error, len(env.origins))
	for _, o := range env.origins {
		wg.Go(func() {
			for range 4 {
				if status, err := env.sendTxn(o); err != nil || status != 200 {
					errs <- fmt.Errorf("%s: %d %v", o.name, status, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	perWorker := make([]int, len(ws))
	for origin, set := range placement(ws) {
		i := onlyWorker(set)
		if i < 0 {
			t.Fatalf("origin %s reached %d workers", origin, len(set))
		}
		perWorker[i]++
	}
	for i, n := range perWorker {
		if n < 6 {
			t.Errorf("worker %d took %d of 48 origins: %v", i, n, perWorker)
		}
	}
	if n := len(main.requests()); n != 0 {
		t.Errorf("the default pool got %d transactions", n)
	}
}

// TestPoolsMemberKilledAndRestarted: under a steady load of transactions
// from many origins, one worker of the origin pool dies (its connections
// cut, its port closed). Transactions under way on it are sent again to
// another worker (/send is idempotent), new ones go to the next worker by
// the hash at once, so no remote server sees a 5xx at all; each origin of
// the dead worker sticks to one other worker. When the worker comes back
// on the same address, the probe sees it and its origins return to it.
func TestPoolsMemberKilledAndRestarted(t *testing.T) {
	main := startWorker(t)
	ws := []*worker{startWorker(t), startWorker(t), startWorker(t)}
	// The workers take a moment per transaction, so that some are under
	// way when the worker dies.
	for _, w := range ws {
		w.handle(func(rw http.ResponseWriter, r *http.Request) {
			time.Sleep(2 * time.Millisecond)
			rw.Write([]byte(`{"pdus":{}}`))
		})
	}
	env := startPools(t, 24, fmt.Sprintf("url = %q\n[[upstream.route]]\nendpoints = [\"send\"]\nurls = %s\nbalance = \"origin\"\n", main.url(), urlList(ws...)))

	// Where each origin goes while every worker is up.
	for _, o := range env.origins {
		if status, err := env.sendTxn(o); err != nil || status != 200 {
			t.Fatalf("%s: %d %v", o.name, status, err)
		}
	}
	home := map[string]int{}
	for origin, set := range placement(ws) {
		home[origin] = onlyWorker(set)
	}
	victim := 1
	var victims []string
	for origin, i := range home {
		if i == victim {
			victims = append(victims, origin)
		}
	}
	if len(victims) == 0 {
		t.Fatal("no origin on the worker to kill")
	}

	// Load: 6 senders for about a second; the worker dies a third of the
	// way in.
	type result struct {
		at     time.Time
		status int
		err    error
	}
	var mu sync.Mutex
	var results []result
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for s := range 6 {
		wg.Go(func() {
			for i := s; ; i += 6 {
				select {
				case <-stop:
					return
				default:
				}
				status, err := env.sendTxn(env.origins[i%len(env.origins)])
				mu.Lock()
				results = append(results, result{time.Now(), status, err})
				mu.Unlock()
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	// The worker hangs on the transactions it gets from now on, so some
	// are surely under way when it dies.
	hanging := make(chan struct{}, 1)
	ws[victim].handle(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case hanging <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	})
	<-hanging
	for _, w := range ws {
		w.reset()
	}
	killed := time.Now()
	ws[victim].kill()
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()

	bad := 0
	for _, r := range results {
		if r.err != nil || r.status != 200 {
			bad++
			t.Errorf("at kill%+v: %d %v", r.at.Sub(killed).Round(time.Millisecond), r.status, r.err)
		}
	}
	if len(results) < 50 || bad > 0 {
		t.Fatalf("%d of %d transactions failed", bad, len(results))
	}
	// After the kill, each origin sticks to one live worker; those of the
	// others did not move.
	for origin, set := range placement(ws) {
		if set[victim] {
			// Transactions that were under way may have been recorded by
			// the dying worker before it was cut off.
			delete(set, victim)
		}
		i := onlyWorker(set)
		switch {
		case i < 0:
			t.Errorf("origin %s reached %d workers after the kill", origin, len(set))
		case home[origin] != victim && i != home[origin]:
			t.Errorf("origin %s moved from worker %d to %d though its worker is up", origin, home[origin], i)
		}
	}
	st := poolMember(env, "send", victim)
	if st.State == upstream.Up || st.Errors[upstream.NoResponse] == 0 || st.Failovers == 0 {
		t.Errorf("the dead worker is %v after %d failovers", st.State, st.Failovers)
	}
	t.Logf("%d transactions, none failed; %d failed over from the dead worker (%v)", len(results), st.Failovers, st.Errors)

	// The worker comes back: the probe finds it, and its origins return.
	ws[victim].handle(nil)
	ws[victim].restart()
	waitFor(t, "the probe to see the worker again", func() bool { return poolMember(env, "send", victim).State == upstream.Up })
	for _, w := range ws {
		w.reset()
	}
	for _, o := range env.origins {
		if status, err := env.sendTxn(o); err != nil || status != 200 {
			t.Fatalf("%s: %d %v", o.name, status, err)
		}
	}
	for origin, set := range placement(ws) {
		if i := onlyWorker(set); i != home[origin] {
			t.Errorf("origin %s is on worker %d after the restart, was on %d", origin, i, home[origin])
		}
	}
}

// poolMember is one member's status in the running configuration.
func poolMember(env *poolEnv, pool string, member int) upstream.MemberStatus {
	env.t.Helper()
	return memberStatus(env.t, env.gw.rt.Load().primary(), pool, member)
}

// TestPoolsReloadAddsMember: a reload that adds a worker to an origin pool
// moves only the origins the new worker takes, keeps what fedgate knows
// of the other workers, and lets a request under way on the old
// configuration finish.
func TestPoolsReloadAddsMember(t *testing.T) {
	main := startWorker(t)
	ws := []*worker{startWorker(t), startWorker(t), startWorker(t)}
	tail := func(n int) string {
		return fmt.Sprintf("url = %q\n[[upstream.route]]\nendpoints = [\"send\"]\nurls = %s\nbalance = \"origin\"\n", main.url(), urlList(ws[:n]...))
	}
	env := startPools(t, 40, tail(2))
	for _, o := range env.origins {
		env.mustSend(o, "PUT", fmt.Sprintf("/_matrix/federation/v1/send/a%d", txnCounter.Add(1)), `{"pdus":[],"edus":[]}`)
	}
	before := map[string]int{}
	for origin, set := range placement(ws) {
		before[origin] = onlyWorker(set)
	}
	requestsBefore := poolMember(env, "send", 0).Requests

	// A slow request on the default pool is under way during the reload.
	release := make(chan struct{})
	arrived := make(chan struct{})
	main.handle(func(rw http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		rw.Write([]byte(`{"slow":true}`))
	})
	slow := make(chan string, 1)
	go func() {
		status, body, err := env.send(env.origins[0], "GET", "/_matrix/federation/v1/state/%21r%3Agw.test?event_id=%24e", "")
		slow <- fmt.Sprint(status, " ", body, " ", err)
	}()
	<-arrived
	env.reload(tail(3))
	close(release)
	if got := <-slow; got != `200 {"slow":true} <nil>` {
		t.Fatalf("the request under way during the reload: %s", got)
	}

	if got := poolMember(env, "send", 0).Requests; got < requestsBefore {
		t.Errorf("worker 0's counters restarted at the reload: %d, had %d", got, requestsBefore)
	}
	for _, w := range ws {
		w.reset()
	}
	for _, o := range env.origins {
		env.mustSend(o, "PUT", fmt.Sprintf("/_matrix/federation/v1/send/b%d", txnCounter.Add(1)), `{"pdus":[],"edus":[]}`)
	}
	moved := 0
	for origin, set := range placement(ws) {
		i := onlyWorker(set)
		if i != before[origin] {
			moved++
			if i != 2 {
				t.Errorf("origin %s moved from worker %d to %d, not to the new worker", origin, before[origin], i)
			}
		}
	}
	if moved == 0 || moved > 25 {
		t.Errorf("%d of 40 origins moved to the new worker", moved)
	}
}

// TestPoolsReadinessAndMetrics: /readyz has a line per pool and stays
// ready while a pool has a member up; metrics and status.json report
// every member by pool and index.
func TestPoolsReadinessAndMetrics(t *testing.T) {
	main, a, b := startWorker(t), startWorker(t), startWorker(t)
	env := startPools(t, 1, fmt.Sprintf("url = %q\nprobe_path = \"/_matrix/federation/v1/version?probe=1\"\n[[upstream.route]]\nname = \"readers\"\nendpoints = [\"send\", \"events\"]\nurls = %s\nbalance = \"origin\"\n", main.url(), urlList(a, b)))
	og := &opsGateway{testGateway: env.testGateway, admin: env.admin}
	waitFor(t, "/readyz 200", func() bool { s, _ := og.get("/readyz"); return s == 200 })
	_, body := og.get("/readyz")
	for _, want := range []string{"ok   upstream: " + main.url() + " reached", "ok   upstream readers: 2 of 2 members reached: " + a.url() + " reached"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz lacks %q:\n%s", want, body)
		}
	}
	env.mustSend(env.origins[0], "PUT", "/_matrix/federation/v1/send/m1", `{"pdus":[],"edus":[]}`)

	a.kill()
	waitFor(t, "worker a down", func() bool { return poolMember(env, "readers", 0).State != upstream.Up })
	// Readiness forgives a member for admin.ready_window (1s here).
	waitFor(t, "readiness to count one member", func() bool {
		s, body := og.get("/readyz")
		return s == 200 && strings.Contains(body, "ok   upstream readers: 1 of 2 members reached")
	})
	m := og.scrape()
	wantValue(t, m, 0, "fedgate_upstream_member_up", "pool=readers", "member=0")
	wantValue(t, m, 1, "fedgate_upstream_member_up", "pool=readers", "member=1")
	wantValue(t, m, 1, "fedgate_upstream_member_up", "pool=default", "member=0")
	wantValue(t, m, 1, "fedgate_upstream_member_info", "pool=readers", "member=1", "url="+b.url())
	wantValue(t, m, 1, "fedgate_upstream_up")
	if n, _ := value(m, "fedgate_upstream_member_probes_total", "pool=readers", "member=0", "result=failed"); n < 1 {
		t.Errorf("failed probes of the dead member: %v", n)
	}
	if n, _ := value(m, "fedgate_upstream_member_requests_total", "pool=readers"); n != 1 {
		t.Errorf("requests answered by the readers: %v", n)
	}
	if names := labelValues(m, "fedgate_upstream_member_up", "pool"); strings.Join(names, ",") != "default,readers" {
		t.Errorf("pool labels %v", names)
	}

	b.kill()
	waitFor(t, "/readyz 503", func() bool { s, _ := og.get("/readyz"); return s == 503 })
	_, body = og.get("/readyz")
	if !strings.Contains(body, "FAIL upstream readers: 0 of 2 members reached") || !strings.Contains(body, "ok   upstream: ") {
		t.Errorf("/readyz:\n%s", body)
	}
	wantValue(t, og.scrape(), 0, "fedgate_upstream_up")

	// status.json lists the pools with their members.
	_, js := og.get("/status.json")
	var st struct {
		Upstream struct {
			Up    bool `json:"up"`
			Pools []struct {
				Name      string   `json:"name"`
				Balance   string   `json:"balance"`
				Endpoints []string `json:"endpoints"`
				Members   []struct {
					URL       string `json:"url"`
					State     string `json:"state"`
					LastError string `json:"last_error"`
				} `json:"members"`
			} `json:"pools"`
		} `json:"upstream"`
	}
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatal(err)
	}
	p := st.Upstream.Pools
	if st.Upstream.Up || len(p) != 2 || p[1].Name != "readers" || p[1].Balance != "origin" || strings.Join(p[1].Endpoints, ",") != "send,events" ||
		len(p[1].Members) != 2 || p[1].Members[1].URL != b.url() || p[1].Members[1].State == "up" || p[1].Members[1].LastError == "" {
		t.Errorf("status.json upstream: %s", js)
	}
	// The probe asked the configured path.
	main.mu.Lock()
	probes := main.probes
	main.mu.Unlock()
	if probes == 0 {
		t.Error("the default pool was never probed")
	}
}

// TestPoolsAllDownStillForwards: with every member of a pool marked down,
// a request is still sent (a member may be back before its probe says so).
func TestPoolsAllDownStillForwards(t *testing.T) {
	main, a := startWorker(t), startWorker(t)
	env := startPools(t, 1, fmt.Sprintf("url = %q\ndown_period = \"1h\"\ndown_period_max = \"1h\"\n[[upstream.route]]\nendpoints = [\"send\"]\nurls = %s\n", main.url(), urlList(a)))
	a.kill()
	if status, err := env.sendTxn(env.origins[0]); err != nil || status != 502 {
		t.Fatalf("dead worker: %d %v", status, err)
	}
	if st := poolMember(env, "send", 0); st.State != upstream.Down {
		t.Fatalf("state %v", st.State)
	}
	a.restart()
	if status, err := env.sendTxn(env.origins[0]); err != nil || status != 200 {
		t.Fatalf("worker back, marked down for an hour: %d %v", status, err)
	}
}

// TestPoolsUnauthenticatedRoundRobin: an origin pool takes requests that
// carry no verified origin in turn.
func TestPoolsUnauthenticatedRoundRobin(t *testing.T) {
	main, a, b := startWorker(t), startWorker(t), startWorker(t)
	env := startPools(t, 0, fmt.Sprintf("url = %q\n[[upstream.route]]\nendpoints = [\"version\"]\nurls = %s\nbalance = \"origin\"\n", main.url(), urlList(a, b)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 10 {
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+env.addr+"/_matrix/federation/v1/version", nil)
		resp, err := env.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if na, nb := len(a.requests()), len(b.requests()); na != 5 || nb != 5 {
		t.Fatalf("version requests: %d and %d, want 5 and 5", na, nb)
	}
}

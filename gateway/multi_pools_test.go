package gateway

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/upstream"
)

// Several hosted servers, each with its own upstream pools: each
// server's requests reach its own workers, each server's members are
// watched apart (even at a shared address), and readiness, metrics and
// the access log name the server.

// TestMultiPools: a.test and b.test each send /send to their own pool of
// two workers (balance origin) and media to a pool whose one member is the
// same address for both; the rest goes to each server's homeserver.
// Requests land on their own server's workers only; a's workers going
// down touches nothing of b's; /readyz stays 200 while b is reached and
// names both servers' pools; metrics and the access log name the server,
// the pool and the member.
func TestMultiPools(t *testing.T) {
	workers := [][]*worker{{startWorker(t), startWorker(t)}, {startWorker(t), startWorker(t)}}
	shared := startWorker(t) // media for both servers: one address, two members
	origins := []string{"o1.test", "o2.test", "o3.test", "o4.test"}
	env := startMulti(t, multiOptions{
		origins: origins,
		admin:   true,
		upstream: func(i int) string {
			return fmt.Sprintf("probe_interval = \"100ms\"\nprobe_timeout = \"1s\"\ndown_period = \"200ms\"\ndown_period_max = \"400ms\"\n"+
				"%s\nname = \"senders\"\nendpoints = [\"send\"]\nurls = %s\nbalance = \"origin\"\n"+
				"%s\nname = \"media\"\nendpoints = [\"media\"]\nurls = [%q]\n",
				routeHeader(i), urlList(workers[i]...), routeHeader(i), shared.url())
		},
	})
	og := &opsGateway{testGateway: &testGateway{t: t, gw: env.gw}, admin: env.gw.Addrs(ListenerAdmin)[0].String()}
	servers := []string{"a.test", "b.test"}
	waitFor(t, "/readyz 200", func() bool { s, _ := og.get("/readyz"); return s == 200 })

	// The Tracker holds every member of both servers apart: the shared
	// media address is two members, one per server.
	if n := env.gw.upstreams.Len(); n != 8 {
		t.Errorf("tracker holds %d member states, want 8 (2 servers x (1 + 2 + 1))", n)
	}

	txn := 0
	send := func(server string, o *testOrigin) int {
		t.Helper()
		txn++
		target := fmt.Sprintf("/_matrix/federation/v1/send/t%d", txn)
		body := fmt.Sprintf(`{"origin":%q,"origin_server_ts":1,"pdus":[],"edus":[]}`, o.name)
		resp := env.signed(o, server, "PUT", target, body)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	get := func(server, target string) {
		t.Helper()
		resp := env.signed(env.origins[0], server, "GET", target, "")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s for %s: %d %s", target, server, resp.StatusCode, b)
		}
	}
	for _, server := range servers {
		for _, o := range env.origins {
			for range 2 {
				if status := send(server, o); status != 200 {
					t.Fatalf("/send for %s from %s: %d", server, o.name, status)
				}
			}
		}
		get(server, "/_matrix/federation/v1/query/profile?user_id=%40u%3A"+server)
		get(server, "/_matrix/federation/v1/media/download/m-"+server)
	}

	// Each server's /send went to its own workers, each origin to one of
	// them; the rest to its own homeserver; media to the shared address
	// once per server.
	for i, server := range servers {
		seen := 0
		for j, w := range workers[i] {
			for _, r := range w.requests() {
				seen++
				if !strings.Contains(r.Auth, `destination="`+server+`"`) || !strings.HasPrefix(r.URI, "/_matrix/federation/v1/send/") {
					t.Errorf("%s's worker %d got %s for another server or pool (%s)", server, j, r.URI, r.Auth)
				}
			}
		}
		if seen != 2*len(origins) {
			t.Errorf("%s's workers saw %d transactions, want %d", server, seen, 2*len(origins))
		}
		for o, on := range placement(workers[i]) {
			if len(on) != 1 {
				t.Errorf("%s: origin %s's transactions went to workers %v, want one", server, o, on)
			}
		}
		var profile int
		for _, r := range env.servers[server].hs.Requests() {
			if r.Header.Get("User-Agent") == probeUserAgent {
				continue
			}
			if !strings.HasPrefix(r.RequestURI, "/_matrix/federation/v1/query/profile") || !strings.Contains(r.RequestURI, server) {
				t.Errorf("%s's homeserver got %s", server, r.RequestURI)
			}
			profile++
		}
		if profile != 1 {
			t.Errorf("%s's homeserver saw %d profile queries, want 1", server, profile)
		}
	}
	if got := shared.requests(); len(got) != 2 || !strings.Contains(got[0].Auth, `destination="a.test"`) || !strings.Contains(got[1].Auth, `destination="b.test"`) {
		t.Errorf("the shared media member saw %+v", got)
	}

	// The access log names the server, the pool and the member.
	lines := env.accessLines("inbound")
	pools := map[string]int{}
	for _, l := range lines {
		if l["decision"] != "forwarded" {
			continue
		}
		key := fmt.Sprintf("%v %v", l["server"], l["pool"])
		pools[key]++
		if _, ok := l["member"]; !ok {
			t.Errorf("access line without member: %v", l)
		}
		if l["pool"] == "default" && l["member"] != int64(0) {
			t.Errorf("default pool member %v (%T), want 0", l["member"], l["member"])
		}
	}
	for _, server := range servers {
		for pool, want := range map[string]int{"senders": 2 * len(origins), "default": 1, "media": 1} {
			if got := pools[server+" "+pool]; got != want {
				t.Errorf("access lines for %s pool %s: %d, want %d (%v)", server, pool, got, want, pools)
			}
		}
	}

	// Metrics name the server: the shared address is one series per
	// server, and each server's senders answered its own transactions.
	m := og.scrape()
	for _, server := range servers {
		wantValue(t, m, 1, "fedgate_upstream_member_info", "server="+server, "pool=media", "member=0", "url="+shared.url())
		wantValue(t, m, float64(2*len(origins)), "fedgate_upstream_member_requests_total", "server="+server, "pool=senders")
		wantValue(t, m, 1, "fedgate_upstream_up", "server="+server)
	}
	if got := labelValues(m, "fedgate_upstream_member_up", "server"); strings.Join(got, ",") != "a.test,b.test" {
		t.Errorf("server labels %v", got)
	}

	// a.test's first worker dies: a's transactions still arrive (another
	// member takes them), b's members and b's traffic see nothing of it.
	workers[0][0].kill()
	waitFor(t, "a's worker 0 marked down", func() bool {
		return memberOf(env, "a.test", "senders", 0).State != upstream.Up
	})
	for _, o := range env.origins {
		if status := send("a.test", o); status != 200 {
			t.Errorf("/send for a.test from %s with one worker down: %d", o.name, status)
		}
		if status := send("b.test", o); status != 200 {
			t.Errorf("/send for b.test from %s: %d", o.name, status)
		}
	}
	for j := range workers[1] {
		if st := memberOf(env, "b.test", "senders", j); st.State != upstream.Up || st.Failures != 0 || len(st.Errors) != 0 {
			t.Errorf("b's worker %d: %+v", j, st)
		}
	}
	if st := memberOf(env, "b.test", "media", 0); st.State != upstream.Up {
		t.Errorf("b's media member (the shared address) is %s", st.State)
	}
	waitFor(t, "a's senders reported with one member", func() bool {
		s, body := og.get("/readyz")
		return s == 200 && strings.Contains(body, "ok   upstream a.test senders: 1 of 2 members reached")
	})

	// Both of a's workers down: a's homeserver is not reached, /readyz
	// says so in a "warn" line and stays 200 because b's is.
	workers[0][1].kill()
	var body string
	waitFor(t, "a not reached", func() bool {
		var s int
		s, body = og.get("/readyz")
		return s == 200 && strings.Contains(body, "warn upstream a.test senders: 0 of 2 members reached")
	})
	for _, want := range []string{
		"ok   upstream: 1 of 2 hosted servers' homeservers reached; not reached: a.test",
		"ok   upstream a.test: ", "ok   upstream a.test media: ",
		"ok   upstream b.test: ", "ok   upstream b.test senders: 2 of 2 members reached", "ok   upstream b.test media: ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz lacks %q:\n%s", want, body)
		}
	}
	m = og.scrape()
	wantValue(t, m, 1, "fedgate_ready")
	wantValue(t, m, 0, "fedgate_ready_check", "check=upstream a.test senders")
	wantValue(t, m, 1, "fedgate_ready_check", "check=upstream b.test senders")
	wantValue(t, m, 1, "fedgate_ready_check", "check=upstream")
	wantValue(t, m, 0, "fedgate_upstream_up", "server=a.test")
	wantValue(t, m, 1, "fedgate_upstream_up", "server=b.test")
	wantValue(t, m, 0, "fedgate_upstream_member_up", "server=a.test", "pool=senders", "member=0")
	wantValue(t, m, 1, "fedgate_upstream_member_up", "server=b.test", "pool=senders", "member=0")

	// status.json shows both servers' pools.
	st := env.gw.consoleStatus(time.Now())
	if u := st.Upstream; u.Hosted != 2 || u.HostedUp != 1 || u.Up || len(u.Pools) != 6 || u.Pools[3].Server != "b.test" || !strings.HasPrefix(u.LastError, "a.test: ") {
		t.Errorf("console upstream: %+v", u)
	}

	// b's workers down too: no hosted server's homeserver is reached.
	workers[1][0].kill()
	workers[1][1].kill()
	waitFor(t, "/readyz 503", func() bool {
		var s int
		s, body = og.get("/readyz")
		return s == 503
	})
	if !strings.Contains(body, "FAIL upstream: 0 of 2 hosted servers' homeservers reached; not reached: a.test, b.test") {
		t.Errorf("/readyz:\n%s", body)
	}
}

// memberOf is one member's status in hosted server name's pools.
func memberOf(env *multiEnv, name, pool string, member int) upstream.MemberStatus {
	env.t.Helper()
	hs := env.gw.rt.Load().hostedByName(name)
	if hs == nil {
		env.t.Fatalf("no hosted server %s", name)
	}
	return memberStatus(env.t, hs, pool, member)
}

// TestMultiProbesApart: the one prober probes each hosted server at its
// own probe_interval, and a server whose member never answers (each probe
// waits its whole probe_timeout) does not slow the probes of the others.
func TestMultiProbesApart(t *testing.T) {
	// a.test's second member accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	fast, slow := startWorker(t), startWorker(t)
	env := startMulti(t, multiOptions{
		upstream: func(i int) string {
			if i == 0 {
				return fmt.Sprintf("probe_interval = \"1s\"\nprobe_timeout = \"3s\"\n%s\nname = \"senders\"\nendpoints = [\"send\"]\nurls = [%q, \"http://%s\"]\n",
					routeHeader(i), slow.url(), ln.Addr())
			}
			return fmt.Sprintf("probe_interval = \"100ms\"\nprobe_timeout = \"1s\"\n%s\nname = \"senders\"\nendpoints = [\"send\"]\nurls = [%q, %q]\n",
				routeHeader(i), fast.url(), startWorker(t).url())
		},
	})
	probes := func(w *worker) int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.probes
	}
	waitFor(t, "the first probes", func() bool { return probes(fast) > 0 && probes(slow) > 0 })
	f0, s0 := probes(fast), probes(slow)
	time.Sleep(1500 * time.Millisecond)
	f, s := probes(fast)-f0, probes(slow)-s0
	// b.test: every 100 ms, about 15 in 1.5 s, though a.test's probe round
	// takes 3 s; a.test: at most once per round.
	if f < 6 {
		t.Errorf("b.test's member was probed %d times in 1.5s (probe_interval 100ms): slowed by a.test's hanging member", f)
	}
	if s > 1 {
		t.Errorf("a.test's member was probed %d times in 1.5s (probe_interval 1s, rounds of 3s)", s)
	}
	if st := memberOf(env, "b.test", "senders", 0); st.State != upstream.Up {
		t.Errorf("b.test's member: %s", st.State)
	}
}

// TestMultiReloadProbesNewServer: a hosted server a reload adds is probed
// at once, not at the next round of the others (a minute here).
func TestMultiReloadProbesNewServer(t *testing.T) {
	o := multiOptions{upstream: func(i int) string {
		return fmt.Sprintf("probe_interval = \"1m\"\n%s\nendpoints = [\"send\"]\nurls = [%q, %q]\n",
			routeHeader(i), startWorker(t).url(), startWorker(t).url())
	}}
	env := startMulti(t, o)
	waitFor(t, "b.test probed", func() bool { return memberOf(env, "b.test", "send", 0).State == upstream.Up })
	o.names = []string{"a.test", "b.test", "c.test"}
	if err := env.reload(o); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c.test probed after the reload", func() bool { return memberOf(env, "c.test", "send", 0).State == upstream.Up })
}

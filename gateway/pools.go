package gateway

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/fedgate/fedgate/console"
	"github.com/fedgate/fedgate/upstream"
)

// The homeservers' pools (package upstream) as the operator sees them:
// one prober for every member of every hosted server, which is also the
// readiness probe; readiness checks per pool; per-member metrics; the
// console's upstream section; the log lines of members going down and
// coming back. Each hosted server's pools live in its runtime
// (hs.upstream, built by newUpstream in proxy.go from the server's own
// [upstream] section); their members' health lives in g.upstreams, which
// outlives reloads.

// probeUserAgent is the User-Agent of the probes, so that homeserver
// logs (and tests) can tell them from federation traffic.
const probeUserAgent = "fedgate readiness probe"

// newUpstreamTracker builds the gateway's tracker of member health, one
// for every hosted server (each Set's scope is its server's name); the
// log says when a member goes down and when it answers again.
func (g *Gateway) newUpstreamTracker() *upstream.Tracker {
	return upstream.NewTracker(upstream.TrackerOptions{OnChange: func(c upstream.Change) {
		if c.Up {
			g.log.Info("homeserver reachable again", zap.String("server", c.Scope), zap.String("pool", c.Pool), zap.String("upstream", c.URL))
			return
		}
		g.log.Warn("homeserver not reachable", zap.String("server", c.Scope), zap.String("pool", c.Pool), zap.String("upstream", c.URL),
			zap.String("error", c.Reason), zap.Duration("skipped_for", c.DownFor))
	}})
}

// probing reports whether the members of hs's pools are probed: when
// readiness can be asked (an admin listener) or when health decides
// where its requests go (a pool of several members).
func probing(rt *runtime, hs *hostedServer) bool {
	return rt.cfg.Listen.Admin != "" || hs.upstream.Redundant()
}

// probeRound is one hosted server's finished probe, for the prober loop.
type probeRound struct {
	server string
	next   time.Time // when the server's members are due again
}

// runUpstreamProbe probes the members of every hosted server's pools
// until ctx ends: the homeserver readiness probe and the pools' active
// health check in one loop. Each hosted server is probed every
// probe_interval of its own [upstream] section; its members are probed at
// once (Set.Probe), and a server whose probes are slow (members that do
// not answer until probe_timeout) delays no other server's. A server a
// reload adds is probed at once. Call it once, in its own goroutine.
func (g *Gateway) runUpstreamProbe(ctx context.Context) {
	due := map[string]time.Time{} // by hosted server name; absent: due now
	running := map[string]bool{}
	done := make(chan probeRound)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-done:
			delete(running, r.server)
			due[r.server] = r.next
		case <-g.probeWake: // a reload: new servers are due now
		case <-t.C:
		}
		rt := g.rt.Load()
		now := time.Now()
		next := now.Add(time.Minute)
		listed := make(map[string]bool, len(rt.servers))
		for _, hs := range rt.servers {
			listed[hs.name] = true
			if running[hs.name] {
				continue
			}
			if d, ok := due[hs.name]; ok && now.Before(d) {
				next = minTime(next, d)
				continue
			}
			interval := hs.upstream.Health().ProbeInterval
			if !probing(rt, hs) {
				due[hs.name] = now.Add(interval)
				next = minTime(next, due[hs.name])
				continue
			}
			running[hs.name] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, r := range hs.upstream.Probe(ctx) {
					if !r.Skipped {
						g.metrics.probe(r.OK())
					}
				}
				select {
				case done <- probeRound{server: hs.name, next: now.Add(interval)}:
				case <-ctx.Done():
				}
			}()
		}
		for name := range due {
			if !listed[name] && !running[name] {
				delete(due, name) // a server a reload removed
			}
		}
		t.Reset(next.Sub(now))
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// readyUpstream reports the homeservers' pools. A pool is reached when
// one of its members answered (a request or a probe) within
// admin.ready_window, and a hosted server's homeserver when each of its
// pools is. With one hosted server every pool is a check that readiness
// needs: "upstream" (the default pool) and "upstream <pool>" (a route's).
// With several, one customer's homeserver going down must not take the
// others out of service: the check "upstream" passes when at least one
// hosted server's homeserver is reached, and each server's pools are
// reported beside it as "upstream <server>" and "upstream <server>
// <pool>", checks that do not decide readiness on their own (Advisory).
func (g *Gateway) readyUpstream(rt *runtime, now time.Time) []ReadyCheck {
	window := rt.cfg.Admin.ReadyWindow.D()
	if len(rt.servers) == 1 {
		checks, _ := poolChecks(rt.servers[0], "", window, now)
		return checks
	}
	summary := ReadyCheck{Name: readyUpstream}
	out := []ReadyCheck{summary}
	var down []string
	for _, hs := range rt.servers {
		checks, reached := poolChecks(hs, hs.name, window, now)
		for i := range checks {
			checks[i].Advisory = true
		}
		out = append(out, checks...)
		if !reached {
			down = append(down, hs.name)
		}
	}
	summary.OK = len(down) < len(rt.servers)
	summary.Detail = fmt.Sprintf("%d of %d hosted servers' homeservers reached", len(rt.servers)-len(down), len(rt.servers))
	if len(down) > 0 {
		summary.Detail += "; not reached: " + strings.Join(down, ", ")
	}
	out[0] = summary
	return out
}

// poolChecks is one check per pool of hs, named after server (empty with
// a single hosted server), and whether every pool was reached.
func poolChecks(hs *hostedServer, server string, window time.Duration, now time.Time) ([]ReadyCheck, bool) {
	pools := hs.upstream.Status()
	checks := make([]ReadyCheck, 0, len(pools))
	all := true
	for _, p := range pools {
		c := ReadyCheck{Name: readyCheckName(server, p.Name)}
		var parts []string
		reached := 0
		for _, m := range p.Members {
			ok, text := memberReadiness(m, now, window)
			if ok {
				reached++
			}
			parts = append(parts, text)
		}
		c.OK = reached > 0
		all = all && c.OK
		c.Detail = strings.Join(parts, "; ")
		if len(p.Members) > 1 {
			c.Detail = fmt.Sprintf("%d of %d members reached: %s", reached, len(p.Members), c.Detail)
		}
		checks = append(checks, c)
	}
	return checks, all
}

// readyCheckName is a pool's readiness check name: "upstream", then the
// hosted server's name when there are several, then the pool's name
// unless it is the default pool.
func readyCheckName(server, pool string) string {
	name := readyUpstream
	if server != "" {
		name += " " + server
	}
	if pool != upstream.DefaultPool {
		name += " " + pool
	}
	return name
}

// memberReadiness says whether a member answered within window, in words.
func memberReadiness(m upstream.MemberStatus, now time.Time, window time.Duration) (bool, string) {
	why := ""
	if m.State != upstream.Up && m.LastError != "" {
		why = " (last " + m.LastError + ")"
	}
	if m.State == upstream.Down {
		why += fmt.Sprintf(" (skipped for %s more)", m.DownUntil.Sub(now).Round(time.Millisecond))
	}
	switch {
	case m.LastOK.IsZero():
		return false, fmt.Sprintf("%s not reached yet%s", m.URL, why)
	case now.Sub(m.LastOK) > window:
		return false, fmt.Sprintf("%s not reached for %s (admin.ready_window %s)%s", m.URL, now.Sub(m.LastOK).Round(time.Second), window, why)
	}
	return true, fmt.Sprintf("%s reached %s ago%s", m.URL, now.Sub(m.LastOK).Round(time.Millisecond), why)
}

// upstreamUp reports whether every pool of one hosted server has a member
// whose last exchange or probe got an answer (fedgate_upstream_up, the
// console's "reachable"), and when any member last answered.
func upstreamUp(pools []upstream.PoolStatus) (up bool, lastSeen time.Time) {
	up = true
	for _, p := range pools {
		poolUp := false
		for _, m := range p.Members {
			poolUp = poolUp || m.State == upstream.Up
			if m.LastOK.After(lastSeen) {
				lastSeen = m.LastOK
			}
		}
		up = up && poolUp
	}
	return up, lastSeen
}

// poolDescs are the pools' metrics: labels server (the hosted server's
// name), pool (the configuration's pool names) and member (the index in
// the pool's URL list), all bounded by the configuration.
type poolDescs struct {
	info, up, lastSeen, inFlight, requests, errors, failovers, probes *prometheus.Desc
}

func newPoolDescs(d func(sub, name, help string, labels ...string) *prometheus.Desc) poolDescs {
	return poolDescs{
		info:      d("upstream", "member_info", "1 for each member of each pool of each hosted server, with its URL.", "server", "pool", "member", "url"),
		up:        d("upstream", "member_up", "1 when the member's last request or probe got an answer; 0 while it is marked down, retried, or never reached.", "server", "pool", "member"),
		lastSeen:  d("upstream", "member_last_seen_timestamp_seconds", "When the member last answered (request or probe), as a Unix time.", "server", "pool", "member"),
		inFlight:  d("upstream", "member_in_flight_requests", "Requests of the pool under way on the member (sent, response not finished).", "server", "pool", "member"),
		requests:  d("upstream", "member_requests_total", "Requests the member answered (a response head arrived).", "server", "pool", "member"),
		errors:    d("upstream", "member_errors_total", "Requests the member did not answer, by kind: not_sent (no connection), no_response (connection broken before any answer), header_timeout, bad_response.", "server", "pool", "member", "kind"),
		failovers: d("upstream", "member_failovers_total", "Requests sent to another member of the pool after this one could not take them.", "server", "pool", "member"),
		probes:    d("upstream", "member_probes_total", "Active probes of the member, by result: ok (an answer below 500) or failed.", "server", "pool", "member", "result"),
	}
}

func (p *poolDescs) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{p.info, p.up, p.lastSeen, p.inFlight, p.requests, p.errors, p.failovers, p.probes} {
		ch <- d
	}
}

// kindLabel is an error kind's label value.
func kindLabel(k upstream.Kind) string { return strings.ReplaceAll(k.String(), " ", "_") }

// collect reports every member of every pool of one hosted server, and
// the server's fedgate_upstream_up and last_seen.
func (p *poolDescs) collect(c *stateCollector, server string, pools []upstream.PoolStatus, gauge, counter func(*prometheus.Desc, float64, ...string)) {
	up, last := upstreamUp(pools)
	gauge(c.upstreamUp, b2f(up), server)
	if !last.IsZero() {
		gauge(c.upstreamLast, float64(last.UnixNano())/1e9, server)
	}
	for _, pool := range pools {
		for _, m := range pool.Members {
			idx := strconv.Itoa(m.Index)
			gauge(p.info, 1, server, pool.Name, idx, m.URL)
			gauge(p.up, b2f(m.State == upstream.Up), server, pool.Name, idx)
			if !m.LastOK.IsZero() {
				gauge(p.lastSeen, float64(m.LastOK.UnixNano())/1e9, server, pool.Name, idx)
			}
			gauge(p.inFlight, float64(m.InFlight), server, pool.Name, idx)
			counter(p.requests, float64(m.Requests), server, pool.Name, idx)
			for _, k := range []upstream.Kind{upstream.NotSent, upstream.NoResponse, upstream.HeaderTimeout, upstream.BadResponse} {
				counter(p.errors, float64(m.Errors[k]), server, pool.Name, idx, kindLabel(k))
			}
			counter(p.failovers, float64(m.Failovers), server, pool.Name, idx)
			counter(p.probes, float64(m.ProbesOK), server, pool.Name, idx, "ok")
			counter(p.probes, float64(m.ProbesFailed), server, pool.Name, idx, "failed")
		}
	}
}

// consoleUpstream is the console's homeserver section: the summary it
// always had (the top-level server's upstream URL, reachable when every
// pool has a member up) and every pool with its members. With several
// hosted servers it shows every server's pools, each naming its server,
// and how many servers' homeservers are reachable.
func (g *Gateway) consoleUpstream(rt *runtime, now time.Time) *console.Upstream {
	several := len(rt.servers) > 1
	u := &console.Upstream{Up: true}
	if several {
		u.Hosted = len(rt.servers)
	}
	for _, hs := range rt.servers {
		pools := hs.upstream.Status()
		up, last := upstreamUp(pools)
		if u.URL == "" {
			u.URL = pools[0].Members[0].URL
		}
		u.Up = u.Up && up
		if up && several {
			u.HostedUp++
		}
		u.Probing = u.Probing || probing(rt, hs)
		if last.After(u.LastSeen) {
			u.LastSeen = last.UTC()
		}
		server := ""
		if several {
			server = hs.name
		}
		routes := hs.cfg.Upstream.Routes
		for i, p := range pools {
			cp := console.UpstreamPool{Server: server, Name: p.Name, Balance: p.Balance.String(), Members: []console.UpstreamMember{}}
			if i > 0 && i-1 < len(routes) {
				cp.Endpoints = append([]string(nil), routes[i-1].Endpoints...)
			}
			poolUp := false
			for _, m := range p.Members {
				cm := console.UpstreamMember{
					URL: m.URL, State: m.State.String(), InFlight: m.InFlight, Requests: m.Requests, Failovers: m.Failovers,
				}
				if !m.LastOK.IsZero() {
					cm.LastSeen = m.LastOK.UTC()
				}
				if !m.DownUntil.IsZero() {
					cm.DownUntil = m.DownUntil.UTC()
				}
				if m.State == upstream.Up {
					poolUp = true
				} else {
					cm.LastError = clipText(m.LastError)
				}
				for _, n := range m.Errors {
					cm.Errors += n
				}
				cp.Members = append(cp.Members, cm)
			}
			if !poolUp && u.LastError == "" {
				for _, cm := range cp.Members {
					if cm.LastError != "" {
						u.LastError = cm.LastError
						if several {
							u.LastError = hs.name + ": " + u.LastError
						}
						break
					}
				}
			}
			u.Pools = append(u.Pools, cp)
		}
	}
	return u
}

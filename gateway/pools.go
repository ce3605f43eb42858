package gateway

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/fedgate/fedgate/console"
	"github.com/fedgate/fedgate/upstream"
)

// The homeserver's pools (package upstream) as the operator sees them:
// one prober for every member, which is also the readiness probe; one
// readiness check per pool; per-member metrics; the console's upstream
// section; the log lines of members going down and coming back. The
// pools themselves live in the runtime (rt.upstream, built by
// newUpstream in proxy.go); their members' health lives in g.upstreams,
// which outlives reloads.

// probeUserAgent is the User-Agent of the probes, so that homeserver
// logs (and tests) can tell them from federation traffic.
const probeUserAgent = "fedgate readiness probe"

// newUpstreamTracker builds the gateway's tracker of member health; the
// log says when a member goes down and when it answers again.
func (g *Gateway) newUpstreamTracker() *upstream.Tracker {
	return upstream.NewTracker(upstream.TrackerOptions{OnChange: func(c upstream.Change) {
		if c.Up {
			g.log.Info("homeserver reachable again", zap.String("pool", c.Pool), zap.String("upstream", c.URL))
			return
		}
		g.log.Warn("homeserver not reachable", zap.String("pool", c.Pool), zap.String("upstream", c.URL),
			zap.String("error", c.Reason), zap.Duration("skipped_for", c.DownFor))
	}})
}

// probing reports whether the members of rt are probed: when readiness
// can be asked (an admin listener) or when health decides where requests
// go (a pool of several members).
func probing(rt *runtime) bool {
	return rt.cfg.Listen.Admin != "" || rt.upstream.Redundant()
}

// runUpstreamProbe probes every member of the current runtime's pools
// every probe interval until ctx ends: the homeserver's readiness probe
// and the pools' active health check in one. Call it once, in its own
// goroutine.
func (g *Gateway) runUpstreamProbe(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rt := g.rt.Load()
		if probing(rt) {
			for _, r := range rt.upstream.Probe(ctx) {
				if !r.Skipped {
					g.metrics.probe(r.OK())
				}
			}
		}
		t.Reset(rt.upstream.Health().ProbeInterval)
	}
}

// readyUpstream is one readiness check per pool: a pool is ready when one
// of its members answered (a request or a probe) within
// admin.ready_window. The default pool's check is "upstream", a route's
// "upstream <name>".
func (g *Gateway) readyUpstream(rt *runtime, now time.Time) []ReadyCheck {
	window := rt.cfg.Admin.ReadyWindow.D()
	pools := rt.upstream.Status()
	checks := make([]ReadyCheck, 0, len(pools))
	for _, p := range pools {
		c := ReadyCheck{Name: readyCheckName(p.Name)}
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
		c.Detail = strings.Join(parts, "; ")
		if len(p.Members) > 1 {
			c.Detail = fmt.Sprintf("%d of %d members reached: %s", reached, len(p.Members), c.Detail)
		}
		checks = append(checks, c)
	}
	return checks
}

// readyCheckName is a pool's readiness check name.
func readyCheckName(pool string) string {
	if pool == upstream.DefaultPool {
		return readyUpstream
	}
	return readyUpstream + " " + pool
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

// upstreamUp reports whether every pool has a member whose last exchange
// or probe got an answer (fedgate_upstream_up, the console's "reachable"),
// and when any member last answered.
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

// poolDescs are the pools' metrics: labels pool (the configuration's pool
// names) and member (the index in the pool's URL list), both bounded by
// the configuration.
type poolDescs struct {
	info, up, lastSeen, inFlight, requests, errors, failovers, probes *prometheus.Desc
}

func newPoolDescs(d func(sub, name, help string, labels ...string) *prometheus.Desc) poolDescs {
	return poolDescs{
		info:      d("upstream", "member_info", "1 for each member of each pool, with its URL.", "pool", "member", "url"),
		up:        d("upstream", "member_up", "1 when the member's last request or probe got an answer; 0 while it is marked down, retried, or never reached.", "pool", "member"),
		lastSeen:  d("upstream", "member_last_seen_timestamp_seconds", "When the member last answered (request or probe), as a Unix time.", "pool", "member"),
		inFlight:  d("upstream", "member_in_flight_requests", "Requests of the pool under way on the member (sent, response not finished).", "pool", "member"),
		requests:  d("upstream", "member_requests_total", "Requests the member answered (a response head arrived).", "pool", "member"),
		errors:    d("upstream", "member_errors_total", "Requests the member did not answer, by kind: not_sent (no connection), no_response (connection broken before any answer), header_timeout, bad_response.", "pool", "member", "kind"),
		failovers: d("upstream", "member_failovers_total", "Requests sent to another member of the pool after this one could not take them.", "pool", "member"),
		probes:    d("upstream", "member_probes_total", "Active probes of the member, by result: ok (an answer below 500) or failed.", "pool", "member", "result"),
	}
}

func (p *poolDescs) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{p.info, p.up, p.lastSeen, p.inFlight, p.requests, p.errors, p.failovers, p.probes} {
		ch <- d
	}
}

// kindLabel is an error kind's label value.
func kindLabel(k upstream.Kind) string { return strings.ReplaceAll(k.String(), " ", "_") }

// collect reports every member of every pool of the runtime, and the
// homeserver-wide fedgate_upstream_up and last_seen.
func (p *poolDescs) collect(c *stateCollector, pools []upstream.PoolStatus, gauge, counter func(*prometheus.Desc, float64, ...string)) {
	up, last := upstreamUp(pools)
	gauge(c.upstreamUp, b2f(up))
	if !last.IsZero() {
		gauge(c.upstreamLast, float64(last.UnixNano())/1e9)
	}
	for _, pool := range pools {
		for _, m := range pool.Members {
			idx := strconv.Itoa(m.Index)
			gauge(p.info, 1, pool.Name, idx, m.URL)
			gauge(p.up, b2f(m.State == upstream.Up), pool.Name, idx)
			if !m.LastOK.IsZero() {
				gauge(p.lastSeen, float64(m.LastOK.UnixNano())/1e9, pool.Name, idx)
			}
			gauge(p.inFlight, float64(m.InFlight), pool.Name, idx)
			counter(p.requests, float64(m.Requests), pool.Name, idx)
			for _, k := range []upstream.Kind{upstream.NotSent, upstream.NoResponse, upstream.HeaderTimeout, upstream.BadResponse} {
				counter(p.errors, float64(m.Errors[k]), pool.Name, idx, kindLabel(k))
			}
			counter(p.failovers, float64(m.Failovers), pool.Name, idx)
			counter(p.probes, float64(m.ProbesOK), pool.Name, idx, "ok")
			counter(p.probes, float64(m.ProbesFailed), pool.Name, idx, "failed")
		}
	}
}

// consoleUpstream is the console's homeserver section: the summary it
// always had (the default pool's first member, reachable when every pool
// has a member up) and every pool with its members.
func (g *Gateway) consoleUpstream(rt *runtime, now time.Time) *console.Upstream {
	pools := rt.upstream.Status()
	up, last := upstreamUp(pools)
	u := &console.Upstream{
		URL:     pools[0].Members[0].URL,
		Up:      up,
		Probing: probing(rt),
	}
	if !last.IsZero() {
		u.LastSeen = last.UTC()
	}
	routes := rt.cfg.Upstream.Routes
	for i, p := range pools {
		cp := console.UpstreamPool{Name: p.Name, Balance: p.Balance.String(), Members: []console.UpstreamMember{}}
		if i > 0 && i-1 < len(routes) {
			cp.Endpoints = append([]string(nil), routes[i-1].Endpoints...)
		}
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
			if m.State != upstream.Up {
				cm.LastError = clipText(m.LastError)
				if u.LastError == "" && !up {
					u.LastError = cm.LastError
				}
			}
			for _, n := range m.Errors {
				cm.Errors += n
			}
			cp.Members = append(cp.Members, cm)
		}
		u.Pools = append(u.Pools, cp)
	}
	return u
}

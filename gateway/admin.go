package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/fedgate/fedgate/certs"
)

// The admin listener ([listen] admin) is for the operator's network only:
//
//	/               the console: a status page for people (console.go)
//	/status.json    the same as JSON, for scripts
//	/healthz        200 "ok" while the process serves at all (liveness)
//	/readyz         200 when fedgate should get traffic, 503 otherwise,
//	                one line per check (readiness)
//	/metrics        Prometheus exposition
//	/debug/pprof/   Go's profiler, unless admin.pprof = false
//
// The console and /status.json require admin.token_file's token when it
// is set; the others never ask for one. Readiness is: our signing keys loaded and the key document signed,
// certificates present and valid now, a member of every upstream pool
// reached within admin.ready_window (pools.go), no policy source failing
// closed (policysources.go, package policysource), and not shutting down. With several hosted
// servers, every server's key document must be signed, and at least one
// hosted server's homeserver reached: one customer's homeserver going down
// must not take the gateway, and every other hosted server with it, out of
// service.

// Readiness check names, as /readyz and fedgate_ready_check report them.
const (
	readyKeys         = "keys"
	readyCertificates = "certificates"
	readyUpstream     = "upstream"
	readyShutdown     = "shutdown"
)

// ReadyCheck is one part of [Gateway.Ready].
type ReadyCheck struct {
	// Name is "keys", "certificates", "upstream" (the default pool, or
	// with several hosted servers whether any homeserver is reached),
	// "upstream <pool>" (a route's pool), "upstream <server>" and
	// "upstream <server> <pool>" (with several hosted servers),
	// "shutdown", "policy_room <room>" or "federation_list" (followed by
	// " (<server>)" with several hosted servers).
	Name string
	// OK reports whether this part is ready.
	OK bool
	// Advisory marks a check that is reported but does not decide
	// readiness on its own (one hosted server's homeserver among
	// several); /readyz shows it failing as "warn", not "FAIL".
	Advisory bool
	// Detail says what was found, in one line.
	Detail string
}

// CertificateStatus is what the gateway needs of the certificate manager
// (*certs.Manager satisfies it): whether every certificate exists and is
// valid now, for /readyz, and each certificate's details, for metrics.
// Implementations must be safe for concurrent use.
type CertificateStatus interface {
	Ready() (bool, string)
	Status() []certs.CertStatus
}

// Ready reports whether fedgate should receive traffic and the state of
// each check. It is cheap (no network) and safe for concurrent use. The
// homeserver's members are probed when an admin listener is configured or
// a pool has several members (pools.go); otherwise only responses to
// forwarded requests show them reachable.
func (g *Gateway) Ready() (bool, []ReadyCheck) {
	now := time.Now()
	rt := g.rt.Load()
	checks := []ReadyCheck{g.readyKeys(rt, now), g.readyCertificates(rt)}
	checks = append(checks, g.readyUpstream(rt, now)...)
	checks = append(checks, g.readyPolicySources(now)...)
	if g.draining.Load() {
		checks = append(checks, ReadyCheck{Name: readyShutdown, Detail: "shutting down: draining in-flight requests"})
	} else {
		checks = append(checks, ReadyCheck{Name: readyShutdown, OK: true, Detail: "serving"})
	}
	ok := true
	for _, c := range checks {
		ok = ok && (c.OK || c.Advisory)
	}
	return ok, checks
}

func (g *Gateway) readyKeys(rt *runtime, now time.Time) ReadyCheck {
	c := ReadyCheck{Name: readyKeys}
	var details []string
	for _, hs := range rt.servers {
		doc, err := hs.keys.doc.get(now)
		if err != nil {
			c.Detail = "key document cannot be signed: " + err.Error()
			if len(rt.servers) > 1 {
				c.Detail = hs.name + ": " + c.Detail
			}
			return c
		}
		ids := make([]string, len(hs.keys.current))
		for i, k := range hs.keys.current {
			ids[i] = string(k.ID)
		}
		d := fmt.Sprintf("%s; key document valid until %s", strings.Join(ids, ", "), doc.validUntil.UTC().Format(time.RFC3339))
		if len(rt.servers) > 1 {
			d = hs.name + ": " + d
		}
		details = append(details, d)
	}
	c.OK = true
	c.Detail = strings.Join(details, "; ")
	return c
}

func (g *Gateway) readyCertificates(rt *runtime) ReadyCheck {
	c := ReadyCheck{Name: readyCertificates}
	l := rt.cfg.Listen
	switch {
	case len(l.Federation) == 0 && len(l.HTTPS) == 0:
		c.OK, c.Detail = true, "no TLS listener"
	case g.opts.Certificates == nil:
		c.OK, c.Detail = g.opts.TLSConfig != nil, "certificates provided by the embedding program"
	default:
		c.OK, c.Detail = g.opts.Certificates.Ready()
	}
	return c
}

// adminHandler serves the admin listener.
func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", g.serveReady)
	mux.Handle("GET /{$}", g.console.Page())
	mux.Handle("GET /status.json", g.console.JSON())
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.registry(), promhttp.HandlerOpts{
		ErrorLog:            promLogger{g.log.Named("metrics")},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	profiles := map[string]http.HandlerFunc{
		"/debug/pprof/":        pprof.Index,
		"/debug/pprof/cmdline": pprof.Cmdline,
		"/debug/pprof/profile": pprof.Profile,
		"/debug/pprof/symbol":  pprof.Symbol,
		"/debug/pprof/trace":   pprof.Trace,
	}
	for path, h := range profiles {
		mux.Handle(path, g.pprofGate(h))
	}
	return mux
}

// pprofGate serves h only while admin.pprof is on (a reload may turn it
// off).
func (g *Gateway) pprofGate(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.rt.Load().cfg.Admin.Pprof {
			http.Error(w, "pprof is disabled (admin.pprof = false)", http.StatusNotFound)
			return
		}
		h(w, r)
	})
}

// serveReady answers /readyz: 200 or 503, one "ok NAME: detail",
// "FAIL NAME: detail" or (an advisory check failing) "warn NAME: detail"
// line per check.
func (g *Gateway) serveReady(w http.ResponseWriter, r *http.Request) {
	ok, checks := g.Ready()
	var b strings.Builder
	for _, c := range checks {
		state := "ok  "
		switch {
		case !c.OK && c.Advisory:
			state = "warn"
		case !c.OK:
			state = "FAIL"
		}
		fmt.Fprintf(&b, "%s %s: %s\n", state, c.Name, c.Detail)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	io.WriteString(w, b.String())
}

// promLogger passes promhttp's errors to zap.
type promLogger struct{ log *zap.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Warn("serving metrics", zap.String("error", fmt.Sprint(v...)))
}

// probeInterval is how often the homeserver's members are probed when
// upstream.probe_interval is unset: three times per ready_window, between
// 200 ms and 10 s.
func probeInterval(window time.Duration) time.Duration {
	return min(max(window/3, 200*time.Millisecond), 10*time.Second)
}

// warnPublicAdmin warns when the admin listener binds an address other
// than loopback while it serves pprof, or the console without a token.
func (g *Gateway) warnPublicAdmin(addr net.Addr) {
	rt := g.rt.Load()
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil || ap.Addr().IsLoopback() {
		return
	}
	if rt.cfg.Admin.Pprof {
		g.log.Warn("the admin listener serves /debug/pprof/ and /metrics without authentication on a non-loopback address; "+
			"keep it off the internet (firewall) or set admin.pprof = false", zap.Stringer("addr", addr))
	}
	if rt.adminToken == nil {
		g.log.Warn("the admin listener serves the console (/ and /status.json) without authentication on a non-loopback address; "+
			"keep it off the internet (firewall) or set admin.token_file", zap.Stringer("addr", addr))
	}
}

var _ CertificateStatus = (*certs.Manager)(nil)

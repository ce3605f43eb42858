package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// stateCollector reports, at scrape time, values fedgate keeps anyway:
// readiness, when the homeserver last answered, certificate validity, our
// key document, the keyring's size, the policy engine's counters and the
// list file. A scrape takes a few locks; requests pay nothing for these.
type stateCollector struct {
	g *Gateway

	ready, readyCheck                    *prometheus.Desc
	upstreamUp, upstreamLast             *prometheus.Desc
	certExpiry, certStart, certPending   *prometheus.Desc
	keyDocValid, signingKeys, oldKeys    *prometheus.Desc
	keyringServers                       *prometheus.Desc
	policyDenials, limiterKeys           *prometheus.Desc
	listVersion, listStale, listModified *prometheus.Desc
	listEntries, listLoads, listFailures *prometheus.Desc
	decisionLogErrors, hashing           *prometheus.Desc
	configReloads, lastReloadOK          *prometheus.Desc
	egressBackoff                        *prometheus.Desc
	sources                              policySourceDescs
	pools                                poolDescs
}

func newStateCollector(g *Gateway) *stateCollector {
	d := func(sub, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("fedgate", sub, name), help, labels, nil)
	}
	sc := &stateCollector{
		g:              g,
		ready:          d("", "ready", "1 when /readyz answers 200: keys loaded, certificates valid, a member of every upstream pool reached within admin.ready_window (with several hosted servers: of one hosted server at least), not shutting down."),
		readyCheck:     d("", "ready_check", "1 when the named readiness check passes.", "check"),
		upstreamUp:     d("upstream", "up", "1 when every upstream pool of the hosted server has a member whose last request or probe got an answer.", "server"),
		upstreamLast:   d("upstream", "last_seen_timestamp_seconds", "When the hosted server's homeserver (any member) last answered (probe or forwarded request), as a Unix time.", "server"),
		certExpiry:     d("certs", "not_after_timestamp_seconds", "When the served certificate expires, as a Unix time.", "name", "source"),
		certStart:      d("certs", "not_before_timestamp_seconds", "When the served certificate became valid, as a Unix time.", "name", "source"),
		certPending:    d("certs", "pending", "1 while no certificate exists yet for the name (ACME order in progress or failing).", "name", "source"),
		keyDocValid:    d("keys", "document_valid_until_timestamp_seconds", "valid_until_ts of the key document fedgate serves for the hosted server, as a Unix time; it is signed again an hour before.", "server"),
		signingKeys:    d("keys", "signing_keys", "Current signing keys of the hosted server, published in verify_keys.", "key_id", "server"),
		oldKeys:        d("keys", "old_verify_keys", "Retired keys of the hosted server, published in old_verify_keys.", "server"),
		keyringServers: d("keyring", "servers", "Remote servers whose keys the keyring holds."),
		policyDenials: d("policy", "denials_total", "Policy decisions that denied, by reason code and hosted server; mode is enforced, or dry_run for denials policy.dry_run let through.",
			"reason", "mode", "server"),
		limiterKeys:       d("policy", "limiter_keys", "Keys (addresses, origins, destinations) each rate limiter of a hosted server remembers.", "limiter", "server"),
		listVersion:       d("policy", "list_version", "version of the policy list file a hosted server uses.", "server"),
		listStale:         d("policy", "list_stale", "1 when the list file is older than policy.list_max_age: federation of the hosted server fails closed.", "server"),
		listModified:      d("policy", "list_modified_timestamp_seconds", "Modification time of the list file in use, as a Unix time.", "server"),
		listEntries:       d("policy", "list_entries", "Entries in the list file in use.", "list", "server"),
		listLoads:         d("policy", "list_loads_total", "Times the list file was read successfully.", "server"),
		listFailures:      d("policy", "list_failures_total", "Times a list file was refused (bad content, older version).", "server"),
		decisionLogErrors: d("log", "decision_log_errors_total", "Decision log lines that could not be written."),
		hashing:           d("log", "server_names_hashed", "1 when server names in logs are replaced by keyed hashes (log.hash_server_names)."),
		configReloads:     d("config", "reloads_total", "Configuration reloads (SIGHUP or a changed file), by result: ok, or failed (the running configuration stayed).", "result"),
		lastReloadOK:      d("config", "last_reload_successful", "1 unless the last reload was refused."),
		egressBackoff: d("egress", "backoff_destinations",
			"Egress destinations backed off now, by kind: failing (connection failures, 5xx) or rate_limited (they answered 429).", "kind"),
	}
	sc.sources = newPolicySourceDescs(d)
	sc.pools = newPoolDescs(d)
	return sc
}

// Describe sends every descriptor.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ready, c.readyCheck, c.upstreamUp, c.upstreamLast, c.certExpiry, c.certStart,
		c.certPending, c.keyDocValid, c.signingKeys, c.oldKeys, c.keyringServers, c.policyDenials, c.limiterKeys,
		c.listVersion, c.listStale, c.listModified, c.listEntries, c.listLoads, c.listFailures,
		c.decisionLogErrors, c.hashing, c.configReloads, c.lastReloadOK, c.egressBackoff} {
		ch <- d
	}
	c.sources.describe(ch)
	c.pools.describe(ch)
}

// Collect reads the current values.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	rt := g.rt.Load()
	if rt == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	unix := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

	ok, checks := g.Ready()
	gauge(c.ready, b2f(ok))
	for _, ck := range checks {
		gauge(c.readyCheck, b2f(ck.OK), ck.Name)
	}
	for _, hs := range rt.servers {
		c.pools.collect(c, hs.name, hs.upstream.Status(), gauge, counter)
	}

	if g.opts.Certificates != nil {
		for _, s := range g.opts.Certificates.Status() {
			gauge(c.certPending, b2f(s.Pending), s.Name, s.Source)
			if !s.NotAfter.IsZero() {
				gauge(c.certExpiry, unix(s.NotAfter), s.Name, s.Source)
				gauge(c.certStart, unix(s.NotBefore), s.Name, s.Source)
			}
		}
	}

	for _, hs := range rt.servers {
		name := hs.name
		if doc := hs.keys.doc.current.Load(); doc != nil {
			gauge(c.keyDocValid, unix(doc.validUntil), name)
		}
		for _, k := range hs.keys.current {
			gauge(c.signingKeys, 1, string(k.ID), name)
		}
		gauge(c.oldKeys, float64(len(hs.keys.old)), name)
	}
	if g.keyring != nil {
		gauge(c.keyringServers, float64(g.keyring.Len()))
	}

	for _, hs := range rt.servers {
		name := hs.name
		st := hs.policy().Stats()
		for reason, n := range st.Denied {
			counter(c.policyDenials, float64(n), reason, "enforced", name)
		}
		for reason, n := range st.DryRun {
			counter(c.policyDenials, float64(n), reason, "dry_run", name)
		}
		for limiter, n := range st.LimiterKeys {
			gauge(c.limiterKeys, float64(n), limiter, name)
		}
		if l := st.List; l.File != "" {
			gauge(c.listVersion, float64(l.Version), name)
			gauge(c.listStale, b2f(l.Stale), name)
			gauge(c.listModified, unix(l.Modified), name)
			gauge(c.listEntries, float64(l.Allow), "allow", name)
			gauge(c.listEntries, float64(l.Deny), "deny", name)
			counter(c.listLoads, float64(l.Loads), name)
			counter(c.listFailures, float64(l.Failures), name)
		}
	}
	c.sources.collect(c, g, gauge, counter)

	if g.egress != nil && rt.cfg.Listen.Egress != "" {
		failing, limited := g.egress.backoff.countActive(g.egress.now())
		gauge(c.egressBackoff, float64(failing), backoffFailing.String())
		gauge(c.egressBackoff, float64(limited), backoffRateLimited.String())
	}

	counter(c.decisionLogErrors, float64(g.decisionErrors.Load()))
	gauge(c.hashing, b2f(rt.names.enabled()))
	counter(c.configReloads, float64(g.reloadsOK.Load()), "ok")
	counter(c.configReloads, float64(g.reloadsFailed.Load()), "failed")
	gauge(c.lastReloadOK, b2f(!g.lastReloadFailed.Load()))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// statusLabelOf is the status label a code is counted under (for tests
// and documentation).
func (m *metrics) statusLabelOf(code int) string {
	if code >= 0 && code < len(m.statusSlot) && m.statusSlot[code] != 255 {
		return m.statusLabel[m.statusSlot[code]]
	}
	if code >= 100 && code < 600 {
		return strconv.Itoa(code/100) + "xx"
	}
	return labelOther
}

var _ prometheus.Collector = (*stateCollector)(nil)

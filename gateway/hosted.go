package gateway

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/hosting"
	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/policysource"
	"github.com/fedgate/fedgate/upstream"
)

// Hosted servers: the top-level configuration is the first and every
// [[servers]] entry adds one (config.Config.Hosted). A runtime holds one
// hostedServer per hosted server, in hosting order, and the hosting.Table
// that finds them by name, Host and SNI; a request looks its server up
// once and reads everything per server (keys, upstream, policy, egress
// secret) from it. What must outlive a reload (the policy engine with its
// limiter state, the metric series) is a hostedState the Gateway keeps per
// server name; the health of its homeserver's members is in the Gateway's
// upstream Tracker, under the same name (pools.go).

// hostedServer is the runtime of one hosted server, built on every
// (re)load and never modified.
type hostedServer struct {
	cfg      *config.Config // its configuration: per-server sections in place
	name     string         // server name as configured
	keys     *signingKeys
	upstream *upstream.Set   // its homeserver's pools: a default pool and its routes
	egress   *egressSettings // its homeserver's egress secret
	state    *hostedState    // long-lived, by name
}

// policy returns the server's policy engine.
func (hs *hostedServer) policy() *policy.Engine { return hs.state.engine }

// hostedState is what the Gateway keeps of a hosted server across reloads,
// by server name as configured: the policy engine (limiter buckets survive a
// reload) and the metric series.
type hostedState struct {
	name   string
	engine *policy.Engine
	opts   policy.Options // the options engine last compiled
	// sources feed engine from the server's policy rooms and signed list.
	sources *policysource.Set
	series  *serverSeries

	stop context.CancelFunc // ends engine.Run; nil until started
	done chan struct{}      // closed when engine.Run returned
}

// hostedStates holds the Gateway's hostedState values. Reloads change it;
// requests never read it (they reach the states through the runtime).
type hostedStates struct {
	mu      sync.Mutex
	byName  map[string]*hostedState
	started bool // Gateway.Start ran: new states start their engine at once
}

// buildHosted compiles every hosted server's keys, upstream and egress
// secret, and checks what must differ between them (signing keys, egress
// secrets). It has no side effects; on error nothing built is kept.
func (g *Gateway) buildHosted(c *config.Config) ([]*hostedServer, *hosting.Table, error) {
	hosted := c.Hosted()
	servers := make([]*hostedServer, 0, len(hosted))
	fail := func(err error) ([]*hostedServer, *hosting.Table, error) {
		closeUpstreams(servers)
		return nil, nil, err
	}
	pubs := map[string]string{}
	secrets := map[[sha256.Size]byte]string{}
	for _, hc := range hosted {
		keys, err := loadSigningKeys(hc)
		if err != nil {
			return fail(err)
		}
		for _, k := range keys.current {
			pub := string(k.Public())
			if other, dup := pubs[pub]; dup {
				return fail(hc.Errorf("keys.signing_key", "key %s is also a signing key of %s: every hosted server signs with its own key", k.ID, other))
			}
			pubs[pub] = hc.ServerName
		}
		eg, err := newEgressSettings(hc)
		if err != nil {
			return fail(err)
		}
		if eg.hasSecret {
			if other, dup := secrets[eg.secretSum]; dup {
				return fail(hc.Errorf(secretKey(hc), "the same secret as the egress secret of %s: a secret names the one server its homeserver may send as", other))
			}
			secrets[eg.secretSum] = hc.ServerName
		}
		up, err := newUpstream(hc, "upstream", hc.Upstream, g.upstreams)
		if err != nil {
			return fail(err)
		}
		servers = append(servers, &hostedServer{cfg: hc, name: hc.ServerName, keys: keys, upstream: up, egress: eg})
	}
	return servers, hosting.New(hosted), nil
}

// secretKey names the key an egress secret came from.
func secretKey(c *config.Config) string {
	if c.Egress.SecretFile != "" {
		return "egress.secret_file"
	}
	return "egress.secret"
}

// closeUpstreams retires the pools of servers (after a reload replaced
// their runtime): idle connections close now, busy ones when their request
// ends; members' health stays with the gateway's tracker while a newer
// runtime lists them.
func closeUpstreams(servers []*hostedServer) {
	for _, hs := range servers {
		hs.upstream.Close()
	}
}

// policyChange is a prepared change of the policy engines: applied with
// commit, undone with rollback.
type policyChange struct {
	states  map[string]*hostedState             // every hosted server's state after the change, by name
	added   []*hostedState                      // new states (their engines are not running)
	updated []*hostedState                      // existing states whose engine got new options
	prev    []policy.Options                    // the options updated engines had before
	removed []*hostedState                      // states of servers no longer hosted
	plans   map[*hostedState]*policysource.Plan // each state's policy sources after the change
}

// preparePolicies brings every hosted server's policy engine to the
// configuration in servers: existing engines (found by name) are updated
// in place, keeping their limiter state; new servers get a new engine. On
// error, engines already updated are restored and nothing changes.
func (g *Gateway) preparePolicies(servers []*hostedServer) (*policyChange, error) {
	g.hosted.mu.Lock()
	defer g.hosted.mu.Unlock()
	ch := &policyChange{states: make(map[string]*hostedState, len(servers)), plans: make(map[*hostedState]*policysource.Plan, len(servers))}
	for _, hs := range servers {
		key := hs.name
		opts := policyOptions(hs.cfg, g.log)
		if st, ok := g.hosted.byName[key]; ok {
			if err := st.engine.Update(opts); err != nil {
				ch.rollback()
				return nil, hs.cfg.Errorf("policy", "%v", err)
			}
			ch.updated = append(ch.updated, st)
			ch.prev = append(ch.prev, st.opts)
			st.opts = opts
			ch.states[key] = st
			plan, err := st.sources.Prepare(hs.cfg)
			if err != nil {
				ch.rollback()
				return nil, err
			}
			ch.plans[st] = plan
			continue
		}
		popts := opts
		popts.Logger = g.slog("policy").With("server", hs.name)
		popts.Shared = g.sharedLimiter(hs.name) // cluster mode: buckets in Redis, namespaced by server
		e, err := policy.New(popts)
		if err != nil {
			ch.rollback()
			return nil, hs.cfg.Errorf("policy", "%v", err)
		}
		st := &hostedState{name: hs.name, engine: e, opts: opts, series: g.metrics.newServerSeries(hs.name)}
		st.sources = policysource.New(e, g.slog("policysource").With("server", hs.name), g.fetchList)
		if ch.plans[st], err = st.sources.Prepare(hs.cfg); err != nil {
			ch.rollback()
			return nil, err
		}
		ch.added = append(ch.added, st)
		ch.states[key] = st
	}
	for key, st := range g.hosted.byName {
		if _, kept := ch.states[key]; !kept {
			ch.removed = append(ch.removed, st)
		}
	}
	for _, hs := range servers {
		hs.state = ch.states[hs.name]
	}
	return ch, nil
}

// rollback restores the engines a failed or abandoned change updated.
// Called with g.hosted.mu held, or after commit was not called.
func (ch *policyChange) rollback() {
	for i, st := range ch.updated {
		st.engine.Update(ch.prev[i]) // compiled before, so it compiles again
		st.opts = ch.prev[i]
	}
	ch.updated = nil
}

// commit installs the states of a prepared change: new engines start
// running, those of removed servers stop (requests in flight keep using
// them: an engine is data, Run only polls and sweeps) and their metric
// series are dropped.
func (g *Gateway) commitPolicies(ch *policyChange) {
	g.hosted.mu.Lock()
	defer g.hosted.mu.Unlock()
	g.hosted.byName = ch.states
	for st, plan := range ch.plans {
		st.sources.Apply(plan)
	}
	if g.hosted.started {
		for _, st := range ch.added {
			g.runState(st)
		}
	}
	for _, st := range ch.removed {
		if st.stop != nil {
			st.stop()
		}
		st.sources.Stop()
		g.metrics.dropServerSeries(st.name)
	}
}

// runState starts st's engine in the background until the Gateway shuts
// down or the server is removed. Called with g.hosted.mu held.
func (g *Gateway) runState(st *hostedState) {
	ctx, cancel := context.WithCancel(g.bg)
	st.stop, st.done = cancel, make(chan struct{})
	g.bgWG.Add(1)
	go func() {
		defer g.bgWG.Done()
		defer close(st.done)
		st.engine.Run(ctx)
	}()
	st.sources.Start(ctx)
}

// stopPolicySources ends every hosted server's policy sources and waits
// for them (Gateway.Shutdown); their rules stay in the engines.
func (g *Gateway) stopPolicySources() {
	g.hosted.mu.Lock()
	defer g.hosted.mu.Unlock()
	for _, st := range g.hosted.byName {
		st.sources.Stop()
	}
}

// startPolicies starts every engine's background work (Gateway.Start).
func (g *Gateway) startPolicies() {
	g.hosted.mu.Lock()
	defer g.hosted.mu.Unlock()
	g.hosted.started = true
	for _, st := range g.hosted.byName {
		g.runState(st)
	}
}

// serverFor returns the hosted server a request was sent to by its Host
// header and TLS server name, and that position (hosting.None,
// hosting.Ambiguous or an index) and whether the two disagree. A request
// that names no single hosted server is handled as the top-level server
// until its X-Matrix destination says otherwise.
func (rt *runtime) serverFor(r *http.Request) (hs *hostedServer, sent int, conflict bool) {
	sni := ""
	if r.TLS != nil {
		sni = r.TLS.ServerName
	}
	sent, conflict = rt.hosted.Sent(r.Host, sni)
	if sent >= 0 {
		return rt.servers[sent], sent, conflict
	}
	return rt.servers[0], sent, conflict
}

// hostedIndex returns the position of the hosted server named name
// exactly (letter case included), or hosting.None.
func (rt *runtime) hostedIndex(name string) int {
	if i := rt.hosted.Lookup(name); i >= 0 && rt.servers[i].name == name {
		return i
	}
	return hosting.None
}

// hostedByName returns the hosted server named name exactly (letter case
// included), or nil.
func (rt *runtime) hostedByName(name string) *hostedServer {
	if i := rt.hostedIndex(name); i >= 0 {
		return rt.servers[i]
	}
	return nil
}

// egressSender returns the hosted server whose egress secret presented is,
// or nil. Secrets are compared through their SHA-256, so the lookup's
// timing depends on a digest that tells nothing about the secret, never on
// the secret's bytes or length.
func (rt *runtime) egressSender(presented string) *hostedServer {
	if len(rt.secrets) == 0 {
		return nil
	}
	return rt.secrets[sha256.Sum256([]byte(presented))]
}

// primary is the top-level server.
func (rt *runtime) primary() *hostedServer { return rt.servers[0] }

// serverSeries are the per-hosted-server request counters:
// fedgate_gateway_server_requests_total by direction and decision.
type serverSeries [2][numDecisions]prometheus.Counter

// newServerSeries creates the series of hosted server name.
func (m *metrics) newServerSeries(name string) *serverSeries {
	var s serverSeries
	for d, dir := range []string{directionInbound, directionEgress} {
		for dec := range numDecisions {
			s[d][dec] = m.serverRequests.WithLabelValues(name, dir, decisionName(dec))
		}
	}
	return &s
}

// dropServerSeries removes the series of a server no longer hosted.
func (m *metrics) dropServerSeries(name string) {
	m.serverRequests.DeletePartialMatch(prometheus.Labels{"server": name})
}

// errAmbiguousHost refuses an endpoint fedgate answers itself (key
// document, notary, well-known) when the request names a host several
// hosted servers are delegated to: which server's answer it wants cannot
// be told.
func errAmbiguousHost(host string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidParam, Reason: "bad_request",
		Msg: fmt.Sprintf("Several servers are hosted behind %s: send the server name as the Host header", quoteShort(host))}
}

// localDelivery marks a request the egress hands to the inbound pipeline
// in-process, from one hosted server to another: it never crossed a
// network, so peer network rules and the per-IP limit do not apply. Only
// the egress sets it; nothing from the network can.
type localDelivery struct{}

// isLocalDelivery reports whether r came from the egress in-process.
func isLocalDelivery(r *http.Request) bool {
	v, _ := r.Context().Value(localDelivery{}).(bool)
	return v
}

// checkEgressSecrets applies what newEgressSettings checks for one
// server to the hosted servers together: intercepting without
// require_signature authenticates tunnels by their Basic password alone,
// so some hosted server must have a secret (the password names the server
// its requests are signed as).
func checkEgressSecrets(c *config.Config, servers []*hostedServer) error {
	if len(servers) < 2 || c.Listen.Egress == "" || c.Egress.Connect != config.ConnectIntercept || c.Egress.RequireSignature {
		return nil
	}
	for _, hs := range servers {
		if hs.egress.hasSecret {
			return nil
		}
	}
	return c.Errorf("egress.require_signature", "false with connect = \"intercept\" needs an egress secret for each hosted server whose homeserver uses the egress: without one anything that can reach listen.egress gets requests signed as a hosted server")
}

// logHostedChanges says which servers a reload added and removed.
func (g *Gateway) logHostedChanges(ch *policyChange) {
	for _, st := range ch.added {
		g.log.Info("hosted server added", zap.String("server", st.name))
	}
	for _, st := range ch.removed {
		g.log.Info("hosted server removed", zap.String("server", st.name))
	}
}

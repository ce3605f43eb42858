package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/console"
	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/hosting"
	"github.com/fedgate/fedgate/internal/endpoints"
	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/policysource"
	"github.com/fedgate/fedgate/upstream"
)

// Listener kinds, as named in [listen].
const (
	ListenerFederation = "federation"
	ListenerHTTPS      = "https"
	ListenerHTTP       = "http"
	ListenerEgress     = "egress"
	ListenerAdmin      = "admin"
)

// Options are what a Gateway is built from.
type Options struct {
	// Config is the validated configuration (required).
	Config *config.Config
	// Logger is the process logger; nil discards logs.
	Logger *zap.Logger
	// TLSConfig serves the TLS listeners (required when any is configured).
	TLSConfig *tls.Config
	// WrapHTTP wraps the plain-HTTP listener's handler, e.g. to answer ACME
	// HTTP-01 challenges; nil leaves it unwrapped.
	WrapHTTP func(http.Handler) http.Handler
	// Certificates reports on the certificates TLSConfig serves, for
	// /readyz and the certificate metrics (a *certs.Manager); nil means
	// readiness only checks that TLSConfig is set.
	Certificates CertificateStatus
	// Version is reported in fedgate_build_info; "" reports "unknown".
	Version string
	// Cluster, when set, shares rate limits, the keyring, the egress
	// backoff and metrics with the other instances through Redis (the
	// caller runs and closes it). Nil keeps all state in this process.
	Cluster *cluster.Client
}

// Gateway serves fedgate's listeners. Create it with [New], then [Gateway.Start];
// stop it with [Gateway.Shutdown].
type Gateway struct {
	log    *zap.Logger
	access *zap.Logger
	opts   Options
	router *endpoints.Router
	stages []stage
	ids    *requestIDs
	// buffers lends request bodies and their canonical form to inbound
	// requests; inbounds recycles their per-request state and fieldBufs
	// their access log fields.
	buffers   bodyBuffers
	inbounds  sync.Pool // *inbound
	fieldBufs sync.Pool // *[]zap.Field
	rt        atomic.Pointer[runtime]
	// hosted keeps each hosted server's long-lived state (policy engine
	// and limiters, homeserver reachability) across reloads, by name.
	hosted hostedStates

	// keyring caches remote servers' keys; long-lived, its cache is worth
	// keeping across reloads.
	keyring *auth.Keyring
	// fedClient reaches remote servers (key fetches, egress); replaced when
	// a reload changes [outbound].
	fedClient atomic.Pointer[discovery.Client]

	// egress captures the homeserver's outbound federation; its CA,
	// backoff table and tunnels outlive reloads.
	egress *egress

	// bg scopes background work (list polling, key refresh); Shutdown ends it.
	bg     context.Context
	stopBg context.CancelFunc
	bgWG   sync.WaitGroup

	mu      sync.Mutex
	servers []*server
	serveWG sync.WaitGroup

	// upstreams holds the health of the homeserver's members (pools.go);
	// long-lived, so that a reload keeps what it knows of unchanged ones.
	upstreams *upstream.Tracker
	// probeWake tells the prober a reload happened, so that a hosted
	// server it added is probed at once (pools.go).
	probeWake chan struct{}

	// Operations: metrics, readiness, decision log, reload outcomes.
	metrics          *metrics
	draining         atomic.Bool     // Shutdown has begun
	verifiedStages   map[string]bool // stages that run after the signature check
	decisions        atomic.Pointer[decisionLog]
	decisionsMu      sync.Mutex // serialises changes to decisions
	decisionErrors   atomic.Uint64
	reloadsOK        atomic.Uint64
	reloadsFailed    atomic.Uint64
	lastReloadFailed atomic.Bool

	// The console: recent traffic, fed by every request's finish, and the
	// handlers of / and /status.json (console.go).
	traffic *console.Recorder
	console *console.Console
	version string
	started time.Time
}

// runtime is everything a request reads from configuration, built once per
// (re)load and never modified.
type runtime struct {
	cfg         *config.Config // the top-level configuration: global settings
	hosted      *hosting.Table // finds hosted servers by name, Host and SNI
	servers     []*hostedServer
	secrets     map[[sha256.Size]byte]*hostedServer // egress secrets (their SHA-256) -> hosted server
	passthrough func(path string) *endpoints.Endpoint
	names       *nameHasher    // log.hash_server_names; nil shows names as they are
	adminToken  *console.Token // admin.token_file; nil lets every console request in
}

// server is one bound listener.
type server struct {
	kind string
	addr string
	ln   net.Listener
	srv  *http.Server
	tls  bool
}

// New builds a Gateway; it binds nothing yet.
func New(opts Options) (*Gateway, error) {
	if opts.Config == nil {
		return nil, errors.New("gateway: no configuration")
	}
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	g := &Gateway{
		log:    logger.Named("gateway"),
		access: logger.Named("access"),
		opts:   opts,
		router: endpoints.NewRouter(),
		stages: inboundStages(),
		ids:    newRequestIDs(),
	}
	version := opts.Version
	if version == "" {
		version = "unknown"
	}
	g.version, g.started = version, time.Now()
	g.metrics = newMetrics(newStateCollector(g), version)
	g.traffic = console.NewRecorder(console.RecorderOptions{})
	g.verifiedStages = stagesAfter(g.stages, "signature")
	g.upstreams = g.newUpstreamTracker()
	g.probeWake = make(chan struct{}, 1)
	rt, err := g.build(opts.Config)
	if err != nil {
		return nil, err
	}
	if rt.names, err = newNameHasher(opts.Config.Log.HashServerNames, opts.Config.Log.HashKeyFile, true); err != nil {
		return nil, opts.Config.Errorf("log.hash_key_file", "%v", err)
	}
	g.bg, g.stopBg = context.WithCancel(context.Background())
	ch, err := g.preparePolicies(rt.servers)
	if err != nil {
		closeUpstreams(rt.servers)
		return nil, err
	}
	g.commitPolicies(ch)
	// Published now so that what the packages below log while starting is
	// already subject to name hashing.
	g.rt.Store(rt)
	client, err := g.newClient(opts.Config)
	if err != nil {
		return nil, err
	}
	g.fedClient.Store(client)
	if g.keyring, err = g.newKeyring(opts.Config); err != nil {
		return nil, err
	}
	g.metrics.setPeers(opts.Config.Admin.Peers)
	dl, keep, err := g.prepareDecisionLog(opts.Config)
	if err != nil {
		g.keyring.Close()
		return nil, err
	}
	g.commitDecisionLog(dl, keep)
	if g.console, err = g.newConsole(); err != nil {
		g.keyring.Close()
		g.closeDecisionLog()
		return nil, err
	}
	g.egress = newEgress(g, opts.Config)
	g.wireCluster()
	if err := g.egress.start(opts.Config); err != nil {
		g.keyring.Close()
		g.closeDecisionLog()
		return nil, err
	}
	return g, nil
}

// build compiles a configuration into a runtime without side effects:
// every hosted server's keys, upstream and egress secret (its policy engine
// is attached by preparePolicies).
func (g *Gateway) build(c *config.Config) (*runtime, error) {
	servers, table, err := g.buildHosted(c)
	if err != nil {
		return nil, err
	}
	if err := checkEgressSecrets(c, servers); err != nil {
		closeUpstreams(servers)
		return nil, err
	}
	token, err := loadAdminToken(c)
	if err != nil {
		closeUpstreams(servers)
		return nil, err
	}
	rt := &runtime{cfg: c, hosted: table, servers: servers, secrets: map[[sha256.Size]byte]*hostedServer{}, passthrough: passthroughMatcher(c.Inbound.Passthrough), adminToken: token}
	for _, hs := range servers {
		if hs.egress.hasSecret {
			rt.secrets[hs.egress.secretSum] = hs
		}
	}
	return rt, nil
}

// Reload builds a runtime from c and publishes it; on error the running
// configuration stays. Listener addresses cannot change without a restart.
// A file decision log is reopened (for log rotation). Outcomes are counted
// in fedgate_config_reloads_total.
func (g *Gateway) Reload(c *config.Config) error {
	if err := g.reload(c); err != nil {
		g.ReloadFailed()
		return err
	}
	g.reloadsOK.Add(1)
	g.lastReloadFailed.Store(false)
	return nil
}

// ReloadFailed counts a reload refused before [Gateway.Reload] could be
// called, such as a configuration file that does not load.
func (g *Gateway) ReloadFailed() {
	g.reloadsFailed.Add(1)
	g.lastReloadFailed.Store(true)
}

func (g *Gateway) reload(c *config.Config) error {
	rt, err := g.build(c)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if rt.names, err = newNameHasher(c.Log.HashServerNames, c.Log.HashKeyFile, true); err != nil {
		closeUpstreams(rt.servers)
		return fmt.Errorf("reload: %w", c.Errorf("log.hash_key_file", "%v", err))
	}
	var client *discovery.Client
	if !reflect.DeepEqual(c.Outbound, g.rt.Load().cfg.Outbound) {
		if client, err = g.newClient(c); err != nil {
			closeUpstreams(rt.servers)
			return fmt.Errorf("reload: %w", err)
		}
	}
	dl, keepLog, err := g.prepareDecisionLog(c)
	if err != nil {
		closeUpstreams(rt.servers)
		return fmt.Errorf("reload: %w", err)
	}
	ch, err := g.preparePolicies(rt.servers)
	if err != nil {
		closeUpstreams(rt.servers)
		dl.close()
		return fmt.Errorf("reload: %w", err)
	}
	g.commitDecisionLog(dl, keepLog)
	g.metrics.setPeers(c.Admin.Peers)
	if client != nil {
		g.fedClient.Swap(client).CloseIdleConnections()
	}
	g.warnRestartNeeded(c)
	g.commitPolicies(ch)
	if old := g.rt.Swap(rt); old != nil {
		// Requests in flight keep the old runtime, servers since removed
		// included; idle upstream connections are closed, busy ones
		// finish normally.
		closeUpstreams(old.servers)
	}
	g.logHostedChanges(ch)
	select {
	case g.probeWake <- struct{}{}:
	default: // a wake-up is pending already
	}
	return nil
}

// Start binds every configured listener and starts serving. If any bind
// fails, the listeners already bound are closed and the error returned.
func (g *Gateway) Start() error {
	c := g.rt.Load().cfg
	type spec struct {
		kind, addr string
		handler    http.Handler
		tls        bool
	}
	var specs []spec
	fed := g.countInFlight(0, http.HandlerFunc(g.serveFederation))
	for _, a := range c.Listen.Federation {
		specs = append(specs, spec{ListenerFederation, a, fed, true})
	}
	for _, a := range c.Listen.HTTPS {
		specs = append(specs, spec{ListenerHTTPS, a, fed, true})
	}
	if c.Listen.HTTP != "" {
		var h http.Handler = http.HandlerFunc(redirectToHTTPS)
		if g.opts.WrapHTTP != nil {
			h = g.opts.WrapHTTP(h)
		}
		specs = append(specs, spec{ListenerHTTP, c.Listen.HTTP, h, false})
	}
	if c.Listen.Egress != "" {
		specs = append(specs, spec{ListenerEgress, c.Listen.Egress, g.countInFlight(1, g.egress), false})
	}
	if c.Listen.Admin != "" {
		specs = append(specs, spec{ListenerAdmin, c.Listen.Admin, g.adminHandler(), false})
	}
	var bound []*server
	for _, s := range specs {
		if s.tls && g.opts.TLSConfig == nil {
			closeAll(bound)
			return fmt.Errorf("listen %s %s: no TLS configuration", s.kind, s.addr)
		}
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			closeAll(bound)
			return fmt.Errorf("listen %s: %w", s.kind, err)
		}
		bound = append(bound, &server{kind: s.kind, addr: s.addr, ln: ln, tls: s.tls, srv: g.httpServer(c, s.kind, s.handler, s.tls)})
	}
	g.mu.Lock()
	g.servers = append(g.servers, bound...)
	g.mu.Unlock()
	for _, s := range bound {
		if s.kind == ListenerAdmin {
			g.warnPublicAdmin(s.ln.Addr())
		}
		g.serveWG.Add(1)
		go g.serve(s)
	}
	// The prober decides per round which hosted servers' members need
	// probing (pools.go): a reload may turn several members on or off.
	g.bgWG.Go(func() { g.runUpstreamProbe(g.bg) })
	g.startPolicies()
	g.bgWG.Go(func() { g.keyring.Run(g.bg) })
	g.startCluster()
	return nil
}

func closeAll(servers []*server) {
	for _, s := range servers {
		s.ln.Close()
	}
}

func (g *Gateway) httpServer(c *config.Config, kind string, h http.Handler, useTLS bool) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.Server.ReadHeaderTimeout.D(),
		ReadTimeout:       c.Server.ReadTimeout.D(),
		WriteTimeout:      c.Server.WriteTimeout.D(),
		IdleTimeout:       c.Server.IdleTimeout.D(),
		MaxHeaderBytes:    int(c.Server.MaxHeaderBytes),
		ErrorLog:          log.New(&zapWriter{log: g.log.With(zap.String("listener", kind))}, "", 0),
	}
	if useTLS {
		srv.TLSConfig = g.opts.TLSConfig.Clone()
	}
	return srv
}

// serve runs one listener until Shutdown.
func (g *Gateway) serve(s *server) {
	defer g.serveWG.Done()
	g.log.Info("listening", zap.String("listener", s.kind), zap.String("addr", s.ln.Addr().String()), zap.Bool("tls", s.tls))
	var err error
	if s.tls {
		err = s.srv.ServeTLS(s.ln, "", "")
	} else {
		err = s.srv.Serve(s.ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		g.log.Error("listener stopped", zap.String("listener", s.kind), zap.Error(err))
	}
}

// Addrs returns the bound addresses of listeners of the given kind, in
// configuration order (useful when the configuration asked for port 0).
func (g *Gateway) Addrs(kind string) []net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []net.Addr
	for _, s := range g.servers {
		if s.kind == kind {
			out = append(out, s.ln.Addr())
		}
	}
	return out
}

// Shutdown stops accepting connections and waits for in-flight requests
// until ctx ends; then it closes what is left. It returns ctx's error if
// requests were cut off. /readyz answers 503 from the start, and the admin
// listener stops last, so that readiness and metrics stay visible while the
// other listeners drain.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.draining.Store(true)
	g.mu.Lock()
	servers := g.servers
	g.servers = nil
	g.mu.Unlock()
	var admin, traffic []*server
	for _, s := range servers {
		if s.kind == ListenerAdmin {
			admin = append(admin, s)
		} else {
			traffic = append(traffic, s)
		}
	}
	errs := shutdownAll(ctx, traffic)
	// Intercepted tunnels finish their requests in flight; passthrough
	// tunnels are cut.
	if err := g.egress.shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, shutdownAll(ctx, admin)...)
	g.serveWG.Wait()
	g.stopBg()
	g.bgWG.Wait()
	g.stopPolicySources()
	if err := g.keyring.Close(); err != nil {
		errs = append(errs, fmt.Errorf("keyring: %w", err))
	}
	g.client().CloseIdleConnections()
	g.closeDecisionLog()
	return errors.Join(errs...)
}

// shutdownAll shuts servers down in parallel and returns their errors.
func shutdownAll(ctx context.Context, servers []*server) []error {
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.srv.Shutdown(ctx); err != nil {
				s.srv.Close()
				errs[i] = fmt.Errorf("%s %s: %w", s.kind, s.addr, err)
			}
		}()
	}
	wg.Wait()
	return errs
}

// redirectToHTTPS answers plain-HTTP requests with a redirect to https.
func redirectToHTTPS(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	if host == "" {
		writeError(w, &Error{Status: http.StatusBadRequest, Code: CodeUnrecognized, Msg: "Use https", Reason: "plain_http"})
		return
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// zapWriter forwards net/http's internal error log (TLS handshake failures,
// malformed requests) to zap at debug level: remote junk is expected.
type zapWriter struct{ log *zap.Logger }

func (z *zapWriter) Write(p []byte) (int, error) {
	if ce := z.log.Check(zap.DebugLevel, "http server"); ce != nil {
		ce.Write(zap.ByteString("detail", trimNewline(p)))
	}
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	if n := len(p); n > 0 && p[n-1] == '\n' {
		return p[:n-1]
	}
	return p
}

// warnRestartNeeded logs settings a reload cannot apply: listeners and the
// keyring's configuration are fixed for the life of the process.
func (g *Gateway) warnRestartNeeded(c *config.Config) {
	old := g.rt.Load().cfg
	if !reflect.DeepEqual(old.Listen, c.Listen) {
		g.log.Warn("listen addresses changed; restart fedgate to apply them")
	}
	if !reflect.DeepEqual(old.Keys.TrustedKeyServers, c.Keys.TrustedKeyServers) ||
		!reflect.DeepEqual(old.Keys.Pinned, c.Keys.Pinned) || old.Keys.CacheFile != c.Keys.CacheFile {
		g.log.Warn("keys.trusted_key_servers, keys.pinned or keys.cache_file changed; restart fedgate to apply them")
	}
	g.warnClusterRestart(old, c)
}

// Check compiles c the way New and Reload do (signing keys, upstream,
// outbound, policy, for every hosted server) without binding or starting
// anything, so that "fedgate check-config" refuses exactly what "fedgate
// run" would. A key file that does not exist yet is fine when
// keys.generate is set.
func Check(c *config.Config) error {
	g := &Gateway{log: zap.NewNop()}
	pubs := map[string]string{}
	var servers []*hostedServer
	for _, hc := range c.Hosted() {
		if _, err := os.Stat(hc.Keys.SigningKey); err == nil || !hc.Keys.Generate {
			keys, err := loadSigningKeys(hc)
			if err != nil {
				return err
			}
			for _, k := range keys.current {
				if other, dup := pubs[string(k.Public())]; dup {
					return hc.Errorf("keys.signing_key", "key %s is also a signing key of %s: every hosted server signs with its own key", k.ID, other)
				}
				pubs[string(k.Public())] = hc.ServerName
			}
		}
		if err := checkEgress(hc); err != nil {
			return err
		}
		eg, err := newEgressSettings(hc)
		if err != nil {
			return err
		}
		servers = append(servers, &hostedServer{cfg: hc, name: hc.ServerName, egress: eg})
		up, err := newUpstream(hc, "upstream", hc.Upstream, nil)
		if err != nil {
			return err
		}
		up.Close()
		if _, err := policy.New(policyOptions(hc, g.log)); err != nil {
			return hc.Errorf("policy", "%v", err)
		}
		if err := policysource.Check(hc); err != nil {
			return err
		}
	}
	if err := checkEgressSecrets(c, servers); err != nil {
		return err
	}
	if _, err := loadAdminToken(c); err != nil {
		return err
	}
	if _, err := g.newClient(c); err != nil {
		return err
	}
	if _, err := newNameHasher(c.Log.HashServerNames, c.Log.HashKeyFile, false); err != nil {
		return c.Errorf("log.hash_key_file", "%v", err)
	}
	return nil
}

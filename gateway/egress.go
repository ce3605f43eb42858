package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/config"
)

// Capture modes of the egress listener, as named in the access log.
const (
	modeWorkerProxy = "worker_proxy" // Synapse's matrix-federation:// proxy protocol
	modeIntercept   = "intercept"    // CONNECT with TLS interception
	modePassthrough = "passthrough"  // CONNECT spliced to the destination
)

// workerProxyScheme starts the absolute-form request-target of Synapse's
// worker proxy protocol.
const workerProxyScheme = "matrix-federation://"

// egress owns the long-lived state of the egress listener: the
// interception CA, per-destination backoff, the HTTP server that speaks
// inside intercepted tunnels and the tunnels themselves. It lives as long
// as the Gateway; configuration is read per request from the runtime
// snapshot. Its methods are safe for concurrent use.
//
// Request flow (worker-proxy and intercepted requests, [egressStages]):
//
//	credentials (worker proxy) / TLS interception (CONNECT) -> target
//	  -> route -> X-Matrix origin is us -> destination lists (before DNS)
//	  -> endpoint and room rules -> body -> signature against our keys
//	  -> per_destination limit -> backoff -> fresh signature
//	  -> discovery client (SSRF guard, SNI, pool) -> remote -> relayed answer
type egress struct {
	g   *Gateway
	log *zap.Logger
	// now is the clock for backoff; tests replace it before Start.
	now     func() time.Time
	stages  []egressStage
	backoff *backoffTable
	buffers bufferPool // response copy buffers
	// tunnelSrv serves HTTP/1.1 and HTTP/2 inside intercepted tunnels,
	// one single-connection listener per tunnel.
	tunnelSrv *http.Server

	caMu  sync.Mutex
	ca    *certs.EgressCA
	caDir string

	mu      sync.Mutex
	closing bool
	tunnels map[*tunnelConn]struct{} // hijacked CONNECT connections
	wg      sync.WaitGroup           // handlers of tracked tunnels still running
}

// egressSettings is the part of a runtime snapshot only the egress reads,
// built by [newEgressSettings] on every (re)load.
type egressSettings struct {
	// secretSum is the SHA-256 of [egress] secret (or secret_file's
	// contents); secrets are compared through it in constant time, so
	// neither their bytes nor their length leak through timing.
	secretSum [sha256.Size]byte
	hasSecret bool
}

// newEgressSettings reads [egress]: the secret, from the file if one is
// named. A problem points at its configuration line.
func newEgressSettings(c *config.Config) (*egressSettings, error) {
	s := &egressSettings{}
	secret := c.Egress.Secret
	if c.Egress.SecretFile != "" {
		b, err := os.ReadFile(c.Egress.SecretFile)
		if err != nil {
			return nil, c.Errorf("egress.secret_file", "%v", err)
		}
		secret = strings.TrimRight(string(b), "\r\n")
		if secret == "" {
			return nil, c.Errorf("egress.secret_file", "%s is empty", c.Egress.SecretFile)
		}
	}
	if secret != "" {
		s.secretSum, s.hasSecret = sha256.Sum256([]byte(secret)), true
	}
	if c.Listen.Egress != "" && c.Egress.Connect == config.ConnectIntercept && !c.Egress.RequireSignature && !s.hasSecret && len(c.Servers) == 0 && c.HostedIndex() == 0 {
		// Nothing would authenticate the sender: anything that reaches the
		// listener could have requests signed as this server. (With
		// several hosted servers, checkEgressSecrets asks this of them
		// together.)
		return nil, c.Errorf("egress.require_signature", "false with connect = \"intercept\" needs egress.secret (or secret_file): without it anything that can reach listen.egress gets requests signed as %s", c.ServerName)
	}
	return s, nil
}

// secretMatches compares a presented secret with the configured one in
// constant time. It is false when no secret is configured.
func (s *egressSettings) secretMatches(presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	return s.hasSecret && subtle.ConstantTimeCompare(sum[:], s.secretSum[:]) == 1
}

// newEgress builds the egress state; nothing is bound or loaded yet.
func newEgress(g *Gateway, c *config.Config) *egress {
	e := &egress{
		g:       g,
		log:     g.log.Named("egress"),
		now:     time.Now,
		stages:  egressStages(),
		backoff: newBackoffTable(defaultBackoffEntries),
		buffers: newBufferPool(32 << 10),
		tunnels: map[*tunnelConn]struct{}{},
	}
	e.tunnelSrv = g.httpServer(c, "egress_tunnel", http.HandlerFunc(e.serveIntercepted), false)
	e.tunnelSrv.BaseContext = tunnelBaseContext
	return e
}

// start checks what the egress listener needs before it is bound: the
// interception CA (created on first start) and a warning for an
// unauthenticated CONNECT passthrough.
func (e *egress) start(c *config.Config) error {
	if c.Listen.Egress == "" {
		return nil
	}
	switch c.Egress.Connect {
	case config.ConnectIntercept:
		if _, err := e.loadCA(c.Egress.CADir); err != nil {
			return c.Errorf("egress.ca_dir", "%v", err)
		}
	case config.ConnectPassthrough:
		if c.Egress.Secret == "" && c.Egress.SecretFile == "" {
			e.log.Warn("egress.connect = \"passthrough\" without egress.secret: anything that can reach listen.egress can open tunnels to every destination policy allows")
		}
	}
	return nil
}

// checkEgress is the part of [Check] that concerns the egress: the secret
// (file), and an existing interception CA, which must load. A missing CA
// is fine (fedgate run creates it); check-config creates nothing.
func checkEgress(c *config.Config) error {
	if _, err := newEgressSettings(c); err != nil {
		return err
	}
	if c.Listen.Egress == "" || c.Egress.Connect != config.ConnectIntercept {
		return nil
	}
	_, certErr := os.Stat(filepath.Join(c.Egress.CADir, certs.EgressCACertFile))
	_, keyErr := os.Stat(filepath.Join(c.Egress.CADir, certs.EgressCAKeyFile))
	if errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist) {
		return nil
	}
	// Both or one of the files exist: loading validates them, and with one
	// missing it fails without creating anything.
	if _, err := certs.LoadOrCreateEgressCA(c.Egress.CADir, nil); err != nil {
		return c.Errorf("egress.ca_dir", "%v", err)
	}
	return nil
}

// loadCA returns the interception CA in dir, loading or creating it on
// first use (and again if a reload named another folder).
func (e *egress) loadCA(dir string) (*certs.EgressCA, error) {
	e.caMu.Lock()
	defer e.caMu.Unlock()
	if e.ca != nil && e.caDir == dir {
		return e.ca, nil
	}
	ca, err := certs.LoadOrCreateEgressCA(dir, e.g.log)
	if err != nil {
		return nil, err
	}
	e.ca, e.caDir = ca, dir
	return ca, nil
}

// ServeHTTP is the egress listener's handler. One plain-HTTP listener
// speaks every capture mode; the request line decides which:
//
//   - CONNECT host:port: TLS interception or passthrough ([egress] connect);
//   - an absolute matrix-federation:// target: Synapse's worker proxy
//     protocol ([egress] worker_proxy);
//   - anything else: 400 M_UNRECOGNIZED.
func (e *egress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := e.g.rt.Load()
	switch {
	case r.Method == http.MethodConnect:
		if rt.cfg.Egress.Connect == config.ConnectOff {
			e.refuseListener(w, r, rt, "connect_off", `CONNECT is turned off on this listener (egress.connect = "off")`)
			return
		}
		e.serveConnect(w, r, rt)
	case hasPrefixFold(r.RequestURI, workerProxyScheme):
		if !rt.cfg.Egress.WorkerProxy {
			e.refuseListener(w, r, rt, "worker_proxy_off", "matrix-federation:// requests are turned off on this listener (egress.worker_proxy = false)")
			return
		}
		e.serveWorkerProxy(w, r, rt)
	default:
		e.refuseListener(w, r, rt, "not_proxy_request",
			"This is fedgate's egress listener: send matrix-federation:// requests (Synapse's outbound federation proxy) or CONNECT")
	}
}

// refuseListener answers a request no capture mode takes with 400.
func (e *egress) refuseListener(w http.ResponseWriter, r *http.Request, rt *runtime, reason, msg string) {
	er := e.newRequest(w, r, rt, "")
	defer e.finish(er)
	er.stage = "dispatch"
	e.reject(er, &Error{Status: http.StatusBadRequest, Code: CodeUnrecognized, Msg: msg, Reason: reason})
}

// hasPrefixFold reports whether s starts with prefix, ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// track registers a hijacked CONNECT connection so that shutdown can reach
// it and wait for its handler; it fails once shutdown has begun. Every
// successful track is paired with one untrack.
func (e *egress) track(tc *tunnelConn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return false
	}
	e.tunnels[tc] = struct{}{}
	e.wg.Add(1)
	return true
}

func (e *egress) untrack(tc *tunnelConn) {
	e.mu.Lock()
	delete(e.tunnels, tc)
	e.mu.Unlock()
	e.wg.Done()
}

// shutdown ends the tunnels after the egress listener stopped accepting:
// intercepted tunnels finish their requests in flight until ctx ends (idle
// ones close at once); passthrough tunnels carry opaque bytes, so they are
// closed at once (the homeserver retries what was cut). It returns ctx's
// error if requests were cut off.
func (e *egress) shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closing = true
	for tc := range e.tunnels {
		if !tc.serving.Load() {
			tc.Close() // passthrough, or still in the TLS handshake
		}
	}
	e.mu.Unlock()
	err := e.tunnelSrv.Shutdown(ctx)
	if err != nil {
		e.tunnelSrv.Close()
		err = fmt.Errorf("egress tunnels: %w", err)
	}
	e.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// tunnelConn is the homeserver's side of a hijacked CONNECT: reads come
// first from what the HTTP server had already buffered, and Close is
// observed, so the single-connection listener knows when the tunnel ended.
type tunnelConn struct {
	net.Conn
	r       io.Reader
	once    sync.Once
	closed  chan struct{}
	serving atomic.Bool // handed to tunnelSrv (intercepted and past the handshake)
}

func newTunnelConn(c net.Conn, r io.Reader) *tunnelConn {
	return &tunnelConn{Conn: c, r: r, closed: make(chan struct{})}
}

func (c *tunnelConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *tunnelConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// bufferPool lends fixed-size copy buffers for relaying responses.
type bufferPool struct{ pool *sync.Pool }

func newBufferPool(size int) bufferPool {
	return bufferPool{pool: &sync.Pool{New: func() any { b := make([]byte, size); return &b }}}
}

func (p bufferPool) Get() []byte  { return *(p.pool.Get().(*[]byte)) }
func (p bufferPool) Put(b []byte) { p.pool.Put(&b) }

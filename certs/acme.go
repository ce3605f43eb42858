package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/fedgate/fedgate/internal/fsutil"
)

// errNotStarted fails handshakes in acme mode before [Manager.Start].
var errNotStarted = errors.New("certificate manager not started")

// acmeSource manages certificates with certmagic. The certmagic Cache and
// Config are made in start and live until stop; handshakes and the HTTP
// handler read them through atomic pointers.
type acmeSource struct {
	opts   Options // validated copy
	dirURL string  // ACME directory
	testCA string  // directory for retries (certmagic validates there first)
	roots  *x509.CertPool
	log    *zap.Logger

	cache  atomic.Pointer[certmagic.Cache]
	magic  atomic.Pointer[certmagic.Config]
	issuer atomic.Pointer[certmagic.ACMEIssuer]

	mu    sync.Mutex
	state map[string]*acmeNameState // by name
}

// acmeNameState is what events told us about one name.
type acmeNameState struct {
	lastErr     string
	lastErrTime time.Time
}

func newACMESource(o *Options) (*acmeSource, error) {
	dir, err := directoryURL(o.CA)
	if err != nil {
		return nil, err
	}
	a := &acmeSource{opts: *o, dirURL: dir, log: o.Logger.Named("acme"), state: map[string]*acmeNameState{}}
	switch dir {
	case certmagic.LetsEncryptProductionCA:
		// certmagic retries a failed order against staging first, so a
		// broken setup does not burn production rate limits.
		a.testCA = certmagic.LetsEncryptStagingCA
	default:
		a.testCA = dir
	}
	if o.CARoot != "" {
		pemData, err := fsutil.ReadFileLimited(o.CARoot, maxPEMFileSize)
		if err != nil {
			return nil, fmt.Errorf("reading ACME CA roots: %w", err)
		}
		a.roots = x509.NewCertPool()
		if !a.roots.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("ACME CA roots %s: no PEM certificate found", o.CARoot)
		}
	}
	for _, n := range o.Names {
		a.state[n] = &acmeNameState{}
	}
	return a, nil
}

// start makes the certmagic cache and config and logs what is pending.
// It does no network I/O; manage, run in its own goroutine, orders the
// certificates.
func (a *acmeSource) start(ctx context.Context) error {
	o := a.opts
	cache := certmagic.NewCache(certmagic.CacheOptions{
		// Bound late: renewals use whatever config is current then.
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			if c := a.magic.Load(); c != nil {
				return c, nil
			}
			return nil, errNotStarted
		},
		RenewCheckInterval: o.RenewCheckInterval,
		OCSPCheckInterval:  certmagic.DefaultOCSPCheckInterval,
		Logger:             a.log,
	})
	a.cache.Store(cache)
	ratio := o.RenewalWindowRatio
	if ratio == 0 {
		ratio = certmagic.DefaultRenewalWindowRatio
	}
	var storage certmagic.Storage = &certmagic.FileStorage{Path: o.Storage}
	if o.SharedStorage != nil {
		storage = o.SharedStorage
	}
	// Every field fedgate relies on is set here: certmagic.New fills the
	// unset ones from the mutable package-level Default.
	cfg := certmagic.New(cache, certmagic.Config{
		RenewalWindowRatio: ratio,
		OnEvent:            a.onEvent,
		ShouldEmitFunc:     func(event string) bool { return event != "tls_get_certificate" },
		DefaultServerName:  o.Names[0],
		FallbackServerName: o.Names[0],
		KeySource:          certmagic.StandardKeyGenerator{KeyType: certmagic.P256},
		OCSP:               certmagic.OCSPConfig{DisableStapling: false},
		Storage:            storage,
		Logger:             a.log,
	})
	tmpl := certmagic.ACMEIssuer{
		CA:                      a.dirURL,
		TestCA:                  a.testCA,
		Email:                   o.Email,
		Agreed:                  true,
		DisableHTTPChallenge:    o.HTTPChallengeAddr == "",
		DisableTLSALPNChallenge: o.TLSALPNChallengeAddr == "",
		TrustedRoots:            a.roots,
		CertObtainTimeout:       certmagic.DefaultACME.CertObtainTimeout,
		Logger:                  a.log,
		HTTPProxy:               http.ProxyFromEnvironment,
	}
	// certmagic binds ListenHost:port for a challenge unless something
	// already listens there; pointing it at fedgate's own listeners makes
	// it find them busy and leave the answering to our handlers.
	if o.HTTPChallengeAddr != "" {
		host, port, _ := splitListenAddr(o.HTTPChallengeAddr)
		tmpl.ListenHost, tmpl.AltHTTPPort = host, port
	}
	if o.TLSALPNChallengeAddr != "" {
		host, port, _ := splitListenAddr(o.TLSALPNChallengeAddr)
		if o.HTTPChallengeAddr == "" {
			tmpl.ListenHost = host
		}
		tmpl.AltTLSALPNPort = port
	}
	issuer := certmagic.NewACMEIssuer(cfg, tmpl)
	cfg.Issuers = []certmagic.Issuer{issuer}
	a.issuer.Store(issuer)
	a.magic.Store(cfg)

	a.logPending(ctx, cfg, issuer)
	return nil
}

// manage begins obtaining and renewing once the challenge listeners accept
// connections, so certmagic never binds their ports itself before fedgate
// does (it would, finding them free), and calls done when ordering has
// been handed to certmagic or ctx ended.
func (a *acmeSource) manage(ctx context.Context, done func()) {
	defer done()
	a.waitForListeners(ctx, listenerWait)
	if ctx.Err() != nil {
		return
	}
	// With certificates managed asynchronously, certmagic retries failures
	// with backoff until ctx ends; errors are reported through onEvent.
	if err := a.magic.Load().ManageAsync(ctx, a.names()); err != nil {
		a.log.Error("could not start managing certificates", zap.Error(err))
	}
}

// listenerWait bounds how long manage waits for the challenge listeners.
const listenerWait = 15 * time.Second

// waitForListeners returns when every challenge listener accepts TCP
// connections, when ctx ends, or after limit (logging which are not up).
func (a *acmeSource) waitForListeners(ctx context.Context, limit time.Duration) {
	var addrs []string
	for _, addr := range []string{a.opts.HTTPChallengeAddr, a.opts.TLSALPNChallengeAddr} {
		if addr != "" {
			addrs = append(addrs, addr)
		}
	}
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		addrs = slices.DeleteFunc(addrs, func(addr string) bool { return accepting(ctx, addr) })
		if len(addrs) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			a.log.Warn("challenge listeners do not accept connections; obtaining certificates anyway",
				zap.Strings("listeners", addrs))
			return
		case <-tick.C:
		}
	}
}

// accepting reports whether something accepts TCP connections at the
// listener address addr; wildcard hosts are reached through loopback.
func accepting(ctx context.Context, addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	switch ip := net.ParseIP(host); {
	case host == "" || ip != nil && ip.Equal(net.IPv4zero):
		host = "127.0.0.1"
	case ip != nil && ip.Equal(net.IPv6unspecified):
		host = "::1"
	}
	ctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// challenges describes the enabled challenges for logs.
func (a *acmeSource) challenges() []string {
	var out []string
	if a.opts.HTTPChallengeAddr != "" {
		out = append(out, "http-01 via "+a.opts.HTTPChallengeAddr+" (the CA connects to port 80)")
	}
	if a.opts.TLSALPNChallengeAddr != "" {
		out = append(out, "tls-alpn-01 via "+a.opts.TLSALPNChallengeAddr+" (the CA connects to port 443)")
	}
	return out
}

// logPending says, for every name without a stored certificate, that one
// is being obtained and what handshakes do meanwhile.
func (a *acmeSource) logPending(ctx context.Context, cfg *certmagic.Config, issuer *certmagic.ACMEIssuer) {
	var pending []string
	for _, n := range a.opts.Names {
		if !cfg.Storage.Exists(ctx, certmagic.StorageKeys.SiteCert(issuer.IssuerKey(), n)) {
			pending = append(pending, n)
		}
	}
	fields := []zap.Field{
		zap.Strings("names", a.opts.Names),
		zap.String("ca", a.dirURL),
		zap.Strings("challenges", a.challenges()),
		zap.String("storage", a.storageName()),
	}
	if len(pending) == 0 {
		a.log.Info("ACME certificates found in storage; renewing them in the background when due", fields...)
		return
	}
	a.log.Warn("obtaining ACME certificates in the background; until they arrive, TLS handshakes for these names fail with an alert",
		append(fields, zap.Strings("pending", pending))...)
}

// onEvent turns certmagic events into logs and status. It runs
// synchronously inside certmagic and must return quickly.
func (a *acmeSource) onEvent(_ context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtaining":
		msg := "obtaining certificate"
		if renewal {
			msg = "renewing certificate"
		}
		fields := []zap.Field{zap.String("name", name), zap.String("ca", a.dirURL)}
		if rem, ok := data["remaining"].(time.Duration); ok {
			fields = append(fields, zap.Duration("remaining", rem))
		}
		a.log.Info(msg, fields...)
	case "cert_obtained":
		a.setError(name, "")
		msg := "certificate obtained"
		if renewal {
			msg = "certificate renewed"
		}
		issuerKey, _ := data["issuer"].(string)
		a.log.Info(msg, zap.String("name", name), zap.String("issuer", issuerKey))
	case "cert_failed":
		err, _ := data["error"].(error)
		reason := "unknown error"
		if err != nil {
			reason = err.Error()
		}
		a.setError(name, reason)
		a.log.Error("could not get a certificate; retrying with backoff",
			zap.String("name", name), zap.Bool("renewal", renewal), zap.String("ca", a.dirURL),
			zap.Strings("challenges", a.challenges()), zap.String("error", reason),
			zap.String("hint", "the CA must resolve the name to this host and reach the challenge ports"))
	case "cert_ocsp_revoked":
		a.log.Error("certificate revoked by its CA; replacing it", zap.Any("subjects", data["subjects"]))
	case "cached_managed_cert":
		a.log.Debug("certificate loaded", zap.Any("subjects", data["sans"]))
	}
	return nil
}

func (a *acmeSource) setError(name, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.state[name]
	if st == nil {
		return
	}
	st.lastErr = reason
	if reason == "" {
		st.lastErrTime = time.Time{}
	} else {
		st.lastErrTime = a.opts.Now()
	}
}

// getCertificate serves the managed certificates and TLS-ALPN-01
// challenge certificates. Before a certificate exists the handshake fails
// at once with an alert.
func (a *acmeSource) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	cfg := a.magic.Load()
	if cfg == nil {
		return nil, errNotStarted
	}
	return cfg.GetCertificate(hello)
}

// httpHandler answers HTTP-01 challenges and passes other requests on.
func (a *acmeSource) httpHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if iss := a.issuer.Load(); iss != nil && iss.HandleHTTPChallenge(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// names returns the managed names (a [Set] may change them).
func (a *acmeSource) names() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.opts.Names)
}

// status reports one entry per managed name.
func (a *acmeSource) status() []CertStatus {
	names := a.names()
	out := make([]CertStatus, 0, len(names))
	for _, n := range names {
		s := CertStatus{Name: n, Source: ModeACME, Location: a.dirURL, Pending: true}
		if cache := a.cache.Load(); cache != nil {
			var best *x509.Certificate
			for _, c := range cache.AllMatchingCertificates(n) {
				if c.Leaf != nil && (best == nil || c.Leaf.NotAfter.After(best.NotAfter)) {
					best = c.Leaf
				}
			}
			if best != nil {
				statusFromLeaf(&s, best)
				s.Pending = false
			}
		}
		a.mu.Lock()
		if st := a.state[n]; st != nil && st.lastErr != "" {
			s.LastError, s.LastErrorTime = st.lastErr, st.lastErrTime
		}
		a.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// stop ends certificate maintenance. Retries still waiting end with the
// context given to start, which the Manager cancels first.
func (a *acmeSource) stop() {
	if cache := a.cache.Swap(nil); cache != nil {
		cache.Stop()
	}
}

// storageName describes where certificates are kept, for logs.
func (a *acmeSource) storageName() string {
	if s, ok := a.opts.SharedStorage.(fmt.Stringer); ok {
		return s.String()
	}
	if a.opts.SharedStorage != nil {
		return fmt.Sprintf("%T", a.opts.SharedStorage)
	}
	return a.opts.Storage
}

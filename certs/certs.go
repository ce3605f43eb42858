package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"go.uber.org/zap"
)

// Manager provides the certificates of fedgate's TLS listeners. Create it
// with [New], call [Manager.Start] once, hand [Manager.TLSConfig] to every
// TLS listener and wrap the plain-HTTP handler with [Manager.HTTPHandler];
// [Manager.Stop] ends its background work. One Manager per process: it
// outlives configuration reloads. All methods are safe for concurrent use.
type Manager struct {
	opts Options
	log  *zap.Logger

	self     *tls.Certificate // self_signed
	selfPath string
	files    *fileSource // files
	acme     *acmeSource // acme

	mu      sync.Mutex
	started bool
	stopped bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New validates opts and prepares a Manager without starting background
// work. self_signed loads or creates its certificate here and files loads
// its pair here, so a broken setup fails before any listener is bound;
// acme reads ca_root here and touches the network only after Start.
func New(opts Options) (*Manager, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.Logger = opts.Logger.Named("certs")
	m := &Manager{opts: opts, log: opts.Logger}
	switch opts.Mode {
	case ModeSelfSigned:
		cert, path, err := loadOrCreateSelfSigned(opts.DataDir, opts.Names, opts.Now(), m.log)
		if err != nil {
			return nil, fmt.Errorf("self-signed certificate: %w", err)
		}
		m.self, m.selfPath = cert, path
	case ModeFiles:
		m.files = newFileSource(&m.opts)
		if err := m.files.loadInitial(); err != nil {
			return nil, err
		}
	case ModeACME:
		a, err := newACMESource(&m.opts)
		if err != nil {
			return nil, err
		}
		m.acme = a
	}
	return m, nil
}

// Mode returns the Manager's mode (ModeACME, ModeFiles or ModeSelfSigned).
func (m *Manager) Mode() string { return m.opts.Mode }

// Options returns the options the Manager runs with, defaults filled in
// and names normalised (lower case, canonical IP addresses); cmd compares
// them with a reloaded configuration to tell when a restart is needed.
// The result is a copy.
func (m *Manager) Options() Options {
	o := m.opts
	o.Names = slices.Clone(o.Names)
	return o
}

// Start begins background work: polling the files in files mode,
// obtaining and renewing certificates in acme mode. It returns without
// waiting for any certificate; until one exists, handshakes for its names
// fail with a TLS alert. In acme mode ordering begins once the challenge
// listeners accept connections (or after 15 seconds), so Start may come
// before or after the listeners are bound. ctx bounds the background work
// as well as Stop does. Start may be called once; it fails after Stop.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started || m.stopped {
		return errors.New("certificate manager already started or stopped")
	}
	ctx, cancel := context.WithCancel(ctx)
	switch m.opts.Mode {
	case ModeFiles:
		if m.opts.PollInterval > 0 {
			m.wg.Add(1)
			go m.files.watch(ctx, m.opts.PollInterval, m.wg.Done)
		}
	case ModeACME:
		if err := m.acme.start(ctx); err != nil {
			cancel()
			m.acme.stop()
			return err
		}
		m.wg.Add(1)
		go m.acme.manage(ctx, m.wg.Done)
	}
	m.started, m.cancel = true, cancel
	return nil
}

// Stop ends background work and waits for fedgate's own goroutines.
// certmagic retries that were waiting end with it. Serving continues with
// the certificates held in memory. Stop may be called more than once.
func (m *Manager) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return
	}
	m.stopped = true
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.acme != nil {
		m.acme.stop()
	}
}

// TLSConfig returns a new configuration for a TLS listener: TLS 1.2 or
// newer with forward-secret AEAD suites, HTTP/2 and HTTP/1.1 via ALPN (and
// the ACME TLS-ALPN protocol in acme mode), and certificates from the
// Manager, so replacements apply to new handshakes without touching
// established connections. The caller may modify the returned value.
func (m *Manager) TLSConfig() *tls.Config {
	c := baseTLSConfig()
	switch m.opts.Mode {
	case ModeACME:
		c.GetCertificate = m.acme.getCertificate
		c.NextProtos = append(c.NextProtos, acmeTLSALPNProtocol)
	case ModeFiles:
		c.GetCertificate = m.files.getCertificate
	case ModeSelfSigned:
		self := m.self
		c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return self, nil }
	}
	return c
}

// HTTPHandler wraps the plain-HTTP listener's handler: in acme mode with
// HTTP-01 enabled it answers challenge requests under
// /.well-known/acme-challenge/ and passes everything else to next; in
// other modes it returns next unchanged.
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	if m.opts.Mode != ModeACME || m.opts.HTTPChallengeAddr == "" {
		return next
	}
	return m.acme.httpHandler(next)
}

// Reload re-reads the certificate and key files in files mode (as on
// SIGHUP) and serves the new pair for new handshakes; connections already
// established keep theirs. A pair that cannot be read, does not match, or
// is not valid now is refused and the old one keeps serving; the error
// says why. A successful change is logged. In acme and self_signed modes
// Reload does nothing: certmagic renews on its own.
func (m *Manager) Reload() error {
	if m.opts.Mode != ModeFiles {
		return nil
	}
	return m.files.reload(false)
}

// Status describes the certificates served or awaited: one entry per
// name in acme mode, one entry otherwise.
func (m *Manager) Status() []CertStatus {
	switch m.opts.Mode {
	case ModeACME:
		return m.acme.status()
	case ModeFiles:
		return []CertStatus{m.files.status()}
	default:
		s := CertStatus{Source: ModeSelfSigned, Location: m.selfPath}
		statusFromLeaf(&s, m.self.Leaf)
		return []CertStatus{s}
	}
}

// Ready reports whether every certificate exists and is valid now, and
// why not (or what is served) in one line for /readyz and logs.
func (m *Manager) Ready() (bool, string) {
	ok, why := readiness(m.Status(), m.opts.Now())
	if ok && m.opts.Mode == ModeSelfSigned {
		why += " (self-signed: for development only, federation peers refuse it)"
	}
	return ok, why
}

package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"

	"go.uber.org/zap"
)

// Modes, matching the [tls] mode values of the configuration.
const (
	ModeACME       = "acme"
	ModeFiles      = "files"
	ModeSelfSigned = "self_signed"
)

// Options configures a [Manager].
type Options struct {
	// Mode is ModeACME, ModeFiles or ModeSelfSigned.
	Mode string
	// Names are the certificate names (DNS names or IP addresses).
	Names []string
	// DataDir is where self-signed certificates are kept.
	DataDir string
	// Logger receives certificate events; nil discards them.
	Logger *zap.Logger
}

// Manager provides TLS configuration for fedgate's listeners.
type Manager struct {
	opts Options
	log  *zap.Logger
	cert *tls.Certificate
}

// New prepares a Manager. For self-signed mode it loads or creates the
// certificate right away.
func New(opts Options) (*Manager, error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	m := &Manager{opts: opts, log: log.Named("certs")}
	switch opts.Mode {
	case ModeSelfSigned:
		cert, err := loadOrCreateSelfSigned(opts.DataDir, opts.Names, m.log)
		if err != nil {
			return nil, err
		}
		m.cert = cert
	default:
		return nil, fmt.Errorf("tls mode %q is not supported by this build", opts.Mode)
	}
	return m, nil
}

// Start begins background work (certificate renewal, file watching). It
// does not block on obtaining certificates.
func (m *Manager) Start(ctx context.Context) error { return nil }

// Stop ends background work.
func (m *Manager) Stop() {}

// TLSConfig returns the configuration for a TLS listener: TLS 1.2 or newer,
// HTTP/2 and HTTP/1.1 offered via ALPN.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return m.cert, nil
		},
	}
}

// HTTPHandler wraps the plain-HTTP listener's handler: in ACME mode it
// answers HTTP-01 challenges before passing other requests to next.
func (m *Manager) HTTPHandler(next http.Handler) http.Handler { return next }

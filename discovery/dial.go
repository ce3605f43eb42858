package discovery

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// tcpKeepAlive is the TCP keep-alive probe interval of outbound connections.
const tcpKeepAlive = 30 * time.Second

// dialKey is everything a connection is bound to. Pooled connections are
// only reused for an equal key, so a connection verified for one name is
// never used for another, even at the same address.
type dialKey struct {
	// tlsName is the name the certificate must be valid for: a DNS name
	// (also sent as SNI), or an IP address's text when the certificate must
	// cover that IP (then no SNI is sent, as the spec requires).
	tlsName  string
	addr     netip.AddrPort // where to connect, before Options.PortMap
	insecure bool           // skip certificate verification
	guarded  bool           // apply the SSRF guard (false for overrides)
}

// dialTLS connects to k.addr and completes a TLS handshake for k.tlsName.
// A guarded key whose address the guard refuses is never dialled. Errors
// are *Error with PhaseGuard, PhaseDial or PhaseTLS; ServerName is left for
// the caller to fill in.
func (r *Resolver) dialTLS(ctx context.Context, k dialKey) (*tls.Conn, error) {
	target := k.addr.String()
	if k.guarded {
		if err := r.guard.check(k.addr.Addr()); err != nil {
			return nil, &Error{Phase: PhaseGuard, Target: target, Err: err}
		}
	}
	addr := k.addr
	if p, ok := r.opts.PortMap[addr.Port()]; ok {
		addr = netip.AddrPortFrom(addr.Addr(), p)
	}
	d := net.Dialer{Timeout: r.opts.DialTimeout, KeepAlive: tcpKeepAlive}
	if k.guarded {
		// Checked again on the socket about to connect: whatever path
		// reaches this dialer, a refused address is never connected to.
		d.ControlContext = r.controlGuard
	}
	raw, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, &Error{Phase: PhaseDial, Target: target, Err: err}
	}
	conn := tls.Client(raw, r.tlsConfig(k))
	hctx, cancel := context.WithTimeout(ctx, r.opts.TLSTimeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, &Error{Phase: PhaseTLS, Target: target, Err: fmt.Errorf("handshake for %s: %w", k.tlsName, err)}
	}
	return conn, nil
}

// controlGuard is the dialer's last check before connect(2).
func (r *Resolver) controlGuard(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse %q", ErrBlocked, address)
	}
	return r.guard.check(ap.Addr())
}

// tlsConfig is the client configuration for one key: TLS 1.2 or later,
// HTTP/1.1, the configured roots, and the name to verify.
func (r *Resolver) tlsConfig(k dialKey) *tls.Config {
	cfg := &tls.Config{
		ServerName:         k.tlsName,
		RootCAs:            r.opts.RootCAs,
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"http/1.1"},
		InsecureSkipVerify: k.insecure,
	}
	if !k.insecure {
		cfg.ClientSessionCache = r.sessions
	}
	return cfg
}

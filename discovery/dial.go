package discovery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
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
	raw, err := r.dialTCP(ctx, k.addr, k.guarded)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, r.tlsConfig(k))
	hctx, cancel := context.WithTimeout(ctx, r.opts.TLSTimeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, &Error{Phase: PhaseTLS, Target: k.addr.String(), Err: fmt.Errorf("handshake for %s: %w", k.tlsName, err)}
	}
	return conn, nil
}

// dialTCP connects to addr (after Options.PortMap), refusing it first if
// guarded and the guard says no. Errors are *Error with PhaseGuard or
// PhaseDial.
func (r *Resolver) dialTCP(ctx context.Context, addr netip.AddrPort, guarded bool) (net.Conn, error) {
	target := addr.String()
	if guarded {
		if err := r.guard.check(addr.Addr()); err != nil {
			return nil, &Error{Phase: PhaseGuard, Target: target, Err: err}
		}
	}
	if p, ok := r.opts.PortMap[addr.Port()]; ok {
		addr = netip.AddrPortFrom(addr.Addr(), p)
	}
	d := net.Dialer{Timeout: r.opts.DialTimeout, KeepAlive: tcpKeepAlive}
	if guarded {
		// Checked again on the socket about to connect: whatever path
		// reaches this dialer, a refused address is never connected to.
		d.ControlContext = r.controlGuard
	}
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, &Error{Phase: PhaseDial, Target: target, Err: err}
	}
	return conn, nil
}

// hostAddrs resolves host, an IP literal or a name (hosts file, then
// A/AAAA with CNAMEs followed), to at most maxTargets addresses.
func (r *Resolver) hostAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	a, err := r.lookupAddrs(ctx, host)
	if err != nil {
		return nil, &Error{Phase: PhaseDNS, Target: host, Err: err}
	}
	return a.list[:min(len(a.list), maxTargets)], nil
}

// dialEach calls dial for each address in turn until one connects.
func dialEach(ctx context.Context, ips []netip.Addr, port uint16, dial func(netip.AddrPort) (net.Conn, error)) (net.Conn, error) {
	var errs []error
	for _, ip := range ips {
		conn, err := dial(netip.AddrPortFrom(ip, port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// DialTCP opens a plain TCP connection to host:port: host is an IP literal
// or a name resolved with this resolver's hosts file and DNS (A/AAAA,
// CNAMEs followed, no Matrix discovery); addresses are tried in order and each
// must pass the SSRF guard. It suits tunnels (HTTP CONNECT passed through)
// where the other end does its own TLS. Errors are [*Error] (PhaseDNS,
// PhaseGuard, PhaseDial) with ServerName "host:port".
func (r *Resolver) DialTCP(ctx context.Context, host string, port uint16) (net.Conn, error) {
	name := net.JoinHostPort(host, strconv.Itoa(int(port)))
	fail := func(err error) error {
		phase := PhaseDial
		var de *Error
		if errors.As(err, &de) {
			phase = de.Phase
		}
		return &Error{ServerName: name, Phase: phase, Err: err}
	}
	if port == 0 {
		return nil, &Error{ServerName: name, Phase: PhaseName, Err: errors.New("port 0")}
	}
	ips, err := r.hostAddrs(ctx, host)
	if err != nil {
		return nil, fail(err)
	}
	conn, err := dialEach(ctx, ips, port, func(ap netip.AddrPort) (net.Conn, error) { return r.dialTCP(ctx, ap, true) })
	if err != nil {
		return nil, fail(err)
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

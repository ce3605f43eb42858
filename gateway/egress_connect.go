package gateway

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/servername"
)

// connectEstablished is written once a CONNECT is accepted.
const connectEstablished = "HTTP/1.1 200 Connection established\r\n\r\n"

// proxyRealm is sent with 407 answers.
const proxyRealm = `Basic realm="fedgate egress"`

// tunnel describes an intercepted CONNECT tunnel to the requests inside it.
type tunnel struct {
	host      string // CONNECT host, without brackets
	authority string // CONNECT host:port as a server name ("[v6]:port")
	sni       string // the name the homeserver asked for in its ClientHello
	id        string // the CONNECT's request id
	// sender is the hosted server whose egress secret the CONNECT
	// presented ("" when none): requests inside may speak only as it.
	sender string
}

type tunnelKey struct{}

// tunnelBaseContext gives the requests served on a tunnel's listener the
// tunnel they came through.
func tunnelBaseContext(l net.Listener) context.Context {
	if tl, ok := l.(*tunnelListener); ok {
		return context.WithValue(context.Background(), tunnelKey{}, tl.tun)
	}
	return context.Background()
}

// serveConnect answers CONNECT host:port. The host is checked against the
// grammar, then the proxy credentials; then, by [egress] connect:
//
//   - intercept: 200, a TLS handshake answered with a leaf certificate for
//     the SNI name (or the CONNECT host) from the egress CA, and HTTP/1.1 or
//     HTTP/2 inside, each request going through the same stages as a
//     worker-proxy request (destination = X-Matrix destination, else the
//     Host header's server name);
//   - passthrough: the host against destination policy, the per-destination
//     limit and backoff, a guarded dial (the SSRF guard refuses private and
//     loopback addresses), 200, and bytes spliced both ways. Nothing inside
//     is seen, so no content policy and no re-signing.
//
// The handler returns when the tunnel ends; the CONNECT's log line then
// shows the tunnel's duration (and bytes, for passthrough).
func (e *egress) serveConnect(w http.ResponseWriter, r *http.Request, rt *runtime) {
	mode := modeIntercept
	if rt.cfg.Egress.Connect == config.ConnectPassthrough {
		mode = modePassthrough
	}
	er := e.newRequest(w, r, rt, mode)
	defer e.finish(er)
	host, port, err := parseConnectAuthority(r.RequestURI)
	if err != nil {
		er.stage = "target"
		e.reject(er, &Error{Status: http.StatusBadRequest, Code: CodeInvalidParam, Msg: "Bad CONNECT target: " + err.Error(), Reason: "bad_target"})
		return
	}
	er.dest = authorityName(host, port)
	er.deliverTo = er.dest
	sender, err := checkConnectAuth(r.Header.Values("Proxy-Authorization"), rt, mode)
	if err != nil {
		er.stage = "proxy_auth"
		er.w.Header().Set("Proxy-Authenticate", proxyRealm)
		e.reject(er, err)
		return
	}
	if sender != nil {
		er.authAs = sender
		er.speakAs(sender)
	}
	if mode == modePassthrough {
		e.passthrough(er, host, port)
		return
	}
	e.intercept(er, host)
}

// authorityName renders host and port as a server name.
func authorityName(host string, port uint16) string {
	if strings.IndexByte(host, ':') >= 0 {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(int(port))
}

// Errors of [parseConnectAuthority].
var (
	errConnectNoPort = errors.New(`the target must be "host:port"`)
	errConnectPort   = errors.New("the port must be a number from 1 to 65535")
	errConnectHost   = errors.New("the host is neither a DNS name nor an IP address")
)

// parseConnectAuthority splits a CONNECT request-target "host:port". The
// host is a DNS name of the server-name grammar or an IP literal (IPv6 in
// brackets, no zone), returned without brackets; the port is 1-65535 in
// plain digits.
func parseConnectAuthority(s string) (host string, port uint16, err error) {
	if len(s) > servername.MaxLength {
		return "", 0, errConnectHost
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil || h == "" {
		return "", 0, errConnectNoPort
	}
	if p == "" || len(p) > 5 || strings.Trim(p, "0123456789") != "" {
		return "", 0, errConnectPort
	}
	n, _ := strconv.Atoi(p)
	if n < 1 || n > 65535 {
		return "", 0, errConnectPort
	}
	if strings.IndexByte(h, ':') >= 0 {
		// SplitHostPort accepts "[v6]:port" only with the brackets.
		ip, err := netip.ParseAddr(h)
		if err != nil || !ip.Is6() || ip.Zone() != "" || !strings.HasPrefix(s, "[") {
			return "", 0, errConnectHost
		}
		return h, uint16(n), nil
	}
	if strings.HasPrefix(s, "[") {
		return "", 0, errConnectHost
	}
	sn, err := servername.Parse(h)
	if err != nil || sn.Port != 0 {
		return "", 0, errConnectHost
	}
	return h, uint16(n), nil
}

// checkConnectAuth checks CONNECT credentials: "Proxy-Authorization:
// Basic" with a hosted server's egress secret as the password (any user
// name), and returns that server (nil when none was presented).
// Credentials that are sent are always checked. They are required when a
// secret is configured and nothing else authenticates what goes through
// the tunnel: in passthrough mode, and when intercepting without
// require_signature. Intercepted requests with require_signature are
// authenticated one by one by their signature, so homeservers that cannot
// send proxy credentials (Dendrite's proxy settings) still work.
func checkConnectAuth(values []string, rt *runtime, mode string) (*hostedServer, error) {
	if len(rt.secrets) == 0 {
		return nil, nil
	}
	required := mode == modePassthrough || !rt.cfg.Egress.RequireSignature
	switch {
	case len(values) == 0 && !required:
		return nil, nil
	case len(values) == 0:
		return nil, &Error{Status: http.StatusProxyAuthRequired, Code: CodeMissingToken, Msg: "Missing Proxy-Authorization header.", Reason: "proxy_auth_missing"}
	case len(values) > 1:
		return nil, &Error{Status: http.StatusProxyAuthRequired, Code: CodeUnauthorized, Msg: "Too many Proxy-Authorization headers.", Reason: "proxy_auth_invalid"}
	}
	_, password, ok := parseBasic(values[0])
	var hs *hostedServer
	if ok {
		hs = rt.egressSender(password)
	}
	if hs == nil {
		return nil, &Error{Status: http.StatusProxyAuthRequired, Code: CodeUnauthorized, Msg: "Invalid Proxy-Authorization header.", Reason: "proxy_auth_invalid"}
	}
	return hs, nil
}

// maxBasicCredentials bounds the Basic credentials decoded.
const maxBasicCredentials = 4096

// parseBasic decodes "Basic base64(user:password)" (scheme in any case).
func parseBasic(v string) (user, password string, ok bool) {
	const prefix = "basic "
	if !hasPrefixFold(v, prefix) || len(v) > maxBasicCredentials {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v[len(prefix):]))
	if err != nil {
		return "", "", false
	}
	user, password, ok = strings.Cut(string(raw), ":")
	if !ok {
		return "", "", false
	}
	return user, password, true
}

// hijack takes the homeserver's connection over from the HTTP server. What
// the server had already read past the CONNECT request is read first.
func (e *egress) hijack(er *egressRequest) (*tunnelConn, error) {
	conn, brw, err := http.NewResponseController(er.w).Hijack()
	if err != nil {
		return nil, err
	}
	// The listener's read and write timeouts were set for one request,
	// not for a tunnel.
	conn.SetDeadline(time.Time{})
	var r io.Reader = conn
	if brw.Reader.Buffered() > 0 {
		r = brw.Reader
	}
	tc := newTunnelConn(conn, r)
	if !e.track(tc) {
		conn.Close()
		return nil, errors.New("shutting down")
	}
	return tc, nil
}

// intercept terminates the homeserver's TLS with a leaf for the name it
// asked for and serves the requests inside on e.tunnelSrv.
func (e *egress) intercept(er *egressRequest, host string) {
	rt := er.rt
	ca, err := e.loadCA(rt.cfg.Egress.CADir)
	if err != nil {
		er.stage = "egress_ca"
		e.reject(er, &Error{Status: http.StatusInternalServerError, Code: CodeUnknown, Msg: "The egress CA is unavailable", Reason: "internal", Err: err})
		return
	}
	tc, err := e.hijack(er)
	if err != nil {
		er.status, er.reason = http.StatusServiceUnavailable, "hijack_failed"
		return
	}
	defer e.untrack(tc)
	if _, err := io.WriteString(tc, connectEstablished); err != nil {
		tc.Close()
		er.status, er.reason = statusClientClosed, "client_closed"
		return
	}
	er.status = http.StatusOK
	tlsConn := tls.Server(tc, &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: ca.GetCertificateOr(host),
	})
	hctx, cancel := context.WithTimeout(context.Background(), rt.cfg.Server.ReadHeaderTimeout.D())
	err = tlsConn.HandshakeContext(hctx)
	cancel()
	if err != nil {
		tc.Close()
		er.reason = "tls_handshake"
		if ce := e.log.Check(zap.WarnLevel, "intercepted TLS handshake failed: does the homeserver trust the egress CA, and does it send only federation through the proxy?"); ce != nil {
			ce.Write(zap.String("request_id", er.id), zap.String("connect", er.dest), zap.String("ca_file", ca.CertPath()), zap.Error(err))
		}
		return
	}
	tun := &tunnel{host: host, authority: er.dest, sni: tlsConn.ConnectionState().ServerName, id: er.id}
	if er.authAs != nil {
		tun.sender = er.authAs.name
	}
	tc.serving.Store(true)
	l := &tunnelListener{conn: tlsConn, tun: tun, done: tc.closed, closed: make(chan struct{})}
	e.tunnelSrv.Serve(l)
	if !l.wasAccepted() {
		tlsConn.Close() // the server was shutting down
	}
}

// tunnelListener hands one intercepted connection to an http.Server: the
// first Accept returns it, later ones wait until it (or the listener) is
// closed. Serving through a listener keeps HTTP/2 (negotiated by ALPN on
// the *tls.Conn) and every server timeout without new dependencies.
type tunnelListener struct {
	conn *tls.Conn
	tun  *tunnel
	done <-chan struct{} // closed when the connection is closed

	mu       sync.Mutex
	accepted bool
	once     sync.Once
	closed   chan struct{}
}

func (l *tunnelListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.accepted {
		l.accepted = true
		l.mu.Unlock()
		return l.conn, nil
	}
	l.mu.Unlock()
	select {
	case <-l.done:
	case <-l.closed:
	}
	return nil, net.ErrClosed
}

func (l *tunnelListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *tunnelListener) Addr() net.Addr { return l.conn.LocalAddr() }

func (l *tunnelListener) wasAccepted() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted
}

// serveIntercepted is tunnelSrv's handler: one request from inside an
// intercepted tunnel.
func (e *egress) serveIntercepted(w http.ResponseWriter, r *http.Request) {
	tun, _ := r.Context().Value(tunnelKey{}).(*tunnel)
	er := e.newRequest(w, r, e.g.rt.Load(), modeIntercept)
	er.tun = tun
	e.run(er, egressStage{"target", (*egress).stageInterceptedTarget})
}

// tunnelSender finds the hosted server the tunnel's credentials named, in
// the request's configuration; a server a reload removed since the
// CONNECT can no longer send.
func (er *egressRequest) tunnelSender() error {
	if er.tun == nil || er.tun.sender == "" {
		return nil
	}
	if er.authAs = er.rt.hostedByName(er.tun.sender); er.authAs == nil {
		return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Reason: "proxy_auth_invalid",
			Msg: "The tunnel's credentials belong to " + er.tun.sender + ", which is no longer hosted here"}
	}
	return nil
}

// stageInterceptedTarget takes the origin-form target of a request inside
// a tunnel (HTTP/2: the :path).
func (e *egress) stageInterceptedTarget(er *egressRequest) error {
	if er.r.Method == http.MethodConnect {
		return &Error{Status: http.StatusBadRequest, Code: CodeUnrecognized, Msg: "CONNECT inside a tunnel", Reason: "bad_target"}
	}
	if err := er.tunnelSender(); err != nil {
		return err
	}
	return er.splitTarget(er.r.RequestURI)
}

// passthrough opens a plain TCP tunnel to host:port after destination
// policy, the per-destination limit and backoff, through the SSRF guard.
func (e *egress) passthrough(er *egressRequest, host string, port uint16) {
	rt := er.rt
	checks := []egressStage{
		{"destination", func(_ *egress, er *egressRequest) error { return er.decisionError(er.pol.CheckDestination(er.dest)) }},
		{"destination_limit", func(e *egress, er *egressRequest) error {
			return er.limitError(er.hs.policy().Limiters().AllowEgress(er.r.Context(), host))
		}},
		{"backoff", (*egress).stageBackoff},
	}
	for _, st := range checks {
		if err := st.check(e, er); err != nil {
			er.stage = st.name
			e.reject(er, err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(er.r.Context(), rt.cfg.Egress.Timeout.D())
	er.remoteStart, er.sentAt = time.Now(), e.now()
	remote, err := e.g.client().Resolver().DialTCP(ctx, host, port)
	cancel()
	if err != nil {
		e.deliveryFailed(er, err)
		return
	}
	e.backoff.succeeded(er.deliverTo)
	er.remoteHeaders = time.Now()
	tc, err := e.hijack(er)
	if err != nil {
		remote.Close()
		er.status, er.reason = http.StatusServiceUnavailable, "hijack_failed"
		return
	}
	defer e.untrack(tc)
	defer tc.Close()
	defer remote.Close()
	if _, err := io.WriteString(tc, connectEstablished); err != nil {
		er.status, er.reason = statusClientClosed, "client_closed"
		return
	}
	er.status = http.StatusOK
	er.bytesUp, er.bytesDown = e.splice(tc, remote, rt.cfg.Server.IdleTimeout.D())
}

// splice copies bytes both ways until both directions end. A direction
// that reaches EOF half-closes the other side's write end; an error, or
// idle longer than idle in either direction, ends both.
func (e *egress) splice(client *tunnelConn, remote net.Conn, idle time.Duration) (up, down int64) {
	upDone := make(chan int64, 1)
	go e.spliceUp(client, remote, idle, upDone)
	down, err := e.copyIdle(client, remote, idle)
	finishDirection(client.Conn, remote, err)
	return <-upDone, down
}

// spliceUp is the homeserver-to-remote direction of a splice.
func (e *egress) spliceUp(client *tunnelConn, remote net.Conn, idle time.Duration, done chan<- int64) {
	n, err := e.copyIdle(remote, client, idle)
	finishDirection(remote, client, err)
	done <- n
}

// finishDirection ends one direction of a splice: after EOF only the
// writer's send side closes (the other direction may still be talking);
// after an error both connections close.
func finishDirection(dst, src net.Conn, err error) {
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
			return
		}
	}
	dst.Close()
	src.Close()
}

// copyIdle copies src to dst until EOF (nil error), an error, or no byte
// moving for idle.
func (e *egress) copyIdle(dst, src net.Conn, idle time.Duration) (int64, error) {
	buf := e.buffers.Get()
	defer e.buffers.Put(buf)
	var n int64
	for {
		src.SetReadDeadline(time.Now().Add(idle))
		nr, rerr := src.Read(buf)
		if nr > 0 {
			dst.SetWriteDeadline(time.Now().Add(idle))
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

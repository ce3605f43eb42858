package discovery

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

const (
	// idleConnTimeout closes pooled connections unused for this long.
	idleConnTimeout = 90 * time.Second
	// maxResponseHeaders bounds a remote server's response headers.
	maxResponseHeaders = 256 << 10
	// maxStatusBody is how much of an unexpected response [Client.Get] keeps.
	maxStatusBody = 256
)

// Client sends HTTP requests to Matrix servers by server name: discovery
// through its [Resolver], the SSRF guard before every connection, TLS 1.2+
// verified against the name discovery chose (no SNI for IP literals), and
// a keep-alive pool keyed by (TLS name, address), so a connection verified
// for one name is never reused for another. HTTP/1.1 only; response bodies
// are passed on as received (no transparent decompression).
//
// Create it with [NewClient]; it is safe for concurrent use and must not be
// copied.
type Client struct {
	r  *Resolver
	tr *http.Transport
}

// NewClient builds a Client over r, using r's Options for timeouts, roots
// and pool sizes. Nothing is contacted.
func NewClient(r *Resolver) *Client {
	c := &Client{r: r}
	c.tr = &http.Transport{
		DialTLSContext: c.dialTLS,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("federation is HTTPS only")
		},
		DisableKeepAlives:      r.opts.MaxIdlePerHost < 0,
		MaxIdleConnsPerHost:    max(r.opts.MaxIdlePerHost, 1),
		MaxIdleConns:           r.opts.MaxIdleConns,
		IdleConnTimeout:        idleConnTimeout,
		ResponseHeaderTimeout:  r.opts.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: maxResponseHeaders,
		DisableCompression:     true,
	}
	return c
}

// Resolver returns the resolver the client was built over.
func (c *Client) Resolver() *Resolver { return c.r }

// CloseIdleConnections closes pooled connections that are not in use.
func (c *Client) CloseIdleConnections() { c.tr.CloseIdleConnections() }

// Do sends req to the server named serverName and returns its response,
// whatever the status. req.URL's Opaque (or Path/RawPath) and RawQuery are
// sent as the request-target exactly as [url.URL.RequestURI] renders them,
// so set Opaque to control the bytes (the X-Matrix signature covers them);
// req.URL's scheme and host are ignored. The Host header and SNI come from
// discovery; req's headers are sent as given.
//
// Targets are tried in order while connecting fails (SSRF guard, TCP or
// TLS); once any byte of the request may have reached a target, no other
// is tried, since federation requests are not idempotent in general. A
// request body is buffered in memory unless req.GetBody is set. Do always
// closes req.Body. The caller must close resp.Body; ctx bounds the whole
// exchange, reading the body included, and a body read that waits longer
// than Options.ReadIdleTimeout fails.
//
// Errors are [*Error]: the Phase says whether discovery (PhaseName,
// PhaseDNS, PhaseWellKnown), the guard, dialling, TLS or the exchange
// itself (PhaseRequest) failed.
func (c *Client) Do(ctx context.Context, serverName string, req *http.Request) (*http.Response, error) {
	res, err := c.r.Resolve(ctx, serverName)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	return c.DoResolved(ctx, res, req)
}

// DoResolved is [Client.Do] with a resolution already made, e.g. by
// "fedgate resolve", which shows the steps before sending.
func (c *Client) DoResolved(ctx context.Context, res *Result, req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, &Error{ServerName: res.ServerName, Phase: PhaseRequest, Err: errors.New("request has no URL")}
	}
	getBody, length, err := replayableBody(req)
	if err != nil {
		return nil, &Error{ServerName: res.ServerName, Phase: PhaseRequest, Err: err}
	}
	if len(res.Targets) == 0 {
		return nil, &Error{ServerName: res.ServerName, Phase: PhaseDNS, Err: errors.New("no target addresses")}
	}
	insecure := c.r.insecureFor(res.ServerName)
	tlsName := res.TLSServerName
	if tlsName == "" {
		tlsName = res.CertIP.String()
	}
	var errs []error
	phase := PhaseGuard
	for _, t := range res.Targets {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		target := t.Addr.String()
		k := dialKey{tlsName: tlsName, addr: t.Addr, insecure: insecure, guarded: !t.Override}
		if k.guarded {
			if err := c.r.guard.check(t.Addr.Addr()); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", target, err))
				continue
			}
		}
		resp, sent, err := c.attempt(ctx, k, res.Host, req, getBody, length)
		if err == nil {
			return resp, nil
		}
		var de *Error
		if !sent && errors.As(err, &de) && de.Phase.rank() <= PhaseTLS.rank() {
			// Nothing was written to this target: try the next one.
			errs = append(errs, err)
			if de.Phase.rank() > phase.rank() {
				phase = de.Phase
			}
			continue
		}
		return nil, &Error{ServerName: res.ServerName, Phase: PhaseRequest, Target: target, Err: err}
	}
	return nil, &Error{ServerName: res.ServerName, Phase: phase, Err: errors.Join(errs...)}
}

// dialKeyCtx carries the dialKey of an attempt to the transport's dial.
type dialKeyCtx struct{}

// attempt sends one request to one target. sent reports whether any byte
// of the request body may have been read by the transport.
func (c *Client) attempt(ctx context.Context, k dialKey, host string, req *http.Request, getBody func() (io.ReadCloser, error), length int64) (resp *http.Response, sent bool, err error) {
	var started atomic.Bool
	ctx, cancel := context.WithCancel(context.WithValue(ctx, dialKeyCtx{}, k))
	out := req.WithContext(ctx)
	u := *req.URL
	u.Scheme, u.Host, u.User, u.Fragment, u.RawFragment = "https", poolHost(k), nil, "", ""
	out.URL = &u
	out.Host = host
	out.RequestURI = ""
	out.Body, out.GetBody = nil, nil
	if getBody != nil {
		track := func() (io.ReadCloser, error) {
			b, err := getBody()
			if err != nil {
				return nil, err
			}
			return &trackedBody{rc: b, started: &started}, nil
		}
		if out.Body, err = track(); err != nil {
			cancel()
			return nil, false, err
		}
		out.GetBody = track
		out.ContentLength = length
	}
	resp, err = c.tr.RoundTrip(out)
	if err != nil {
		cancel()
		return nil, started.Load(), err
	}
	resp.Body = newIdleBody(resp.Body, c.r.opts.ReadIdleTimeout, cancel)
	resp.Request = req
	return resp, true, nil
}

// poolHost is the synthetic URL host the transport pools connections by:
// a hash of the whole dial key, so equal keys share connections and
// different keys never do. It never reaches the network (Host is set
// explicitly and dialling uses the key itself).
func poolHost(k dialKey) string {
	buf := make([]byte, 0, 128)
	buf = append(buf, k.tlsName...)
	buf = append(buf, 0)
	buf = k.addr.AppendTo(buf)
	buf = append(buf, 0, boolByte(k.insecure), boolByte(k.guarded))
	sum := sha256.Sum256(buf)
	const suffix = ".fedgate.invalid:443"
	out := make([]byte, 32, 32+len(suffix))
	hex.Encode(out, sum[:16])
	return string(append(out, suffix...))
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// dialTLS is the transport's dial: it connects the attempt's dial key.
func (c *Client) dialTLS(ctx context.Context, _, addr string) (net.Conn, error) {
	k, ok := ctx.Value(dialKeyCtx{}).(dialKey)
	if !ok || poolHost(k) != addr {
		return nil, fmt.Errorf("internal error: no dial key for %s", addr)
	}
	return c.r.dialTLS(ctx, k)
}

// Get sends GET path (with its query, if any) to serverName and returns the
// response body, which must be at most maxBytes long, if the status is 200.
// Any other status is an [*Error] with PhaseStatus wrapping a
// [*StatusError]. It suits the keyring's key fetches.
func (c *Client) Get(ctx context.Context, serverName, path string, maxBytes int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, &Error{ServerName: serverName, Phase: PhaseRequest, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(ctx, serverName, req)
	if err != nil {
		return nil, err
	}
	return ReadBody(serverName, resp, maxBytes)
}

// ReadBody reads and closes resp.Body if the status is 200 and the body is
// at most maxBytes long; otherwise it returns an [*Error] (PhaseStatus with
// a [*StatusError], or PhaseRequest).
func ReadBody(serverName string, resp *http.Response, maxBytes int64) ([]byte, error) {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		start, _ := io.ReadAll(io.LimitReader(resp.Body, maxStatusBody))
		return nil, &Error{ServerName: serverName, Phase: PhaseStatus, Err: &StatusError{StatusCode: resp.StatusCode, Body: start}}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return nil, &Error{ServerName: serverName, Phase: PhaseRequest, Err: fmt.Errorf("reading response: %w", err)}
	}
	if int64(len(body)) > maxBytes {
		return nil, &Error{ServerName: serverName, Phase: PhaseRequest, Err: fmt.Errorf("response larger than %d bytes", maxBytes)}
	}
	return body, nil
}

// replayableBody returns a function giving a fresh copy of req's body for
// each attempt (nil when there is no body), and its length (-1 if unknown).
// req.Body is closed.
func replayableBody(req *http.Request) (func() (io.ReadCloser, error), int64, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, 0, nil
	}
	if req.GetBody != nil {
		req.Body.Close()
		length := req.ContentLength
		if length == 0 {
			length = -1
		}
		return req.GetBody, length, nil
	}
	data, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("reading request body: %w", err)
	}
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, int64(len(data)), nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// trackedBody records whether the transport read any byte of the body.
type trackedBody struct {
	rc      io.ReadCloser
	started *atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.started.Store(true)
	}
	return n, err
}

func (b *trackedBody) Close() error { return b.rc.Close() }

// errReadIdle is returned by a response body that waited too long.
var errReadIdle = errors.New("response body: no data within the read idle timeout")

// idleBody fails a Read that waits longer than idle, by cancelling the
// request's context (which makes the transport drop the connection).
type idleBody struct {
	rc     io.ReadCloser
	idle   time.Duration
	timer  *time.Timer
	fired  atomic.Bool
	cancel context.CancelFunc
}

func newIdleBody(rc io.ReadCloser, idle time.Duration, cancel context.CancelFunc) *idleBody {
	b := &idleBody{rc: rc, idle: idle, cancel: cancel}
	b.timer = time.AfterFunc(idle, func() {
		b.fired.Store(true)
		cancel()
	})
	b.timer.Stop()
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.idle)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if err != nil && b.fired.Load() {
		err = errReadIdle
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}

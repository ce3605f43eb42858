package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/config"
)

// maxBufferedResponse bounds the responses fedgate reads completely before
// answering (transactions), see [upstream.bufferResponse].
const maxBufferedResponse = 4 << 20

// upstream forwards authenticated requests to the homeserver. It is built
// once per runtime from [upstream] and shared by all requests.
type upstream struct {
	url       *url.URL
	transport *http.Transport
	proxy     *httputil.ReverseProxy
	log       *zap.Logger
}

// ctxKey carries the request's *inbound through the reverse proxy.
type ctxKey struct{}

func newUpstream(c *config.Config, log *zap.Logger) (*upstream, error) {
	u, err := url.Parse(c.Upstream.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream.url: %w", err)
	}
	dialer := &net.Dialer{Timeout: c.Upstream.DialTimeout.D(), KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          c.Upstream.MaxIdleConns,
		MaxIdleConnsPerHost:   c.Upstream.MaxIdleConns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: c.Upstream.Timeout.D(),
		TLSHandshakeTimeout:   c.Upstream.DialTimeout.D(),
		ExpectContinueTimeout: time.Second,
		// Never add Accept-Encoding or decompress: the response is relayed
		// as the homeserver sent it.
		DisableCompression: true,
		// One write (and one TCP segment train) per request instead of a
		// 4 KiB head and the rest of a /send body: 22-25 µs per 16 KiB PUT.
		WriteBufferSize: 64 << 10,
	}
	if u.Scheme == "https" {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		tr.ForceAttemptHTTP2 = true
		if c.Upstream.CAFile != "" {
			pem, err := os.ReadFile(c.Upstream.CAFile)
			if err != nil {
				return nil, fmt.Errorf("upstream.ca_file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("upstream.ca_file: no certificates in %s", c.Upstream.CAFile)
			}
			tr.TLSClientConfig.RootCAs = pool
		}
	}
	up := &upstream{url: u, transport: tr, log: log}
	up.proxy = &httputil.ReverseProxy{
		Rewrite:        up.rewrite,
		Transport:      tr,
		BufferPool:     newBufferPool(32 << 10),
		ModifyResponse: up.modifyResponse,
		ErrorHandler:   up.errorHandler,
		// 0: flush when a response ends, or at once for responses of
		// unknown length (ReverseProxy's rule). -1 flushed after every
		// write, sending headers and body as two TLS records and two
		// writes: ~10 µs per GET.
		FlushInterval: 0,
	}
	return up, nil
}

// close releases idle upstream connections (after a reload replaced us).
func (up *upstream) close() { up.transport.CloseIdleConnections() }

// rewrite points the outbound request at the homeserver while keeping the
// request-target byte for byte: the homeserver re-verifies the X-Matrix
// signature over it. ReverseProxy rebuilds the request line from URL fields
// and may have dropped an unparsable query before calling us, so path and
// query are restored from the raw RequestURI here.
func (up *upstream) rewrite(pr *httputil.ProxyRequest) {
	in := pr.In.Context().Value(ctxKey{}).(*inbound)
	out := pr.Out
	out.URL.Scheme = up.url.Scheme
	out.URL.Host = up.url.Host
	out.URL.Opaque = in.path
	out.URL.RawQuery = in.rawQuery
	out.URL.ForceQuery = in.forceQuery
	out.URL.Path, out.URL.RawPath = "", ""
	out.Host = pr.In.Host
	out.Header.Set("X-Forwarded-For", in.peer.String())
	out.Header.Set("X-Forwarded-Proto", "https")
	out.Header.Set("X-Request-Id", in.id)
	if in.body != nil {
		body := in.body
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.ContentLength = int64(len(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		out.Header.Del("Transfer-Encoding")
		out.TransferEncoding = nil
	} else {
		out.Body = http.NoBody
		out.ContentLength = 0
	}
}

// modifyResponse runs when the homeserver's headers arrived.
func (up *upstream) modifyResponse(resp *http.Response) error {
	in := resp.Request.Context().Value(ctxKey{}).(*inbound)
	in.upstreamHeaders = time.Now()
	// A transaction is only acknowledged with 200 once the homeserver's whole
	// 200 answer arrived; a sender must never consider delivered a
	// transaction whose answer broke off.
	if in.match.Endpoint != nil && in.match.Endpoint.Class == "send" {
		return up.bufferResponse(resp)
	}
	return nil
}

// bufferResponse reads the whole body; a failure becomes a 502 instead of a
// truncated 200.
func (up *upstream) bufferResponse(resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBufferedResponse+1))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("reading homeserver response: %w", err)
	}
	if len(body) > maxBufferedResponse {
		return fmt.Errorf("homeserver response larger than %d bytes", maxBufferedResponse)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Transfer-Encoding")
	resp.TransferEncoding = nil
	return nil
}

// errorHandler answers when the homeserver could not be reached or failed
// before its response started: 504 on timeouts, 502 otherwise, Matrix JSON
// either way. A client that went away gets nothing.
func (up *upstream) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	in := r.Context().Value(ctxKey{}).(*inbound)
	if errors.Is(r.Context().Err(), context.Canceled) {
		in.status = statusClientClosed
		in.reason = "client_closed"
		return
	}
	e := &Error{Status: http.StatusBadGateway, Code: CodeUnknown, Msg: "The homeserver could not be reached", Reason: "upstream_unreachable", Err: err}
	if isTimeout(err) {
		e = &Error{Status: http.StatusGatewayTimeout, Code: CodeUnknown, Msg: "The homeserver did not answer in time", Reason: "upstream_timeout", Err: err}
	} else if !in.upstreamHeaders.IsZero() {
		e.Msg, e.Reason = "The homeserver's response broke off", "upstream_broken"
	}
	in.fail(e)
	writeError(w, e)
}

// statusClientClosed is logged when the remote server hung up (nginx's 499).
const statusClientClosed = 499

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// http.Transport's ResponseHeaderTimeout error is not a net.Error.
	return err != nil && bytes.Contains([]byte(err.Error()), []byte("timeout awaiting response headers"))
}

// bufferPool lends the reverse proxy fixed-size copy buffers.
type bufferPool struct{ pool *sync.Pool }

func newBufferPool(size int) bufferPool {
	return bufferPool{pool: &sync.Pool{New: func() any { b := make([]byte, size); return &b }}}
}

func (p bufferPool) Get() []byte  { return *(p.pool.Get().(*[]byte)) }
func (p bufferPool) Put(b []byte) { p.pool.Put(&b) }

package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/discovery"
)

// egressUserAgent is sent when the homeserver sent no User-Agent.
const egressUserAgent = "fedgate"

// maxErrDetail bounds the cause quoted in a delivery failure's message.
const maxErrDetail = 300

// deliver signs the request for its destination, sends it through the
// federation client (discovery, SNI and certificate checks, the SSRF
// guard, the per-destination connection pool) within [egress] timeout, and
// relays the answer as it arrives.
func (e *egress) deliver(er *egressRequest) {
	ctx, cancel := context.WithTimeout(er.r.Context(), er.rt.cfg.Egress.Timeout.D())
	defer cancel()
	req, err := er.outboundRequest(ctx)
	if err != nil {
		e.reject(er, err)
		return
	}
	if er.rt.hosted.Lookup(er.dest) >= 0 {
		e.deliverLocal(er, req)
		return
	}
	er.remoteStart, er.sentAt = time.Now(), e.now()
	resp, err := e.g.fedDo(ctx, er.deliverTo, req)
	if err != nil {
		e.deliveryFailed(er, err)
		return
	}
	defer resp.Body.Close()
	er.remoteHeaders = time.Now()
	e.recordOutcome(er, resp)
	e.relay(er, resp)
}

// deliverLocal hands a request for another server hosted here to the
// inbound pipeline in-process instead of sending it out to come back: the
// same request (method, request-target bytes, body, the fresh signature)
// goes through the same checks as one from the network (the destination
// server's policy and limits, the signature verified with the sending
// server's key from memory) and on to the destination's homeserver byte
// for byte; the answer is relayed to our homeserver as it is written. It
// never crossed a network, so the destination's peer network rules and
// per-IP limit do not apply, and no backoff is kept for it. Both sides log
// and count it: as the sender's egress and the destination's inbound.
func (e *egress) deliverLocal(er *egressRequest, req *http.Request) {
	r := req.WithContext(context.WithValue(req.Context(), localDelivery{}, true))
	r.RequestURI = er.target
	r.Host = er.dest
	r.RemoteAddr = er.r.RemoteAddr
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.TLS = nil
	if r.Body == nil {
		r.Body = http.NoBody
	}
	er.remoteStart = time.Now()
	e.g.serveFederation(er.w, r)
	er.remoteHeaders = time.Now()
}

// outboundRequest builds what fedgate sends: the method, request-target
// bytes and body exactly as the homeserver sent them; a fresh X-Matrix
// signature over exactly those, made with [keys] request_key for the
// destination (or, for an unsigned request, the homeserver's own
// non-X-Matrix Authorization); Content-Type: application/json with every
// body; the homeserver's User-Agent. Nothing else of the homeserver's
// request is forwarded (no cookies, no proxy credentials, no hop-by-hop
// headers).
func (er *egressRequest) outboundRequest(ctx context.Context) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, er.r.Method, "https://destination.invalid/", nil)
	if err != nil {
		return nil, fmt.Errorf("building the outbound request: %w", err)
	}
	// Opaque keeps the path bytes as received: no decoding, no
	// re-encoding. The signature covers them.
	req.URL = &url.URL{Opaque: er.path, RawQuery: er.rawQuery, ForceQuery: er.forceQuery}
	h := req.Header
	if ua := er.r.Header.Get("User-Agent"); ua != "" {
		h.Set("User-Agent", ua)
	} else {
		h.Set("User-Agent", egressUserAgent)
	}
	if er.body != nil {
		body := er.body
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.ContentLength = int64(len(body))
		h.Set("Content-Type", "application/json")
	}
	if er.sign {
		x, err := auth.SignRequest(er.hs.keys.request, er.r.Method, er.target, er.hs.name, er.dest, er.body)
		if err != nil {
			return nil, fmt.Errorf("signing the request for %s: %w", er.dest, err)
		}
		h.Set("Authorization", x.String())
	} else if v := er.r.Header.Values("Authorization"); len(v) > 0 {
		// Not X-Matrix (that would be signed afresh): passed on as the
		// worker proxy protocol does.
		h["Authorization"] = v
	}
	return req, nil
}

// deliveryFailed answers a request that could not be delivered: 502 with
// the cause (the homeserver is our own, so the cause is not withheld from
// it), and one more failure in the destination's backoff. A homeserver
// that went away gets nothing.
func (e *egress) deliveryFailed(er *egressRequest, err error) {
	if er.r.Context().Err() != nil {
		er.status, er.reason = statusClientClosed, "client_closed"
		return
	}
	window := e.backoff.failed(er.deliverTo, er.sentAt, e.now())
	reason, what := classifyDeliveryError(err)
	detail := err.Error()
	if len(detail) > maxErrDetail {
		detail = detail[:maxErrDetail] + "..."
	}
	er.stage = "deliver"
	if ce := e.log.Check(zap.InfoLevel, "egress delivery failed"); ce != nil {
		ce.Write(zap.String("request_id", er.id), zap.String("destination", er.dest), zap.String("reason", reason),
			zap.Duration("backoff", window), zap.Error(err))
	}
	e.reject(er, &Error{Status: http.StatusBadGateway, Code: CodeUnknown, Reason: reason, Err: err,
		Msg: fmt.Sprintf("fedgate could not deliver %s %s to %s: %s (%s): %s", er.r.Method, er.path, er.dest, what, reason, detail)})
}

// classifyDeliveryError names a delivery failure for logs and the answer.
func classifyDeliveryError(err error) (reason, what string) {
	var de *discovery.Error
	phase := discovery.Phase("")
	if errors.As(err, &de) {
		phase = de.Phase
	}
	switch {
	case errors.Is(err, discovery.ErrBlocked) && (phase == discovery.PhaseGuard || phase == ""):
		return "ssrf_blocked", "it resolves only to addresses fedgate refuses to connect to (private, loopback or reserved networks; see outbound.allow_networks)"
	case phase == discovery.PhaseName:
		return "bad_destination", "the destination is not a valid server name"
	case phase == discovery.PhaseDNS || phase == discovery.PhaseWellKnown:
		return "dns_failed", "server discovery failed"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return "remote_timeout", "the destination did not answer in time"
	case phase == discovery.PhaseDial:
		return "remote_unreachable", "no connection could be made"
	case phase == discovery.PhaseTLS:
		return "remote_tls", "the TLS handshake or certificate check failed"
	}
	return "remote_failed", "the exchange failed"
}

// recordOutcome updates the destination's backoff from the status: 429
// waits as long as the remote asks, 5xx counts as a failure, anything else
// clears the record. A 429 body is small; it is read here (bounded) for
// retry_after_ms and relayed as read.
func (e *egress) recordOutcome(er *egressRequest, resp *http.Response) {
	now := e.now()
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		head, _ := io.ReadAll(io.LimitReader(resp.Body, maxRateLimitBody))
		resp.Body = readCloser{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
		retry := retryAfter(resp.Header, head, now)
		if retry <= 0 {
			retry = defaultRetryAfter
		}
		e.backoff.rateLimited(er.deliverTo, now, retry)
	case resp.StatusCode >= 500:
		e.backoff.failed(er.deliverTo, er.sentAt, now)
	default:
		e.backoff.succeeded(er.deliverTo)
	}
}

// readCloser reads from one reader and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}

// relay copies the remote's answer to the homeserver: status, end-to-end
// headers, and the body as a stream, flushed as it arrives. Once the
// status is out a broken body can no longer become a 502, so the
// homeserver's connection (or HTTP/2 stream) is aborted instead: it must
// never take a truncated answer for a complete one.
func (e *egress) relay(er *egressRequest, resp *http.Response) {
	copyEndToEndHeaders(er.w.Header(), resp.Header)
	er.w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(er.w)
	buf := e.buffers.Get()
	defer e.buffers.Put(buf)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := er.w.Write(buf[:n]); werr != nil {
				er.reason = "client_closed"
				return
			}
			rc.Flush()
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			if er.r.Context().Err() != nil {
				er.reason = "client_closed"
				return
			}
			er.reason = "remote_broken"
			if ce := e.log.Check(zap.InfoLevel, "egress response broke off"); ce != nil {
				ce.Write(zap.String("request_id", er.id), zap.String("destination", er.dest), zap.Error(rerr))
			}
			panic(http.ErrAbortHandler) // run's deferred finish still logs the request

		}
	}
}

// hopByHop are the headers that concern one connection only (RFC 9110
// section 7.6.1, plus the non-standard ones proxies meet); they are never
// relayed, and neither is any header the Connection header names.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Trailers", "Transfer-Encoding", "Upgrade",
}

// copyEndToEndHeaders copies src into dst without hop-by-hop headers.
func copyEndToEndHeaders(dst, src http.Header) {
	var named []string
	for _, v := range src["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				named = append(named, http.CanonicalHeaderKey(f))
			}
		}
	}
	for k, vv := range src {
		if slices.Contains(hopByHop, k) || slices.Contains(named, k) {
			continue
		}
		dst[k] = vv
	}
}

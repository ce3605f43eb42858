package gateway

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/fedgate/fedgate/internal/endpoints"
	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/upstream"
)

// inbound is the per-request state of the inbound pipeline: parsed once,
// read by every later stage.
type inbound struct {
	w     *responseRecorder // &rec, or a test's own
	r     *http.Request
	rt    *runtime         // one configuration snapshot for the whole request
	hs    *hostedServer    // the hosted server it is for (settled by the destination stage)
	pol   *policy.Snapshot // hs's policy snapshot, for the whole request
	id    string
	start time.Time

	// sent is the hosted server Host and SNI name (its position, or
	// hosting.None or hosting.Ambiguous); hostConflict: they name two.
	sent         int
	hostConflict bool
	internal     bool // handed over in-process by the egress (isLocalDelivery)

	peer       netip.Addr
	path       string // raw path of the request-target
	rawQuery   string // raw query, without '?'
	forceQuery bool   // the target ended in a bare '?'
	match      endpoints.Match

	origin       string        // authenticated (or claimed, before the signature stage) origin
	originHosted *hostedServer // the origin when it is another server hosted here
	auth         []xMatrixHeader
	body         []byte // the body exactly as received; nil when there is none
	canon        []byte // canonical JSON of body, for signature checks

	// bodyBuf and canonBuf are the pooled buffers body and canon live in
	// (canon may be body itself); returned when the request ends.
	bodyBuf, canonBuf *[]byte

	release func() // returns a concurrency slot, if one was taken

	upstreamStart   time.Time
	upstreamHeaders time.Time
	setFields       [5]upstream.Field // the header fields forward sets
	// pool and member are where forward sent the request (the member
	// that answered, or the last one tried); failover: a second member.
	pool     string
	member   int
	failover bool
	outcome

	rec responseRecorder
}

// fail records why a request did not succeed, for the access log.
func (in *inbound) fail(e *Error) {
	in.status, in.reason = e.Status, e.Reason
}

// stage is one step of the pipeline. check returns nil to continue, errDone
// when it answered the request itself, or an error (usually *Error) that
// rejects the request.
type stage struct {
	name  string
	check func(g *Gateway, in *inbound) error
}

// errDone stops the pipeline after a stage answered the request itself.
var errDone = errors.New("request answered")

// inboundStages is the order of checks, cheapest first: an attacker's junk
// should cost as little as possible, and no key is fetched for an origin that
// policy refuses. The order is a security property; TestStageOrder pins it.
func inboundStages() []stage {
	return []stage{
		{"peer", (*Gateway).stagePeer},                    // network policy, per-IP limit
		{"route", (*Gateway).stageRoute},                  // endpoint table: 404/405
		{"local", (*Gateway).stageLocal},                  // well-known, keys, notary
		{"x_matrix", (*Gateway).stageXMatrix},             // Authorization header(s)
		{"destination", (*Gateway).stageDestination},      // destination is a hosted server, the one Host/SNI name
		{"origin_policy", (*Gateway).stageOriginPolicy},   // allow/deny lists, before any key fetch
		{"body", (*Gateway).stageBody},                    // size limit, JSON object
		{"origin_key", (*Gateway).stageOriginKey},         // keyring
		{"signature", (*Gateway).stageSignature},          // X-Matrix verification
		{"request_policy", (*Gateway).stageRequestPolicy}, // endpoint, room, user rules
		{"origin_limits", (*Gateway).stageOriginLimits},   // per-origin rate and concurrency
	}
}

// serveFederation is the handler of the federation and https listeners.
func (g *Gateway) serveFederation(w http.ResponseWriter, r *http.Request) {
	in := g.newInbound(w, r)
	defer g.done(in)
	if len(r.TransferEncoding) > 0 {
		// net/http drops a Content-Length sent alongside Transfer-Encoding
		// before we see the request, so a smuggling attempt cannot be told
		// from a plain chunked request. RFC 9112 section 6.1 asks to close
		// the connection after answering such a request; federation
		// senders give a Content-Length, so closing after every chunked
		// request costs them nothing.
		w.Header().Set("Connection", "close")
	}
	for _, st := range g.stages {
		err := st.check(g, in)
		if err == nil {
			continue
		}
		if err != errDone {
			in.stage = st.name
			g.reject(in, err)
		}
		return
	}
	g.forward(in)
}

// newInbound takes a request's state from the pool, cleared: one
// configuration snapshot, and the hosted server its Host and SNI name (the
// top-level server when they name none) until its destination settles it.
func (g *Gateway) newInbound(w http.ResponseWriter, r *http.Request) *inbound {
	in, _ := g.inbounds.Get().(*inbound)
	if in == nil {
		in = new(inbound)
	}
	rt := g.rt.Load()
	hs, sent, conflict := rt.serverFor(r)
	*in = inbound{
		r:            r,
		rt:           rt,
		hs:           hs,
		pol:          hs.policy().Snapshot(),
		id:           g.ids.next(),
		start:        time.Now(),
		sent:         sent,
		hostConflict: conflict,
		internal:     isLocalDelivery(r),
		auth:         in.auth[:0], // keeps its array
	}
	in.rec.ResponseWriter = w
	in.w = &in.rec
	return in
}

// done ends a request and returns its state to the pool; nothing may
// hold on to in afterwards.
func (g *Gateway) done(in *inbound) {
	g.finish(in)
	auth := in.auth[:0]
	clear(auth[:cap(auth)])
	*in = inbound{auth: auth}
	g.inbounds.Put(in)
}

// reject is the one place that answers a refused request.
func (g *Gateway) reject(in *inbound, err error) {
	e := asError(err)
	in.fail(e)
	if e.Status >= 500 {
		g.log.Error("request failed", append(in.logFields(), errField(e))...)
	}
	writeError(in.w, e)
}

// finish runs after every request: it returns resources, counts the
// request in the metrics and writes the access (and decision) log lines.
func (g *Gateway) finish(in *inbound) {
	if in.release != nil {
		in.release()
	}
	defer g.releaseBuffers(in) // the access log reads len(in.body)
	if in.status == 0 {
		in.status = in.w.status
	}
	end := time.Now()
	decision := in.decision()
	g.logInbound(in, decision, end)
	g.recordInbound(in, decision, end)
	g.observeInbound(in, decision, end) // last: a counted request is logged and recorded
}

// stagePeer records the peer address; network policy and the per-IP limit
// come first, before any parsing. A request the egress hands over
// in-process (hosted server to hosted server) crossed no network: it has
// no peer to judge.
func (g *Gateway) stagePeer(in *inbound) error {
	ap, err := netip.ParseAddrPort(in.r.RemoteAddr)
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: CodeUnknown, Msg: "Bad peer address", Reason: "bad_peer", Err: err}
	}
	in.peer = ap.Addr().Unmap()
	if in.internal {
		return nil
	}
	return g.checkPeerPolicy(in)
}

// stageRoute finds the endpoint. Static path segments must match byte for
// byte, so no encoding trick reaches an endpoint under another name.
func (g *Gateway) stageRoute(in *inbound) error {
	target := in.r.RequestURI
	if target == "" || target[0] != '/' {
		return errUnrecognized()
	}
	in.path, in.rawQuery, in.forceQuery = cutTarget(target)
	m, res := g.router.Lookup(in.r.Method, in.path)
	switch res {
	case endpoints.Found:
		in.match = m
		return nil
	case endpoints.MethodNotAllowed:
		return &Error{Status: http.StatusMethodNotAllowed, Code: CodeUnrecognized, Msg: "Method not allowed for this endpoint",
			Reason: "method_not_allowed", Allow: strings.Join(g.router.Allowed(in.path), ", ")}
	}
	if ep := in.rt.passthrough(in.path); ep != nil {
		in.match = endpoints.Match{Endpoint: ep}
		return nil
	}
	return errUnrecognized()
}

// cutTarget cuts a raw origin-form request-target into path and query.
// forceQuery marks a bare trailing '?', which must be sent on as it came:
// the X-Matrix signature covers the target byte for byte.
func cutTarget(target string) (path, rawQuery string, forceQuery bool) {
	path, rawQuery, hasQuery := strings.Cut(target, "?")
	return path, rawQuery, hasQuery && rawQuery == ""
}

func errUnrecognized() *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeUnrecognized, Msg: "Unrecognized request", Reason: "unknown_endpoint"}
}

// needsXMatrix reports whether the request's endpoint is X-Matrix signed.
func (in *inbound) needsXMatrix() bool {
	return in.match.Endpoint.Auth == endpoints.AuthXMatrix
}

// responseRecorder counts what is written, for the access log. It unwraps
// for http.ResponseController, so flushing and hijacking still work.
type responseRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *responseRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *responseRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *responseRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

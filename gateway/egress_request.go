package gateway

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/internal/endpoints"
	"github.com/fedgate/fedgate/internal/servername"
	"github.com/fedgate/fedgate/policy"
)

// egressRequest is the per-request state of one outbound federation
// request (worker proxy or intercepted), parsed once and read by every
// later stage. CONNECT requests use it too, for their log line.
type egressRequest struct {
	w     *responseRecorder
	r     *http.Request
	rt    *runtime         // one configuration snapshot for the whole request
	hs    *hostedServer    // the hosted server it speaks as (settled by speakAs)
	pol   *policy.Snapshot // hs's policy snapshot, for the whole request
	id    string
	start time.Time
	mode  string // modeWorkerProxy, modeIntercept or modePassthrough
	peer  netip.Addr
	tun   *tunnel // the intercepted tunnel the request came through
	// authAs is the hosted server whose egress secret the request (or its
	// tunnel) presented; nil when none was presented. It may then speak
	// only as that server.
	authAs *hostedServer

	// target is the request-target fedgate sends, exactly as the
	// homeserver sent it: path and query, no scheme or host.
	target     string
	path       string
	rawQuery   string
	forceQuery bool
	match      endpoints.Match
	// targetServer is the server name of a worker-proxy target.
	targetServer string

	dest      string // destination server name (before delegation)
	deliverTo string // the server name discovery resolves (dest, or host:443 for well-known)
	auth      []auth.XMatrix
	body      []byte // as received; nil when there is none
	canon     []byte // canonical JSON of body, for the signature check
	sign      bool   // fedgate signs the request it sends

	remoteStart   time.Time
	remoteHeaders time.Time
	sentAt        time.Time // when delivery started, on the backoff clock
	bytesUp       int64     // passthrough: homeserver to remote
	bytesDown     int64     // passthrough: remote to homeserver
	outcome
	backoffDecision bool // answered from the backoff table
}

// otherEndpoint classifies signed requests under /_matrix/ that the
// endpoint table does not know (new or unstable endpoints): fedgate
// carries them once the signature proves they come from our homeserver,
// but deny_endpoints cannot name them.
var otherEndpoint = endpoints.Endpoint{Name: "other", Class: "other", Auth: endpoints.AuthXMatrix, Body: endpoints.BodyDefault}

// egressStage is one step of the egress pipeline; check returns nil to go
// on or an error (usually *Error) that refuses the request.
type egressStage struct {
	name  string
	check func(e *egress, er *egressRequest) error
}

// egressStages is the order of checks for worker-proxy and intercepted
// requests, cheapest first and nothing sent out before the last one: the
// destination lists come before any DNS lookup, the signature check
// before any limiter is charged. TestEgressStageOrder pins it.
func egressStages() []egressStage {
	return []egressStage{
		{"route", (*egress).stageRoute},                        // endpoint table
		{"x_matrix", (*egress).stageXMatrix},                   // Authorization header(s), origin is a hosted server (the credentials')
		{"destination", (*egress).stageDestination},            // which server, allow/deny lists
		{"endpoint_policy", (*egress).stageEndpointPolicy},     // endpoint and room rules
		{"body", (*egress).stageBody},                          // size limit, JSON object
		{"signature", (*egress).stageSignature},                // internal sender check
		{"destination_limit", (*egress).stageDestinationLimit}, // per_destination rate limit
		{"backoff", (*egress).stageBackoff},                    // remote down or rate limiting us
	}
}

// newRequest starts the state of one egress request. It speaks as the
// top-level server until credentials or its X-Matrix origin say otherwise.
func (e *egress) newRequest(w http.ResponseWriter, r *http.Request, rt *runtime, mode string) *egressRequest {
	er := &egressRequest{
		w:     &responseRecorder{ResponseWriter: w},
		r:     r,
		rt:    rt,
		id:    e.g.ids.next(),
		start: time.Now(),
		mode:  mode,
	}
	er.speakAs(rt.primary())
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		er.peer = ap.Addr().Unmap()
	}
	return er
}

// speakAs makes hs the hosted server the request is sent as: its keys sign
// it, its policy and limits apply.
func (er *egressRequest) speakAs(hs *hostedServer) {
	if er.hs != hs {
		er.hs, er.pol = hs, hs.policy().Snapshot()
	}
}

// run passes er through the mode's own first stages, then the common
// ones, and delivers it.
func (e *egress) run(er *egressRequest, first ...egressStage) {
	defer e.finish(er)
	for _, stages := range [2][]egressStage{first, e.stages} {
		for _, st := range stages {
			if err := st.check(e, er); err != nil {
				er.stage = st.name
				e.reject(er, err)
				return
			}
		}
	}
	e.deliver(er)
}

// reject is the one place that answers a refused egress request.
func (e *egress) reject(er *egressRequest, err error) {
	ee := asError(err)
	er.status, er.reason = ee.Status, ee.Reason
	if ee.Reason == "internal" {
		e.log.Error("egress request failed", append(er.errorFields(e.g), errField(ee))...)
	}
	writeErrorKey(er.w, ee, er.errKey(ee.Status))
}

// errKey is the JSON key of the message in errors fedgate answers with:
// "err" where Synapse's worker proxy protocol has the proxy answer itself
// (401 for credentials and signatures, 5xx for delivery), "error" for
// everything a remote server could have said too (403, 429, ...), so that
// Synapse shows those as it shows the remote's own errors.
func (er *egressRequest) errKey(status int) string {
	if er.mode == modeWorkerProxy && (status == http.StatusUnauthorized || status >= 500) {
		return "err"
	}
	return "error"
}

// finish writes the access and decision log lines and counts the request
// in the metrics.
func (e *egress) finish(er *egressRequest) {
	if er.status == 0 {
		er.status = er.w.status
	}
	e.g.finishEgress(er.record())
}

// splitTarget cuts an origin-form request-target into path and query.
// Only targets that start with a single '/' and carry no fragment are
// accepted: anything else cannot be a federation request, and "//" would
// be rendered as an authority on the way out.
func (er *egressRequest) splitTarget(target string) error {
	if target == "" || target[0] != '/' || strings.HasPrefix(target, "//") || strings.ContainsAny(target, "# \t\r\n") {
		return &Error{Status: http.StatusBadRequest, Code: CodeUnrecognized, Msg: "The request-target is not a federation path", Reason: "bad_target"}
	}
	er.target = target
	er.path, er.rawQuery, er.forceQuery = cutTarget(target)
	return nil
}

// stageRoute finds the endpoint. Paths the table does not know are
// carried only under /_matrix/ and only with our signature (checked in
// stageSignature); anything else is not federation.
func (e *egress) stageRoute(er *egressRequest) error {
	m, res := e.g.router.Lookup(er.r.Method, er.path)
	switch res {
	case endpoints.Found:
		er.match = m
		return nil
	case endpoints.MethodNotAllowed:
		return &Error{Status: http.StatusMethodNotAllowed, Code: CodeUnrecognized, Msg: "Method not allowed for this endpoint",
			Reason: "method_not_allowed", Allow: strings.Join(e.g.router.Allowed(er.path), ", ")}
	}
	if ep := er.rt.passthrough(er.path); ep != nil {
		er.match = endpoints.Match{Endpoint: ep}
		return nil
	}
	if strings.HasPrefix(er.path, "/_matrix/") && hasXMatrix(er.r.Header) {
		er.match = endpoints.Match{Endpoint: &otherEndpoint}
		return nil
	}
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden,
		Msg: "fedgate's egress carries Matrix federation only: this is not a federation endpoint and the request is not signed (not_federation)", Reason: "not_federation"}
}

// hasXMatrix reports whether any Authorization header uses the X-Matrix
// scheme.
func hasXMatrix(h http.Header) bool {
	for _, v := range h.Values("Authorization") {
		if auth.IsXMatrix(v) {
			return true
		}
	}
	return false
}

// stageXMatrix parses the X-Matrix header(s) the homeserver signed with.
// Every one must name the same origin, a server hosted here, and the same
// destination: the egress speaks only as a hosted server, and a homeserver
// that presented its egress secret only as the server the secret belongs
// to. The origin then decides whose keys sign and whose policy applies.
// Unsigned requests speak as the credentials' server, else the top-level
// server.
func (e *egress) stageXMatrix(er *egressRequest) error {
	if !hasXMatrix(er.r.Header) {
		if er.authAs != nil {
			er.speakAs(er.authAs)
		}
		return nil
	}
	xs, err := auth.ParseAuthorization(er.r.Header.Values("Authorization"))
	if err != nil {
		return keyError(err)
	}
	for _, x := range xs {
		if x.Origin != xs[0].Origin {
			return &Error{Status: http.StatusBadRequest, Code: CodeUnauthorized, Msg: "X-Matrix headers name different origins", Reason: "malformed_header"}
		}
		if x.Destination != xs[0].Destination {
			return &Error{Status: http.StatusBadRequest, Code: CodeUnauthorized, Msg: "X-Matrix headers name different destinations", Reason: "malformed_header"}
		}
	}
	hs := er.rt.hostedByName(xs[0].Origin)
	switch {
	case hs == nil && len(er.rt.servers) == 1:
		return errOriginNotUs("The request is signed as " + quoteShort(xs[0].Origin) + ", not as " + er.rt.primary().name)
	case hs == nil:
		return errOriginNotUs("The request is signed as " + quoteShort(xs[0].Origin) + ", which is not a server hosted here")
	case er.authAs != nil && hs != er.authAs:
		return errOriginNotUs("The request is signed as " + xs[0].Origin + ", but its credentials are those of " + er.authAs.name)
	}
	er.speakAs(hs)
	er.auth = xs
	return nil
}

func errOriginNotUs(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Msg: msg + " (origin_not_us)", Reason: "origin_not_us"}
}

// stageDestination settles which server the request is for, before any
// network work: the worker-proxy target's server name, or (intercepted)
// the X-Matrix destination, falling back to the Host header's server
// name. A well-known fetch is for the Host's hostname and is delivered to
// hostname:443. Then the allow/deny lists decide.
func (e *egress) stageDestination(er *egressRequest) error {
	var signed string
	if len(er.auth) > 0 {
		signed = er.auth[0].Destination
	}
	dest := er.targetServer
	switch {
	case er.mode == modeWorkerProxy:
		if signed != "" && signed != dest {
			return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Msg: "The request is signed for " + quoteShort(signed) + " but sent to " + quoteShort(dest) + " (destination_mismatch)", Reason: "destination_mismatch"}
		}
	case signed != "" && er.match.Endpoint.Name != "well_known":
		dest = signed
	default:
		dest = er.r.Host
	}
	n, err := servername.Parse(dest)
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidParam, Msg: "The destination is not a valid server name: " + quoteShort(dest), Reason: "bad_destination"}
	}
	er.dest, er.deliverTo = dest, dest
	if er.match.Endpoint.Name == "well_known" {
		// The document lives at https://<hostname>/.well-known/matrix/server
		// (port 443 unless the request named another): the hostname is
		// what policy judges, hostname:port what the client dials.
		port := n.Port
		if port == 0 {
			port = 443
		}
		er.dest = n.HostLiteral()
		er.deliverTo = fmt.Sprintf("%s:%d", n.HostLiteral(), port)
	}
	if er.dest == er.hs.name {
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidParam,
			Msg: "A server does not send federation requests to itself (destination_is_us)", Reason: "destination_is_us"}
	}
	return er.decisionError(er.pol.CheckDestination(er.dest))
}

// stageEndpointPolicy applies the endpoint and room rules (and, with
// locality_checks, whose users the request may name).
func (e *egress) stageEndpointPolicy(er *egressRequest) error {
	return er.decisionError(er.pol.CheckOutbound(er.dest, &er.match, er.rawQuery))
}

// stageBody reads the body under the same size limits inbound requests
// get, and requires PUT and POST bodies to be JSON objects: they are
// signed as JSON, and remote servers refuse anything else.
func (e *egress) stageBody(er *egressRequest) error {
	large := er.match.Endpoint.Body == endpoints.BodyLarge || er.match.Endpoint == &otherEndpoint
	body, err := readBody(er.w, er.r, bodyLimit(er.rt, large), nil)
	if err != nil || !carriesBody(er.r.Method) {
		return err
	}
	er.body = body
	er.canon, err = jsonContent(body, nil)
	return err
}

// stageSignature is the internal sender check: with require_signature,
// every X-Matrix header must verify against one of our own current keys
// over the exact method, request-target, destination and body, and
// endpoints that need X-Matrix must carry one. So nothing else on the
// internal network can use the egress to speak as this server.
// Unauthenticated endpoints (well-known, keys, version, legacy media) may
// come unsigned. It also decides whether fedgate signs what it sends:
// always for X-Matrix endpoints, and for anything that came signed.
func (e *egress) stageSignature(er *egressRequest) error {
	needs := er.match.Endpoint.Auth == endpoints.AuthXMatrix
	// A well-known fetch is plain HTTPS to a hostname, never signed.
	er.sign = (needs || len(er.auth) > 0) && er.match.Endpoint.Name != "well_known"
	if !er.rt.cfg.Egress.RequireSignature {
		return nil
	}
	if len(er.auth) == 0 {
		if needs {
			return errNotSigned()
		}
		return nil
	}
	for _, x := range er.auth {
		key := er.hs.keys.verifier(x.Key)
		if key == nil {
			return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Msg: fmt.Sprintf("The request is signed with %s, which is not a current signing key of %s (unknown_key)", x.Key, er.hs.name), Reason: "unknown_key"}
		}
		dest := x.Destination
		if dest == "" {
			dest = er.dest
		}
		if err := auth.VerifyRequestWith(x, er.r.Method, er.target, dest, er.canon, key); err != nil {
			return keyError(err)
		}
	}
	return nil
}

func errNotSigned() *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
		Msg: "Egress requests must carry an X-Matrix signature made with this server's key (missing_header)", Reason: "missing_header"}
}

// stageDestinationLimit applies [rate_limit] per_destination.
func (e *egress) stageDestinationLimit(er *egressRequest) error {
	return er.limitError(er.hs.policy().Limiters().AllowEgress(er.r.Context(), er.dest))
}

// stageBackoff answers at once for a destination that is down or asked us
// to wait, instead of queueing requests behind it.
func (e *egress) stageBackoff(er *egressRequest) error {
	wait, kind, failures := e.backoff.check(er.deliverTo, e.now())
	switch kind {
	case backoffRateLimited:
		er.backoffDecision = true
		return &Error{Status: http.StatusTooManyRequests, Code: CodeLimitExceeded, RetryAfter: wait, Reason: "remote_rate_limited",
			Msg: er.deliverTo + " asked for fewer requests; retry later (remote_rate_limited)"}
	case backoffFailing:
		er.backoffDecision = true
		return &Error{Status: http.StatusBadGateway, Code: CodeUnknown, Reason: "remote_backoff",
			Msg: fmt.Sprintf("%s failed %d time(s) in a row; fedgate retries it in %s (remote_backoff)", er.deliverTo, failures, wait.Round(time.Millisecond))}
	}
	return nil
}

// quoteShort quotes remote-supplied text for messages, cut to a sane
// length; the JSON encoder escapes it.
func quoteShort(s string) string {
	const n = 100
	if len(s) > n {
		s = s[:n] + "..."
	}
	return `"` + s + `"`
}

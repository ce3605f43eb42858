package gateway

import (
	"net/netip"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fedgate/fedgate/internal/endpoints"
)

// Access log: one line per request (log.access), inbound and egress, with
// the same fields in both directions so one query covers both:
//
//	direction          "inbound" or "egress"
//	request_id         also sent to the homeserver as X-Request-Id (inbound)
//	method, status     status 499: the client hung up before the answer
//	peer               the TCP peer's address
//	endpoint, class    operation and endpoint class from the endpoint table
//	server             the hosted server the request is for (inbound) or
//	                   sent as (egress): a configured server name
//	origin             authenticated (or claimed, when refused before the
//	                   signature check) origin server (inbound)
//	destination        destination server (egress)
//	decision           forwarded, local, denied or failed
//	reason, stage      reason code and the pipeline stage that refused it
//	rule, limiter      the policy entry or limiter that refused it
//	dry_run_would_deny reason codes dry_run let through
//	bytes_in/out       request and response body bytes
//	duration           receiving the request to finishing the response
//	upstream_duration  until the homeserver's (remote's) response headers
//	pool, member       the upstream pool a forwarded request was routed to
//	                   and the member (index in the pool's urls, as the
//	                   metrics' member label) that answered or was tried
//	                   last; failover: true when a second member took it
//
// Lines name the endpoint, never the raw path: paths carry room and user
// IDs. With log.hash_server_names, origin, destination and peer are keyed
// hashes ("h:..."), and rules lose their quoted entry. Denials also go to
// the decision log (decisionlog.go).

// inboundDecision classifies a finished inbound request.
func (in *inbound) decision() int {
	switch {
	case in.stage != "":
		return decisionDenied
	case in.match.Endpoint != nil && in.match.Endpoint.Local:
		return decisionLocal
	case in.reason != "":
		return decisionFailed
	}
	return decisionForwarded
}

// logInbound writes the access line and, for a denial or a dry-run
// denial, the decision line.
func (g *Gateway) logInbound(in *inbound, decision int, end time.Time) {
	dl := g.decisions.Load()
	denial := decision == decisionDenied && in.stage != "route"
	toDecisions := dl != nil && (denial || len(in.dryRunReasons) > 0)
	if !in.rt.cfg.Log.Access && !toDecisions {
		return
	}
	var ce *zapcore.CheckedEntry
	if in.rt.cfg.Log.Access {
		ce = g.access.Check(zap.InfoLevel, "request")
	}
	if ce == nil && !toDecisions {
		return
	}
	// The loggers encode the fields before returning, so their slice is
	// reused for the next request.
	fp, _ := g.fieldBufs.Get().(*[]zap.Field)
	if fp == nil {
		fp = new([]zap.Field)
	}
	fields := in.appendFields((*fp)[:0], decision, end)
	if ce != nil {
		ce.Write(fields...)
	}
	if toDecisions {
		dl.write(fields, denial, in.limiter != "")
	}
	clear(fields)
	*fp = fields[:0]
	g.fieldBufs.Put(fp)
}

// write logs one decision line: "denied", "rate_limited" (sampled) or
// "dry_run" for a request dry_run let through.
func (dl *decisionLog) write(fields []zap.Field, denial, limiter bool) {
	log, msg := dl.log, "dry_run"
	switch {
	case denial && limiter:
		log, msg = dl.limited, "rate_limited"
	case denial:
		msg = "denied"
	}
	if ce := log.Check(zap.InfoLevel, msg); ce != nil {
		ce.Write(fields...)
	}
}

// logFields are the fields of the request so far, for error logs written
// before the request ends.
func (in *inbound) logFields() []zap.Field {
	return in.appendFields(make([]zap.Field, 0, 21), in.decision(), time.Now())
}

// appendFields appends the request's log fields to fields.
func (in *inbound) appendFields(fields []zap.Field, decision int, end time.Time) []zap.Field {
	names := in.rt.names
	fields = append(fields,
		zap.String("direction", directionInbound),
		zap.String("request_id", in.id),
		zap.String("method", in.r.Method),
		zap.Int("status", in.status),
		peerField(names, in.peer),
		zap.String("server", in.hs.name),
	)
	if ep := in.match.Endpoint; ep != nil {
		fields = append(fields, zap.String("endpoint", ep.Name), zap.String("class", ep.Class))
	}
	if in.origin != "" {
		fields = append(fields, zap.String("origin", names.name(in.origin)))
	}
	fields = append(fields, zap.String("decision", decisionName(decision)))
	fields = appendOutcome(fields, names, in.reason, in.stage, in.rule, in.limiter, in.dryRunReasons)
	fields = append(fields,
		zap.Int("bytes_in", len(in.body)),
		zap.Int64("bytes_out", in.w.bytes),
		zap.Duration("duration", end.Sub(in.start)),
	)
	if !in.upstreamStart.IsZero() {
		up := in.upstreamHeaders
		if up.IsZero() {
			up = end
		}
		fields = append(fields, zap.Duration("upstream_duration", up.Sub(in.upstreamStart)))
	}
	if in.pool != "" {
		fields = append(fields, zap.String("pool", in.pool), zap.Int("member", in.member))
		if in.failover {
			fields = append(fields, zap.Bool("failover", true))
		}
	}
	return fields
}

// peerField logs the TCP peer, hashed with the server names: an address
// tells who talks to us as well as a name does.
func peerField(names *nameHasher, peer netip.Addr) zap.Field {
	if names.enabled() && peer.IsValid() {
		return zap.String("peer", names.name(peer.String()))
	}
	return zap.Stringer("peer", peer)
}

// appendOutcome adds the optional fields saying why a request was refused
// or failed.
func appendOutcome(fields []zap.Field, names *nameHasher, reason, stage, rule, limiter string, dryRun []string) []zap.Field {
	if reason != "" {
		fields = append(fields, zap.String("reason", reason))
	}
	if stage != "" {
		fields = append(fields, zap.String("stage", stage))
	}
	if rule != "" {
		fields = append(fields, zap.String("rule", names.rule(rule)))
	}
	if limiter != "" {
		fields = append(fields, zap.String("limiter", limiter))
	}
	if len(dryRun) > 0 {
		fields = append(fields, zap.Strings("dry_run_would_deny", dryRun))
	}
	return fields
}

func errField(e *Error) zap.Field {
	if e.Err != nil {
		return zap.NamedError("cause", e.Err)
	}
	return zap.Skip()
}

// egressRecord describes one finished egress request or tunnel, for
// [Gateway.observeEgress] and [Gateway.finishEgress]. The egress fills it
// as the request goes.
type egressRecord struct {
	id          string              // request id
	mode        string              // capture mode, e.g. "worker_proxy", "intercept", "passthrough"
	method      string              // request method ("CONNECT" for a tunnel)
	peer        netip.Addr          // the homeserver's address
	endpoint    *endpoints.Endpoint // nil when the path is not in the endpoint table
	destination string              // the remote server name; "" if none could be determined
	decision    int                 // decisionForwarded, decisionDenied, decisionFailed, decisionTunnel or decisionBackoff
	reason      string              // reason code of a denial or failure; "" on success
	stage       string              // the check that refused it
	rule        string              // the policy entry that denied it
	limiter     string              // the limiter that refused it
	dryRun      []string            // reason codes dry_run let through
	tunnel      string              // id of the intercepted tunnel the request came through
	connect     string              // the CONNECT authority of that tunnel or of a passthrough tunnel
	status      int                 // status sent to the homeserver
	start       time.Time           // when the request arrived
	remoteStart time.Time           // when sending to the remote began; zero if nothing was sent
	remoteHdrs  time.Time           // when the remote's response headers arrived; zero if none
	remoteEnd   time.Time           // when relaying the remote's response ended; zero means now
	bytesIn     int64               // request body bytes (tunnel: bytes up)
	bytesOut    int64               // response body bytes (tunnel: bytes down)
	server      string              // the hosted server it was sent as; "" if none
	series      *serverSeries       // that server's metric series; nil counts none
}

// record turns r into what the metrics count, as of end.
func (r *egressRecord) record(end time.Time) requestRecord {
	rec := requestRecord{
		direction: 1,
		class:     classUnknown,
		peer:      r.destination,
		decision:  r.decision,
		status:    r.status,
		reason:    r.reason,
		limiter:   r.limiter,
		total:     end.Sub(r.start),
		bytesIn:   r.bytesIn,
		bytesOut:  r.bytesOut,
		server:    r.series,
	}
	if rec.decision < 0 || rec.decision >= numDecisions {
		rec.decision = decisionFailed
	}
	if r.endpoint != nil {
		rec.class = r.endpoint.Class
	}
	if !r.remoteStart.IsZero() {
		rec.sent = true
		remoteEnd := r.remoteEnd
		if remoteEnd.IsZero() {
			remoteEnd = end
		}
		rec.waiting = remoteEnd.Sub(r.remoteStart)
		hdrs := r.remoteHdrs
		if hdrs.IsZero() {
			hdrs = remoteEnd
		}
		rec.upstream = hdrs.Sub(r.remoteStart)
	}
	return rec
}

// observeEgress counts a finished egress request or tunnel in the
// metrics: requests by class, decision and status, the destination's peer
// label (admin.peers only), durations (waiting = on the remote server),
// bytes, denials and failures by reason, rate limiting by limiter. The
// egress calls it once per request, after its response is written.
func (g *Gateway) observeEgress(r *egressRecord) {
	end := time.Now()
	rec := r.record(end)
	g.recordEgress(r, rec.decision, end)
	g.metrics.observe(&rec)
}

// logDecision writes fields (an access log line's fields) to the decision
// log when it is on and the request was denied or dry_run let a denial
// through; limited marks rate-limit refusals, which are sampled. The
// egress calls it with its own log fields.
func (g *Gateway) logDecision(fields []zap.Field, denied, limited, dryRun bool) {
	if dl := g.decisions.Load(); dl != nil && (denied || dryRun) {
		dl.write(fields, denied, limited)
	}
}

// finishEgress is observeEgress plus the access log line (direction
// "egress", the inbound line's fields with destination for origin and the
// capture mode) and the decision log line, for an egress that writes no
// log lines of its own.
func (g *Gateway) finishEgress(r *egressRecord) {
	end := time.Now()
	rt := g.rt.Load()
	rec := r.record(end)
	g.recordEgress(r, rec.decision, end)
	defer g.metrics.observe(&rec) // last: a counted request is logged and recorded

	denied := rec.decision == decisionDenied
	toDecisions := g.decisions.Load() != nil && (denied || len(r.dryRun) > 0)
	var ce *zapcore.CheckedEntry
	if rt.cfg.Log.Access {
		ce = g.access.Check(zap.InfoLevel, "request")
	}
	if ce == nil && !toDecisions {
		return
	}
	names := rt.names
	fields := make([]zap.Field, 0, 18)
	fields = append(fields,
		zap.String("direction", directionEgress),
		zap.String("request_id", r.id),
		zap.String("mode", r.mode),
		zap.String("method", r.method),
		zap.Int("status", r.status),
		zap.Stringer("peer", r.peer),
	)
	if r.server != "" {
		fields = append(fields, zap.String("server", r.server))
	}
	if r.tunnel != "" {
		fields = append(fields, zap.String("tunnel", r.tunnel))
	}
	if r.connect != "" {
		fields = append(fields, zap.String("connect", names.name(r.connect)))
	}
	if r.endpoint != nil {
		fields = append(fields, zap.String("endpoint", r.endpoint.Name), zap.String("class", r.endpoint.Class))
	}
	if r.destination != "" {
		fields = append(fields, zap.String("destination", names.name(r.destination)))
	}
	fields = append(fields, zap.String("decision", decisionName(rec.decision)))
	fields = appendOutcome(fields, names, r.reason, r.stage, r.rule, r.limiter, r.dryRun)
	fields = append(fields,
		zap.Int64("bytes_in", r.bytesIn),
		zap.Int64("bytes_out", r.bytesOut),
		zap.Duration("duration", rec.total),
	)
	if rec.sent {
		fields = append(fields, zap.Duration("upstream_duration", rec.upstream))
	}
	if ce != nil {
		ce.Write(fields...)
	}
	g.logDecision(fields, denied, r.limiter != "", len(r.dryRun) > 0)
}

// logName returns server name s as every log line must show it: a keyed
// hash with log.hash_server_names, s itself otherwise. Use it (the egress
// included) wherever a remote server's name goes into a log field or
// message. Safe for concurrent use.
func (g *Gateway) logName(s string) string {
	if rt := g.rt.Load(); rt != nil {
		return rt.names.name(s)
	}
	return s
}

package gateway

import (
	"time"

	"go.uber.org/zap"
)

// accessLog writes one line per request. It names the endpoint, never the
// raw path: paths carry room and user IDs.
func (g *Gateway) accessLog(in *inbound) {
	ce := g.access.Check(zap.InfoLevel, "request")
	if ce == nil {
		return
	}
	ce.Write(in.logFields()...)
}

func (in *inbound) logFields() []zap.Field {
	fields := make([]zap.Field, 0, 16)
	fields = append(fields,
		zap.String("direction", "inbound"),
		zap.String("request_id", in.id),
		zap.String("method", in.r.Method),
		zap.Int("status", in.status),
		zap.Stringer("peer", in.peer),
	)
	if ep := in.match.Endpoint; ep != nil {
		fields = append(fields, zap.String("endpoint", ep.Name), zap.String("class", ep.Class))
	}
	if in.origin != "" {
		fields = append(fields, zap.String("origin", in.origin))
	}
	decision := "forwarded"
	switch {
	case in.stage != "":
		decision = "denied"
	case in.match.Endpoint != nil && in.match.Endpoint.Local:
		decision = "local"
	case in.reason != "":
		decision = "failed"
	}
	fields = append(fields, zap.String("decision", decision))
	if in.reason != "" {
		fields = append(fields, zap.String("reason", in.reason))
	}
	if in.stage != "" {
		fields = append(fields, zap.String("stage", in.stage))
	}
	if in.rule != "" {
		fields = append(fields, zap.String("rule", in.rule))
	}
	if in.limiter != "" {
		fields = append(fields, zap.String("limiter", in.limiter))
	}
	if len(in.dryRunReasons) > 0 {
		fields = append(fields, zap.Strings("dry_run_would_deny", in.dryRunReasons))
	}
	fields = append(fields,
		zap.Int("bytes_in", len(in.body)),
		zap.Int64("bytes_out", in.w.bytes),
		zap.Duration("duration", time.Since(in.start)),
	)
	if !in.upstreamStart.IsZero() {
		up := in.upstreamHeaders
		if up.IsZero() {
			up = time.Now()
		}
		fields = append(fields, zap.Duration("upstream_duration", up.Sub(in.upstreamStart)))
	}
	return fields
}

func errField(e *Error) zap.Field {
	if e.Err != nil {
		return zap.NamedError("cause", e.Err)
	}
	return zap.Skip()
}

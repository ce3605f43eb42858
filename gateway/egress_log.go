package gateway

import (
	"time"

	"go.uber.org/zap"
)

// logFields are the access log fields of an egress request or tunnel:
// direction "egress", the capture mode, the destination, the endpoint
// (never the raw path: paths carry room and user IDs), status, the
// decision and why, and durations.
func (er *egressRequest) logFields() []zap.Field {
	fields := make([]zap.Field, 0, 20)
	fields = append(fields,
		zap.String("direction", "egress"),
		zap.String("request_id", er.id),
	)
	if er.mode != "" {
		fields = append(fields, zap.String("mode", er.mode))
	}
	fields = append(fields,
		zap.String("method", er.r.Method),
		zap.Int("status", er.status),
		zap.Stringer("peer", er.peer),
	)
	if er.tun != nil {
		fields = append(fields, zap.String("tunnel", er.tun.id), zap.String("connect", er.tun.authority))
	}
	if er.dest != "" {
		fields = append(fields, zap.String("destination", er.dest))
	}
	if ep := er.match.Endpoint; ep != nil {
		fields = append(fields, zap.String("endpoint", ep.Name), zap.String("class", ep.Class))
	}
	fields = append(fields, zap.String("decision", er.decision()))
	if er.reason != "" {
		fields = append(fields, zap.String("reason", er.reason))
	}
	if er.stage != "" {
		fields = append(fields, zap.String("stage", er.stage))
	}
	if er.rule != "" {
		fields = append(fields, zap.String("rule", er.rule))
	}
	if er.limiter != "" {
		fields = append(fields, zap.String("limiter", er.limiter))
	}
	if len(er.dryRunReasons) > 0 {
		fields = append(fields, zap.Strings("dry_run_would_deny", er.dryRunReasons))
	}
	if er.mode == modePassthrough {
		fields = append(fields, zap.Int64("bytes_up", er.bytesUp), zap.Int64("bytes_down", er.bytesDown))
	} else {
		fields = append(fields, zap.Int("bytes_in", len(er.body)), zap.Int64("bytes_out", er.w.bytes))
	}
	fields = append(fields, zap.Duration("duration", time.Since(er.start)))
	if !er.remoteStart.IsZero() {
		end := er.remoteHeaders
		if end.IsZero() {
			end = time.Now()
		}
		fields = append(fields, zap.Duration("remote_duration", end.Sub(er.remoteStart)))
	}
	return fields
}

// decision summarises what happened: "forwarded" (delivered and answered),
// "tunnel" (a CONNECT accepted), "denied" (refused by a check), "backoff"
// (answered at once for a destination that is down or limiting us) or
// "failed" (could not be delivered).
func (er *egressRequest) decision() string {
	switch {
	case er.backoffDecision:
		return "backoff"
	case er.stage == "deliver" || er.reason == "remote_broken":
		return "failed"
	case er.stage != "":
		return "denied"
	case er.r.Method == "CONNECT":
		if er.status == 200 {
			return "tunnel"
		}
		return "failed"
	case er.reason != "":
		return "failed"
	}
	return "forwarded"
}

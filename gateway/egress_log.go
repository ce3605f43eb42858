package gateway

import (
	"go.uber.org/zap"
)

// record describes the finished request for the access log, the decision
// log and the metrics ([Gateway.finishEgress]). Passthrough tunnels count
// the bytes spliced each way as bytes in and out.
func (er *egressRequest) record() *egressRecord {
	r := &egressRecord{
		id:          er.id,
		mode:        er.mode,
		method:      er.r.Method,
		peer:        er.peer,
		endpoint:    er.match.Endpoint,
		destination: er.dest,
		decision:    decisionIndex(er.decision()),
		reason:      er.reason,
		stage:       er.stage,
		rule:        er.rule,
		limiter:     er.limiter,
		dryRun:      er.dryRunReasons,
		status:      er.status,
		start:       er.start,
		remoteStart: er.remoteStart,
		remoteHdrs:  er.remoteHeaders,
		bytesIn:     int64(len(er.body)),
		bytesOut:    er.w.bytes,
		server:      er.hs.name,
		series:      er.hs.state.series,
	}
	if er.tun != nil {
		r.tunnel, r.connect = er.tun.id, er.tun.authority
	}
	if er.mode == modePassthrough {
		r.connect = er.dest
		r.bytesIn, r.bytesOut = er.bytesUp, er.bytesDown
	}
	return r
}

// errorFields identify a failed request in an error log line, with names
// hashed as every log line must show them.
func (er *egressRequest) errorFields(g *Gateway) []zap.Field {
	return []zap.Field{
		zap.String("direction", directionEgress),
		zap.String("request_id", er.id),
		zap.String("mode", er.mode),
		zap.String("destination", g.logName(er.dest)),
	}
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

package gateway

import (
	"log/slog"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/policy"
)

// slogFor bridges the zap logger to the *slog.Logger that packages below
// gateway log through.
func slogFor(log *zap.Logger, name string) *slog.Logger {
	return slog.New(zapslog.NewHandler(log.Core(), zapslog.WithName(name)))
}

func policyOptions(c *config.Config, log *zap.Logger) policy.Options {
	return policy.Options{
		ServerName: c.ServerName,
		Policy:     c.Policy,
		RateLimit:  c.RateLimit,
		Logger:     slogFor(log, "policy"),
	}
}

// outcome is how a request ended when it did not simply succeed: inbound
// and egress requests embed it, and the access and decision logs and the
// metrics read it.
type outcome struct {
	status        int
	reason        string   // reason code of a refusal or failure
	stage         string   // the check that refused it
	rule          string   // the policy entry that matched a denial (log only)
	limiter       string   // the limiter that refused it
	dryRunReasons []string // denials dry_run let through
}

// decisionError turns a policy denial into the Matrix error to send, or
// records a dry-run denial and lets the request through (nil).
func (o *outcome) decisionError(d policy.Decision) error {
	if d.DryRun {
		o.dryRunReasons = append(o.dryRunReasons, d.Reason)
		if o.rule == "" {
			o.rule = d.Rule // which entry would have denied (a dry-run policy room, say)
		}
		return nil
	}
	if d.Allowed {
		return nil
	}
	o.rule = d.Rule
	return &Error{Status: d.Status(), Code: d.Errcode, Msg: d.Msg, Reason: d.Reason}
}

// limitError turns a rate-limit refusal into 429 M_LIMIT_EXCEEDED with
// Retry-After, or records a dry-run refusal.
func (o *outcome) limitError(r policy.LimitResult) error {
	if r.DryRun {
		o.dryRunReasons = append(o.dryRunReasons, r.Reason)
		return nil
	}
	if r.Allowed {
		return nil
	}
	o.limiter = r.Limiter
	retry := r.RetryAfter
	if retry <= 0 {
		retry = time.Second
	}
	return &Error{Status: http.StatusTooManyRequests, Code: CodeLimitExceeded, Msg: r.Msg, Reason: r.Reason, RetryAfter: retry}
}

// checkPeerPolicy applies network rules and the per-IP limit, before any
// parsing of the request.
func (g *Gateway) checkPeerPolicy(in *inbound) error {
	if err := in.decisionError(in.pol.CheckPeer(in.peer)); err != nil {
		return err
	}
	return in.limitError(in.hs.policy().Limiters().AllowIP(in.peer))
}

// stageOriginPolicy applies the server allow/deny lists to the claimed
// origin before anything is fetched for it.
func (g *Gateway) stageOriginPolicy(in *inbound) error {
	if !in.needsXMatrix() {
		return nil
	}
	return in.decisionError(in.pol.CheckOrigin(in.origin))
}

// stageRequestPolicy applies endpoint, room and user rules. Requests
// without X-Matrix are checked with no origin, so deny_endpoints also covers
// the unauthenticated endpoints (legacy media, version).
func (g *Gateway) stageRequestPolicy(in *inbound) error {
	return in.decisionError(in.pol.CheckRequest(in.origin, &in.match, in.rawQuery, in.body))
}

// stageOriginLimits applies the per-origin rate, class and concurrency
// limits. They come after the signature check: before it the origin is only
// a claim, and limiting by it would let anyone exhaust a real server's
// budget by sending junk in its name.
//
// In cluster mode this is also where the cluster-wide per_ip bucket is
// taken, together with the per-origin ones in one round trip to Redis, for
// every request that reaches it (requests without X-Matrix included); the
// per-IP check in stagePeer stays this instance's guard against junk.
func (g *Gateway) stageOriginLimits(in *inbound) error {
	lim := in.hs.policy().Limiters() // per hosted server, then per origin
	if in.origin == "" && !lim.Shared() {
		return nil
	}
	if err := in.limitError(lim.AllowVerified(in.r.Context(), in.peer, in.origin, in.match.Endpoint)); err != nil {
		return err
	}
	if in.origin == "" {
		return nil
	}
	release, r := lim.AcquireOrigin(in.r.Context(), in.origin)
	if r.Allowed && release != nil {
		in.release = release
	}
	return in.limitError(r)
}

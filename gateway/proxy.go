package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/upstream"
)

// maxBufferedResponse bounds the responses fedgate reads completely before
// answering (transactions), see [Gateway.forward].
const maxBufferedResponse = 4 << 20

// newUpstream builds the pools of one [upstream] section of c (a hosted
// server's configuration, whose server_name scopes its members' state),
// their members' health kept in tracker (the gateway's, so that it
// survives reloads; nil for a throw-away check); errors name the key at
// fault (section is "upstream", or wherever another section of the same
// shape lives).
func newUpstream(c *config.Config, section string, u config.Upstream, tracker *upstream.Tracker) (*upstream.Set, error) {
	set, err := upstream.NewSet(upstreamSetOptions(c, u), tracker)
	if err != nil {
		key := section
		var se *upstream.SetError
		if errors.As(err, &se) {
			switch {
			case se.Route < 0 && se.Member >= 0 && u.URL != "":
				key += ".url"
			case se.Route < 0 && se.Member >= 0:
				key += fmt.Sprintf(".urls[%d]", se.Member)
			case se.Route >= 0 && se.Member >= 0:
				key += fmt.Sprintf(".route[%d].urls[%d]", se.Route, se.Member)
			case se.Route >= 0:
				key += fmt.Sprintf(".route[%d]", se.Route)
			}
			err = se.Err
		}
		var oe *upstream.OptionError
		if errors.As(err, &oe) {
			if k := map[string]string{"CAFile": "ca_file", "MaxIdleConns": "max_idle_conns"}[oe.Option]; k != "" {
				key = section + "." + k
			}
			err = oe.Err
		}
		return nil, c.Errorf(key, "%v", err)
	}
	return set, nil
}

// upstreamSetOptions maps one [upstream] section onto the pools' options.
// Balance names were checked by config.
func upstreamSetOptions(c *config.Config, u config.Upstream) upstream.SetOptions {
	balance := func(s string) upstream.Balance {
		b, _ := upstream.ParseBalance(s)
		return b
	}
	opts := upstream.SetOptions{
		// Member health is kept per hosted server: the same address in
		// two servers' sections is two members (see upstream-pools.md).
		Scope:   c.ServerName,
		Member:  upstreamOptions(u),
		URLs:    u.MemberURLs(),
		Balance: balance(u.Balance),
		Health: upstream.HealthOptions{
			ProbePath:     u.ProbePath,
			ProbeInterval: u.ProbeInterval.D(),
			ProbeTimeout:  u.ProbeTimeout.D(),
			UserAgent:     probeUserAgent,
			DownPeriod:    u.DownPeriod.D(),
			DownPeriodMax: u.DownPeriodMax.D(),
		},
	}
	if opts.Health.ProbeInterval == 0 {
		opts.Health.ProbeInterval = probeInterval(c.Admin.ReadyWindow.D())
	}
	for _, r := range u.Routes {
		opts.Routes = append(opts.Routes, upstream.RouteOptions{
			Name: r.PoolName(), Endpoints: r.Endpoints, URLs: r.URLs, Balance: balance(r.Balance),
		})
	}
	return opts
}

// upstreamOptions maps one [upstream] section onto its members' options.
func upstreamOptions(u config.Upstream) upstream.Options {
	return upstream.Options{
		HeaderTimeout: u.Timeout.D(),
		BodyTimeout:   u.BodyTimeout.D(),
		DialTimeout:   u.DialTimeout.D(),
		MaxIdleConns:  u.MaxIdleConns,
		CAFile:        u.CAFile,
	}
}

// forward relays the request to the homeserver: the method, the
// request-target, the Authorization header and the body exactly as
// received (the homeserver checks the X-Matrix signature again), the
// other end-to-end headers, and X-Forwarded-For, X-Forwarded-Proto and
// X-Request-Id set by fedgate (a remote's own Forwarded and
// X-Forwarded-* fields are dropped). The answer streams back as it
// arrives, except a transaction's: a /send answer is read in full first,
// so that a sender never takes a transaction for delivered on a 200 that
// broke off.
func (g *Gateway) forward(in *inbound) {
	in.upstreamStart = time.Now()
	// The fields live in the pooled request state: the upstream package
	// keeps the request's contents while it writes them, so a local array
	// would be moved to the heap on every request.
	in.setFields = [...]upstream.Field{
		{Name: "X-Forwarded-For", Value: in.peer.String()},
		{Name: "X-Forwarded-Proto", Value: "https"},
		{Name: "X-Request-Id", Value: in.id},
		{Name: "X-Forwarded-Host"},
		{Name: "Forwarded"},
	}
	req := upstream.Request{
		Method: in.r.Method,
		Target: in.r.RequestURI,
		Host:   in.r.Host,
		Header: in.r.Header,
		Set:    in.setFields[:],
		Body:   in.body,
	}
	ctx := in.r.Context()
	x, err := in.hs.upstream.RoundTrip(ctx, in.match.Endpoint, in.origin, &req)
	in.pool, in.member, in.failover = x.Pool, x.Member, x.Failover
	if err != nil {
		g.upstreamFailed(in, err)
		return
	}
	defer x.Close()
	resp := x.Response
	in.upstreamHeaders = time.Now()
	h := in.w.Header()
	if in.match.Endpoint != nil && in.match.Endpoint.Class == "send" {
		body, err := resp.Body.ReadAll(maxBufferedResponse)
		if err != nil {
			g.upstreamFailed(in, err)
			return
		}
		copyHeader(h, resp.Header)
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
		in.w.WriteHeader(resp.StatusCode)
		in.w.Write(body)
		return
	}
	copyHeader(h, resp.Header)
	in.w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(in.w)
	if _, err := resp.Body.StreamTo(in.w, rc.Flush); err != nil {
		var ue *upstream.Error
		if errors.As(err, &ue) {
			// The status line is out: all that is left is to cut the
			// remote server's connection, as net/http's reverse proxy
			// does, so it cannot take a partial body for a whole one.
			in.reason = "upstream_broken"
			g.log.Error("homeserver response broke off", append(in.logFields(), zap.NamedError("cause", err))...)
		}
		panic(http.ErrAbortHandler)
	}
}

// upstreamFailed answers when the homeserver could not be reached or its
// answer broke off before anything was relayed: 504 on timeouts, 502
// otherwise, Matrix JSON either way. A remote server that went away gets
// nothing (499 in the log).
func (g *Gateway) upstreamFailed(in *inbound, err error) {
	if errors.Is(in.r.Context().Err(), context.Canceled) {
		in.status = statusClientClosed
		in.reason = "client_closed"
		return
	}
	e := &Error{Status: http.StatusBadGateway, Code: CodeUnknown, Msg: "The homeserver could not be reached", Reason: "upstream_unreachable", Err: err}
	var ue *upstream.Error
	switch {
	case errors.As(err, &ue) && ue.Timeout():
		e = &Error{Status: http.StatusGatewayTimeout, Code: CodeUnknown, Msg: "The homeserver did not answer in time", Reason: "upstream_timeout", Err: err}
	case !in.upstreamHeaders.IsZero() || errors.Is(err, upstream.ErrBodyTooLarge):
		e.Msg, e.Reason = "The homeserver's response broke off", "upstream_broken"
	}
	in.fail(e)
	g.log.Error("request failed", append(in.logFields(), errField(e))...)
	writeError(in.w, e)
}

// copyHeader adds the homeserver's header fields to the response's
// (which may already hold fedgate's own, such as Connection: close).
func copyHeader(dst, src http.Header) {
	for k, v := range src {
		if _, ok := dst[k]; ok {
			dst[k] = append(dst[k], v...)
		} else {
			dst[k] = v
		}
	}
}

// statusClientClosed is logged when the remote server hung up (nginx's 499).
const statusClientClosed = 499

// isTimeout reports errors that mean a timeout passed.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

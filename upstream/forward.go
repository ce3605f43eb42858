package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// RoundTrip sends req to the homeserver and returns the response head;
// the caller must close resp.Body. ctx is the caller's request: when it
// ends (the remote server went away), the exchange stops at once and the
// error wraps ctx.Err(). Every error is an *[Error].
//
// A pooled connection that breaks before any byte of a response arrived
// is replaced by a new one and the request sent again, once, when no byte
// of it had been accepted or its method is safe to repeat (GET, HEAD,
// OPTIONS, TRACE): the homeserver may just have closed the idle
// connection.
func (m *Member) RoundTrip(ctx context.Context, req *Request) (*Response, error) {
	retried := false
	for {
		now := time.Now()
		var c *conn
		if !retried { // a retry always gets a new connection
			c = m.getIdle(now)
		}
		reused := c != nil
		if reused {
			m.reuses.Add(1)
		} else {
			var err error
			if c, err = m.dial(ctx); err != nil {
				return nil, m.fail(ctx, NotSent, false, err)
			}
		}
		resp, err := m.exchange(ctx, c, req, now)
		if err == nil {
			return resp, nil
		}
		if reused && !retried && ctx.Err() == nil && (err.Kind == NotSent || err.Kind == NoResponse && safeToRepeat(req.Method)) {
			retried = true
			m.retries.Add(1)
			continue
		}
		return nil, err
	}
}

// exchange writes req on c and reads the response head.
func (m *Member) exchange(ctx context.Context, c *conn, req *Request, start time.Time) (*Response, *Error) {
	stop := context.AfterFunc(ctx, c.expire)
	abort := func(kind Kind, written bool, err error) (*Response, *Error) {
		stop()
		c.close()
		return nil, m.fail(ctx, kind, written, err)
	}
	if err := c.nc.SetDeadline(start.Add(m.opts.HeaderTimeout)); err != nil {
		return abort(NotSent, false, err)
	}
	written, werr := c.writeRequest(req, m.hostFor(req))
	if werr != nil && !written {
		return abort(NotSent, false, werr)
	}
	// After a failed write the homeserver may still have answered (a
	// server may refuse a request before reading all of it), so a
	// response already on its way is read and relayed anyway.
	resp, got, err := c.readHead(req.Method)
	if err != nil {
		if werr != nil && !got {
			err = werr
		}
		return abort(classifyHeadErr(err, got), true, err)
	}
	if werr != nil {
		resp.keepAlive = false // the request was not sent whole
	}
	resp.Body = &Body{m: m, c: c, resp: resp, stop: stop}
	return resp, nil
}

// fail builds the error of a failed exchange; when the caller gave up,
// the context's error is what it wraps.
func (m *Member) fail(ctx context.Context, kind Kind, written bool, err error) *Error {
	if ce := ctx.Err(); ce != nil {
		err = fmt.Errorf("%w (%v)", ce, err)
	}
	return &Error{Kind: kind, Member: m.redacted, Written: written, Err: err}
}

// safeToRepeat reports methods a request may be sent again with (RFC 9110
// section 9.2.2 idempotent and safe ones net/http's Transport retries).
func safeToRepeat(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// aLongTimeAgo is a deadline that has passed: setting it interrupts any
// read or write in progress.
var aLongTimeAgo = time.Unix(1, 0)

// expire interrupts the connection's exchange; it runs when the caller's
// context ends.
func (c *conn) expire() { c.nc.SetDeadline(aLongTimeAgo) }

// maxProbeBody is how much of a probe's answer is read.
const maxProbeBody = 64 << 10

// Probe sends "GET target" with only a Host and a User-Agent field, reads
// and discards up to 64 KiB of the answer, and returns its status. It is
// for readiness and health checks; ctx bounds it (besides the member's
// timeouts).
func (m *Member) Probe(ctx context.Context, target, userAgent string) (int, error) {
	req := &Request{Method: http.MethodGet, Target: target}
	if userAgent != "" {
		req.Set = []Field{{Name: "User-Agent", Value: userAgent}}
	}
	resp, err := m.RoundTrip(ctx, req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody)); err != nil {
		return resp.StatusCode, err
	}
	return resp.StatusCode, nil
}

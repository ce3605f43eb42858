package auth

import (
	"context"
	"errors"
	"strings"
	"time"
)

// fetchLocked joins the fetch in flight for e or starts one in its own
// goroutine (one per fetch, never one per caller). In backoff, or once the
// keyring is closed, it returns an error instead.
func (k *Keyring) fetchLocked(e *entry, now time.Time, background bool) (*fetchCall, *Error) {
	if e.call != nil {
		if !background {
			k.emit(KeyringEvent{Kind: EventCoalesced, Server: e.name})
		}
		return e.call, nil
	}
	if now.Before(e.retryAt) {
		k.emit(KeyringEvent{Kind: EventBackoff, Server: e.name, Err: e.lastErr})
		return nil, newError(KindKeyFetchFailed, e.lastErr, "%s; next attempt in %s", e.lastErr.Msg, roundUp(e.retryAt.Sub(now)))
	}
	if k.closed {
		return nil, newError(KindKeyFetchFailed, errClosed, "Could not get the signing keys of %s: shutting down", quoteShort(e.name))
	}
	call := &fetchCall{done: make(chan struct{})}
	e.call = call
	k.wg.Add(1)
	go k.fetch(e, call, background)
	return call, nil
}

// roundUp renders a wait for humans, in whole seconds.
func roundUp(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// fetch runs one fetch for e and publishes the result to its waiters
// (and, in cluster mode, to the shared store).
func (k *Keyring) fetch(e *entry, call *fetchCall, background bool) {
	defer k.wg.Done()
	if background {
		defer func() { <-k.sem }()
	}
	k.mu.Lock()
	var have time.Time
	haveValid := false
	if e.keys != nil {
		have, haveValid = e.keys.Checked, !k.opts.Now().After(e.validUntil)
	}
	k.mu.Unlock()
	out := k.obtain(e.name, have, haveValid, background)
	keys, direct, ferr := out.keys, out.direct, out.err
	now := k.opts.Now()
	k.mu.Lock()
	if keys != nil {
		newValid := keys.EffectiveValidUntil(keys.Checked)
		if e.keys == nil || !newValid.Before(e.validUntil) || (direct && newValid.After(now)) {
			e.keys, e.validUntil = keys, newValid
			k.markDirtyLocked()
		}
	}
	var reason string
	switch {
	case ferr == nil:
		e.failures, e.retryAt, e.lastErr = 0, time.Time{}, nil
	case out.adopted:
		e.failures, e.retryAt, e.lastErr = out.failures, out.retryAt, ferr
		ferr = newError(KindKeyFetchFailed, ferr.Err, "%s; next attempt in %s", ferr.Msg, roundUp(out.retryAt.Sub(now)))
	default:
		e.failures++
		wait := k.backoff(e.failures)
		e.retryAt = now.Add(wait)
		e.lastErr = ferr
		reason = ferr.Msg
		ferr = newError(KindKeyFetchFailed, ferr.Err, "%s; next attempt in %s", ferr.Msg, roundUp(wait))
	}
	failures, retryAt := e.failures, e.retryAt
	call.err = ferr
	e.call = nil
	close(call.done)
	k.mu.Unlock()
	k.share(e.name, out, keys, failures, retryAt, reason)
}

// backoff is the wait after the n-th consecutive failure.
func (k *Keyring) backoff(n int) time.Duration {
	d := k.opts.BackoffMin
	for i := 1; i < n && d < k.opts.BackoffMax; i++ {
		d *= 2
	}
	return min(d, k.opts.BackoffMax)
}

// fetchKeys gets a currently valid document for server: from the server,
// then from each notary in order. When none is valid it returns the
// newest document seen, if any (an offline origin's stale keys, still
// useful to notary queries), with an error. direct says whether the
// document came from the server itself.
func (k *Keyring) fetchKeys(server string, background bool) (keys *ServerKeys, direct bool, _ *Error) {
	if k.opts.Fetcher == nil {
		return nil, false, newError(KindKeyFetchFailed, errors.New("no Fetcher configured"), "Could not get the signing keys of %s: fetching is disabled", quoteShort(server))
	}
	var reasons []string
	var causes []error
	consider := func(cand *ServerKeys, isDirect bool) {
		if keys == nil || cand.ValidUntil.After(keys.ValidUntil) {
			keys, direct = cand, isDirect
		}
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(k.ctx, k.opts.FetchTimeout)
	raw, err := k.opts.Fetcher.FetchServerKeys(ctx, server)
	cancel()
	if err == nil {
		var doc *ServerKeys
		if doc, err = ParseServerKeys(raw, server, k.opts.Now()); err == nil {
			if k.validNow(doc) {
				k.emit(KeyringEvent{Kind: EventFetched, Server: server, Background: background, Duration: time.Since(start)})
				return doc, true, nil
			}
			consider(doc, true)
			err = newError(KindKeyFetchFailed, nil, "its key server publishes expired keys")
		}
	}
	reasons = append(reasons, "key server: "+safeReason(err, k.opts.FetchTimeout))
	causes = append(causes, err)
	k.emit(KeyringEvent{Kind: EventFetchFailed, Server: server, Background: background, Duration: time.Since(start), Err: err})
	k.log.Debug("key fetch failed", "server", server, "error", err)

	for _, n := range k.opts.Notaries {
		if k.ctx.Err() != nil {
			break
		}
		start := time.Now()
		now := k.opts.Now()
		ctx, cancel := context.WithTimeout(k.ctx, k.opts.FetchTimeout)
		raw, err := k.opts.Fetcher.QueryNotary(ctx, n.ServerName, server, now)
		cancel()
		if err == nil {
			var docs []*ServerKeys
			if docs, err = ParseNotaryResponse(raw, n.ServerName, n.Keys, server, now); err == nil {
				if k.validNow(docs[0]) {
					k.emit(KeyringEvent{Kind: EventNotaryFetched, Server: server, Notary: n.ServerName, Background: background, Duration: time.Since(start)})
					k.log.Debug("keys fetched from notary", "server", server, "notary", n.ServerName)
					return docs[0], false, nil
				}
				consider(docs[0], false)
				err = newError(KindKeyFetchFailed, nil, "it has only expired keys")
			}
		}
		reasons = append(reasons, "notary "+n.ServerName+": "+safeReason(err, k.opts.FetchTimeout))
		causes = append(causes, err)
		k.emit(KeyringEvent{Kind: EventNotaryFailed, Server: server, Notary: n.ServerName, Background: background, Duration: time.Since(start), Err: err})
		k.log.Debug("notary key query failed", "server", server, "notary", n.ServerName, "error", err)
	}
	return keys, direct, newError(KindKeyFetchFailed, errors.Join(causes...), "Could not get the signing keys of %s (%s)", quoteShort(server), strings.Join(reasons, "; "))
}

func (k *Keyring) validNow(doc *ServerKeys) bool {
	return !k.opts.Now().After(doc.EffectiveValidUntil(doc.Checked))
}

// safeReason describes a fetch failure in words fit for a remote server:
// our own checks say what was wrong with the document; the Fetcher's
// network errors, which may reveal addresses, become a generic phrase
// unless the Fetcher returned an *Error with a message of its own.
func safeReason(err error, timeout time.Duration) string {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Msg
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer within " + timeout.String()
	case errors.Is(err, context.Canceled):
		return "shutting down"
	}
	return "unreachable"
}

package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fedgate/fedgate/cluster"
)

// Backoff bounds.
const (
	// defaultBackoffEntries caps how many destinations the backoff table
	// remembers; beyond it, expired entries and then arbitrary ones go.
	defaultBackoffEntries = 10000
	// backoffBase is the window after the first consecutive failure; each
	// further failure doubles it.
	backoffBase = time.Second
	// backoffMaxFailing caps the window after failures.
	backoffMaxFailing = 5 * time.Minute
	// backoffMaxRateLimited caps how long a remote's Retry-After is honoured.
	backoffMaxRateLimited = 10 * time.Minute
	// defaultRetryAfter is assumed when a 429 says nothing about when to
	// retry.
	defaultRetryAfter = time.Second
)

// backoffKind says why a destination is being backed off.
type backoffKind uint8

const (
	backoffNone        backoffKind = iota
	backoffFailing                 // connection failures or 5xx answers
	backoffRateLimited             // the remote answered 429
)

// backoffEntry is what the table knows about one destination.
type backoffEntry struct {
	kind     backoffKind
	failures int       // consecutive failures
	until    time.Time // requests before this are answered at once
	setAt    time.Time // when until was last set
}

// backoffTable remembers, per destination, consecutive delivery failures
// and rate-limit answers, so that the egress answers at once instead of
// sending more requests to a server that is down or asked us to wait. Its
// memory is bounded; its methods are safe for concurrent use. Keys are
// destination server names, compared ignoring ASCII case.
type backoffTable struct {
	mu  sync.Mutex
	max int
	m   map[string]*backoffEntry
	// shared, in cluster mode, passes every change on to the other
	// instances, whose changes arrive through apply. Reads stay local.
	shared sharedBackoff
}

// sharedBackoff is the seam to the other instances of a cluster
// (*cluster.Backoff implements it over Redis). Publish must not block;
// Run applies what the other instances publish until ctx ends.
type sharedBackoff interface {
	Publish(dest string, e cluster.BackoffEntry)
	Run(ctx context.Context, apply func(dest string, e cluster.BackoffEntry))
}

func newBackoffTable(max int) *backoffTable {
	return &backoffTable{max: max, m: make(map[string]*backoffEntry)}
}

// check reports whether key is backed off at now: the remaining wait, why,
// and the number of consecutive failures so far.
func (t *backoffTable) check(key string, now time.Time) (wait time.Duration, kind backoffKind, failures int) {
	key = strings.ToLower(key)
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[key]
	if !ok || !now.Before(e.until) {
		return 0, backoffNone, 0
	}
	return e.until.Sub(now), e.kind, e.failures
}

// failed records a connection failure or 5xx answer for a request that
// started at started, and returns the new window. Failures of requests
// that were already in flight when another failure opened the window are
// not counted again: twenty parallel requests failing together are one
// failure, not twenty doublings.
func (t *backoffTable) failed(key string, started, now time.Time) time.Duration {
	key = strings.ToLower(key)
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entry(key, now)
	if e.failures > 0 && e.setAt.After(started) {
		return e.until.Sub(now)
	}
	e.failures++
	window := backoffBase << min(e.failures-1, 30)
	if window > backoffMaxFailing || window <= 0 {
		window = backoffMaxFailing
	}
	if e.kind != backoffRateLimited || now.Add(window).After(e.until) {
		e.kind, e.until = backoffFailing, now.Add(window)
	}
	e.setAt = now
	t.publish(key, e)
	return window
}

// rateLimited records a 429 answer asking us to wait retry (clamped to
// [defaultRetryAfter, backoffMaxRateLimited]).
func (t *backoffTable) rateLimited(key string, now time.Time, retry time.Duration) time.Duration {
	retry = min(max(retry, defaultRetryAfter), backoffMaxRateLimited)
	key = strings.ToLower(key)
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entry(key, now)
	if until := now.Add(retry); until.After(e.until) {
		e.kind, e.until, e.setAt = backoffRateLimited, until, now
		t.publish(key, e)
	}
	return retry
}

// succeeded forgets key: the destination answered.
func (t *backoffTable) succeeded(key string) {
	key = strings.ToLower(key)
	t.mu.Lock()
	if len(t.m) > 0 {
		if _, ok := t.m[key]; ok {
			delete(t.m, key)
			// Only a change is published: a success with nothing to clear
			// (the common case) costs no round trip.
			if t.shared != nil {
				t.shared.Publish(key, cluster.BackoffEntry{Kind: cluster.BackoffCleared, SetAt: time.Now()})
			}
		}
	}
	t.mu.Unlock()
}

// publish passes an entry on to the other instances. Callers hold mu.
func (t *backoffTable) publish(key string, e *backoffEntry) {
	if t.shared == nil {
		return
	}
	kind := uint8(cluster.BackoffFailing)
	if e.kind == backoffRateLimited {
		kind = cluster.BackoffRateLimited
	}
	t.shared.Publish(key, cluster.BackoffEntry{Kind: kind, Failures: e.failures, Until: e.until, SetAt: e.setAt})
}

// apply takes in an entry another instance published: a clear removes the
// local entry, anything else replaces an older one.
func (t *backoffTable) apply(key string, se cluster.BackoffEntry) {
	key = strings.ToLower(key)
	t.mu.Lock()
	defer t.mu.Unlock()
	if se.Kind == cluster.BackoffCleared {
		delete(t.m, key)
		return
	}
	if e, ok := t.m[key]; ok && e.setAt.After(se.SetAt) {
		return // ours is newer
	}
	e := t.entry(key, se.SetAt)
	e.kind = backoffFailing
	if se.Kind == cluster.BackoffRateLimited {
		e.kind = backoffRateLimited
	}
	e.failures, e.until, e.setAt = se.Failures, se.Until, se.SetAt
}

// len returns the number of remembered destinations.
func (t *backoffTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// backoffView is one destination in backoff, for the console.
type backoffView struct {
	destination string
	kind        backoffKind
	failures    int
	until       time.Time
}

// active returns how many destinations are backed off at now and the
// limit of them with the longest wait left, longest first. It walks the
// whole table under its lock: call it for a status page or a scrape, not
// per request.
func (t *backoffTable) active(now time.Time, limit int) (total int, list []backoffView) {
	t.mu.Lock()
	for k, e := range t.m {
		if !now.Before(e.until) {
			continue
		}
		total++
		v := backoffView{destination: k, kind: e.kind, failures: e.failures, until: e.until}
		i, _ := slices.BinarySearchFunc(list, v, func(a, b backoffView) int { return b.until.Compare(a.until) })
		if i < limit {
			list = slices.Insert(list, i, v)
			if len(list) > limit {
				list = list[:limit]
			}
		}
	}
	t.mu.Unlock()
	return total, list
}

// countActive counts the destinations backed off at now, by kind.
func (t *backoffTable) countActive(now time.Time) (failing, rateLimited int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.m {
		switch {
		case !now.Before(e.until):
		case e.kind == backoffRateLimited:
			rateLimited++
		default:
			failing++
		}
	}
	return failing, rateLimited
}

// String names the kind as the console and metrics show it.
func (k backoffKind) String() string {
	switch k {
	case backoffFailing:
		return "failing"
	case backoffRateLimited:
		return "rate_limited"
	}
	return "none"
}

// entry returns key's entry, creating it within the size bound. Callers
// hold mu.
func (t *backoffTable) entry(key string, now time.Time) *backoffEntry {
	if e, ok := t.m[key]; ok {
		return e
	}
	if len(t.m) >= t.max {
		for k, e := range t.m {
			if !now.Before(e.until) {
				delete(t.m, k)
			}
		}
		for k := range t.m {
			if len(t.m) < t.max {
				break
			}
			delete(t.m, k)
		}
	}
	e := &backoffEntry{}
	t.m[key] = e
	return e
}

// maxRateLimitBody bounds how much of a 429 answer is read to find
// retry_after_ms.
const maxRateLimitBody = 16 << 10

// retryAfter finds how long a 429 answer asks us to wait: the Retry-After
// header (seconds or an HTTP date), else retry_after_ms in a JSON body,
// else 0 (unknown). body may be nil.
func retryAfter(h http.Header, body []byte, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
			if secs < 0 {
				return 0
			}
			return time.Duration(min(secs, int64(backoffMaxRateLimited/time.Second))) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			return min(max(t.Sub(now), 0), backoffMaxRateLimited)
		}
	}
	var m struct {
		RetryAfterMS *int64 `json:"retry_after_ms"`
	}
	if len(body) > 0 && json.Unmarshal(body, &m) == nil && m.RetryAfterMS != nil && *m.RetryAfterMS > 0 {
		return time.Duration(min(*m.RetryAfterMS, int64(backoffMaxRateLimited/time.Millisecond))) * time.Millisecond
	}
	return 0
}

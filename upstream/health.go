package upstream

import (
	"sync"
	"sync/atomic"
	"time"
)

// Health: what fedgate knows about each member outlives the [Set] that
// uses it. A [Tracker] keeps that state, keyed by the Set's scope
// ([SetOptions.Scope]), pool name and member URL, for as long as some
// Set holds it: a reload builds a new Set whose
// unchanged members find their state (down or up, counters) where the
// old Set left it, and the state of a member no Set lists any more is
// dropped when the last Set holding it is closed.
//
// A member is marked down for a backoff period when it fails in a way
// that says it is unwell: a connection that could not be made, a
// connection broken before any byte of an answer, a response head that
// did not come in time or was not HTTP, or a failed probe. The period
// starts at [HealthOptions.DownPeriod] and doubles with each further
// failure in a row, up to [HealthOptions.DownPeriodMax]; failures of
// requests that were already under way when the member was marked down
// do not count again. When the period is over the member is tried again
// (by the next request chosen for it, or by the next probe); any answer
// ends the failure streak at once. A member marked down is skipped when
// another member of its pool can take the request; when none can, it is
// still tried.

// TrackerOptions configure a [Tracker].
type TrackerOptions struct {
	// OnChange, when set, is called when a member goes down after being
	// up (or never tried) and when it answers again after being down. It
	// runs on the goroutine that noticed the change (a request's or the
	// prober's), outside any lock; it must be quick and must not block.
	OnChange func(Change)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Change is a member going down or coming back, for [TrackerOptions.OnChange].
type Change struct {
	Scope string // the Set's [SetOptions.Scope]
	Pool  string // the pool's name
	URL   string // the member's URL, without credentials
	// Up is true when the member answered again, false when it was marked
	// down.
	Up bool
	// Reason is why the member was marked down; empty when Up.
	Reason string
	// DownFor is how long the member is skipped; zero when Up.
	DownFor time.Duration
}

// Tracker holds the health and counters of members across reloads. Create
// one per process with [NewTracker] and hand it to every [NewSet]; a nil
// Tracker given to NewSet makes the Set keep its own. It is safe for
// concurrent use.
type Tracker struct {
	onChange func(Change)
	now      func() time.Time

	mu     sync.Mutex
	states map[stateKey]*memberState
}

type stateKey struct{ scope, pool, url string }

// NewTracker returns an empty Tracker.
func NewTracker(opts TrackerOptions) *Tracker {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Tracker{onChange: opts.OnChange, now: now, states: map[stateKey]*memberState{}}
}

// Len returns how many members the Tracker holds state for.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.states)
}

// acquire returns the state of a member, creating it on first use; every
// acquire is paired with one release.
func (t *Tracker) acquire(scope, pool, url string) *memberState {
	k := stateKey{scope, pool, url}
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.states[k]
	if st == nil {
		st = &memberState{key: k, tracker: t}
		t.states[k] = st
	}
	st.refs++
	return st
}

// release gives a state back; the last release forgets it.
func (t *Tracker) release(st *memberState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st.refs--
	if st.refs == 0 && t.states[st.key] == st {
		delete(t.states, st.key)
	}
}

// memberState is the health and the counters of one member of one pool.
// Requests read and update it with atomic operations only.
type memberState struct {
	key     stateKey
	tracker *Tracker
	refs    int // under tracker.mu

	// downUntil is when a member marked down may be tried again, in Unix
	// nanoseconds; 0 while the member is not marked down (it answered
	// last, or was never tried).
	downUntil atomic.Int64
	// failures counts failures in a row (not those of requests already
	// under way when the member was marked down).
	failures atomic.Int32
	lastOK   atomic.Int64 // Unix nanoseconds of the last answer; 0 = never
	lastFail atomic.Int64 // Unix nanoseconds of the last failure; 0 = never
	lastErr  atomic.Pointer[string]

	// Probing: one probe at a time, and none when another Set sharing
	// this state probed within half an interval.
	probing   atomic.Bool
	lastProbe atomic.Int64

	inFlight  atomic.Int64 // requests between sending and their body's end
	requests  atomic.Uint64
	errors    [numKinds]atomic.Uint64 // by Kind-1
	failovers atomic.Uint64
	probesOK  atomic.Uint64
	probesBad atomic.Uint64
}

// numKinds is the number of error kinds.
const numKinds = int(BodyBroken)

// eligible reports whether the member may be chosen: not marked down, or
// its down period is over.
func (s *memberState) eligible(c *clock) bool {
	u := s.downUntil.Load()
	return u == 0 || c.nanos() >= u
}

// answered records an answer (a response head, or a probe's status below
// 500) at now.
func (s *memberState) answered(now int64) {
	if last := s.lastOK.Load(); now-last > int64(10*time.Millisecond) {
		s.lastOK.Store(now)
	}
	if s.failures.Load() == 0 {
		return
	}
	if s.failures.Swap(0) == 0 {
		return // another answer got here first
	}
	s.downUntil.Store(0)
	if f := s.tracker.onChange; f != nil {
		f(Change{Scope: s.key.scope, Pool: s.key.pool, URL: s.key.url, Up: true})
	}
}

// failed records a failure at now, with why for the operator, and marks
// the member down unless it already is.
func (s *memberState) failed(now int64, why string, opts *HealthOptions) {
	s.lastFail.Store(now)
	s.lastErr.Store(&why)
	if u := s.downUntil.Load(); u != 0 && now < u {
		return // under way before the member was marked down
	}
	n := s.failures.Add(1)
	d := opts.backoff(int(n))
	s.downUntil.Store(now + int64(d))
	if n == 1 {
		if f := s.tracker.onChange; f != nil {
			f(Change{Scope: s.key.scope, Pool: s.key.pool, URL: s.key.url, Reason: why, DownFor: d})
		}
	}
}

// backoff is the down period after n failures in a row.
func (o *HealthOptions) backoff(n int) time.Duration {
	d := o.DownPeriod
	for i := 1; i < n && d < o.DownPeriodMax; i++ {
		d *= 2
	}
	return min(d, o.DownPeriodMax)
}

// State is a member's health as reported by [Set.Status].
type State uint8

const (
	// Unknown: the member never answered and never failed.
	Unknown State = iota
	// Up: the member's last exchange or probe got an answer.
	Up
	// Down: the member failed and is skipped until its down period ends.
	Down
	// Retrying: the member's down period is over and it has not answered
	// yet; the next request chosen for it, or the next probe, tries it.
	Retrying
)

func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Down:
		return "down"
	case Retrying:
		return "retrying"
	}
	return "unknown"
}

// state reports the member's State at now.
func (s *memberState) state(now int64) State {
	switch u := s.downUntil.Load(); {
	case u != 0 && now < u:
		return Down
	case u != 0:
		return Retrying
	case s.lastOK.Load() != 0:
		return Up
	}
	return Unknown
}

package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fedgate/fedgate/internal/endpoints"
)

// DefaultPool is the name of the pool that takes every request no route
// takes.
const DefaultPool = "default"

// SetOptions configure a [Set]; they mirror one [upstream] section of the
// configuration: the default pool, the routes, and the settings every
// member shares.
type SetOptions struct {
	// Member holds the settings of every member (timeouts, idle pool,
	// CA); its URL is ignored.
	Member Options
	// URLs are the default pool's members (at least one).
	URLs []string
	// Balance is how the default pool spreads requests.
	Balance Balance
	// Routes send some endpoints to pools of their own; the first route
	// that names an endpoint (by class or operation, as policy rules do)
	// takes it.
	Routes []RouteOptions
	// Health configures probes and down periods.
	Health HealthOptions
	// Scope names whose pools these are, for the [Tracker]: member state
	// is kept by scope, pool name and member URL, so Sets of different
	// scopes never share it, even for the same pool name and URL. The
	// gateway passes the hosted server's name: two hosted servers' pools
	// are watched apart even when both list the same address. Sets of
	// the same scope share state by pool and URL (a reload's new Set
	// finds its old one's). Empty is a scope like any other.
	Scope string
}

// RouteOptions are one route: the endpoints it takes and its pool.
type RouteOptions struct {
	// Name names the route's pool in metrics, readiness and the console
	// (required, unique, not "default").
	Name string
	// Endpoints are endpoint classes or operation names, as in
	// [endpoints.Known]; endpoints fedgate serves itself cannot be routed.
	Endpoints []string
	// URLs are the pool's members (at least one).
	URLs []string
	// Balance is how the pool spreads requests.
	Balance Balance
}

// HealthOptions configure how members are watched. Zero values take the
// defaults given per field.
type HealthOptions struct {
	// ProbePath is the request-target of the active probe, sent as GET.
	// Default [DefaultProbePath].
	ProbePath string
	// ProbeInterval is how often [Set.Probe] is meant to be called; a Set
	// skips members another Set probed within half of it. Default 10s.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe. Default 5s.
	ProbeTimeout time.Duration
	// UserAgent is the probe's User-Agent field; empty sends none.
	UserAgent string
	// DownPeriod is how long a member that failed is skipped; it doubles
	// with each further failure in a row. Default 5s.
	DownPeriod time.Duration
	// DownPeriodMax caps the doubling. Default 1m (never below DownPeriod).
	DownPeriodMax time.Duration
}

// Defaults for [HealthOptions].
const (
	DefaultProbePath     = "/_matrix/federation/v1/version"
	DefaultProbeInterval = 10 * time.Second
	DefaultProbeTimeout  = 5 * time.Second
	DefaultDownPeriod    = 5 * time.Second
	DefaultDownPeriodMax = time.Minute
)

// Set is what fedgate forwards inbound requests through: a default pool
// and the routes that send some endpoints to other pools. The gateway
// builds one per [upstream] section with [NewSet], keeps it in its
// configuration snapshot, and replaces it on reload; [Set.Close] retires
// the old one while its requests finish. A Set is immutable and safe for
// concurrent use; choosing a pool for a request is one map lookup, done
// on tables built by NewSet.
type Set struct {
	pools   []*Pool // the default pool first, then the routes' in order
	def     *Pool
	byOp    map[string]*Pool // operation name -> route's pool; nil without routes
	health  HealthOptions
	tracker *Tracker
	scope   string // SetOptions.Scope
	closed  atomic.Bool
}

// SetError is [NewSet]'s error for a member it cannot build. Route is the
// route's index, or -1 for the default pool; Member is the index in its
// URLs, or -1 when the problem is the route itself.
type SetError struct {
	Route, Member int
	Err           error
}

func (e *SetError) Error() string {
	where := "default pool"
	if e.Route >= 0 {
		where = fmt.Sprintf("route %d", e.Route)
	}
	if e.Member >= 0 {
		where += fmt.Sprintf(", member %d", e.Member)
	}
	return where + ": " + e.Err.Error()
}

func (e *SetError) Unwrap() error { return e.Err }

// NewSet builds the pools of opts, with their members' state held by t
// (nil: a Tracker of the Set's own). It connects to nothing yet. On error
// nothing is left open.
func NewSet(opts SetOptions, t *Tracker) (*Set, error) {
	if t == nil {
		t = NewTracker(TrackerOptions{})
	}
	h := opts.Health
	h.ProbePath = cmpOr(h.ProbePath, DefaultProbePath)
	h.ProbeInterval = cmpOr(h.ProbeInterval, DefaultProbeInterval)
	h.ProbeTimeout = cmpOr(h.ProbeTimeout, DefaultProbeTimeout)
	h.DownPeriod = cmpOr(h.DownPeriod, DefaultDownPeriod)
	h.DownPeriodMax = max(cmpOr(h.DownPeriodMax, DefaultDownPeriodMax), h.DownPeriod)
	s := &Set{health: h, tracker: t, scope: opts.Scope}
	fail := func(err error) (*Set, error) {
		s.Close()
		return nil, err
	}
	def, err := s.newPool(DefaultPool, opts.URLs, opts.Balance, opts.Member, -1)
	if err != nil {
		return fail(err)
	}
	s.def = def
	s.pools = append(s.pools, def)
	names := map[string]bool{DefaultPool: true}
	for i, r := range opts.Routes {
		if r.Name == "" || names[r.Name] {
			return fail(&SetError{Route: i, Member: -1, Err: fmt.Errorf("pool name %q is empty or used twice", r.Name)})
		}
		names[r.Name] = true
		ops, err := routedOps(r.Endpoints)
		if err != nil {
			return fail(&SetError{Route: i, Member: -1, Err: err})
		}
		p, err := s.newPool(r.Name, r.URLs, r.Balance, opts.Member, i)
		if err != nil {
			return fail(err)
		}
		s.pools = append(s.pools, p)
		if s.byOp == nil {
			s.byOp = map[string]*Pool{}
		}
		for _, op := range ops {
			if _, taken := s.byOp[op]; !taken {
				s.byOp[op] = p // the first route naming op takes it
			}
		}
	}
	return s, nil
}

// routedOps returns the operation names that the endpoint names (classes
// or operations) cover among the endpoints fedgate forwards.
func routedOps(names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, errors.New("no endpoints")
	}
	var ops []string
	seen := map[string]bool{}
	for _, n := range names {
		if !endpoints.Known(n) {
			return nil, fmt.Errorf("unknown endpoint class or operation %q", n)
		}
		found := false
		for _, ep := range endpoints.All() {
			if ep.Local || (ep.Name != n && ep.Class != n) {
				continue
			}
			found = true
			if !seen[ep.Name] {
				seen[ep.Name] = true
				ops = append(ops, ep.Name)
			}
		}
		if !found {
			return nil, fmt.Errorf("%q is served by fedgate itself and never forwarded", n)
		}
	}
	return ops, nil
}

func (s *Set) newPool(name string, urls []string, b Balance, mo Options, route int) (_ *Pool, err error) {
	if len(urls) == 0 {
		return nil, &SetError{Route: route, Member: -1, Err: errors.New("no members")}
	}
	p := &Pool{name: name, balance: b, health: &s.health, now: s.tracker.now}
	defer func() {
		if err != nil {
			for _, sl := range p.members {
				sl.m.Close()
				s.tracker.release(sl.st)
			}
		}
	}()
	seen := map[string]bool{}
	for i, u := range urls {
		o := mo
		o.URL = u
		m, err := New(o)
		if err != nil {
			return nil, &SetError{Route: route, Member: i, Err: err}
		}
		id := memberID(m)
		if seen[id] {
			m.Close()
			return nil, &SetError{Route: route, Member: i, Err: fmt.Errorf("%s is listed twice", m)}
		}
		seen[id] = true
		p.members = append(p.members, &slot{m: m, st: s.tracker.acquire(s.scope, name, id), seed: hashString(id), index: i})
	}
	return p, nil
}

// memberID is what identifies a member across reloads and fedgate
// instances: its scheme and host, lower case ("http://127.0.0.1:8083"), so
// that a trailing slash or a capital letter in the configuration moves no
// origin and loses no state.
func memberID(m *Member) string {
	u := m.URL()
	return strings.ToLower(u.Scheme + "://" + u.Host)
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Route returns the pool that takes requests to ep: the first route that
// names it, else the default pool (also for nil, a request outside the
// endpoint table such as a passthrough prefix).
func (s *Set) Route(ep *endpoints.Endpoint) *Pool {
	if s.byOp != nil && ep != nil {
		if p, ok := s.byOp[ep.Name]; ok {
			return p
		}
	}
	return s.def
}

// RoundTrip forwards req to the pool that takes ep (see [Set.Route]) and
// returns the first member's answer, or, when that member could not take
// the request and trying another cannot do harm, the answer of a second
// member of the same pool (the rules are in this package's doc). origin
// is the request's verified origin server; it chooses the member in an
// [Origin] pool, and is ignored for endpoints without X-Matrix
// authentication (pass "" when there is none). Errors are as
// [Member.RoundTrip]'s: errors.As finds the *[Error] of the last member
// tried, and the Exchange (without a Response) names that member. The
// caller must Close the Exchange.
func (s *Set) RoundTrip(ctx context.Context, ep *endpoints.Endpoint, origin string, req *Request) (Exchange, error) {
	p := s.Route(ep)
	var h uint64
	hashed := p.balance == Origin && origin != "" && (ep == nil || ep.Auth == endpoints.AuthXMatrix)
	if hashed {
		h = hashString(origin)
	}
	return p.roundTrip(ctx, ep, req, h, hashed)
}

// Pools returns the pools, the default pool first, then the routes' in
// configuration order.
func (s *Set) Pools() []*Pool { return append([]*Pool(nil), s.pools...) }

// Default returns the default pool.
func (s *Set) Default() *Pool { return s.def }

// Health returns the health settings in effect (defaults filled in).
func (s *Set) Health() HealthOptions { return s.health }

// Redundant reports whether some pool has more than one member, so that
// knowing their health changes where requests go.
func (s *Set) Redundant() bool {
	for _, p := range s.pools {
		if len(p.members) > 1 {
			return true
		}
	}
	return false
}

// Close retires every member (see [Member.Close]: requests under way
// finish) and gives their state back to the Tracker. Call it once the Set
// is no longer used for new requests, e.g. after a reload replaced it.
// Calling it again does nothing.
func (s *Set) Close() {
	if s.closed.Swap(true) {
		return
	}
	for _, p := range s.pools {
		for _, sl := range p.members {
			sl.m.Close()
			s.tracker.release(sl.st)
		}
	}
}

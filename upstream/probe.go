package upstream

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// ProbeResult is the outcome of probing one member.
type ProbeResult struct {
	Pool   string // the pool's name
	Member int    // the member's index in its pool
	URL    string // the member's URL, without credentials
	// Status is the HTTP status of the answer; 0 when none came.
	Status int
	// Err says why the probe failed; nil when it got an answer below 500.
	Err error
	// Skipped is true when the member was not probed: another Set
	// sharing its state probed it within half an interval, or a probe of
	// it is still running.
	Skipped bool
}

// OK reports whether the probe got an answer below 500.
func (r ProbeResult) OK() bool { return !r.Skipped && r.Err == nil }

// Probe sends "GET probe_path" to every member of every pool at once,
// waits for all of them (each bounded by the probe timeout and ctx), and
// records the outcome in each member's health: an answer below 500 means
// the member is up (its federation listener answered), anything else
// marks it down like a failed request does. The gateway calls it every
// [HealthOptions.ProbeInterval] from one goroutine; it is also the
// readiness probe of the homeserver. Results come in pool and member
// order. A ctx that ends stops the probes without marking anything.
func (s *Set) Probe(ctx context.Context) []ProbeResult {
	var out []ProbeResult
	for _, p := range s.pools {
		for _, sl := range p.members {
			out = append(out, ProbeResult{Pool: p.name, Member: sl.index, URL: sl.m.String()})
		}
	}
	var wg sync.WaitGroup
	i := 0
	for _, p := range s.pools {
		for _, sl := range p.members {
			r := &out[i]
			i++
			wg.Go(func() { s.probe(ctx, sl, r) })
		}
	}
	wg.Wait()
	return out
}

// probe probes one member into r.
func (s *Set) probe(ctx context.Context, sl *slot, r *ProbeResult) {
	st := sl.st
	start := s.tracker.now().UnixNano()
	if last := st.lastProbe.Load(); last != 0 && start-last < int64(s.health.ProbeInterval/2) {
		r.Skipped = true
		return
	}
	if !st.probing.CompareAndSwap(false, true) {
		r.Skipped = true
		return
	}
	defer st.probing.Store(false)
	st.lastProbe.Store(start)
	pctx, cancel := context.WithTimeout(ctx, s.health.ProbeTimeout)
	defer cancel()
	status, err := sl.m.Probe(pctx, s.health.ProbePath, s.health.UserAgent)
	r.Status = status
	if ctx.Err() != nil {
		r.Skipped, r.Err = true, ctx.Err()
		return // shutting down: say nothing about the member
	}
	now := s.tracker.now().UnixNano()
	switch {
	case err != nil && status == 0:
		r.Err = err
	case status >= http.StatusInternalServerError:
		r.Err = fmt.Errorf("HTTP %d from %s", status, s.health.ProbePath)
	}
	if r.Err != nil {
		st.probesBad.Add(1)
		st.failed(now, "probe: "+failureText(r.Err), &s.health)
		return
	}
	// An answer that broke off after its status still shows the
	// listener up.
	st.probesOK.Add(1)
	st.answered(now)
}

// PoolStatus is the state of one pool, for readiness, metrics and the
// console.
type PoolStatus struct {
	Name    string
	Balance Balance
	Members []MemberStatus
}

// MemberStatus is the state of one member of a pool.
type MemberStatus struct {
	Index int    // in configuration order
	URL   string // without credentials
	State State
	// LastOK is when the member last answered (request or probe); zero
	// when it never did.
	LastOK time.Time
	// LastFailure is when it last failed; zero when it never did.
	LastFailure time.Time
	// LastError is why it last failed; empty when it never did.
	LastError string
	// DownUntil is when a member marked down is tried again; zero when
	// it is not marked down.
	DownUntil time.Time
	// Failures counts failures in a row.
	Failures int
	// InFlight counts requests of this pool under way on the member.
	InFlight int64
	// Requests counts requests the member answered (a response head
	// arrived).
	Requests uint64
	// Errors counts failed exchanges by kind.
	Errors map[Kind]uint64
	// Failovers counts requests sent to another member after this one
	// could not take them.
	Failovers uint64
	// ProbesOK and ProbesFailed count active probes.
	ProbesOK, ProbesFailed uint64
	// Conns are the member's connection counters (of the current Set's
	// member: they start again at a reload).
	Conns Stats
}

// Status returns the state of every pool, in [Set.Pools] order. It reads
// counters only: no network, no lock held by requests.
func (s *Set) Status() []PoolStatus {
	now := s.tracker.now().UnixNano()
	unix := func(n int64) time.Time {
		if n == 0 {
			return time.Time{}
		}
		return time.Unix(0, n)
	}
	out := make([]PoolStatus, len(s.pools))
	for i, p := range s.pools {
		ps := PoolStatus{Name: p.name, Balance: p.balance, Members: make([]MemberStatus, len(p.members))}
		for j, sl := range p.members {
			st := sl.st
			ms := MemberStatus{
				Index:        sl.index,
				URL:          sl.m.String(),
				State:        st.state(now),
				LastOK:       unix(st.lastOK.Load()),
				LastFailure:  unix(st.lastFail.Load()),
				Failures:     int(st.failures.Load()),
				InFlight:     st.inFlight.Load(),
				Requests:     st.requests.Load(),
				Failovers:    st.failovers.Load(),
				ProbesOK:     st.probesOK.Load(),
				ProbesFailed: st.probesBad.Load(),
				Conns:        sl.m.Stats(),
				Errors:       map[Kind]uint64{},
			}
			if p := st.lastErr.Load(); p != nil {
				ms.LastError = *p
			}
			if u := st.downUntil.Load(); u != 0 && now < u {
				ms.DownUntil = unix(u)
			}
			for k := range numKinds {
				if n := st.errors[k].Load(); n != 0 {
					ms.Errors[Kind(k+1)] = n
				}
			}
			ps.Members[j] = ms
		}
		out[i] = ps
	}
	return out
}

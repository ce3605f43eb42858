package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/fedgate/fedgate/internal/endpoints"
)

// Pool is a set of members that can each serve the same requests (one
// process, or a group of equivalent workers), and how requests are spread
// over them ([Balance]). Pools are built by [NewSet] and immutable except
// for their counters; they are safe for concurrent use.
type Pool struct {
	name    string
	balance Balance
	members []*slot
	health  *HealthOptions
	now     func() time.Time
	next    atomic.Uint64 // turn counter of RoundRobin and LeastBusy
}

// slot is one member of one pool: the connection pool, its long-lived
// state, and its rendezvous seed.
type slot struct {
	m     *Member
	st    *memberState
	seed  uint64
	index int
}

// Name returns the pool's name: "default", or the route's.
func (p *Pool) Name() string { return p.name }

// Balance returns how the pool spreads requests.
func (p *Pool) Balance() Balance { return p.balance }

// Members returns the pool's members in configuration order. The slice is
// the caller's; the members are shared.
func (p *Pool) Members() []*Member {
	out := make([]*Member, len(p.members))
	for i, s := range p.members {
		out[i] = s.m
	}
	return out
}

// Exchange is a response from one member of a pool: the [Response]
// (status, header, body) and where it came from. Close it when done
// with it, instead of closing its Body: that also ends the request's
// count towards the member's load. A failed RoundTrip returns an
// Exchange without a Response that still says where the request went
// (for the access log); closing it does nothing.
type Exchange struct {
	*Response
	// Pool is the name of the pool the request was routed to.
	Pool string
	// Member is the index, in configuration order, of the member that
	// answered (after a failure: the last member tried).
	Member int
	// Failover is true when the request went to this member after
	// another member of the pool could not take it.
	Failover bool

	st *memberState
}

// Close closes the response body and releases the request's place in the
// member's load. Calling it again, or on the zero Exchange, does nothing.
func (x *Exchange) Close() error {
	if x.st == nil {
		return nil
	}
	x.st.inFlight.Add(-1)
	x.st = nil
	return x.Body.Close()
}

// roundTrip sends req to a member chosen by the pool's balance and, when
// that member could not take it, once more to another member (see the
// failover rules in retry.go; whether the request to ep is repeatable is
// only asked then). originHash is used when hashed is true.
func (p *Pool) roundTrip(ctx context.Context, ep *endpoints.Endpoint, req *Request, originHash uint64, hashed bool) (Exchange, error) {
	c := clock{fn: p.now}
	first := p.choose(originHash, hashed, nil, &c)
	resp, err := p.send(ctx, first, req)
	if err == nil {
		return Exchange{Response: resp, Pool: p.name, Member: first.index, st: first.st}, nil
	}
	var ue *Error
	if !errors.As(err, &ue) || !failoverAllowed(ctx, ue, ep, req.Method) {
		return Exchange{Pool: p.name, Member: first.index}, err
	}
	c.now = 0 // the first attempt may have taken a while
	second := p.choose(originHash, hashed, first, &c)
	if second == nil {
		return Exchange{Pool: p.name, Member: first.index}, err
	}
	first.st.failovers.Add(1)
	resp, err2 := p.send(ctx, second, req)
	if err2 != nil {
		// The second member's error decides the answer (502 or 504); the
		// first one's is kept in the text for the log.
		return Exchange{Pool: p.name, Member: second.index, Failover: true}, &failoverError{last: err2, first: err}
	}
	return Exchange{Response: resp, Pool: p.name, Member: second.index, Failover: true, st: second.st}, nil
}

// send is one attempt on one member: it counts the request in the
// member's load and records how the member did.
func (p *Pool) send(ctx context.Context, s *slot, req *Request) (*Response, error) {
	s.st.inFlight.Add(1)
	resp, err := s.m.RoundTrip(ctx, req)
	if err == nil {
		s.st.requests.Add(1)
		s.st.answered(p.now().UnixNano())
		return resp, nil
	}
	s.st.inFlight.Add(-1)
	var ue *Error
	if errors.As(err, &ue) {
		if ue.Kind >= NotSent && int(ue.Kind) <= numKinds {
			s.st.errors[ue.Kind-1].Add(1)
		}
		// A remote server that went away says nothing about the member.
		if ctx.Err() == nil && unwell(ue.Kind) {
			s.st.failed(p.now().UnixNano(), "request: "+failureText(ue), p.health)
		}
	}
	return nil, err
}

// failureText is what a member's failure says in its health state
// (readiness, console, logs): the kind and the cause, without the
// member's URL (shown beside it anyway), kept short.
func failureText(err error) string {
	var s string
	var ue *Error
	if errors.As(err, &ue) {
		s = ue.Kind.String() + ": " + ue.Err.Error()
	} else {
		s = err.Error()
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// failoverError is the error of a request that failed on two members. It
// unwraps to the second member's *Error.
type failoverError struct {
	last, first error
}

func (e *failoverError) Error() string {
	return fmt.Sprintf("%v (after failing over from: %v)", e.last, e.first)
}

func (e *failoverError) Unwrap() error { return e.last }

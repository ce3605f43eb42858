package console

import (
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

const (
	// coalesceLookback is how many of the newest entries a denial is
	// compared with before it gets an entry of its own.
	coalesceLookback = 4
	// coalesceWindow is how long after an entry's last denial a repeat is
	// still counted in it.
	coalesceWindow = time.Minute
	// maxRuleLen bounds the rule text kept per denial.
	maxRuleLen = 200
)

// denialRing keeps the most recent denials in a ring of fixed size. A
// denial repeating one of the newest few (same direction, server, reason,
// rule and status, within a minute) only bumps that entry's count and
// time, so that a flood from one server, such as a rate-limited origin,
// shows as one line with a count instead of pushing every other denial
// out of the ring, and costs no allocation. Safe for concurrent use
// without locks: entries are immutable but for their atomic count and
// last time, and slots are swapped whole.
type denialRing struct {
	next  atomic.Uint64 // number of entries ever written
	slots []atomic.Pointer[denialEntry]
}

type denialEntry struct {
	egress  bool
	server  string
	peer    netip.Addr // when server is ""
	reason  string
	stage   string
	rule    string
	limiter string
	status  int
	first   int64 // unix nanoseconds
	last    atomic.Int64
	count   atomic.Uint64
}

func newDenialRing(size int) *denialRing {
	return &denialRing{slots: make([]atomic.Pointer[denialEntry], max(size, 1))}
}

// add records the denial q.
func (d *denialRing) add(q *Request) {
	at := q.Time.UnixNano()
	server, rule, limiter := clip(q.Server, maxNameLen), clip(q.Rule, maxRuleLen), clip(q.Limiter, maxRuleLen)
	var peer netip.Addr
	if server == "" {
		peer = q.Peer
	}
	n := d.next.Load()
	size := uint64(len(d.slots))
	for i := uint64(1); i <= coalesceLookback && i <= n && i <= size; i++ {
		e := d.slots[(n-i)%size].Load()
		if e == nil || e.egress != q.Egress || e.server != server || e.peer != peer || e.reason != q.Reason ||
			e.rule != rule || e.limiter != limiter || e.status != q.Status || time.Duration(at-e.last.Load()) > coalesceWindow {
			continue
		}
		e.count.Add(1)
		for {
			last := e.last.Load()
			if at <= last || e.last.CompareAndSwap(last, at) {
				return
			}
		}
	}
	e := &denialEntry{
		egress:  q.Egress,
		server:  strings.Clone(server), // may point into the request's headers
		peer:    peer,
		reason:  q.Reason, // reason, stage, rule and limiter come from code and configuration
		stage:   q.Stage,
		rule:    rule,
		limiter: limiter,
		status:  q.Status,
		first:   at,
	}
	e.last.Store(at)
	e.count.Store(1)
	d.slots[(d.next.Add(1)-1)%size].Store(e)
}

// read returns the denials held, most recent first, with server names and
// rules shown as names says.
func (d *denialRing) read(names Names) []Denial {
	out := make([]Denial, 0, len(d.slots))
	for i := range d.slots {
		e := d.slots[i].Load()
		if e == nil {
			continue
		}
		dir := DirectionInbound
		if e.egress {
			dir = DirectionEgress
		}
		peer := ""
		if e.peer.IsValid() {
			peer = names.server(e.peer.String())
		}
		out = append(out, Denial{
			Time:      time.Unix(0, e.last.Load()).UTC(),
			First:     time.Unix(0, e.first).UTC(),
			Count:     e.count.Load(),
			Direction: dir,
			Server:    names.server(e.server),
			Reason:    e.reason,
			Stage:     e.stage,
			Peer:      peer,
			Rule:      names.rule(e.rule),
			Limiter:   e.limiter,
			Status:    e.status,
		})
	}
	slices.SortStableFunc(out, func(a, b Denial) int { return b.Time.Compare(a.Time) })
	return out
}

// clip cuts s to at most n bytes.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

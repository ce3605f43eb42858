package console

import (
	"cmp"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// The top tables keep, per server, requests, denials and failures in
// windows of topWindow; the last hour is the sum of the newest
// topWindows windows.
const (
	topWindow  = 5 * time.Minute
	topWindows = int(time.Hour / topWindow)
	// topProbe is how many neighbouring slots a server name may occupy:
	// its home slot and the next ones.
	topProbe = 8
	// maxNameLen bounds the names kept: a server name has at most 255
	// bytes; longer strings are cut, so that no request can make an entry
	// large.
	maxNameLen = 255
)

// What a top entry counts per window.
const (
	topRequests = iota
	topDenied
	topFailed
	numTop
)

// topTable finds the servers with the most requests over the last hour in
// fixed memory: an open-addressed table of a fixed number of slots, each
// holding one server's windowed counters.
//
// Recording a server already in the table is a hash, a few atomic loads
// and a compare-and-swap per counter: no lock, no allocation. A server not
// yet in the table takes a free slot near its hash (one allocation). When
// those slots are all taken, it replaces the neighbour with the fewest
// requests over the hour with probability 1/(that count + 1), the way
// HeavyKeeper decays its buckets: a flood of distinct names (a scan, made
// up origins) rarely displaces a server with real traffic and allocates
// rarely, while a server that keeps sending gets in after about as many
// requests as the one it replaces had. Counts of servers that got in late
// start from their arrival, so the table is exact for the heavy servers
// and approximate at its tail.
type topTable struct {
	seed  maphash.Seed
	mask  uint64
	slots []atomic.Pointer[topEntry]
}

// topEntry is one server's counters. name never changes.
type topEntry struct {
	name   string
	counts [topWindows][numTop]stamped
}

// newTopTable returns a table of at least size slots (rounded up to a
// power of two, at least topProbe).
func newTopTable(size int) *topTable {
	n := topProbe
	for n < size {
		n <<= 1
	}
	return &topTable{seed: maphash.MakeSeed(), mask: uint64(n - 1), slots: make([]atomic.Pointer[topEntry], n)}
}

// windowOf numbers the topWindow window t falls in.
func windowOf(t time.Time) uint64 { return uint64(t.Unix()) / uint64(topWindow/time.Second) }

// add counts one request for name at t. An empty name is not counted.
func (t *topTable) add(name string, at time.Time, denied, failed bool) {
	if name == "" {
		return
	}
	if len(name) > maxNameLen {
		name = name[:maxNameLen]
	}
	w := windowOf(at)
	e := t.find(name, w)
	if e == nil {
		return
	}
	c := &e.counts[w%uint64(topWindows)]
	c[topRequests].add(w, 1)
	if denied {
		c[topDenied].add(w, 1)
	}
	if failed {
		c[topFailed].add(w, 1)
	}
}

// find returns name's entry, making room for it when needed; nil when the
// name was not admitted this time. now is the current window.
func (t *topTable) find(name string, now uint64) *topEntry {
	home := maphash.String(t.seed, name)
	for attempt := 0; attempt < 2; attempt++ {
		free := -1
		for i := range uint64(topProbe) {
			idx := int((home + i) & t.mask)
			e := t.slots[idx].Load()
			if e == nil {
				if free < 0 {
					free = idx
				}
				continue
			}
			if e.name == name {
				return e
			}
		}
		if free >= 0 {
			e := &topEntry{name: strings.Clone(name)}
			if t.slots[free].CompareAndSwap(nil, e) {
				return e
			}
			continue // someone took the slot; look again (it may be us)
		}
		return t.displace(home, name, now)
	}
	return nil
}

// displace replaces the lightest entry among name's slots, with
// probability 1/(its requests in the hour up to window now + 1).
func (t *topTable) displace(home uint64, name string, now uint64) *topEntry {
	victim, least := -1, uint64(0)
	var old *topEntry
	for i := range uint64(topProbe) {
		idx := int((home + i) & t.mask)
		e := t.slots[idx].Load()
		if e == nil {
			continue
		}
		if n := e.hour(now, topRequests); victim < 0 || n < least {
			victim, least, old = idx, n, e
		}
	}
	if victim < 0 || rand.Uint64N(least+1) != 0 {
		return nil
	}
	e := &topEntry{name: strings.Clone(name)}
	if !t.slots[victim].CompareAndSwap(old, e) {
		return nil
	}
	return e
}

// hour sums counter k over the windows of the hour ending in window now.
func (e *topEntry) hour(now uint64, k int) uint64 {
	var sum uint64
	for i := range uint64(topWindows) {
		w := now - i
		sum += e.counts[w%uint64(topWindows)][k].get(w)
	}
	return sum
}

// top returns the n servers with the most requests in the hour up to at,
// most first (ties by name). It reads every slot once: its cost depends
// on the table's size, not on traffic.
func (t *topTable) top(at time.Time, n int) []TopServer {
	now := windowOf(at)
	out := make([]TopServer, 0, n+1)
	for i := range t.slots {
		e := t.slots[i].Load()
		if e == nil {
			continue
		}
		s := TopServer{Server: e.name, Requests: e.hour(now, topRequests)}
		if s.Requests == 0 {
			continue
		}
		s.Denied, s.Failed = e.hour(now, topDenied), e.hour(now, topFailed)
		// Keep out sorted and at most n long: an insertion into a short
		// slice, no sort of the whole table.
		pos, _ := slices.BinarySearchFunc(out, s, compareTop)
		if pos >= n {
			continue
		}
		out = slices.Insert(out, pos, s)
		if len(out) > n {
			out = out[:n]
		}
	}
	return out
}

func compareTop(a, b TopServer) int {
	if c := cmp.Compare(b.Requests, a.Requests); c != 0 {
		return c
	}
	return strings.Compare(a.Server, b.Server)
}

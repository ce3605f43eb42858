package console

import "sync/atomic"

// A stamped counter counts events of one time slot (a minute, a five
// minute window) and carries that slot's number with the count, in one
// 64-bit word: the high stampBits bits hold the slot number, the low
// countBits bits the count. A writer for a newer slot starts the count
// afresh; a reader asking for a slot the word no longer holds reads 0.
// So a ring of stamped counters needs no reset pass, no lock and no
// separate stamp that could disagree with the count: rotation is part of
// the compare-and-swap that counts.
type stamped struct{ v atomic.Uint64 }

const (
	countBits = 36 // up to 68 billion events per slot
	stampBits = 64 - countBits
	countMask = 1<<countBits - 1
	stampMask = 1<<stampBits - 1
)

// add counts n events in slot. An event for a slot older than the one the
// counter holds (a request that finished just before a rotation and was
// recorded just after it) is dropped: its slot has already been
// overwritten.
func (s *stamped) add(slot, n uint64) {
	tag := (slot & stampMask) << countBits
	for {
		old := s.v.Load()
		var next uint64
		switch held := old >> countBits; {
		case held == slot&stampMask:
			if old&countMask > countMask-n {
				return // saturated; cannot happen at real rates
			}
			next = old + n
		case newer(slot&stampMask, held):
			next = tag | n
		default:
			return
		}
		if s.v.CompareAndSwap(old, next) {
			return
		}
	}
}

// get returns the count of slot, or 0 when the counter holds another slot.
func (s *stamped) get(slot uint64) uint64 {
	v := s.v.Load()
	if v>>countBits != slot&stampMask {
		return 0
	}
	return v & countMask
}

// newer reports whether slot a comes after slot b, both truncated to
// stampBits (the comparison survives the truncation's wrap-around).
func newer(a, b uint64) bool {
	d := (a - b) & stampMask
	return d != 0 && d < 1<<(stampBits-1)
}

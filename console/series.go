package console

import (
	"math/rand/v2"
	"time"
)

// SeriesMinutes is how many minutes the per-minute series cover: the last
// hour, the current minute included.
const SeriesMinutes = 60

// What the per-minute series count.
const (
	seriesInbound = iota // inbound requests
	seriesEgress         // egress requests
	seriesDenied         // requests refused, both directions
	seriesErrors         // requests that failed, both directions
	numSeries
)

// seriesShards spreads writers over several copies of the counters, picked
// at random per request, so that the cores do not all fight over one
// cache line for every request. Readers add the shards up.
const seriesShards = 8

// series counts requests, denials and errors per minute over the last
// hour. Fixed size; safe for concurrent use without locks.
type series struct {
	shards [seriesShards]seriesShard
}

type seriesShard struct {
	minutes [SeriesMinutes][numSeries]stamped
	_       [64]byte // keeps the next shard's first counters off this shard's last cache line
}

// minuteOf numbers the minute t falls in.
func minuteOf(t time.Time) uint64 { return uint64(t.Unix()) / 60 }

// add counts one request finished at t.
func (s *series) add(t time.Time, egress, denied, failed bool) {
	m := minuteOf(t)
	sh := &s.shards[rand.Uint32()%seriesShards].minutes[m%SeriesMinutes]
	if egress {
		sh[seriesEgress].add(m, 1)
	} else {
		sh[seriesInbound].add(m, 1)
	}
	if denied {
		sh[seriesDenied].add(m, 1)
	}
	if failed {
		sh[seriesErrors].add(m, 1)
	}
}

// read returns the last SeriesMinutes minutes up to now, oldest first.
func (s *series) read(now time.Time) []Minute {
	out := make([]Minute, SeriesMinutes)
	last := minuteOf(now)
	for i := range out {
		m := last - uint64(SeriesMinutes-1-i)
		var c [numSeries]uint64
		for sh := range s.shards {
			slot := &s.shards[sh].minutes[m%SeriesMinutes]
			for k := range c {
				c[k] += slot[k].get(m)
			}
		}
		out[i] = Minute{
			Start: time.Unix(int64(m*60), 0).UTC(),
			Counts: Counts{Inbound: c[seriesInbound], Egress: c[seriesEgress],
				Denied: c[seriesDenied], Errors: c[seriesErrors]},
		}
	}
	return out
}

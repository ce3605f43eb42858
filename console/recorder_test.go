package console

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStampedRotates(t *testing.T) {
	t.Parallel()
	var s stamped
	s.add(100, 1)
	s.add(100, 2)
	if got := s.get(100); got != 3 {
		t.Fatalf("slot 100: %d", got)
	}
	s.add(99, 5) // late writer for a slot already gone by: dropped
	if got := s.get(100); got != 3 {
		t.Fatalf("after a late write: %d", got)
	}
	s.add(160, 1) // the ring came round: a fresh count
	if s.get(100) != 0 || s.get(160) != 1 {
		t.Fatalf("after rotation: %d, %d", s.get(100), s.get(160))
	}
}

func TestSeriesPerMinute(t *testing.T) {
	t.Parallel()
	rec := NewRecorder(RecorderOptions{})
	now := fixtureNow
	rec.Record(&Request{Time: now.Add(-90 * time.Minute), Server: "old.example"}) // outside the hour
	rec.Record(&Request{Time: now.Add(-59 * time.Minute), Server: "a.example"})
	for range 3 {
		rec.Record(&Request{Time: now, Server: "a.example"})
	}
	rec.Record(&Request{Time: now, Egress: true, Server: "b.example"})
	rec.Record(&Request{Time: now, Server: "c.example", Outcome: Denied, Status: 403})
	rec.Record(&Request{Time: now, Server: "a.example", Outcome: Failed, Status: 502})
	rec.Record(&Request{Time: now, Server: "a.example", Outcome: Forwarded, Status: 500})
	rec.Record(&Request{Time: now, Server: "a.example", Outcome: Local, Status: 200})

	tr := rec.Traffic(now, 10, Names{})
	if len(tr.Minutes) != SeriesMinutes {
		t.Fatalf("%d minutes", len(tr.Minutes))
	}
	first, last := tr.Minutes[0], tr.Minutes[SeriesMinutes-1]
	if first.Inbound != 1 || !first.Start.Equal(now.Truncate(time.Minute).Add(-59*time.Minute)) {
		t.Errorf("first minute %+v", first)
	}
	want := Counts{Inbound: 7, Egress: 1, Denied: 1, Errors: 2}
	if last.Counts != want || !last.Start.Equal(now.Truncate(time.Minute)) {
		t.Errorf("last minute %+v, want %+v", last, want)
	}
	if tr.Hour != (Counts{Inbound: 8, Egress: 1, Denied: 1, Errors: 2}) {
		t.Errorf("hour %+v", tr.Hour)
	}
}

func TestTopTables(t *testing.T) {
	t.Parallel()
	rec := NewRecorder(RecorderOptions{})
	now := fixtureNow
	for i, n := range []int{5, 3, 8} {
		for range n {
			rec.Record(&Request{Time: now, Server: fmt.Sprintf("o%d.example", i)})
		}
	}
	rec.Record(&Request{Time: now, Server: "o0.example", Outcome: Denied})
	rec.Record(&Request{Time: now, Server: "o0.example", Outcome: Failed})
	rec.Record(&Request{Time: now.Add(-2 * time.Hour), Server: "gone.example"})
	rec.Record(&Request{Time: now, Egress: true, Server: "d.example"})
	rec.Record(&Request{Time: now, Server: ""}) // no server: counted in the series only

	tr := rec.Traffic(now, 2, Names{})
	want := []TopServer{{Server: "o2.example", Requests: 8}, {Server: "o0.example", Requests: 7, Denied: 1, Failed: 1}}
	if fmt.Sprint(tr.TopOrigins) != fmt.Sprint(want) {
		t.Errorf("top origins %+v, want %+v", tr.TopOrigins, want)
	}
	if len(tr.TopDestinations) != 1 || tr.TopDestinations[0].Server != "d.example" {
		t.Errorf("top destinations %+v", tr.TopDestinations)
	}
	// An hour later, nothing is left.
	if tr := rec.Traffic(now.Add(61*time.Minute), 10, Names{}); len(tr.TopOrigins) != 0 || tr.Hour != (Counts{}) {
		t.Errorf("an hour later: %+v %+v", tr.TopOrigins, tr.Hour)
	}
}

// TestTopTableKeepsHeavyServersUnderFlood: a flood of twenty thousand
// made-up names, over a hundred times more names than the table has
// slots and ten times more requests than the busy servers send, does not
// push the busy servers out of the top, their counts stay close to exact,
// and the table does not grow.
func TestTopTableKeepsHeavyServersUnderFlood(t *testing.T) {
	t.Parallel()
	const slots = 128
	rec := NewRecorder(RecorderOptions{TopSlots: slots})
	now := fixtureNow
	heavy := map[string]uint64{}
	for i := range 5 {
		heavy[fmt.Sprintf("busy%d.example", i)] = uint64(300 + 10*i)
	}
	for round := range 20_000 {
		rec.Record(&Request{Time: now, Server: fmt.Sprintf("junk%d.example", round), Outcome: Denied})
		if round%50 == 0 {
			for name, n := range heavy {
				if round/50 < int(n) {
					rec.Record(&Request{Time: now, Server: name})
				}
			}
		}
	}
	top := rec.Traffic(now, 5, Names{}).TopOrigins
	for _, s := range top {
		if want, ok := heavy[s.Server]; !ok || s.Requests > want || s.Requests < want*9/10 {
			t.Errorf("top entry %+v (want one of %v, within 10%%)", s, heavy)
		}
	}
	if len(top) != 5 {
		t.Fatalf("top %+v", top)
	}
	used := 0
	for i := range rec.origins.slots {
		if rec.origins.slots[i].Load() != nil {
			used++
		}
	}
	if used > slots {
		t.Fatalf("%d entries in %d slots", used, slots)
	}
}

func TestDenialRing(t *testing.T) {
	t.Parallel()
	rec := NewRecorder(RecorderOptions{Denials: 4})
	now := fixtureNow
	peer := netip.MustParseAddr("192.0.2.1")
	for i := range 50 { // a flood from one origin: one line
		rec.Record(&Request{Time: now.Add(time.Duration(i) * time.Millisecond), Server: "busy.example", Outcome: Denied,
			Status: 429, Reason: "rate_per_origin", Stage: "origin_limits", Limiter: "per_origin"})
	}
	rec.Record(&Request{Time: now.Add(time.Second), Server: "evil.example", Outcome: Denied, Status: 403,
		Reason: "origin_denied", Stage: "origin_policy", Rule: `policy.deny[0] "evil.example"`})
	rec.Record(&Request{Time: now.Add(2 * time.Second), Peer: peer, Outcome: Denied, Status: 429, Reason: "rate_per_ip", Limiter: "per_ip"})
	rec.Record(&Request{Time: now.Add(3 * time.Second), Server: "x", Outcome: Denied, Status: 404, Reason: "unknown_endpoint", Stage: "route", Noise: true})
	rec.Record(&Request{Time: now.Add(4 * time.Second), Egress: true, Server: "bad.example", Outcome: Denied, Status: 403, Reason: "destination_denied"})
	// evil.example repeats: counted in its line, which moves to the top.
	rec.Record(&Request{Time: now.Add(5 * time.Second), Server: "evil.example", Outcome: Denied, Status: 403,
		Reason: "origin_denied", Stage: "origin_policy", Rule: `policy.deny[0] "evil.example"`})

	hash := Names{Server: func(s string) string { return "h:" + s }, Rule: func(r string) string { return strings.Split(r, " ")[0] }}
	got := rec.Traffic(now.Add(6*time.Second), 10, hash).RecentDenials
	var lines []string
	for _, d := range got {
		lines = append(lines, fmt.Sprintf("%s %s %s %s %s %s x%d", d.Direction, d.Server, d.Peer, d.Reason, d.Rule, d.Limiter, d.Count))
	}
	want := []string{
		"inbound h:evil.example  origin_denied policy.deny[0]  x2",
		"egress h:bad.example  destination_denied   x1",
		"inbound  h:192.0.2.1 rate_per_ip  per_ip x1",
		"inbound h:busy.example  rate_per_origin  per_origin x50",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("denials:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if !got[3].First.Equal(now) || !got[3].Time.Equal(now.Add(49*time.Millisecond)) {
		t.Errorf("flood line spans %v to %v", got[3].First, got[3].Time)
	}
	// One more distinct denial pushes out the oldest line: the ring holds 4.
	rec.Record(&Request{Time: now.Add(7 * time.Second), Server: "new.example", Outcome: Denied, Reason: "bad_signature"})
	got = rec.Traffic(now.Add(8*time.Second), 10, Names{}).RecentDenials
	if len(got) != 4 || got[0].Server != "new.example" || got[3].Reason != "rate_per_ip" {
		t.Fatalf("after wrap-around: %+v", got)
	}
}

// TestRecorderKeepsNoRequestMemory: names kept are copies, cut to a
// server name's length, so no request's headers stay reachable.
func TestRecorderKeepsNoRequestMemory(t *testing.T) {
	t.Parallel()
	rec := NewRecorder(RecorderOptions{})
	header := "X-Matrix origin=" + strings.Repeat("a", 5000)
	long := header[len("X-Matrix origin="):]
	rec.Record(&Request{Time: fixtureNow, Server: long, Outcome: Denied, Reason: "bad_request"})
	tr := rec.Traffic(fixtureNow, 10, Names{})
	if len(tr.TopOrigins[0].Server) != maxNameLen || len(tr.RecentDenials[0].Server) != maxNameLen {
		t.Fatalf("kept %d and %d bytes", len(tr.TopOrigins[0].Server), len(tr.RecentDenials[0].Server))
	}
}

// TestRecorderConcurrent records from many goroutines while reading, for
// the race detector, and checks that nothing is lost within a minute.
func TestRecorderConcurrent(t *testing.T) {
	t.Parallel()
	rec := NewRecorder(RecorderOptions{Denials: 16, TopSlots: 64})
	now := fixtureNow
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				rec.Traffic(now, 10, Names{})
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				out := Forwarded
				if i%10 == 0 {
					out = Denied
				}
				rec.Record(&Request{Time: now, Server: fmt.Sprintf("s%d.example", (w+i)%20), Outcome: out, Reason: "origin_denied"})
			}
		}()
	}
	wg.Wait()
	close(stop)
	tr := rec.Traffic(now, 20, Names{})
	if tr.Hour.Inbound != workers*each || tr.Hour.Denied != workers*each/10 {
		t.Fatalf("hour %+v", tr.Hour)
	}
	var sum uint64
	for _, s := range tr.TopOrigins {
		sum += s.Requests
	}
	if sum != workers*each {
		t.Fatalf("top tables count %d of %d", sum, workers*each)
	}
}

package upstream

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
)

func TestBackoff(t *testing.T) {
	h := HealthOptions{DownPeriod: time.Second, DownPeriodMax: 10 * time.Second}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 60: 10 * time.Second} {
		if got := h.backoff(n); got != want {
			t.Errorf("backoff(%d) = %v, want %v", n, got, want)
		}
	}
}

// TestDownPeriods: with a settable clock, a failure marks the member down
// for DownPeriod, failures of requests already under way do not extend
// it, a failure after it ends doubles it, and an answer ends it. Each
// change is reported once.
func TestDownPeriods(t *testing.T) {
	clk := fedtest.NewClock(time.Unix(1_700_000_000, 0))
	var mu sync.Mutex
	var changes []Change
	tr := NewTracker(TrackerOptions{Now: clk.Now, OnChange: func(c Change) {
		mu.Lock()
		changes = append(changes, c)
		mu.Unlock()
	}})
	s := buildSet(t, SetOptions{URLs: memberURLs(2), Health: HealthOptions{DownPeriod: time.Second, DownPeriodMax: 3 * time.Second}}, tr)
	p := s.Default()
	st := p.members[0].st
	now := func() int64 { return clk.Now().UnixNano() }
	state := func() State { return s.Status()[0].Members[0].State }

	if state() != Unknown {
		t.Fatalf("new member is %v", state())
	}
	st.answered(now())
	if state() != Up {
		t.Fatalf("after an answer: %v", state())
	}
	st.failed(now(), "refused", p.health)
	for range 10 {
		st.failed(now(), "refused", p.health) // stragglers
	}
	if state() != Down || st.failures.Load() != 1 {
		t.Fatalf("after a failure: %v, %d failures", state(), st.failures.Load())
	}
	if got := s.Status()[0].Members[0].DownUntil; !got.Equal(clk.Now().Add(time.Second)) {
		t.Fatalf("down until %v", got)
	}
	clk.Advance(time.Second)
	if state() != Retrying {
		t.Fatalf("after the period: %v", state())
	}
	st.failed(now(), "refused", p.health)
	if d := time.Duration(st.downUntil.Load() - now()); d != 2*time.Second {
		t.Fatalf("second period %v", d)
	}
	clk.Advance(2 * time.Second)
	st.failed(now(), "refused", p.health)
	clk.Advance(3 * time.Second)
	st.failed(now(), "refused", p.health)
	if d := time.Duration(st.downUntil.Load() - now()); d != 3*time.Second {
		t.Fatalf("capped period %v", d)
	}
	st.answered(now())
	st.answered(now())
	if state() != Up || st.failures.Load() != 0 {
		t.Fatalf("after an answer: %v", state())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || changes[0].Up || changes[0].DownFor != time.Second || changes[0].Reason != "refused" || !changes[1].Up {
		t.Fatalf("changes %+v", changes)
	}
}

// TestProbe: probes mark members up and down, a 5xx is a failure, a 404
// (a worker without the version endpoint) is an answer, and a probe
// brings a member marked down back at once.
func TestProbeMarks(t *testing.T) {
	hs, urls := startWorkers(t, 3)
	hs[1].Handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	hs[2].Handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) })
	dead := deadURL(t)
	s := buildSet(t, SetOptions{
		URLs:   urls,
		Routes: []RouteOptions{{Name: "media", Endpoints: []string{"media"}, URLs: []string{dead}}},
		Health: HealthOptions{ProbePath: "/health", UserAgent: "fedgate readiness probe", ProbeInterval: time.Millisecond},
	}, nil)
	res := s.Probe(context.Background())
	if len(res) != 4 {
		t.Fatalf("%d results", len(res))
	}
	for i, want := range []bool{true, false, true, false} {
		if res[i].OK() != want {
			t.Errorf("result %d: %+v", i, res[i])
		}
	}
	if res[3].Pool != "media" || res[3].URL != dead || res[1].Status != 503 || !strings.Contains(res[1].Err.Error(), "HTTP 503 from /health") {
		t.Errorf("results %+v", res)
	}
	got := hs[0].Requests()
	if len(got) != 1 || got[0].RequestURI != "/health" || got[0].Method != "GET" || got[0].Header.Get("User-Agent") != "fedgate readiness probe" {
		t.Fatalf("probe request %+v", got)
	}
	st := s.Status()
	if st[0].Members[0].State != Up || st[0].Members[1].State != Down || st[0].Members[2].State != Up || st[1].Members[0].State != Down {
		t.Fatalf("states %+v", st)
	}
	if st[0].Members[1].ProbesFailed != 1 || st[0].Members[0].ProbesOK != 1 {
		t.Fatalf("probe counters %+v", st[0].Members)
	}
	hs[1].Handle(nil)
	time.Sleep(2 * time.Millisecond)
	s.Probe(context.Background())
	if st := s.Status()[0].Members[1].State; st != Up {
		t.Fatalf("member 1 after a good probe: %v", st)
	}
}

// TestProbeSharedState: two Sets holding the same member (during a
// reload) probe it once per half interval between them.
func TestProbeSharedState(t *testing.T) {
	hs, urls := startWorkers(t, 1)
	tr := NewTracker(TrackerOptions{})
	opts := SetOptions{URLs: urls, Health: HealthOptions{ProbeInterval: time.Hour}}
	a, b := buildSet(t, opts, tr), buildSet(t, opts, tr)
	if r := a.Probe(context.Background()); !r[0].OK() {
		t.Fatalf("%+v", r)
	}
	if r := b.Probe(context.Background()); !r[0].Skipped {
		t.Fatalf("%+v", r)
	}
	if n := len(hs[0].Requests()); n != 1 {
		t.Fatalf("%d probes", n)
	}
}

// TestProbeShutdown: a probe cut short by its context (shutting down)
// marks nothing.
func TestProbeShutdown(t *testing.T) {
	hs, urls := startWorkers(t, 1)
	hs[0].Handle(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	s := buildSet(t, SetOptions{URLs: urls}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if r := s.Probe(ctx); !r[0].Skipped {
		t.Fatalf("%+v", r)
	}
	if st := s.Status()[0].Members[0].State; st != Unknown {
		t.Fatalf("state %v", st)
	}
}

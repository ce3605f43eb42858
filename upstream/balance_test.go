package upstream

import (
	"fmt"
	"math"
	"net/http"
	"sync"
	"testing"
	"time"
)

func TestParseBalance(t *testing.T) {
	for _, b := range []Balance{RoundRobin, Origin, LeastBusy} {
		got, err := ParseBalance(b.String())
		if err != nil || got != b {
			t.Errorf("%v: %v %v", b, got, err)
		}
	}
	if _, err := ParseBalance("ip_hash"); err == nil {
		t.Error("ip_hash accepted")
	}
}

// memberURLs are n member URLs nobody is asked to serve: selection never
// connects.
func memberURLs(n int) []string {
	urls := make([]string, n)
	for i := range urls {
		urls[i] = fmt.Sprintf("http://10.0.%d.%d:8083", i/200, i%200+1)
	}
	return urls
}

func originNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("server%d.example.org", i)
	}
	return out
}

// assign returns which member URL each origin goes to.
func assign(p *Pool, origins []string) map[string]string {
	out := make(map[string]string, len(origins))
	for _, o := range origins {
		c := clock{fn: p.now}
		out[o] = p.choose(hashString(o), true, nil, &c).m.String()
	}
	return out
}

func originPool(t *testing.T, urls []string) *Pool {
	t.Helper()
	return buildSet(t, SetOptions{URLs: urls, Balance: Origin}, nil).Default()
}

// TestRendezvousMovement: adding a member moves only the origins that the
// new member takes, about 1/(n+1) of them; removing one moves only the
// removed member's origins, spread over the others.
func TestRendezvousMovement(t *testing.T) {
	origins := originNames(20000)
	for _, n := range []int{2, 3, 8, 32} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			urls := memberURLs(n + 1)
			before := assign(originPool(t, urls[:n]), origins)
			after := assign(originPool(t, urls), origins)
			moved := 0
			for o, m := range before {
				if after[o] != m {
					moved++
					if after[o] != urls[n] {
						t.Fatalf("origin %s moved from %s to %s, not to the new member", o, m, after[o])
					}
				}
			}
			want := float64(len(origins)) / float64(n+1)
			if math.Abs(float64(moved)-want) > 0.15*want {
				t.Errorf("adding a member to %d moved %d origins, want about %.0f", n, moved, want)
			}

			// Remove member 0: only its origins move, and they spread.
			removed := assign(originPool(t, urls[1:n]), origins)
			if n == 2 {
				return
			}
			spread := map[string]int{}
			for o, m := range before {
				switch {
				case m != urls[0] && removed[o] != m:
					t.Fatalf("origin %s on %s moved to %s when %s was removed", o, m, removed[o], urls[0])
				case m == urls[0]:
					spread[removed[o]]++
				}
			}
			if len(spread) != n-1 {
				t.Errorf("the removed member's origins went to %d of %d members", len(spread), n-1)
			}
		})
	}
}

// TestOriginSpread: origins spread evenly over the members.
func TestOriginSpread(t *testing.T) {
	origins := originNames(20000)
	for _, n := range []int{2, 8, 32} {
		count := map[string]int{}
		for _, m := range assign(originPool(t, memberURLs(n)), origins) {
			count[m]++
		}
		fair := float64(len(origins)) / float64(n)
		for _, u := range memberURLs(n) {
			if c := float64(count[u]); c < 0.75*fair || c > 1.25*fair {
				t.Errorf("%d members: %s has %v origins, fair share %.0f", n, u, c, fair)
			}
		}
	}
}

// TestOriginDownMovesToNextScore: a member marked down hands each of its
// origins to that origin's next member by score; other origins stay; its
// origins come back when it recovers. A down member is still used when
// every member is down.
func TestOriginDownMovesToNextScore(t *testing.T) {
	urls := memberURLs(5)
	p := originPool(t, urls)
	origins := originNames(5000)
	before := assign(p, origins)
	down := p.members[2]
	now := time.Now().UnixNano()
	down.st.failed(now, "test", p.health)
	during := assign(p, origins)
	for _, o := range origins {
		if before[o] != down.m.String() {
			if during[o] != before[o] {
				t.Fatalf("origin %s moved from a healthy member", o)
			}
			continue
		}
		// The next by score among the others.
		var next string
		var best uint64
		for _, s := range p.members {
			if s == down {
				continue
			}
			if w := score(hashString(o), s.seed); next == "" || w > best {
				next, best = s.m.String(), w
			}
		}
		if during[o] != next {
			t.Fatalf("origin %s went to %s, want its next member %s", o, during[o], next)
		}
	}
	down.st.answered(time.Now().UnixNano())
	if after := assign(p, origins); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("origins did not come back after the member recovered")
	}
	for _, s := range p.members {
		s.st.failed(now, "test", p.health)
	}
	if all := assign(p, origins); fmt.Sprint(all) != fmt.Sprint(before) {
		t.Fatal("with every member down, the choice is not the plain hash")
	}
}

// TestRoundRobin: members in turn, down ones skipped, and all of them
// again when every one is down.
func TestRoundRobin(t *testing.T) {
	p := buildSet(t, SetOptions{URLs: memberURLs(3)}, nil).Default()
	pick := func() int {
		c := clock{fn: p.now}
		return p.choose(0, false, nil, &c).index
	}
	count := map[int]int{}
	for range 300 {
		count[pick()]++
	}
	if count[0] != 100 || count[1] != 100 || count[2] != 100 {
		t.Fatalf("round robin: %v", count)
	}
	p.members[1].st.failed(time.Now().UnixNano(), "test", p.health)
	clear(count)
	for range 300 {
		count[pick()]++
	}
	if count[1] != 0 || count[0]+count[2] != 300 {
		t.Fatalf("a down member was chosen: %v", count)
	}
	for _, s := range p.members {
		s.st.failed(time.Now().UnixNano(), "test", p.health)
	}
	clear(count)
	for range 300 {
		count[pick()]++
	}
	if len(count) != 3 {
		t.Fatalf("every member down: %v", count)
	}
	// Excluding the member tried first never returns it.
	for range 10 {
		c := clock{fn: p.now}
		first := p.choose(0, false, nil, &c)
		if second := p.choose(0, false, first, &c); second == first || second == nil {
			t.Fatal("failover chose the same member")
		}
	}
}

// TestLeastBusy: over real sockets, requests go to the member with fewer
// requests under way: once member 0 holds a request that hangs, every
// further request goes to member 1.
func TestLeastBusy(t *testing.T) {
	hs, urls := startWorkers(t, 2)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	hs[0].Handle(func(w http.ResponseWriter, r *http.Request) { <-release })
	s := buildSet(t, SetOptions{URLs: urls, Balance: LeastBusy}, nil)
	ep := endpoint(t, "query_profile", "GET")
	busy := func() int64 { return s.Status()[0].Members[0].InFlight }
	var wg sync.WaitGroup
	for busy() == 0 {
		done := make(chan struct{})
		wg.Go(func() {
			defer close(done)
			call(t, s, ep, "a.test", "GET", "/_matrix/federation/v1/query/profile", "")
		})
		waitUntil(t, "a request to finish or hang", func() bool {
			select {
			case <-done:
				return true
			default:
				return busy() == 1
			}
		})
	}
	for range 20 {
		x, _, err := call(t, s, ep, "a.test", "GET", "/_matrix/federation/v1/query/profile", "")
		if err != nil {
			t.Fatal(err)
		}
		if x.Member != 1 {
			t.Fatalf("request went to the busy member %d", x.Member)
		}
	}
	if n := s.Status()[0].Members[1].InFlight; n != 0 {
		t.Fatalf("member 1 has %d requests in flight after they finished", n)
	}
	free()
	wg.Wait()
	if n := busy(); n != 0 {
		t.Fatalf("member 0 has %d requests in flight after they finished", n)
	}
}

// waitUntil polls cond until it holds, failing after 10 seconds.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

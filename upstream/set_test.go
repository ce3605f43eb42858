package upstream

import (
	"errors"
	"strings"
	"testing"

	"github.com/fedgate/fedgate/internal/endpoints"
)

// TestRouteLookup: the first route naming an endpoint (by class or by
// operation) takes it; everything else, passthrough requests (nil) and
// the synthetic endpoints the gateway makes included, goes to the
// default pool.
func TestRouteLookup(t *testing.T) {
	s := buildSet(t, SetOptions{
		URLs: memberURLs(1),
		Routes: []RouteOptions{
			{Name: "send", Endpoints: []string{"send"}, URLs: memberURLs(2), Balance: Origin},
			{Name: "backfill", Endpoints: []string{"backfill"}, URLs: memberURLs(1)},
			{Name: "events", Endpoints: []string{"events", "media"}, URLs: memberURLs(3)},
			{Name: "late", Endpoints: []string{"state", "query_profile"}, URLs: memberURLs(1)},
		},
	}, nil)
	for _, tt := range []struct {
		name, method, pool string
	}{
		{"send", "PUT", "send"},
		{"backfill", "GET", "backfill"},
		{"state", "GET", "events"}, // "events" (route 2) comes before "late"
		{"get_missing_events", "POST", "events"},
		{"media_download", "GET", "events"},
		{"legacy_media_download", "GET", "events"},
		{"query_profile", "GET", "late"},
		{"make_join", "GET", DefaultPool},
		{"version", "GET", DefaultPool},
		{"user_keys_claim", "POST", DefaultPool},
	} {
		if got := s.Route(endpoint(t, tt.name, tt.method)).Name(); got != tt.pool {
			t.Errorf("%s: pool %s, want %s", tt.name, got, tt.pool)
		}
	}
	if s.Route(nil) != s.Default() {
		t.Error("nil endpoint not on the default pool")
	}
	passthrough := &endpoints.Endpoint{Name: "passthrough", Class: "passthrough", Auth: endpoints.AuthXMatrix}
	if s.Route(passthrough) != s.Default() {
		t.Error("passthrough not on the default pool")
	}
	if names := poolNames(s); names != "default send backfill events late" {
		t.Errorf("pools %s", names)
	}
	if !s.Redundant() {
		t.Error("pools with several members are not redundant")
	}
}

// TestEveryOperationHasOneClass: routes map operation names, so every
// operation must belong to exactly one class for a class route to mean
// the same as its operations.
func TestEveryOperationHasOneClass(t *testing.T) {
	class := map[string]string{}
	for _, ep := range endpoints.All() {
		if c, ok := class[ep.Name]; ok && c != ep.Class {
			t.Errorf("operation %s is in classes %s and %s", ep.Name, c, ep.Class)
		}
		class[ep.Name] = ep.Class
	}
	for op := range repeatableOps {
		if _, ok := class[op]; !ok {
			t.Errorf("repeatable operation %s is not in the endpoint table", op)
		}
	}
}

func poolNames(s *Set) string {
	var names []string
	for _, p := range s.Pools() {
		names = append(names, p.Name())
	}
	return strings.Join(names, " ")
}

// TestNewSetRefuses: what config validation catches first is refused
// here too, with the route and member at fault; nothing stays open.
func TestNewSetRefuses(t *testing.T) {
	good := memberURLs(1)
	tr := NewTracker(TrackerOptions{})
	for _, tt := range []struct {
		name          string
		opts          SetOptions
		route, member int
		want          string
	}{
		{"no default members", SetOptions{}, -1, -1, "no members"},
		{"bad url", SetOptions{URLs: []string{"ftp://x"}}, -1, 0, "scheme"},
		{"twice", SetOptions{URLs: []string{good[0], good[0]}}, -1, 1, "listed twice"},
		{"unknown endpoint", SetOptions{URLs: good, Routes: []RouteOptions{{Name: "r", Endpoints: []string{"sned"}, URLs: good}}}, 0, -1, "unknown endpoint"},
		{"local endpoint", SetOptions{URLs: good, Routes: []RouteOptions{{Name: "r", Endpoints: []string{"keys"}, URLs: good}}}, 0, -1, "served by fedgate itself"},
		{"no endpoints", SetOptions{URLs: good, Routes: []RouteOptions{{Name: "r", URLs: good}}}, 0, -1, "no endpoints"},
		{"no route members", SetOptions{URLs: good, Routes: []RouteOptions{{Name: "r", Endpoints: []string{"send"}}}}, 0, -1, "no members"},
		{"default name", SetOptions{URLs: good, Routes: []RouteOptions{{Name: "default", Endpoints: []string{"send"}, URLs: good}}}, 0, -1, "pool name"},
		{"bad route member", SetOptions{URLs: good, Routes: []RouteOptions{{Name: "r", Endpoints: []string{"send"}, URLs: []string{good[0], "http://h/path"}}}}, 0, 1, "scheme://host"},
	} {
		_, err := NewSet(tt.opts, tr)
		var se *SetError
		if !errors.As(err, &se) || se.Route != tt.route || se.Member != tt.member || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if n := tr.Len(); n != 0 {
		t.Errorf("%d member states left after refused sets", n)
	}
}

// TestStateSurvivesReload: a Set built while another holds the same
// members finds their state; the state goes away with the last Set that
// holds it.
func TestStateSurvivesReload(t *testing.T) {
	tr := NewTracker(TrackerOptions{})
	urls := memberURLs(3)
	old, err := NewSet(SetOptions{URLs: urls[:2]}, tr)
	if err != nil {
		t.Fatal(err)
	}
	old.Default().members[1].st.failed(1, "test", old.Default().health)
	// Same members, with a trailing slash and upper case on one: still the
	// same member.
	next, err := NewSet(SetOptions{URLs: []string{urls[0], strings.ToUpper(urls[1][:4]) + urls[1][4:] + "/", urls[2]}}, tr)
	if err != nil {
		t.Fatal(err)
	}
	if next.Default().members[1].st != old.Default().members[1].st || next.Default().members[1].st.failures.Load() != 1 {
		t.Fatal("member 1's state did not carry over")
	}
	if tr.Len() != 3 {
		t.Fatalf("tracker holds %d states, want 3", tr.Len())
	}
	old.Close()
	old.Close()
	if tr.Len() != 3 {
		t.Fatalf("closing the old set dropped shared state: %d", tr.Len())
	}
	next.Close()
	if tr.Len() != 0 {
		t.Fatalf("tracker holds %d states after every set closed", tr.Len())
	}
}

// TestScopesKeepStateApart: two Sets of different scopes (two hosted
// servers) listing the same pool name and the same URL hold two states:
// one member failing marks only its own scope's member down, and probes
// of one never stand in for the other's. A Set of the same scope (a
// reload) finds its state.
func TestScopesKeepStateApart(t *testing.T) {
	var changes []Change
	tr := NewTracker(TrackerOptions{OnChange: func(c Change) { changes = append(changes, c) }})
	urls := memberURLs(1)
	a := buildSet(t, SetOptions{Scope: "a.test", URLs: urls}, tr)
	b := buildSet(t, SetOptions{Scope: "b.test", URLs: urls}, tr)
	if tr.Len() != 2 {
		t.Fatalf("tracker holds %d states for two scopes, want 2", tr.Len())
	}
	sa, sb := a.Default().members[0].st, b.Default().members[0].st
	if sa == sb {
		t.Fatal("two scopes share one member state")
	}
	sa.failed(tr.now().UnixNano(), "test", a.Default().health)
	if got := b.Status()[0].Members[0].State; got != Unknown {
		t.Errorf("b's member is %s after a's failed, want unknown", got)
	}
	if got := a.Status()[0].Members[0].State; got != Down {
		t.Errorf("a's member is %s after failing, want down", got)
	}
	if len(changes) != 1 || changes[0].Scope != "a.test" || changes[0].Pool != DefaultPool || changes[0].Up {
		t.Errorf("changes: %+v", changes)
	}
	again := buildSet(t, SetOptions{Scope: "a.test", URLs: urls}, tr)
	if again.Default().members[0].st != sa {
		t.Error("a Set of the same scope did not find the state")
	}
}

// TestOriginOnlyForXMatrix: an origin pool hashes the origin only for
// endpoints that authenticate it with X-Matrix; a request to an
// unauthenticated endpoint is taken in turn even when the caller passes
// an origin, since nothing vouches for it.
func TestOriginOnlyForXMatrix(t *testing.T) {
	_, urls := startWorkers(t, 2)
	s := buildSet(t, SetOptions{URLs: urls, Balance: Origin}, nil)
	count := func(ep *endpoints.Endpoint) map[int]int {
		got := map[int]int{}
		for range 10 {
			x, _, err := call(t, s, ep, "origin.test", ep.Method, ep.Path, "")
			if err != nil {
				t.Fatal(err)
			}
			got[x.Member]++
		}
		return got
	}
	if got := count(endpoint(t, "query_profile", "GET")); len(got) != 1 {
		t.Errorf("an authenticated origin's requests went to several members: %v", got)
	}
	if got := count(endpoint(t, "version", "GET")); got[0] != 5 || got[1] != 5 {
		t.Errorf("unauthenticated requests with an origin: %v, want 5 on each member", got)
	}
}

package policy_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/policy"
)

func banList(source string, entities ...string) *policy.External {
	x := &policy.External{Kind: policy.KindBanList, Source: source}
	for i, e := range entities {
		x.Deny = append(x.Deny, policy.ExternalEntry{Entity: e, From: `m.policy.rule.server state_key "r` + strconv.Itoa(i) + `" reason "spam"`})
	}
	return x
}

func TestExternalBanList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "[policy]\ndeny = [\"config.example\"]\n")
	res := e.engine.SetExternal("room:a", banList("policy room #bans:example.org (!a:example.org)", "evil.example", "*.spam.example", "bad?.example:8448"))
	if res.Deny != 3 || res.Skipped != 0 {
		t.Fatalf("result %+v", res)
	}
	s := e.snap()
	d := s.CheckOrigin("evil.example")
	wantDecision(t, "exact", d, policy.ReasonOriginBanned, false)
	if d.Rule != `policy room #bans:example.org (!a:example.org) m.policy.rule.server state_key "r0" reason "spam"` {
		t.Errorf("rule %q", d.Rule)
	}
	wantDecision(t, "exact with port", s.CheckOrigin("EVIL.example:8448"), policy.ReasonOriginBanned, false)
	wantDecision(t, "glob", s.CheckOrigin("a.b.spam.example"), policy.ReasonOriginBanned, false)
	wantDecision(t, "glob with port", s.CheckOrigin("bad1.example:8448"), policy.ReasonOriginBanned, false)
	wantDecision(t, "glob with port, other port", s.CheckOrigin("bad1.example:443"), "", false)
	wantDecision(t, "neighbour", s.CheckOrigin("spam.example"), "", false)
	wantDecision(t, "destination", s.CheckDestination("x.spam.example"), policy.ReasonDestinationBanned, false)
	wantDecision(t, "configuration first", s.CheckOrigin("config.example"), policy.ReasonOriginDenied, false)

	// Sets survive a reload, and a reload's entries apply with them.
	if err := e.update("[policy]\ndeny = [\"other.example\"]\n"); err != nil {
		t.Fatal(err)
	}
	wantDecision(t, "after reload", e.snap().CheckOrigin("evil.example"), policy.ReasonOriginBanned, false)
	wantDecision(t, "reloaded entry", e.snap().CheckOrigin("other.example"), policy.ReasonOriginDenied, false)

	// Replacing the set lifts rules; removing it lifts all.
	e.engine.SetExternal("room:a", banList("policy room", "evil.example"))
	wantDecision(t, "lifted", e.snap().CheckOrigin("a.spam.example"), "", false)
	wantDecision(t, "kept", e.snap().CheckOrigin("evil.example"), policy.ReasonOriginBanned, false)
	wantDecision(t, "old snapshot unchanged", s.CheckOrigin("a.spam.example"), policy.ReasonOriginBanned, false)
	e.engine.SetExternal("room:a", nil)
	wantDecision(t, "removed", e.snap().CheckOrigin("evil.example"), "", false)
	if n := e.engine.ExternalNames(); len(n) != 0 {
		t.Errorf("names after removal: %v", n)
	}
	if got := e.engine.Stats().Denied[policy.ReasonOriginBanned]; got != 7 {
		t.Errorf("origin_banned counted %d times, want 7", got)
	}
}

func TestExternalBanEntities(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		entity string
		err    error
		ok     bool
	}{
		{"evil.example", nil, true},
		{"*.evil.example", nil, true},
		{"[2001:db8::1]", nil, true},
		{"192.0.2.7:8448", nil, true},
		{"*", policy.ErrTooBroad, false},
		{"*.*", policy.ErrTooBroad, false},
		{"?*:*", policy.ErrTooBroad, false},
		{"", nil, false},
		{"re:.*", nil, true}, // a glob (never a regular expression) that matches no server name
		{"evil example", nil, false},
		{strings.Repeat("a", policy.MaxBanEntityLength+1), nil, false},
		{"*" + strings.Repeat("?*", 100) + "x", nil, true},
	} {
		err := policy.CompileBanEntity(tt.entity)
		if (err == nil) != tt.ok {
			t.Errorf("%q: error %v, want ok=%v", tt.entity, err, tt.ok)
		}
		if tt.err != nil && !errors.Is(err, tt.err) {
			t.Errorf("%q: error %v, want %v", tt.entity, err, tt.err)
		}
	}
	e := newEnv(t, "")
	res := e.engine.SetExternal("room", banList("room", "*", "ok.example", "re:.*", "", "a b"))
	if res.Deny != 2 || res.Skipped != 3 || len(res.Errors) != 3 {
		t.Fatalf("result %+v", res)
	}
	wantDecision(t, "broad rule refused", e.snap().CheckOrigin("anything.example"), "", false)
	wantDecision(t, "good rule kept", e.snap().CheckOrigin("ok.example"), policy.ReasonOriginBanned, false)
}

func TestExternalDryRunAndStale(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	dry := banList("dry room", "evil.example", "both.example")
	dry.DryRun = true
	e.engine.SetExternal("a-dry", dry)
	e.engine.SetExternal("b-enforced", banList("enforced room", "both.example"))
	s := e.snap()
	wantDecision(t, "dry-run set", s.CheckOrigin("evil.example"), policy.ReasonOriginBanned, true)
	d := s.CheckOrigin("both.example")
	wantDecision(t, "enforced set wins", d, policy.ReasonOriginBanned, false)
	if !strings.HasPrefix(d.Rule, "enforced room") {
		t.Errorf("rule %q", d.Rule)
	}
	st := e.engine.Stats()
	if st.DryRun[policy.ReasonOriginBanned] != 1 || st.Denied[policy.ReasonOriginBanned] != 1 {
		t.Errorf("counters %v %v", st.DryRun, st.Denied)
	}

	stale := banList("stale room", "evil.example")
	stale.StaleAt = e.clock.Now().Add(time.Hour)
	e.engine.SetExternal("b-enforced", stale)
	wantDecision(t, "fresh", e.snap().CheckOrigin("good.example"), "", false)
	e.clock.Advance(2 * time.Hour)
	d = e.snap().CheckOrigin("good.example")
	wantDecision(t, "stale fails closed", d, policy.ReasonBanListStale, false)
	if !strings.Contains(d.Msg, "ban list is out of date") || !strings.HasPrefix(d.Rule, "stale room out of date since") {
		t.Errorf("decision %+v", d)
	}
	wantDecision(t, "stale egress", e.snap().CheckDestination("good.example"), policy.ReasonBanListStale, false)
	if !e.engine.SetExternalStaleAt("b-enforced", e.clock.Now().Add(time.Minute)) {
		t.Fatal("SetExternalStaleAt: no such set")
	}
	wantDecision(t, "confirmed again", e.snap().CheckOrigin("good.example"), "", false)
	wantDecision(t, "rules kept", e.snap().CheckOrigin("evil.example"), policy.ReasonOriginBanned, false)
	if e.engine.SetExternalStaleAt("nope", time.Time{}) {
		t.Error("SetExternalStaleAt invented a set")
	}
	stale.DryRun = true
	e.engine.SetExternal("b-enforced", stale)
	wantDecision(t, "stale dry-run set", e.snap().CheckOrigin("good.example"), policy.ReasonBanListStale, true)
}

func TestExternalList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "[policy]\ndefault = \"deny\"\nallow = [\"config.example\"]\n")
	x := &policy.External{Kind: policy.KindList, Source: "list_url https://l.example/x.jws",
		Allow: []policy.ExternalEntry{{Entity: "*.partners.example"}, {Entity: "re:^node[0-9]+\\.corp\\.example$"}},
		Deny:  []policy.ExternalEntry{{Entity: "bad.partners.example"}},
	}
	if res := e.engine.SetExternal("list", x); res.Allow != 2 || res.Deny != 1 {
		t.Fatalf("result %+v", res)
	}
	s := e.snap()
	wantDecision(t, "config allow", s.CheckOrigin("config.example"), "", false)
	wantDecision(t, "list allow", s.CheckOrigin("a.partners.example"), "", false)
	wantDecision(t, "list regexp", s.CheckOrigin("node7.corp.example"), "", false)
	d := s.CheckOrigin("bad.partners.example")
	wantDecision(t, "list deny", d, policy.ReasonOriginDenied, false)
	if d.Rule != `list_url https://l.example/x.jws deny[0] "bad.partners.example"` {
		t.Errorf("rule %q", d.Rule)
	}
	wantDecision(t, "not listed", s.CheckOrigin("stranger.example"), policy.ReasonNotInAllowList, false)
	x.StaleAt = e.clock.Now().Add(-time.Second)
	e.engine.SetExternal("list", x)
	wantDecision(t, "stale list", e.snap().CheckOrigin("a.partners.example"), policy.ReasonListStale, false)
}

// TestExternalNoAllocations: with 10,000 ban rules in force, an allowed
// check still allocates nothing.
func TestExternalNoAllocations(t *testing.T) {
	e := newEnv(t, "")
	e.engine.SetExternal("room", banList10k())
	s := e.snap()
	if n := testing.AllocsPerRun(100, func() {
		if d := s.CheckOrigin("matrix.org"); !d.Allowed {
			t.Fatal(d)
		}
	}); n != 0 {
		t.Errorf("CheckOrigin allocates %v times", n)
	}
}

// banList10k is a ban list of 10,000 rules: half exact names, half globs.
func banList10k() *policy.External {
	var entities []string
	for i := range 5000 {
		entities = append(entities, "spam"+strconv.Itoa(i)+".example", "*.zone"+strconv.Itoa(i)+".example")
	}
	return banList("policy room #bans:example.org", entities...)
}

// BenchmarkBanList10k: origin checks against a policy room of 10,000 rules
// (5,000 exact names, 5,000 globs), for an allowed name, an exact ban and
// a glob ban; "baseline" is the allowed name with no ban list, in the same
// run.
func BenchmarkBanList10k(b *testing.B) {
	for _, tt := range []struct{ name, origin string }{
		{"baseline", "matrix.org"},
		{"allowed", "matrix.org"},
		{"exact", "spam4711.example"},
		{"glob", "a.b.zone4711.example"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			e := newEnv(b, "")
			if tt.name != "baseline" {
				e.engine.SetExternal("room", banList10k())
			}
			s := e.snap()
			b.ReportAllocs()
			for b.Loop() {
				s.CheckOrigin(tt.origin)
			}
		})
	}
}

// BenchmarkBanListCompile10k: compiling and publishing a room of 10,000
// rules, which happens on every change in the room.
func BenchmarkBanListCompile10k(b *testing.B) {
	e := newEnv(b, "")
	x := banList10k()
	b.ReportAllocs()
	for b.Loop() {
		e.engine.SetExternal("room", x)
	}
}

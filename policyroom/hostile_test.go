package policyroom_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/policyroom"
)

// TestHostileRoom: a room of 100,000 rules is truncated to max_rules with
// an error; huge entities, state keys and reasons, globs that match
// everything and rules of the wrong shape are refused or truncated and
// counted; nothing crashes and the good rules apply.
func TestHostileRoom(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.hs.CreateRoom(room1, false, bot)
	const total, limit = 100000, 20000
	for i := range total {
		e.hs.SendState(room1, policyroom.TypeServerRule, "flood"+strconv.Itoa(i), ban("flood"+strconv.Itoa(i)+".example", ""))
	}
	hugeKey := strings.Repeat("k", 60000)
	hugeReason := strings.Repeat("r", 100000)
	odd := map[string]string{
		"huge entity":  ban(strings.Repeat("a", 10000)+".example", ""),
		"star":         ban("*", "everything"),
		"star dot":     ban("*.*", ""),
		"wildcards":    ban("?*?*:*", ""),
		"not a name":   ban("evil example", ""),
		"regexp":       `{"entity":"re:.*","recommendation":"m.ban"}`,
		"number":       `{"entity":42,"recommendation":"m.ban"}`,
		"no entity":    `{"recommendation":"m.ban","reason":"x"}`,
		"array":        `[1,2,3]`,
		"glob storm":   ban("*"+strings.Repeat("?*", 100)+"x.example", ""),
		"deep nesting": `{"entity":"x.example","recommendation":"m.ban","reason":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`,
	}
	for k, c := range odd {
		e.hs.SendState(room1, policyroom.TypeServerRule, k, c)
	}
	e.hs.SendState(room1, policyroom.TypeServerRule, hugeKey, ban("keyed.example", hugeReason))
	o := e.options(room1)
	o.MaxRules = limit
	start := time.Now()
	s, _ := e.run(o)
	// 25 MB of JSON each way: well under a second, but several under the
	// race detector on a busy machine.
	eventuallyWithin(t, "room read", time.Minute, func() bool { return s.Status().State == policyroom.StateSyncing })
	t.Logf("read %d events in %v", total+len(odd)+1, time.Since(start))
	st := s.Status()
	if st.Rules != limit {
		t.Errorf("%d rules in force, want max_rules %d", st.Rules, limit)
	}
	if st.Ignored[policyroom.IgnoredOverLimit] < total-limit || st.Ignored[policyroom.IgnoredTooBroad] != 3 || st.Ignored[policyroom.IgnoredInvalid] < 5 {
		t.Errorf("ignored %v", st.Ignored)
	}
	if !strings.Contains(e.log.String(), "more rules than max_rules") {
		t.Error("truncation not logged")
	}
	for _, o := range []string{"anything.example", "x.example"} {
		if r := e.reason(o); r != "" {
			t.Errorf("%s denied by a refused rule: %q", o, r)
		}
	}
	var banned int
	for i := 0; i < total; i += 997 {
		if e.reason("flood"+strconv.Itoa(i)+".example") == policy.ReasonOriginBanned {
			banned++
		}
	}
	if banned == 0 {
		t.Error("no flood rule in force")
	}
	// Whatever is shown of a rule is bounded.
	if d := e.engine.Snapshot().CheckOrigin("keyed.example"); d.Reason == policy.ReasonOriginBanned && len(d.Rule) > 1000 {
		t.Errorf("rule text of %d bytes", len(d.Rule))
	}
	// Past max_rules the keyed rule above is not in force, which leaves
	// that check nothing to look at: check it again in a room of its own,
	// where the rule must apply.
	keyed := newEnv(t)
	keyed.hs.CreateRoom(room1, false, bot)
	keyed.hs.SendState(room1, policyroom.TypeServerRule, hugeKey, ban("keyed.example", hugeReason))
	keyed.run(keyed.options(room1))
	keyed.waitReason("keyed.example", policy.ReasonOriginBanned)
	if d := keyed.engine.Snapshot().CheckOrigin("keyed.example"); len(d.Rule) > 1000 {
		t.Errorf("rule text of %d bytes for a 60000-byte state key and a 100000-byte reason", len(d.Rule))
	}
}

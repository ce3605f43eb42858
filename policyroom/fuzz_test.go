package policyroom

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseRule: any rule event content gives a rule, a lift or a reason
// to ignore it, never a panic; a rule in force has an entity policy can
// compile and bounded display fields.
func FuzzParseRule(f *testing.F) {
	for _, c := range []string{
		`{"entity":"evil.example","recommendation":"m.ban","reason":"spam"}`,
		`{"entity":"*.evil.example","recommendation":"org.matrix.mjolnir.ban"}`,
		`{"entity":"x","recommendation":"org.example.watch"}`,
		`{}`, `null`, ``, `[]`, `{"entity":1}`, `{"entity":"*","recommendation":"m.ban"}`,
		`{"entity":"a.example","recommendation":"m.ban","reason":"` + strings.Repeat("é", 300) + `"}`,
	} {
		f.Add(TypeServerRule, "rule:1", c)
	}
	f.Fuzz(func(t *testing.T, typ, stateKey, content string) {
		r, why := parseRule(typ, stateKey, json.RawMessage(content), "$e")
		if r == nil {
			return
		}
		if why != "" {
			t.Fatalf("rule %+v with reason to ignore %q", r, why)
		}
		if len(r.StateKey) > maxStateKeyShown+len("…") || len(r.Reason) > maxReasonShown+len("…") {
			t.Fatalf("unbounded display fields: %d, %d", len(r.StateKey), len(r.Reason))
		}
		if utf8.ValidString(stateKey) && !utf8.ValidString(r.StateKey) {
			t.Fatalf("truncation broke UTF-8: %q", r.StateKey)
		}
	})
}

// FuzzSyncAnswer: any /sync answer body is decoded and applied to a
// bounded rule state without a panic, and the state never exceeds its
// bound.
func FuzzSyncAnswer(f *testing.F) {
	f.Add([]byte(`{"next_batch":"s1","rooms":{"join":{"!r:hs":{"state":{"events":[{"type":"m.policy.rule.server","state_key":"a","content":{"entity":"e.example","recommendation":"m.ban"},"event_id":"$1"}]},"timeline":{"events":[{"type":"m.room.redaction","redacts":"$1","content":{}},{"type":"m.room.tombstone","state_key":"","content":{"replacement_room":"!n:hs"},"sender":"@a:hs"}],"limited":false}}},"leave":{}}}`))
	f.Add([]byte(`{"next_batch":"s2","rooms":{"join":{"!r:hs":{"timeline":{"events":[{"type":"m.room.rule.server","state_key":"b","content":{"entity":"*.x","recommendation":"m.ban"},"event_id":"$2"},{"type":"org.matrix.mjolnir.rule.server","state_key":"b","content":{}}],"limited":true}}}}}`))
	f.Add([]byte(`{"next_batch":""}`))
	f.Add([]byte(`{"rooms":{"join":{"!r:hs":{"state":{"events":[{"type":"m.policy.rule.server","state_key":null,"content":"x"}]}}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp syncResponse
		if json.Unmarshal(data, &resp) != nil {
			return
		}
		st := newRuleState(3)
		for _, jr := range resp.Rooms.Join {
			for i := range jr.State.Events {
				st.apply(&jr.State.Events[i])
			}
			for i := range jr.Timeline.Events {
				st.apply(&jr.Timeline.Events[i])
			}
		}
		if len(st.rules) > 3 || len(st.ignored) > 3 {
			t.Fatalf("state over its bound: %d rules, %d ignored", len(st.rules), len(st.ignored))
		}
		for k, ev := range st.byEvent {
			if _, ok := st.rules[ev]; !ok {
				t.Fatalf("redaction index names a rule not in force: %s", k)
			}
		}
		_ = st.list()
	})
}

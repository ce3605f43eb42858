package policyroom

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"sort"
	"strconv"

	"github.com/fedgate/fedgate/policy"
)

// Server rule event types: the spec's, and the two older names that
// policy lists written by Mjolnir and Draupnir still use.
const (
	TypeServerRule        = "m.policy.rule.server"
	TypeServerRuleLegacy  = "m.room.rule.server"
	TypeServerRuleMjolnir = "org.matrix.mjolnir.rule.server"
	typeTombstone         = "m.room.tombstone"
	typeRedaction         = "m.room.redaction"
)

// Ban recommendations: the spec's and Mjolnir's older one.
const (
	RecommendationBan        = "m.ban"
	RecommendationBanMjolnir = "org.matrix.mjolnir.ban"
)

var ruleTypes = []string{TypeServerRule, TypeServerRuleLegacy, TypeServerRuleMjolnir}

func isRuleType(t string) bool {
	return t == TypeServerRule || t == TypeServerRuleLegacy || t == TypeServerRuleMjolnir
}

// Why a rule is not in force, as counted in [Status.Ignored].
const (
	IgnoredRecommendation = "recommendation" // not m.ban: counted, ignored
	IgnoredInvalid        = "invalid"        // content or entity does not parse
	IgnoredTooBroad       = "too_broad"      // the glob matches every server
	IgnoredOverLimit      = "over_limit"     // past max_rules
)

// Bounds on what is kept of one rule, so that memory follows the rule
// count and not what a hostile room writes into its events.
const (
	maxStateKeyShown = 128
	maxReasonShown   = 256
	maxEventID       = 255
)

// ruleKey identifies a rule: its event type and state key, hashed so that
// a 64 KiB state key costs 32 bytes.
type ruleKey [sha256.Size]byte

func keyOf(typ, stateKey string) ruleKey {
	h := sha256.New()
	h.Write([]byte(typ))
	h.Write([]byte{0})
	h.Write([]byte(stateKey))
	var k ruleKey
	h.Sum(k[:0])
	return k
}

// Rule is one ban rule in force.
type Rule struct {
	Type     string `json:"type"`
	StateKey string `json:"state_key"` // truncated for display
	Entity   string `json:"entity"`
	Reason   string `json:"reason,omitempty"` // truncated for display
	EventID  string `json:"event_id,omitempty"`
}

// from is the provenance named in Decision.Rule and the denial's log
// line.
func (r *Rule) from() string {
	s := r.Type + " state_key " + strconv.Quote(r.StateKey) + " entity " + strconv.Quote(r.Entity)
	if r.Reason != "" {
		s += " reason " + strconv.Quote(r.Reason)
	}
	return s
}

// ruleContent is the content of a server rule event.
type ruleContent struct {
	Entity         *string `json:"entity"`
	Recommendation *string `json:"recommendation"`
	Reason         *string `json:"reason"`
}

// parseRule reads a server rule event. It returns the rule (nil when it
// is lifted) or why it is ignored. It never panics, whatever content is.
func parseRule(typ, stateKey string, content json.RawMessage, eventID string) (*Rule, string) {
	c := bytes.TrimSpace(content)
	if len(c) == 0 || bytes.Equal(c, []byte("null")) || bytes.Equal(c, []byte("{}")) {
		return nil, ""
	}
	var rc ruleContent
	if err := json.Unmarshal(c, &rc); err != nil {
		return nil, IgnoredInvalid
	}
	if rc.Entity == nil && rc.Recommendation == nil {
		return nil, "" // nothing left of a rule: lifted
	}
	if rc.Entity == nil || rc.Recommendation == nil {
		return nil, IgnoredInvalid
	}
	if *rc.Recommendation != RecommendationBan && *rc.Recommendation != RecommendationBanMjolnir {
		return nil, IgnoredRecommendation
	}
	if err := policy.CompileBanEntity(*rc.Entity); err != nil {
		if errors.Is(err, policy.ErrTooBroad) {
			return nil, IgnoredTooBroad
		}
		return nil, IgnoredInvalid
	}
	r := &Rule{Type: typ, StateKey: truncate(stateKey, maxStateKeyShown), Entity: *rc.Entity}
	if rc.Reason != nil {
		r.Reason = truncate(*rc.Reason, maxReasonShown)
	}
	if len(eventID) <= maxEventID {
		r.EventID = eventID
	}
	return r, ""
}

// ruleState is a policy room's server rules as the room's current state
// says, bounded by maxRules. Not safe for concurrent use.
type ruleState struct {
	maxRules int
	rules    map[ruleKey]*Rule
	ignored  map[ruleKey]string // why, for rules not in force (but over_limit)
	byEvent  map[string]ruleKey // event ID -> rule, for redactions
	over     int                // rules refused past maxRules, not yet logged
	// overLimit counts rules refused past maxRules since the room was
	// last read in full (not kept per rule: a flood must not grow memory).
	overLimit int
	// tombstone is the replacement room named by m.room.tombstone, and
	// tombstoneSender who sent it (its server is where to join through).
	tombstone, tombstoneSender string
}

func newRuleState(maxRules int) *ruleState {
	return &ruleState{maxRules: maxRules, rules: map[ruleKey]*Rule{}, ignored: map[ruleKey]string{}, byEvent: map[string]ruleKey{}}
}

// apply applies one event (state, or a timeline event that may be a
// state change or a redaction). It reports whether the rules in force
// changed.
func (s *ruleState) apply(ev *event) bool {
	switch {
	case ev.Type == typeRedaction:
		return s.redact(ev)
	case ev.StateKey == nil:
		return false
	case ev.Type == typeTombstone && *ev.StateKey == "":
		var c struct {
			Replacement string `json:"replacement_room"`
		}
		if json.Unmarshal(ev.Content, &c) == nil && validRoomID(c.Replacement) {
			s.tombstone, s.tombstoneSender = c.Replacement, ev.Sender
		}
		return false
	case !isRuleType(ev.Type):
		return false
	}
	k := keyOf(ev.Type, *ev.StateKey)
	r, why := parseRule(ev.Type, *ev.StateKey, ev.Content, ev.EventID)
	return s.set(k, r, why)
}

// set replaces the rule at k. Called for every state change.
func (s *ruleState) set(k ruleKey, r *Rule, why string) bool {
	old, had := s.rules[k]
	if had && old.EventID != "" {
		delete(s.byEvent, old.EventID)
	}
	delete(s.ignored, k)
	if r == nil {
		delete(s.rules, k)
		if why != "" && len(s.ignored) < s.maxRules {
			s.ignored[k] = why
		}
		return had
	}
	if !had && len(s.rules) >= s.maxRules {
		s.over++
		s.overLimit++
		return false
	}
	s.rules[k] = r
	if r.EventID != "" {
		s.byEvent[r.EventID] = k
	}
	return !had || *old != *r
}

// redact lifts the rule whose current event a redaction names.
func (s *ruleState) redact(ev *event) bool {
	target := ev.Redacts
	if target == "" {
		var c struct {
			Redacts string `json:"redacts"`
		}
		json.Unmarshal(ev.Content, &c)
		target = c.Redacts
	}
	k, ok := s.byEvent[target]
	if !ok {
		return false
	}
	return s.set(k, nil, "")
}

// list returns the rules in force, sorted by type and state key so that
// the published set does not depend on map order.
func (s *ruleState) list() []Rule {
	out := make([]Rule, 0, len(s.rules))
	for _, r := range s.rules {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Type != out[j].Type {
			return out[i].Type < out[j].Type
		}
		return out[i].StateKey < out[j].StateKey
	})
	return out
}

// ignoredCounts counts the rules not in force by why.
func (s *ruleState) ignoredCounts() map[string]int {
	m := map[string]int{IgnoredRecommendation: 0, IgnoredInvalid: 0, IgnoredTooBroad: 0, IgnoredOverLimit: 0}
	for _, why := range s.ignored {
		m[why]++
	}
	m[IgnoredOverLimit] = s.overLimit
	return m
}

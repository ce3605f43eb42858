package policyroom_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/policyroom"
)

// TestRulesFollowTheRoom: rules added to the room deny within seconds,
// lifted ones (empty content, redaction) allow again; the legacy event
// types and recommendation count; other recommendations are ignored and
// counted; the denial names the room, state key and reason.
func TestRulesFollowTheRoom(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.hs.CreateRoom(room1, false, bot)
	e.hs.SendState(room1, policyroom.TypeServerRule, "rule:evil", ban("evil.example", "spam"))
	s, _ := e.run(e.options(room1))
	e.waitReason("evil.example", policy.ReasonOriginBanned)
	d := e.engine.Snapshot().CheckOrigin("evil.example")
	if d.Rule != `policy room !bans:hs.test m.policy.rule.server state_key "rule:evil" entity "evil.example" reason "spam"` {
		t.Errorf("rule %q", d.Rule)
	}
	if d := e.engine.Snapshot().CheckDestination("evil.example"); d.Reason != policy.ReasonDestinationBanned {
		t.Errorf("egress: %+v", d)
	}

	// Added while syncing: a glob, and the two legacy types.
	e.hs.SendMessage(room1, "noise the filter drops")
	e.hs.SendState(room1, policyroom.TypeServerRule, "rule:spam", ban("*.spam.example", "spam farm"))
	e.hs.SendState(room1, policyroom.TypeServerRuleLegacy, "legacy", ban("old.example", ""))
	mj := e.hs.SendState(room1, policyroom.TypeServerRuleMjolnir, "mj", `{"entity":"mj.example","recommendation":"org.matrix.mjolnir.ban","reason":"x"}`)
	e.hs.SendState(room1, policyroom.TypeServerRule, "rule:watch", `{"entity":"watched.example","recommendation":"org.example.watch","reason":"?"}`)
	e.waitReason("mj.example", policy.ReasonOriginBanned)
	for _, o := range []string{"a.spam.example", "old.example"} {
		if r := e.reason(o); r != policy.ReasonOriginBanned {
			t.Errorf("%s: %q", o, r)
		}
	}
	if r := e.reason("watched.example"); r != "" {
		t.Errorf("a non-ban recommendation denied: %q", r)
	}
	eventually(t, "status", func() bool {
		st := s.Status()
		return st.Rules == 4 && st.Ignored[policyroom.IgnoredRecommendation] == 1
	})

	// Lifted: empty content, a redaction, and a change of recommendation.
	e.hs.SendState(room1, policyroom.TypeServerRule, "rule:evil", `{}`)
	e.hs.Redact(room1, mj)
	e.hs.SendState(room1, policyroom.TypeServerRuleLegacy, "legacy", `{"entity":"old.example","recommendation":"org.example.other"}`)
	e.waitReason("evil.example", "")
	e.waitReason("mj.example", "")
	e.waitReason("old.example", "")
	if r := e.reason("b.spam.example"); r != policy.ReasonOriginBanned {
		t.Errorf("unrelated rule lifted: %q", r)
	}
	st := s.Status()
	if st.State != policyroom.StateSyncing || st.RoomID != room1 || st.LastSync.IsZero() || st.LastError != "" || st.Changes == 0 {
		t.Errorf("status %+v", st)
	}
	if !strings.Contains(e.log.String(), "policy room rule lifted") {
		t.Errorf("lifting not logged:\n%s", e.log)
	}
}

// TestDryRun: apply = "dry_run" reports matches without denying.
func TestDryRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.hs.CreateRoom(room1, false, bot)
	e.hs.SendState(room1, policyroom.TypeServerRule, "r", ban("evil.example", "spam"))
	o := e.options(room1)
	o.DryRun = true
	e.run(o)
	eventually(t, "dry-run match", func() bool { return e.engine.Snapshot().CheckOrigin("evil.example").DryRun })
	if d := e.engine.Snapshot().CheckOrigin("evil.example"); !d.Allowed || d.Reason != policy.ReasonOriginBanned {
		t.Fatalf("%+v", d)
	}
}

// TestAliasJoinAndUpgrade: an alias is resolved, the bot joins the public
// room, and a room upgrade is followed to the replacement room.
func TestAliasJoinAndUpgrade(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const oldRoom, newRoom = "!old:hs.test", "!new:hs.test"
	e.hs.CreateRoom(oldRoom, true)
	e.hs.SetAlias("#bans:hs.test", oldRoom)
	e.hs.SendState(oldRoom, policyroom.TypeServerRule, "r1", ban("old-rule.example", "x"))
	s, _ := e.run(e.options("#bans:hs.test"))
	e.waitReason("old-rule.example", policy.ReasonOriginBanned)
	if !e.hs.Joined(oldRoom, bot) {
		t.Fatal("the bot did not join")
	}
	if d := e.engine.Snapshot().CheckOrigin("old-rule.example"); !strings.HasPrefix(d.Rule, "policy room #bans:hs.test (!old:hs.test) ") {
		t.Errorf("rule %q", d.Rule)
	}

	e.hs.CreateRoom(newRoom, true)
	e.hs.SendState(newRoom, policyroom.TypeServerRule, "r2", ban("new-rule.example", "y"))
	e.hs.Upgrade(oldRoom, newRoom)
	e.waitReason("new-rule.example", policy.ReasonOriginBanned)
	e.waitReason("old-rule.example", "")
	eventually(t, "status names the new room", func() bool { return s.Status().RoomID == newRoom })
	if !e.hs.Joined(newRoom, bot) {
		t.Fatal("the bot did not join the new room")
	}
	// Changes in the new room apply.
	e.hs.SendState(newRoom, policyroom.TypeServerRule, "r3", ban("newer.example", "z"))
	e.waitReason("newer.example", policy.ReasonOriginBanned)
}

// TestUpgradeNotJoinable: a replacement room the bot cannot join is
// reported; the old room's rules stay and keep syncing.
func TestUpgradeNotJoinable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.hs.CreateRoom(room1, false, bot)
	e.hs.CreateRoom("!private:hs.test", false)
	e.hs.SendState(room1, policyroom.TypeServerRule, "r1", ban("evil.example", "x"))
	s, _ := e.run(e.options(room1))
	e.waitReason("evil.example", policy.ReasonOriginBanned)
	e.hs.Upgrade(room1, "!private:hs.test")
	eventually(t, "upgrade reported", func() bool { return s.Status().Upgrade == "!private:hs.test" })
	e.hs.SendState(room1, policyroom.TypeServerRule, "r2", ban("worse.example", "x"))
	e.waitReason("worse.example", policy.ReasonOriginBanned)
	if r := e.reason("evil.example"); r != policy.ReasonOriginBanned {
		t.Errorf("old rules lost: %q", r)
	}
}

// TestRestartWithHomeserverDown: the rules saved in data_dir are enforced
// at once after a restart while the homeserver is down, and replaced once
// it answers again.
func TestRestartWithHomeserverDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.hs.CreateRoom(room1, false, bot)
	e.hs.SendState(room1, policyroom.TypeServerRule, "r1", ban("evil.example", "spam"))
	_, stop := e.run(e.options(room1))
	e.waitReason("evil.example", policy.ReasonOriginBanned)
	stop()

	e.hs.SetDown(true)
	e.engine = newEngine(t, time.Now)
	s, _ := e.run(e.options(room1))
	if r := e.reason("evil.example"); r != policy.ReasonOriginBanned {
		t.Fatalf("saved rule not enforced at start: %q", r)
	}
	if st := s.Status(); st.State != policyroom.StateRestored && st.State != policyroom.StateError {
		t.Errorf("status %+v", st)
	}
	eventually(t, "failure reported", func() bool { return s.Status().State == policyroom.StateError })
	if r := e.reason("evil.example"); r != policy.ReasonOriginBanned {
		t.Fatalf("rule lost while the homeserver is down: %q", r)
	}

	e.hs.SendState(room1, policyroom.TypeServerRule, "r1", `{}`)
	e.hs.SendState(room1, policyroom.TypeServerRule, "r2", ban("worse.example", "x"))
	e.hs.SetDown(false)
	e.waitReason("worse.example", policy.ReasonOriginBanned)
	e.waitReason("evil.example", "")
}

// TestMaxAge: with max_age, a room that cannot be read for that long
// fails closed; off by default, it keeps its last rules.
func TestMaxAge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	clock := fedtest.NewClock(time.Now())
	e.engine = newEngine(t, clock.Now)
	e.hs.CreateRoom(room1, false, bot)
	e.hs.SendState(room1, policyroom.TypeServerRule, "r1", ban("evil.example", "spam"))
	o := e.options(room1)
	o.MaxAge, o.Now = time.Hour, clock.Now
	s, _ := e.run(o)
	e.waitReason("evil.example", policy.ReasonOriginBanned)
	e.hs.SetDown(true)
	eventually(t, "failure", func() bool { return s.Status().State == policyroom.StateError })
	clock.Advance(30 * time.Minute)
	if r := e.reason("good.example"); r != "" {
		t.Fatalf("stale too early: %q", r)
	}
	clock.Advance(31 * time.Minute)
	if d := e.engine.Snapshot().CheckOrigin("good.example"); d.Reason != policy.ReasonBanListStale {
		t.Fatalf("not failing closed: %+v", d)
	}
	if !s.Status().Stale {
		t.Error("status not stale")
	}
	e.hs.SetDown(false)
	e.waitReason("good.example", "")
}

// TestTimelineGap: more changes than the timeline limit between two syncs
// (here while the homeserver is unreachable) make the room be read again
// in full, so a redaction in the gap is not missed.
func TestTimelineGap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.hs.CreateRoom(room1, false, bot)
	victim := e.hs.SendState(room1, policyroom.TypeServerRule, "victim", ban("victim.example", "x"))
	s, _ := e.run(e.options(room1))
	e.waitReason("victim.example", policy.ReasonOriginBanned)
	e.hs.SetDown(true)
	eventually(t, "failure", func() bool { return s.Status().State == policyroom.StateError })
	e.hs.Redact(room1, victim)
	for i := range 150 {
		e.hs.SendState(room1, policyroom.TypeServerRule, "bulk"+strconv.Itoa(i), ban("b"+strconv.Itoa(i)+".example", ""))
	}
	e.hs.SetDown(false)
	e.waitReason("victim.example", "")
	eventually(t, "all rules", func() bool { return s.Status().Rules == 150 })
}

// TestKickedAndBadToken: a bot removed from the room, or whose token is
// refused, reports it and keeps the last rules; a new token in the file
// is picked up.
func TestKickedAndBadToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.hs.CreateRoom(room1, false, bot)
	e.hs.SendState(room1, policyroom.TypeServerRule, "r1", ban("evil.example", "spam"))
	s, _ := e.run(e.options(room1))
	e.waitReason("evil.example", policy.ReasonOriginBanned)
	e.hs.Kick(room1, bot)
	eventually(t, "kick reported", func() bool { return strings.Contains(s.Status().LastError, "no longer in") })
	if r := e.reason("evil.example"); r != policy.ReasonOriginBanned {
		t.Fatalf("rules lost after a kick: %q", r)
	}

	// A new token the homeserver does not know.
	e2 := newEnv(t)
	e2.hs.CreateRoom(room1, false, bot)
	if err := os.WriteFile(filepath.Join(e2.dir, "token"), []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, _ := e2.run(e2.options(room1))
	eventually(t, "token refused", func() bool { return strings.Contains(s2.Status().LastError, "refuses the access token") })
	if err := os.WriteFile(filepath.Join(e2.dir, "token"), []byte(botToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new token used", func() bool { return s2.Status().State == policyroom.StateSyncing })
}

// TestCorruptStateFile: a state file that does not parse, or belongs to
// another room, is ignored with a warning; the room is read as if new.
func TestCorruptStateFile(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"garbage":    "{not json",
		"other room": `{"version":1,"room":"!other:hs.test","room_id":"!other:hs.test","synced":"2026-01-01T00:00:00Z","rules":[{"type":"m.policy.rule.server","state_key":"x","entity":"stale.example"}]}`,
		"future":     `{"version":99,"room":"!bans:hs.test","rules":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.hs.CreateRoom(room1, false, bot)
			e.hs.SendState(room1, policyroom.TypeServerRule, "r1", ban("evil.example", "spam"))
			o := e.options(room1)
			if err := os.WriteFile(o.StateFile, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			e.hs.SetDown(true)
			s, err := policyroom.New(o)
			if err != nil {
				t.Fatal(err)
			}
			s.Publish()
			if st := s.Status(); st.State != policyroom.StateStarting || st.Rules != 0 {
				t.Errorf("status %+v", st)
			}
			if r := e.reason("stale.example"); r != "" {
				t.Errorf("another room's saved rule applied: %q", r)
			}
			e.hs.SetDown(false)
			e.run(o)
			e.waitReason("evil.example", policy.ReasonOriginBanned)
		})
	}
}

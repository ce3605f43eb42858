package policy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/policy"
)

// listEnv starts an engine whose list file holds content, written at the
// clock's current time.
func listEnv(t *testing.T, extra, content string) *env {
	t.Helper()
	clock := newClock()
	e := newEnv(t, `[policy]
list_file = "list.json"
`+extra, func(dir string) {
		writeFile(t, dir, "list.json", content, clock.Now())
	})
	e.clock.Set(clock.Now())
	return e
}

func (e *env) writeList(content string) {
	e.t.Helper()
	writeFile(e.t, e.dir, "list.json", content, e.clock.Now())
}

func TestListFileReload(t *testing.T) {
	t.Parallel()
	e := listEnv(t, "deny = [\"config.example\"]\n", `{"version": 1, "deny": ["evil.example", "*.evil.net"], "allow": []}`)
	s := e.snap()
	d := s.CheckOrigin("evil.example")
	wantDecision(t, "v1 evil", d, "origin_denied", false)
	if d.Rule != `list_file deny[0] "evil.example"` {
		t.Errorf("rule %q", d.Rule)
	}
	wantDecision(t, "v1 glob", s.CheckOrigin("a.evil.net"), "origin_denied", false)
	wantDecision(t, "config entries stay", s.CheckOrigin("config.example"), "origin_denied", false)
	if v := s.ListVersion(); v != 1 {
		t.Errorf("ListVersion = %d", v)
	}

	// A good new version replaces the list.
	e.clock.Advance(time.Minute)
	e.writeList(`{"version": 2, "deny": ["worse.example"]}`)
	e.engine.PollList()
	s2 := e.snap()
	wantDecision(t, "v2 worse", s2.CheckOrigin("worse.example"), "origin_denied", false)
	wantDecision(t, "v2 evil gone", s2.CheckOrigin("evil.example"), "", false)
	wantDecision(t, "v2 config entries stay", s2.CheckOrigin("config.example"), "origin_denied", false)
	// A request that loaded the old snapshot keeps it.
	wantDecision(t, "old snapshot unchanged", s.CheckOrigin("evil.example"), "origin_denied", false)

	// Polling an unchanged file does nothing.
	e.engine.PollList()
	if e.snap() != s2 {
		t.Error("unchanged file rebuilt the snapshot")
	}

	// Bad files keep the last good list, each logged once.
	for i, bad := range []string{
		`{"version": 3, "deny": ["worse.example"`,
		`{"version": 3, "deny": ["bad entry"]}`,
		`{"version": 3, "denied": ["typo.example"]}`,
		`{"deny": ["noversion.example"]}`,
		`{"version": -1}`,
		`{"version": 3} {"version": 4}`,
		`{"version": 1.5}`,
		`{"version": 1, "deny": ["rollback.example"]}`,
	} {
		e.clock.Advance(time.Minute)
		e.writeList(bad)
		e.engine.PollList()
		e.engine.PollList()
		if e.snap() != s2 {
			t.Errorf("bad file %d replaced the list: %s", i, bad)
		}
		st := e.engine.Stats().List
		if st.Failures != uint64(i+1) || st.LastError == "" || st.Version != 2 {
			t.Errorf("bad file %d: status %+v", i, st)
		}
	}
	if n := strings.Count(e.log.String(), "policy list file refused"); n != 8 {
		t.Errorf("refusals logged %d times, want 8:\n%s", n, e.log)
	}
	if !strings.Contains(e.log.String(), "rollback refused") {
		t.Errorf("rollback not explained in the log:\n%s", e.log)
	}

	// A good file again clears the error.
	e.clock.Advance(time.Minute)
	e.writeList(`{"version": 3, "allow": [], "deny": ["third.example"]}`)
	e.engine.PollList()
	wantDecision(t, "v3", e.snap().CheckOrigin("third.example"), "origin_denied", false)
	if st := e.engine.Stats().List; st.LastError != "" || st.Version != 3 || st.Loads != 3 || st.Deny != 1 {
		t.Errorf("after recovery: %+v", st)
	}

	// A deleted file keeps the last good list, logged once.
	if err := os.Remove(filepath.Join(e.dir, "list.json")); err != nil {
		t.Fatal(err)
	}
	e.engine.PollList()
	e.engine.PollList()
	wantDecision(t, "deleted", e.snap().CheckOrigin("third.example"), "origin_denied", false)
	if n := strings.Count(e.log.String(), "policy list file unreadable"); n != 1 {
		t.Errorf("unreadable file logged %d times, want 1", n)
	}
}

func TestListFileAllowEntries(t *testing.T) {
	t.Parallel()
	e := listEnv(t, "default = \"deny\"\nallow = [\"config.example\"]\n",
		`{"version": 7, "allow": ["*.federation.example", "re:hospital[0-9]+\\.example"], "deny": ["bad.federation.example"]}`)
	s := e.snap()
	for name, reason := range map[string]string{
		"a.federation.example":   "",
		"hospital12.example":     "",
		"config.example":         "",
		"bad.federation.example": "origin_denied",
		"stranger.example":       "not_in_allow_list",
	} {
		wantDecision(t, name, s.CheckOrigin(name), reason, false)
	}
}

func TestListFileStale(t *testing.T) {
	t.Parallel()
	e := listEnv(t, "list_max_age = \"72h\"\n", `{"version": 1, "deny": ["evil.example"]}`)
	wantDecision(t, "fresh", e.snap().CheckOrigin("good.example"), "", false)

	e.clock.Advance(71 * time.Hour)
	e.engine.PollList()
	wantDecision(t, "71h", e.snap().CheckOrigin("good.example"), "", false)

	e.clock.Advance(2 * time.Hour)
	e.engine.PollList()
	s := e.snap()
	if !s.Stale() {
		t.Fatal("not stale after 73h")
	}
	d := s.CheckOrigin("good.example")
	wantDecision(t, "stale origin", d, "list_stale", false)
	if !strings.Contains(d.Rule, "list_max_age") {
		t.Errorf("rule %q", d.Rule)
	}
	wantDecision(t, "stale destination", s.CheckDestination("good.example"), "list_stale", false)
	wantDecision(t, "peers unaffected", s.CheckPeer(mustAddr("192.0.2.1")), "", false)
	if st := e.engine.Stats().List; !st.Stale {
		t.Errorf("status not stale: %+v", st)
	}
	if !strings.Contains(e.log.String(), "stale") {
		t.Errorf("stale not logged:\n%s", e.log)
	}

	// A bad file does not refresh the list.
	e.writeList(`{"version": 1, `)
	e.engine.PollList()
	wantDecision(t, "bad file keeps it stale", e.snap().CheckOrigin("good.example"), "list_stale", false)

	// The sync job rewrites the same content: fresh again, same list.
	e.writeList(`{"version": 1, "deny": ["evil.example"]}`)
	e.engine.PollList()
	wantDecision(t, "refreshed", e.snap().CheckOrigin("good.example"), "", false)
	wantDecision(t, "refreshed list", e.snap().CheckOrigin("evil.example"), "origin_denied", false)
	if !strings.Contains(e.log.String(), "fresh again") {
		t.Errorf("recovery not logged:\n%s", e.log)
	}
}

func TestListFileStaleAtStart(t *testing.T) {
	t.Parallel()
	clock := newClock()
	e := newEnv(t, "[policy]\nlist_file = \"list.json\"\nlist_max_age = \"1h\"\n", func(dir string) {
		writeFile(t, dir, "list.json", `{"version": 1}`, clock.Now().Add(-2*time.Hour))
	})
	e.clock.Set(clock.Now())
	wantDecision(t, "stale at start", e.snap().CheckOrigin("good.example"), "list_stale", false)
}

func TestListFileUpdate(t *testing.T) {
	t.Parallel()
	e := listEnv(t, "", `{"version": 5, "deny": ["evil.example"]}`)
	s := e.snap()

	// Re-reading the same path on reload: a bad file keeps the last good
	// list, and the reload itself succeeds.
	e.writeList(`garbage`)
	if err := e.update("[policy]\nlist_file = \"list.json\"\ndeny = [\"new.example\"]\n"); err != nil {
		t.Fatalf("Update: %v", err)
	}
	wantDecision(t, "kept list", e.snap().CheckOrigin("evil.example"), "origin_denied", false)
	wantDecision(t, "new config", e.snap().CheckOrigin("new.example"), "origin_denied", false)

	// A new path must be good.
	writeFile(t, e.dir, "other.json", `{"version": 1, "deny": [`, e.clock.Now())
	before := e.snap()
	if err := e.update("[policy]\nlist_file = \"other.json\"\n"); err == nil || !strings.Contains(err.Error(), "other.json") {
		t.Fatalf("Update with a bad new list: %v", err)
	}
	if e.snap() != before {
		t.Error("failed Update changed the snapshot")
	}
	// A good new path is taken without a version comparison.
	writeFile(t, e.dir, "other.json", `{"version": 1, "deny": ["other.example"]}`, e.clock.Now())
	if err := e.update("[policy]\nlist_file = \"other.json\"\n"); err != nil {
		t.Fatal(err)
	}
	wantDecision(t, "other list", e.snap().CheckOrigin("other.example"), "origin_denied", false)
	wantDecision(t, "old list gone", e.snap().CheckOrigin("evil.example"), "", false)
	// Dropping list_file drops its entries.
	if err := e.update("[policy]\n"); err != nil {
		t.Fatal(err)
	}
	wantDecision(t, "no list", e.snap().CheckOrigin("other.example"), "", false)
	if v := e.snap().ListVersion(); v != -1 {
		t.Errorf("ListVersion = %d, want -1", v)
	}
	wantDecision(t, "first snapshot untouched", s.CheckOrigin("evil.example"), "origin_denied", false)
}

func TestListFileBadAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "list.json", `{"version": 1, "deny": ["bad entry"]}`, time.Now())
	c := loadConfig(t, dir, "[policy]\nlist_file = \"list.json\"\n")
	_, err := policy.New(policy.Options{ServerName: c.ServerName, Policy: c.Policy, RateLimit: c.RateLimit})
	if err == nil || !strings.Contains(err.Error(), `deny[0] "bad entry"`) {
		t.Fatalf("New with a bad list: %v", err)
	}
}

// TestRunPollsList runs the engine's loop with a short poll interval and
// waits (without sleeping) for it to pick up a rewritten file.
func TestRunPollsList(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "list.json", `{"version": 1, "deny": ["one.example"]}`, time.Now().Add(-time.Minute))
	c := loadConfig(t, dir, "[policy]\nlist_file = \"list.json\"\n")
	eng, err := policy.New(policy.Options{
		ServerName: c.ServerName, Policy: c.Policy, RateLimit: c.RateLimit,
		ListPollInterval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCleanup(t)
	done := make(chan struct{})
	go func() {
		eng.Run(ctx)
		close(done)
	}()
	first := eng.Snapshot()
	writeFile(t, dir, "list.json", `{"version": 2, "deny": ["two.example"]}`, time.Now())
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for eng.Snapshot() == first {
		select {
		case <-deadline.C:
			t.Fatal("Run did not reload the list")
		case <-tick.C:
		}
	}
	wantDecision(t, "reloaded by Run", eng.Snapshot().CheckOrigin("two.example"), "origin_denied", false)
	cancel()
	<-done
}

// TestListFileReloadForcesReread: a poll trusts the file's stamp, a reload
// (SIGHUP) reads the file anyway, so an edit that kept size and mtime is
// still picked up.
func TestListFileReloadForcesReread(t *testing.T) {
	t.Parallel()
	e := listEnv(t, "", `{"version": 1, "deny": ["aaa.example"]}`)
	e.writeList(`{"version": 2, "deny": ["bbb.example"]}`) // same size, same mtime
	e.engine.PollList()
	wantDecision(t, "poll trusts the stamp", e.snap().CheckOrigin("aaa.example"), "origin_denied", false)
	if err := e.update("[policy]\nlist_file = \"list.json\"\n"); err != nil {
		t.Fatal(err)
	}
	wantDecision(t, "reload re-reads", e.snap().CheckOrigin("bbb.example"), "origin_denied", false)
	wantDecision(t, "old entry gone", e.snap().CheckOrigin("aaa.example"), "", false)
}

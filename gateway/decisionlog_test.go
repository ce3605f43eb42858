package gateway

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// readJSONLines reads a JSON-lines log file.
func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// TestDecisionLog: denials, and only denials (no routing misses), go to
// log.decisions with the access log's fields; a reload reopens the file,
// so a rotated log continues in a new file.
func TestDecisionLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "decisions.log")
	og := startOps(t, opsSetup{
		origins: []string{"origin.test"},
		extra:   "decisions = \"" + path + "\"\n[policy]\ndeny = [\"denied.test\"]\ndeny_endpoints = [\"public_rooms\"]\n",
	})
	const profile = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	o := og.origins[0]
	og.do("GET", profile, "", o.sign("GET", profile, "gw.test", ""))                                                           // allowed
	og.do("GET", "/_matrix/federation/v1/nope", "")                                                                            // 404: not a decision
	og.do("GET", profile, "", signWith(t, o.key, "denied.test", "GET", profile, "gw.test", ""))                                // origin_denied
	og.do("GET", "/_matrix/federation/v1/publicRooms", "", o.sign("GET", "/_matrix/federation/v1/publicRooms", "gw.test", "")) // endpoint_denied

	og.settle(4)
	lines := readJSONLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d decision lines, want 2: %v", len(lines), lines)
	}
	// Lines are written once the answer is sent, so they may come in either
	// order: find them by reason.
	byReason := map[any]map[string]any{}
	for _, l := range lines {
		byReason[l["reason"]] = l
	}
	first := byReason["origin_denied"]
	if first == nil {
		t.Fatalf("no origin_denied line: %v", lines)
	}
	for k, want := range map[string]any{"msg": "denied", "direction": "inbound", "origin": "denied.test", "decision": "denied",
		"reason": "origin_denied", "stage": "origin_policy", "status": float64(403), "class": "query_profile"} {
		if first[k] != want {
			t.Errorf("decision line %s = %v, want %v", k, first[k], want)
		}
	}
	for _, k := range []string{"ts", "request_id", "rule", "duration", "peer"} {
		if _, ok := first[k]; !ok {
			t.Errorf("decision line lacks %s: %v", k, first)
		}
	}
	if second := byReason["endpoint_denied"]; second == nil || second["origin"] != "origin.test" {
		t.Errorf("endpoint_denied line %v", second)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("decision log mode %v %v", st.Mode(), err)
	}

	// logrotate: move the file away, reload, deny again.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := og.gw.Reload(og.cfg); err != nil {
		t.Fatal(err)
	}
	og.do("GET", profile, "", signWith(t, o.key, "denied.test", "GET", profile, "gw.test", ""))
	og.settle(5)
	if n := len(readJSONLines(t, path)); n != 1 {
		t.Fatalf("%d lines in the new file, want 1", n)
	}
	if n := len(readJSONLines(t, path+".1")); n != 2 {
		t.Fatalf("%d lines in the rotated file, want 2", n)
	}
	wantValue(t, og.scrape(), 0, "fedgate_log_decision_log_errors_total")
}

// TestDecisionLogDryRun: what dry_run lets through is logged as "dry_run".
func TestDecisionLogDryRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	og := startOps(t, opsSetup{extra: "decisions = \"" + path + "\"\n[policy]\ndry_run = true\ndeny_endpoints = [\"version\"]\n"})
	if resp := og.do("GET", "/_matrix/federation/v1/version", ""); resp.StatusCode != 200 {
		t.Fatalf("dry run denied: %d", resp.StatusCode)
	}
	og.settle(1)
	lines := readJSONLines(t, path)
	if len(lines) != 1 || lines[0]["msg"] != "dry_run" || lines[0]["decision"] != "forwarded" {
		t.Fatalf("dry-run lines %v", lines)
	}
	if w, _ := lines[0]["dry_run_would_deny"].([]any); len(w) != 1 || w[0] != "endpoint_denied" {
		t.Fatalf("dry_run_would_deny %v", lines[0]["dry_run_would_deny"])
	}
}

// TestDecisionLogSwitchedByReload: a reload can turn the decision log on,
// move it and turn it off.
func TestDecisionLogSwitchedByReload(t *testing.T) {
	og := startOps(t, opsSetup{extra: "[policy]\ndeny_endpoints = [\"version\"]\n"})
	n := 0.0
	deny := func() {
		og.do("GET", "/_matrix/federation/v1/version", "")
		n++
		og.settle(n)
	}
	deny()
	if og.gw.decisions.Load() != nil {
		t.Fatal("decision log open while off")
	}
	dir := t.TempDir()
	cfg := *og.cfg
	cfg.Log.Decisions = filepath.Join(dir, "a.log")
	if err := og.gw.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	deny()
	cfg2 := cfg
	cfg2.Log.Decisions = filepath.Join(dir, "b.log")
	if err := og.gw.Reload(&cfg2); err != nil {
		t.Fatal(err)
	}
	deny()
	deny()
	cfg3 := cfg2
	cfg3.Log.Decisions = ""
	if err := og.gw.Reload(&cfg3); err != nil {
		t.Fatal(err)
	}
	deny()
	if a, b := len(readJSONLines(t, cfg.Log.Decisions)), len(readJSONLines(t, cfg2.Log.Decisions)); a != 1 || b != 2 {
		t.Fatalf("a.log %d lines, b.log %d lines; want 1 and 2", a, b)
	}
	// A destination that cannot be opened refuses the reload.
	bad := cfg
	bad.Log.Decisions = filepath.Join(dir, "a.log", "x.log")
	if err := og.gw.Reload(&bad); err == nil {
		t.Fatal("reload with an unusable decision log accepted")
	}
}

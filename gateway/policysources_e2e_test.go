package gateway

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/policysource"
)

const (
	e2eBot        = "@fedgate-bot:hs.test"
	e2eToken      = "syt_e2e"
	e2eRoom       = "!bans:hs.test"
	profileTarget = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
)

// roomBlock is the [[policy.rooms]] table for the test room.
func roomBlock(t *testing.T, cs *fedtest.CSServer, roomTOML string) string {
	t.Helper()
	token := filepath.Join(t.TempDir(), "bot.token")
	if err := os.WriteFile(token, []byte(e2eToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("[[policy.rooms]]\nroom = %q\nhomeserver = %q\naccess_token_file = %q\n%s", e2eRoom, cs.URL, token, roomTOML)
}

// startRoomGateway starts a gateway with an admin listener subscribed to
// a policy room on a client-server API, and origins it can reach.
func startRoomGateway(t *testing.T, cs *fedtest.CSServer, roomTOML string, origins ...string) *opsGateway {
	t.Helper()
	return startOps(t, opsSetup{extra: roomBlock(t, cs, roomTOML), origins: origins})
}

func waitDecision(t *testing.T, og *opsGateway, origin, reason string) {
	t.Helper()
	waitFor(t, origin+" -> "+reason, func() bool {
		return og.gw.rt.Load().primary().policy().Snapshot().CheckOrigin(origin).Reason == reason
	})
}

// TestPolicyRoomEndToEnd: a ban in a policy room refuses signed requests
// from the banned server (before any key fetch), within seconds of the
// rule appearing; lifting it lets them through; /readyz and the metrics
// show the room; the denial's log line names the room, state key and
// reason.
func TestPolicyRoomEndToEnd(t *testing.T) {
	cs := fedtest.StartCSServer(t)
	cs.AddUser(e2eBot, e2eToken)
	cs.CreateRoom(e2eRoom, false, e2eBot)
	cs.SendState(e2eRoom, "m.policy.rule.server", "rule:banned", `{"entity":"banned.test","recommendation":"m.ban","reason":"spam wave"}`)
	og := startRoomGateway(t, cs, "", "banned.test", "friend.test", "later.test")
	banned, friend, later := og.origins[0], og.origins[1], og.origins[2]

	waitDecision(t, og, "banned.test", policy.ReasonOriginBanned)
	expectDenied(t, og.testGateway, signedGet(og.testGateway, banned, profileTarget), 403, "origin_banned")
	if banned.fetches.Load() != 0 {
		t.Error("keys fetched for a banned origin")
	}
	expectForwarded(t, signedGet(og.testGateway, friend, profileTarget))

	// A rule added while running applies within seconds.
	added := time.Now()
	cs.SendState(e2eRoom, "org.matrix.mjolnir.rule.server", "later", `{"entity":"*.test","recommendation":"org.example.watch"}`)
	cs.SendState(e2eRoom, "m.policy.rule.server", "rule:later", `{"entity":"lat?r.test","recommendation":"m.ban","reason":"abuse"}`)
	waitDecision(t, og, "later.test", policy.ReasonOriginBanned)
	t.Logf("rule in force %v after it was sent", time.Since(added))
	expectDenied(t, og.testGateway, signedGet(og.testGateway, later, profileTarget), 403, "origin_banned")
	expectForwarded(t, signedGet(og.testGateway, friend, profileTarget)) // the watch rule is ignored

	// The denial's log line names room, state key and reason.
	waitFor(t, "denial logged", func() bool {
		for _, e := range og.logs.All() {
			r, _ := e.ContextMap()["rule"].(string)
			if strings.Contains(r, "policy room "+e2eRoom) && strings.Contains(r, `state_key "rule:later"`) && strings.Contains(r, `reason "abuse"`) {
				return true
			}
		}
		return false
	})

	// Lifted.
	cs.SendState(e2eRoom, "m.policy.rule.server", "rule:later", `{}`)
	waitDecision(t, og, "later.test", "")
	expectForwarded(t, signedGet(og.testGateway, later, profileTarget))

	// The status follows the rules by a moment: wait for it.
	want := "ok   policy_room " + e2eRoom + ": syncing " + e2eRoom + ": 1 ban rules in force"
	waitFor(t, "/readyz line", func() bool {
		status, body := og.get("/readyz")
		return status == 200 && strings.Contains(body, want)
	})
	m := og.scrape()
	wantValue(t, m, 1, "fedgate_policy_room_up", "room="+e2eRoom)
	wantValue(t, m, 1, "fedgate_policy_room_rules", "room="+e2eRoom)
	wantValue(t, m, 1, "fedgate_policy_room_ignored_rules", "room="+e2eRoom, "why=recommendation")
	if v, ok := value(m, "fedgate_policy_room_last_sync_timestamp_seconds", "room="+e2eRoom); !ok || time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("last sync %v %v", v, ok)
	}
	if v, _ := value(m, "fedgate_policy_denials_total", "reason=origin_banned", "mode=enforced"); v < 2 {
		t.Errorf("origin_banned denials %v", v)
	}
}

// TestPolicyRoomReloadAndRestart: dry run reports without denying; a
// reload to apply = "deny" enforces; a reload that removes the room lifts
// its rules; a gateway built while the homeserver is down enforces the
// rules saved in data_dir before it serves anything.
func TestPolicyRoomReloadAndRestart(t *testing.T) {
	cs := fedtest.StartCSServer(t)
	cs.AddUser(e2eBot, e2eToken)
	cs.CreateRoom(e2eRoom, false, e2eBot)
	cs.SendState(e2eRoom, "m.policy.rule.server", "r", `{"entity":"banned.test","recommendation":"m.ban","reason":"x"}`)
	og := startRoomGateway(t, cs, "apply = \"dry_run\"\n", "banned.test")
	waitFor(t, "dry-run rule", func() bool { return og.gw.rt.Load().primary().policy().Snapshot().CheckOrigin("banned.test").DryRun })
	expectForwarded(t, signedGet(og.testGateway, og.origins[0], profileTarget))
	waitFor(t, "dry run logged with its rule", func() bool {
		for _, e := range og.logs.All() {
			r, _ := e.ContextMap()["rule"].(string)
			if strings.Contains(r, "policy room "+e2eRoom) && e.ContextMap()["dry_run_would_deny"] != nil {
				return true
			}
		}
		return false
	})

	data, err := os.ReadFile(og.path)
	if err != nil {
		t.Fatal(err)
	}
	original := string(data)
	reload := func(text string) {
		t.Helper()
		if err := os.WriteFile(og.path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(og.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := og.gw.Reload(c); err != nil {
			t.Fatal(err)
		}
	}
	reload(strings.Replace(original, `apply = "dry_run"`, `apply = "deny"`, 1))
	waitDecision(t, og, "banned.test", policy.ReasonOriginBanned)
	expectDenied(t, og.testGateway, signedGet(og.testGateway, og.origins[0], profileTarget), 403, "origin_banned")

	start := strings.Index(original, "[[policy.rooms]]")
	end := strings.Index(original[start:], "\n[") + start
	reload(original[:start] + original[end:])
	if r := og.gw.rt.Load().primary().policy().Snapshot().CheckOrigin("banned.test").Reason; r != "" {
		t.Fatalf("rules of a removed room still apply: %q", r)
	}
	if status, body := og.get("/readyz"); status != 200 || strings.Contains(body, "policy_room") {
		t.Errorf("/readyz after removal %d:\n%s", status, body)
	}

	reload(strings.Replace(original, `apply = "dry_run"`, `apply = "deny"`, 1))
	waitDecision(t, og, "banned.test", policy.ReasonOriginBanned)

	// Restart with the homeserver down.
	cfg, err := config.Load(og.path)
	if err != nil {
		t.Fatal(err)
	}
	og.gw.Shutdown(t.Context())
	cs.SetDown(true)
	g2, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Shutdown(t.Context())
	if d := g2.rt.Load().primary().policy().Snapshot().CheckOrigin("banned.test"); d.Reason != policy.ReasonOriginBanned {
		t.Fatalf("saved rules not enforced after a restart: %+v", d)
	}
}

// TestSignedListEndToEnd: a signed federation list fetched over HTTPS
// from a loopback server (outbound.ca_file, the SSRF guard's
// allow_networks) closes federation to its allow entries; a newer list
// replaces it, forgeries and rollbacks are refused and the last good list
// stays.
func TestSignedListEndToEnd(t *testing.T) {
	ca := fedtest.NewCA(t)
	root := fedtest.NewCA(t)
	now := time.Now()
	signer := root.Signer(t, now.Add(-time.Hour), now.Add(time.Hour), false)
	other := fedtest.NewCA(t).Signer(t, now.Add(-time.Hour), now.Add(time.Hour), true)

	var mu sync.Mutex
	body := signer.Sign(t, []byte(`{"version": 1, "allow": ["a.test"], "deny": []}`))
	var fetches int
	list := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fetches++
		etag := fmt.Sprintf(`"%x"`, sha256.Sum256([]byte(body)))
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, body)
	}))
	list.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1")}}
	list.StartTLS()
	t.Cleanup(list.Close)
	setList := func(s string) {
		mu.Lock()
		body = s
		mu.Unlock()
	}

	dir := t.TempDir()
	a, b := newOrigin(t, ca, "a.test"), newOrigin(t, ca, "b.test")
	extra := fmt.Sprintf(`[policy]
default = "deny"
list_url = %q
list_signature = "jws"
list_trust = %q
list_max_age = "1h"
[outbound]
ca_file = %q
allow_networks = ["127.0.0.0/8"]
[outbound.overrides]
"a.test" = %q
"b.test" = %q
`, list.URL+"/federation.jws", root.WriteCertFile(t, dir), ca.WriteCertFile(t, t.TempDir()), a.addr(), b.addr())
	og := startOps(t, opsSetup{extra: extra})
	tg := og.testGateway
	waitDecision(t, og, "a.test", "")
	expectForwarded(t, signedGet(tg, a, profileTarget))
	expectDenied(t, tg, signedGet(tg, b, profileTarget), 403, "not_in_allow_list")
	status, ready := og.get("/readyz")
	if status != 200 || !strings.Contains(ready, "ok   federation_list: version 1 from "+list.URL) {
		t.Errorf("/readyz %d:\n%s", status, ready)
	}

	src := og.gw.rt.Load().primary().state.sources.List()
	fetch := func() error { return src.Fetch(t.Context()) }
	setList(signer.Sign(t, []byte(`{"version": 2, "allow": ["b.test"], "deny": []}`)))
	if err := fetch(); err != nil {
		t.Fatal(err)
	}
	expectForwarded(t, signedGet(tg, b, profileTarget))
	expectDenied(t, tg, signedGet(tg, a, profileTarget), 403, "not_in_allow_list")

	for name, forged := range map[string]string{
		"other root": other.Sign(t, []byte(`{"version": 3, "allow": ["a.test"], "deny": []}`)),
		"rollback":   signer.Sign(t, []byte(`{"version": 1, "allow": ["a.test"], "deny": []}`)),
		"unsigned":   `{"version": 4, "allow": ["a.test"], "deny": []}`,
		"alg none":   fedtest.UnsignedJWS(t, map[string]any{"alg": "none"}, []byte(`{"version": 5, "allow": ["a.test"]}`), nil),
	} {
		setList(forged)
		if err := fetch(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		expectForwarded(t, signedGet(tg, b, profileTarget))
		expectDenied(t, tg, signedGet(tg, a, profileTarget), 403, "not_in_allow_list")
	}
	m := og.scrape()
	wantValue(t, m, 2, "fedgate_policy_list_version")
	if v, _ := value(m, "fedgate_policy_list_failures_total"); v < 4 {
		t.Errorf("list failures %v", v)
	}
	if v, ok := value(m, "fedgate_policy_list_signer_not_after_timestamp_seconds"); !ok || int64(v) != signer.Chain[0].NotAfter.Unix() {
		t.Errorf("signer expiry %v %v", v, ok)
	}
}

// TestCheckPolicySources: check-config refuses a signed list file that
// does not verify and a list_trust without certificates, naming the key,
// and accepts a good one without publishing anything.
func TestCheckPolicySources(t *testing.T) {
	dir := t.TempDir()
	root := fedtest.NewCA(t)
	now := time.Now()
	good := root.Signer(t, now.Add(-time.Hour), now.Add(time.Hour), true).Sign(t, []byte(`{"version": 1, "allow": [], "deny": ["x.test"]}`))
	bad := fedtest.NewCA(t).Signer(t, now.Add(-time.Hour), now.Add(time.Hour), false).Sign(t, []byte(`{"version": 1}`))
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	trust := write("root.pem", string(root.CertPEM()))
	load := func(list, trust string) *config.Config {
		t.Helper()
		text := fmt.Sprintf("server_name = \"gw.test\"\ndata_dir = %q\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[keys]\ngenerate = true\n[policy]\nlist_file = %q\nlist_signature = \"jws\"\nlist_trust = %q\n", dir, list, trust)
		c, err := config.Parse(filepath.Join(dir, "gateway.toml"), []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := policysource.Check(load(write("good.jws", good), trust)); err != nil {
		t.Fatalf("good list refused: %v", err)
	}
	if err := policysource.Check(load(write("bad.jws", bad), trust)); err == nil || !strings.Contains(err.Error(), "policy.list_file") {
		t.Fatalf("untrusted list: %v", err)
	}
	if err := policysource.Check(load(write("good2.jws", good), write("empty.pem", "no certificates"))); err == nil || !strings.Contains(err.Error(), "policy.list_trust") {
		t.Fatalf("empty trust file: %v", err)
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, "federation-list-*")); len(entries) != 0 {
		t.Errorf("check-config wrote %v", entries)
	}
}

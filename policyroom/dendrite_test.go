package policyroom_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/policyroom"
)

// dendrite is a real homeserver (Dendrite, run from its binaries) on
// 127.0.0.1, for the tests that check fedgate's client-server API usage
// against the real thing.
type dendrite struct {
	t   *testing.T
	url string
	dir string
	bin string
}

// startDendrite starts Dendrite from the binaries in FEDGATE_DENDRITE_BIN
// (dendrite, create-account, generate-config, generate-keys; .ci/run
// installs them), or skips the test when they are missing, unless
// FEDGATE_REQUIRE_DENDRITE=1 asks for them.
func startDendrite(t *testing.T) *dendrite {
	t.Helper()
	bin := os.Getenv("FEDGATE_DENDRITE_BIN")
	if bin == "" {
		if p, err := exec.LookPath("dendrite"); err == nil {
			bin = filepath.Dir(p)
		}
	}
	if _, err := os.Stat(filepath.Join(bin, "dendrite")); bin == "" || err != nil {
		if os.Getenv("FEDGATE_REQUIRE_DENDRITE") == "1" {
			t.Fatal("FEDGATE_REQUIRE_DENDRITE=1 but no Dendrite binaries: set FEDGATE_DENDRITE_BIN to the folder of dendrite, create-account, generate-config and generate-keys")
		}
		t.Skip("no Dendrite binaries (set FEDGATE_DENDRITE_BIN, or install github.com/matrix-org/dendrite/cmd/...@v0.13.8): skipping the real-homeserver test")
	}
	d := &dendrite{t: t, dir: t.TempDir(), bin: bin}
	cfg, err := exec.Command(filepath.Join(bin, "generate-config"), "-ci", "-server", "hs.test", "-dir", d.dir).Output()
	if err != nil {
		t.Fatalf("generate-config: %v", err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "dendrite.yaml"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	keys := exec.Command(filepath.Join(bin, "generate-keys"), "--private-key", "matrix_key.pem")
	keys.Dir = d.dir
	if out, err := keys.CombinedOutput(); err != nil {
		t.Fatalf("generate-keys: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d.url = "http://" + addr
	logFile, err := os.Create(filepath.Join(d.dir, "dendrite.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "dendrite"), "-config", "dendrite.yaml", "-http-bind-address", addr,
		"-https-bind-address", "", "-really-enable-open-registration")
	cmd.Dir, cmd.Stdout, cmd.Stderr = d.dir, logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(d.dir, "dendrite.log")); err == nil && len(b) > 0 {
				t.Logf("dendrite log (end):\n%s", b[max(0, len(b)-4000):])
			}
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(d.url + "/_matrix/client/versions")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Dendrite did not answer within 60s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return d
}

var accessTokenRE = regexp.MustCompile(`AccessToken: ([A-Za-z0-9_\-.]+)`)

// account creates a user and returns its access token.
func (d *dendrite) account(name string) string {
	d.t.Helper()
	cmd := exec.Command(filepath.Join(d.bin, "create-account"), "-config", "dendrite.yaml", "-url", d.url,
		"-username", name, "-password", "password-"+name+"-123")
	cmd.Dir = d.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("create-account %s: %v\n%s", name, err, out)
	}
	m := accessTokenRE.FindSubmatch(out)
	if m == nil {
		d.t.Fatalf("create-account printed no access token:\n%s", out)
	}
	return string(m[1])
}

// call sends a client-server API request as the holder of token and
// decodes the JSON answer into out (when not nil).
func (d *dendrite) call(token, method, path string, body any, out any) {
	d.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.url+path, rd)
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		d.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			d.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

// state sets a state event and returns its event ID.
func (d *dendrite) state(token, room, typ, stateKey string, content any) string {
	d.t.Helper()
	var out struct {
		EventID string `json:"event_id"`
	}
	d.call(token, http.MethodPut, "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/state/"+typ+"/"+url.PathEscape(stateKey), content, &out)
	return out.EventID
}

// TestAgainstDendrite runs a policy room on a real homeserver: a moderator
// creates a public ban list with an alias, fedgate's bot (a plain account)
// joins it by alias and reads its rules; rules added, emptied and redacted
// apply; a room upgrade is followed.
func TestAgainstDendrite(t *testing.T) {
	t.Parallel()
	d := startDendrite(t)
	mod := d.account("mod")
	botTok := d.account("fedgatebot")

	var created struct {
		RoomID string `json:"room_id"`
	}
	d.call(mod, http.MethodPost, "/_matrix/client/v3/createRoom", map[string]any{
		"preset": "public_chat", "room_alias_name": "bans", "name": "Ban list", "room_version": "10",
	}, &created)
	room := created.RoomID
	d.state(mod, room, policyroom.TypeServerRule, "rule:evil", map[string]string{"entity": "evil.example", "recommendation": "m.ban", "reason": "spam"})

	e := newEnv(t)
	if err := os.WriteFile(filepath.Join(e.dir, "token"), []byte(botTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := e.options("#bans:hs.test")
	o.Homeserver, _ = url.Parse(d.url)
	o.SyncTimeout = 5 * time.Second
	s, _ := e.run(o)
	e.waitReason("evil.example", policy.ReasonOriginBanned)
	eventually(t, "status names the room", func() bool { return s.Status().RoomID == room })

	// Changes while syncing.
	legacy := d.state(mod, room, policyroom.TypeServerRuleMjolnir, "mj", map[string]string{"entity": "*.spam.example", "recommendation": "org.matrix.mjolnir.ban", "reason": "farm"})
	d.state(mod, room, policyroom.TypeServerRule, "rule:watch", map[string]string{"entity": "watched.example", "recommendation": "org.example.watch"})
	e.waitReason("a.spam.example", policy.ReasonOriginBanned)
	d.state(mod, room, policyroom.TypeServerRule, "rule:evil", map[string]string{})
	e.waitReason("evil.example", "")
	d.call(mod, http.MethodPut, "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/redact/"+url.PathEscape(legacy)+"/txn1", map[string]string{"reason": "lifted"}, nil)
	e.waitReason("a.spam.example", "")
	if r := e.reason("watched.example"); r != "" {
		t.Errorf("non-ban recommendation applied: %q", r)
	}

	// Upgrade: the bot follows to the new room.
	d.state(mod, room, policyroom.TypeServerRule, "rule:old", map[string]string{"entity": "old.example", "recommendation": "m.ban"})
	e.waitReason("old.example", policy.ReasonOriginBanned)
	var up struct {
		ReplacementRoom string `json:"replacement_room"`
	}
	d.call(mod, http.MethodPost, "/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/upgrade", map[string]string{"new_version": "10"}, &up)
	d.state(mod, up.ReplacementRoom, policyroom.TypeServerRule, "rule:new", map[string]string{"entity": "new.example", "recommendation": "m.ban", "reason": "after the upgrade"})
	e.waitReason("new.example", policy.ReasonOriginBanned)
	eventually(t, "room followed", func() bool { return s.Status().RoomID == up.ReplacementRoom })
	d.state(mod, up.ReplacementRoom, policyroom.TypeServerRule, "rule:newer", map[string]string{"entity": "newer.example", "recommendation": "m.ban"})
	e.waitReason("newer.example", policy.ReasonOriginBanned)
	t.Logf("status after the upgrade: %+v", s.Status())
}

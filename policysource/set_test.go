package policysource

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/policy"
)

// loadConfig writes a configuration with the given [policy] tail into a
// temporary folder (with a bot token file) and loads it.
func loadConfig(t *testing.T, dir, policyTail string) *config.Config {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "bot.token"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := `server_name = "a.test"
data_dir = "` + filepath.Join(dir, "data") + `"
[upstream]
url = "http://127.0.0.1:1"
[keys]
generate = true
[policy]
` + policyTail
	path := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newEngine(t *testing.T, c *config.Config) *policy.Engine {
	t.Helper()
	e, err := policy.New(policy.Options{ServerName: c.ServerName, Policy: c.Policy, RateLimit: c.RateLimit})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func noFetch(context.Context, string, http.Header, int64) (int, http.Header, []byte, error) {
	return 0, nil, nil, errors.New("no network in this test")
}

const roomConfig = `[[policy.rooms]]
room = "!bans:example.org"
access_token_file = "bot.token"
`

// TestPrepareReusesUnchangedSources: a reload with the same settings keeps
// the running sources (nothing is rebuilt or restarted), a changed setting
// replaces only that source, and a removed one is gone after Apply.
func TestPrepareReusesUnchangedSources(t *testing.T) {
	dir := t.TempDir()
	c := loadConfig(t, dir, roomConfig)
	set := New(newEngine(t, c), slog.New(slog.DiscardHandler), noFetch)
	defer set.Stop()

	first, err := set.Prepare(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.rooms) != 1 || len(first.fresh) != 1 {
		t.Fatalf("first plan: %d rooms, %d new", len(first.rooms), len(first.fresh))
	}
	set.Apply(first)

	same, err := set.Prepare(loadConfig(t, dir, roomConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(same.fresh) != 0 || same.rooms[0] != first.rooms[0] {
		t.Fatalf("unchanged settings rebuilt the room: %d new", len(same.fresh))
	}
	set.Apply(same)

	changed, err := set.Prepare(loadConfig(t, dir, roomConfig+"max_rules = 10\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(changed.fresh) != 1 || changed.rooms[0] == first.rooms[0] {
		t.Fatal("a changed max_rules did not rebuild the room")
	}
	set.Apply(changed)

	none, err := set.Prepare(loadConfig(t, dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	set.Apply(none)
	if rooms, list := set.Status(); len(rooms) != 0 || list != nil {
		t.Fatalf("after removing the room: %d rooms, list %v", len(rooms), list)
	}
}

// TestCheckReportsTheKey: check-config's path names the configuration key
// at fault and starts nothing.
func TestCheckReportsTheKey(t *testing.T) {
	dir := t.TempDir()
	c := loadConfig(t, dir, roomConfig)
	if err := Check(c); err != nil {
		t.Fatalf("good room: %v", err)
	}
	for name, text := range map[string]string{"list.jws": "not yet fetched", "empty.pem": "no certificates here"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c = loadConfig(t, dir, `list_signature = "jws"
list_file = "list.jws"
list_trust = "empty.pem"
`)
	if err := Check(c); err == nil || !strings.Contains(err.Error(), "policy.list_trust") {
		t.Fatalf("a trust file without certificates: %v", err)
	}
}

// TestRoomStateFilePerServer: two hosted servers subscribing the same room
// keep their own state file.
func TestRoomStateFilePerServer(t *testing.T) {
	a := &config.Config{ServerName: "a.test", DataDir: "/d"}
	b := &config.Config{ServerName: "b.test", DataDir: "/d"}
	if roomStateFile(a, "#bans:x") == roomStateFile(b, "#bans:x") {
		t.Fatal("two servers share a room's state file")
	}
	if roomStateFile(a, "#bans:x") != roomStateFile(&config.Config{ServerName: "A.TEST", DataDir: "/d"}, "#bans:x") {
		t.Fatal("the state file depends on the server name's letter case")
	}
}

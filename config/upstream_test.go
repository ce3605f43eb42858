package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestUpstreamPools: routes decode in order with their pool names, the
// default pool's members come from url or urls, health settings take
// their defaults, and a policy room's homeserver defaults to the first
// member.
func TestUpstreamPools(t *testing.T) {
	c, err := Load("testdata/valid/upstream_pools.toml")
	if err != nil {
		t.Fatal(err)
	}
	u := c.Upstream
	if got := u.MemberURLs(); !reflect.DeepEqual(got, []string{"http://127.0.0.1:8008"}) {
		t.Errorf("members %v", got)
	}
	var names []string
	for _, r := range u.Routes {
		names = append(names, r.PoolName())
	}
	if got := strings.Join(names, " "); got != "send media backfill events+join+knock+leave+invite+query+hierarchy+public_rooms+user_devices+version" {
		t.Errorf("pool names %s", got)
	}
	if u.Routes[0].Balance != "origin" || u.Routes[1].Balance != "" || u.Balance != "round_robin" {
		t.Errorf("balances %q %q %q", u.Routes[0].Balance, u.Routes[1].Balance, u.Balance)
	}
	if u.ProbePath != "/_matrix/federation/v1/version" || u.ProbeInterval.D() != 5*time.Second || u.ProbeTimeout.D() != 5*time.Second ||
		u.DownPeriod.D() != 5*time.Second || u.DownPeriodMax.D() != time.Minute {
		t.Errorf("health settings %+v", u)
	}

	c, err = Parse("/x/gateway.toml", []byte(`server_name = "example.org"
[upstream]
urls = ["http://10.0.0.1:8008", "http://10.0.0.2:8008"]
balance = "least_busy"
[keys]
generate = true
[[policy.rooms]]
room = "#bans:example.org"
access_token_file = "/dev/null"
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Upstream.MemberURLs(); len(got) != 2 || got[1] != "http://10.0.0.2:8008" {
		t.Errorf("members %v", got)
	}
	if h := c.Policy.Rooms[0].Homeserver; h != "http://10.0.0.1:8008" {
		t.Errorf("policy room homeserver %q", h)
	}
}

// TestUpstreamPoolsDocExamples: every [upstream] example of
// docs/upstream-pools.md is a valid configuration once completed with a
// server name (unless it has one) and keys, so the page never shows
// routes check-config would refuse.
func TestUpstreamPoolsDocExamples(t *testing.T) {
	data, err := os.ReadFile("../docs/upstream-pools.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	checked := 0
	for _, b := range blocks {
		if !strings.Contains(b[1], "[upstream]") {
			continue
		}
		text := b[1]
		if !strings.Contains(text, "server_name") {
			text = "server_name = \"example.org\"\n" + text
		}
		if strings.Contains(text, "[[servers]]") {
			text += "\n[servers.keys]\ngenerate = true\n" // the last entry's keys
		}
		text += "\n[keys]\ngenerate = true\n"
		if _, err := Parse("/x/gateway.toml", []byte(text)); err != nil {
			t.Errorf("example does not load: %v\n%s", err, b[1])
		}
		checked++
	}
	if checked < 3 {
		t.Fatalf("only %d examples found", checked)
	}
}

// TestHostedPools: a [[servers]] entry's upstream has pools of its own,
// and nothing of the top level's (routes, health settings) leaks into it.
func TestHostedPools(t *testing.T) {
	c, err := Load("testdata/valid/servers_pools.toml")
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hosted()
	a, b := h[0].Upstream, h[1].Upstream
	if len(a.Routes) != 2 || a.ProbeInterval.D() != 2*time.Second {
		t.Errorf("a's upstream: %+v", a)
	}
	if got := b.MemberURLs(); len(got) != 2 || b.Balance != "least_busy" || b.DownPeriod.D() != 2*time.Second {
		t.Errorf("b's default pool: %v %q %v", got, b.Balance, b.DownPeriod.D())
	}
	if len(b.Routes) != 2 || b.Routes[0].PoolName() != "senders" || b.Routes[1].URLs[0] != "http://10.0.0.9:8085" {
		t.Errorf("b's routes: %+v", b.Routes)
	}
	if b.ProbeInterval != 0 {
		t.Errorf("b's probe_interval %v: inherited from the top level", b.ProbeInterval.D())
	}
	if p := h[1].Errorf("upstream.route[0].urls[0]", "x"); p.Key != "servers[0].upstream.route[0].urls[0]" || p.Line != 27 {
		t.Errorf("b's route located at %s line %d", p.Key, p.Line)
	}
}

// TestHostedPolicyRoomDefaults: a [[servers]] entry's own policy rooms
// get the defaults the top level's get, their bot's homeserver being the
// entry's own (the first member of its default pool); inherited rooms
// keep the top level's.
func TestHostedPolicyRoomDefaults(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bot.token"), []byte("syt_x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gateway.toml")
	text := `server_name = "a.example"
[upstream]
url = "http://10.0.1.1:8008"
[keys]
generate = true
[[policy.rooms]]
room = "#bans:a.example"
access_token_file = "bot.token"

[[servers]]
server_name = "b.example"
[servers.upstream]
urls = ["http://10.0.2.1:8008", "http://10.0.2.2:8008"]
[servers.keys]
generate = true
[servers.policy]
[[servers.policy.rooms]]
room = "#bans:b.example"
access_token_file = "bot.token"

[[servers]]
server_name = "c.example"
[servers.upstream]
url = "http://10.0.3.1:8008"
[servers.keys]
generate = true
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hosted()
	b := h[1].Policy
	if r := b.Rooms[0]; r.Homeserver != "http://10.0.2.1:8008" || r.Apply != ApplyDeny || r.MaxRules != DefaultPolicyRoomMaxRules ||
		r.AccessTokenFile != filepath.Join(dir, "bot.token") {
		t.Errorf("b's room: %+v", r)
	}
	if r := h[2].Policy.Rooms[0]; r.Room != "#bans:a.example" || r.Homeserver != "http://10.0.1.1:8008" {
		t.Errorf("c's inherited room: %+v", r)
	}
}

// TestHostedPolicyPaths: the paths of a [[servers]] entry's own [policy]
// are made absolute, relative to the configuration file's folder.
func TestHostedPolicyPaths(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"list.jws", "trust.pem"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "gateway.toml")
	text := `server_name = "a.example"
[upstream]
url = "http://10.0.1.1:8008"
[keys]
generate = true

[[servers]]
server_name = "b.example"
[servers.upstream]
url = "http://10.0.2.1:8008"
[servers.keys]
generate = true
[servers.policy]
list_signature = "jws"
list_file = "list.jws"
list_trust = "trust.pem"
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Hosted()[1].Policy
	if p.ListFile != filepath.Join(dir, "list.jws") || p.ListTrust != filepath.Join(dir, "trust.pem") {
		t.Errorf("b's list_file %q, list_trust %q: not made absolute", p.ListFile, p.ListTrust)
	}
}

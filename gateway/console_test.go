package gateway

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/console"
	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/policyroom"
)

// consoleEnv is a running gateway with admin and egress listeners, a real
// certificate manager serving a certificate that expires in ten days, and
// traffic of every kind the console must show (seed):
//
//	good.test  an allowed origin (exempt from rate limits)
//	evil.test  an origin in policy.deny
//	busy.test  an origin over its per_origin rate limit
//	down.test  an origin whose key server is down
//	slow.test  an egress destination answering 429 (backoff)
type consoleEnv struct {
	*testGateway
	admin        string
	egressAddr   string
	good, busy   *testOrigin
	evil         *testOrigin
	certNotAfter time.Time
	token        string   // admin token; "" when none is configured
	secrets      []string // every secret the configuration holds
	setup        consoleSetup
	second       *auth.SigningKey // gw2.test's key, with setup.second
}

// consoleSetup shapes a consoleEnv.
type consoleSetup struct {
	hashNames bool   // log.hash_server_names
	token     string // admin.token_file's content; "" for none
	// second adds a hosted server, gw2.test, with its own homeserver,
	// key and a closed federation that admits good.test.
	second bool
	// room subscribes gw.test to a policy room (#console-bans:hs.test,
	// alias of !bans:hs.test) on a client-server API that bans
	// banned.test; seed then sends a request from banned.test.
	room bool
	// redisURL turns cluster mode on with a client for that URL (its
	// password, if any, a secret); redisPassword is cluster.password_file's
	// content. The server need not run: an unreachable Redis is shown
	// down.
	redisURL, redisPassword string
}

const (
	consoleRoomAlias = "#console-bans:hs.test"
	consoleRoomID    = "!bans:hs.test"
	consoleBot       = "@fedgate-bot:hs.test"
	consoleBotToken  = "syt_console_b0t_t0ken_do_not_show"
)

const (
	consoleEgressSecret = "egress-s3cret-do-not-show"
	consoleTokenValue   = "admin-t0ken-do-not-show-1234"
)

const consoleConfig = `
server_name = "gw.test"
data_dir = %q
[upstream]
url = %q
timeout = "5s"
[listen]
federation = ["127.0.0.1:0"]
egress = "127.0.0.1:0"
admin = "127.0.0.1:0"
[keys]
signing_key = %q
[log]
access = false
hash_server_names = %v
[policy]
deny = ["evil.test"]
[rate_limit]
exempt = ["good.test"]
[rate_limit.per_origin]
rate = "1/m"
burst = 2
[egress]
secret = %q
worker_proxy = true
[admin]
ready_window = "5s"
%s
[outbound]
ca_file = %q
[outbound.overrides]
%s
`

func startConsole(t *testing.T, s consoleSetup) *consoleEnv {
	t.Helper()
	env := &consoleEnv{token: s.token, secrets: []string{consoleEgressSecret}, setup: s}
	remoteCA := fedtest.NewCA(t)
	env.good, env.busy, env.evil = newOrigin(t, remoteCA, "good.test"), newOrigin(t, remoteCA, "busy.test"), newOrigin(t, remoteCA, "evil.test")
	slow := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "300")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests"}`)
	}))
	slow.TLS = &tls.Config{Certificates: []tls.Certificate{remoteCA.Issue(t, "slow.test")}}
	slow.StartTLS()
	t.Cleanup(slow.Close)
	overrides := fmt.Sprintf("%q = %q\n%q = %q\n%q = %q\n%q = %q\n%q = %q\n",
		"good.test", env.good.addr(), "busy.test", env.busy.addr(), "evil.test", env.evil.addr(),
		"down.test", fedtest.FreeAddr(t), "slow.test", slow.Listener.Addr().String())

	// A certificate that expires in ten days, served by certs in files
	// mode as "fedgate run" would.
	serverCA := fedtest.NewCA(t)
	certDir := t.TempDir()
	env.certNotAfter = time.Now().Add(10*24*time.Hour + time.Hour).Truncate(time.Second)
	writeLeafFiles(t, serverCA, certDir, time.Now().Add(-time.Hour), env.certNotAfter, "gw.test", "127.0.0.1")
	mgr, err := certs.New(certs.Options{Mode: certs.ModeFiles, CertFile: filepath.Join(certDir, "cert.pem"),
		KeyFile: filepath.Join(certDir, "key.pem"), PollInterval: -1, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}

	tokenLine := ""
	if s.token != "" {
		path := filepath.Join(t.TempDir(), "admin.token")
		if err := os.WriteFile(path, []byte(s.token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tokenLine = fmt.Sprintf("token_file = %q", path)
		env.secrets = append(env.secrets, s.token)
	}
	extra := env.extraConfig(t, s)
	var cl *cluster.Client
	if s.redisURL != "" {
		cl = startConsoleCluster(t, s.redisURL, s.redisPassword)
	}
	hs := fedtest.StartHomeserver(t)
	tg := launchGateway(t, gatewaySetup{
		hs:       hs,
		upstream: hs.URL,
		config: func(dataDir, upstream, keyFile string) string {
			return fmt.Sprintf(consoleConfig, dataDir, upstream, keyFile, s.hashNames, consoleEgressSecret, tokenLine,
				remoteCA.WriteCertFile(t, t.TempDir()), overrides) + extra
		},
		logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)),
		options: func(o *Options) {
			o.TLSConfig, o.Certificates = mgr.TLSConfig(), mgr
			if cl != nil {
				o.Cluster = cl
			}
		},
	})
	tg.client.Transport.(*http.Transport).TLSClientConfig.RootCAs = serverCA.Pool()
	env.testGateway = tg
	env.admin = tg.gw.Addrs(ListenerAdmin)[0].String()
	env.egressAddr = tg.gw.Addrs(ListenerEgress)[0].String()
	env.secrets = append(env.secrets, auth.EncodeBase64(tg.key.Seed()))
	if s.hashNames {
		key, err := os.ReadFile(tg.cfg.Log.HashKeyFile)
		if err != nil {
			t.Fatal(err)
		}
		env.secrets = append(env.secrets, strings.TrimSpace(string(key)))
	}
	return env
}

// extraConfig returns the configuration the setup adds after the base
// one (a second hosted server, a policy room, [cluster]) and starts what
// it needs.
func (env *consoleEnv) extraConfig(t *testing.T, s consoleSetup) string {
	t.Helper()
	var b strings.Builder
	if s.room {
		cs := fedtest.StartCSServer(t)
		cs.AddUser(consoleBot, consoleBotToken)
		cs.CreateRoom(consoleRoomID, false, consoleBot)
		cs.SetAlias(consoleRoomAlias, consoleRoomID)
		cs.SendState(consoleRoomID, "m.policy.rule.server", "rule:banned", `{"entity":"banned.test","recommendation":"m.ban","reason":"spam wave"}`)
		cs.SendState(consoleRoomID, "m.policy.rule.server", "rule:watch", `{"entity":"watched.test","recommendation":"org.example.watch"}`)
		token := filepath.Join(t.TempDir(), "bot.token")
		if err := os.WriteFile(token, []byte(consoleBotToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "\n[[policy.rooms]]\nroom = %q\nhomeserver = %q\naccess_token_file = %q\n", consoleRoomAlias, cs.URL, token)
		env.secrets = append(env.secrets, consoleBotToken)
	}
	if s.redisURL != "" {
		fmt.Fprintf(&b, "\n[cluster]\nredis = %q\nprefix = \"fgconsole:\"\nnode = \"gw-console\"\n", s.redisURL)
		if u, err := url.Parse(s.redisURL); err == nil {
			if pw, ok := u.User.Password(); ok {
				env.secrets = append(env.secrets, pw)
			}
		}
		if s.redisPassword != "" {
			pw := filepath.Join(t.TempDir(), "redis.password")
			if err := os.WriteFile(pw, []byte(s.redisPassword+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "password_file = %q\n", pw)
			env.secrets = append(env.secrets, s.redisPassword)
		}
	}
	if s.second {
		key, err := auth.GenerateSigningKey("gw2_1")
		if err != nil {
			t.Fatal(err)
		}
		keyFile := filepath.Join(t.TempDir(), "gw2.key")
		if err := auth.WriteKeyFile(keyFile, auth.FormatSynapse, []auth.SigningKey{key}); err != nil {
			t.Fatal(err)
		}
		env.second = &key
		env.secrets = append(env.secrets, auth.EncodeBase64(key.Seed()))
		hs2 := fedtest.StartHomeserver(t)
		fmt.Fprintf(&b, "\n[[servers]]\nserver_name = \"gw2.test\"\n[servers.upstream]\nurl = %q\ntimeout = \"5s\"\n"+
			"[servers.keys]\nsigning_key = %q\n[servers.policy]\ndefault = \"deny\"\nallow = [\"good.test\"]\n", hs2.URL, keyFile)
	}
	return b.String()
}

// startConsoleCluster makes the cluster client a "fedgate run" with
// [cluster] would, and runs its health loop until the test ends.
func startConsoleCluster(t *testing.T, redisURL, password string) *cluster.Client {
	t.Helper()
	c, err := cluster.New(cluster.Options{URL: redisURL, Password: password, Prefix: "fgconsole:", Node: "gw-console",
		Timeout: time.Second, Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))})
	if err != nil {
		t.Fatal(err)
	}
	fedtest.RunUntilCleanup(t, c.Run, c.Close)
	return c
}

// writeLeafFiles issues a certificate valid from notBefore to notAfter and
// writes cert.pem (leaf, then CA) and key.pem into dir.
func writeLeafFiles(t *testing.T, ca *fedtest.CA, dir string, notBefore, notAfter time.Time, names ...string) {
	t.Helper()
	c := ca.IssueValid(t, notBefore, notAfter, names...)
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), append(certPEM, ca.CertPEM()...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

// seed sends the traffic the console must show and waits until all of it
// is counted.
func (env *consoleEnv) seed() {
	t := env.t
	t.Helper()
	const target = "/_matrix/federation/v1/query/profile?user_id=%40alice%3Agw.test"
	for range 3 {
		if resp := signedGet(env.testGateway, env.good, target); resp.StatusCode != 200 {
			t.Fatalf("good.test: %d", resp.StatusCode)
		}
	}
	expectDenied(t, env.testGateway, signedGet(env.testGateway, env.evil, target), 403, "origin_denied")
	limited := 0
	for range 4 {
		if signedGet(env.testGateway, env.busy, target).StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 2 {
		t.Fatalf("busy.test: %d of 4 rate limited, want 2", limited)
	}
	down, err := auth.GenerateSigningKey("d_1")
	if err != nil {
		t.Fatal(err)
	}
	resp := env.do("GET", target, "", signWith(t, down, "down.test", "GET", target, "gw.test", ""))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("down.test: %d", resp.StatusCode)
	}
	if resp := env.egress("slow.test", "/_matrix/federation/v1/version"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("egress to slow.test: %d", resp.StatusCode)
	}
	inbound := uint64(9)
	if env.setup.room {
		// The room's ban is in force once the first sync is read.
		waitFor(t, "the policy room's ban", func() bool {
			return env.gw.rt.Load().primary().policy().Snapshot().CheckOrigin("banned.test").Reason == policy.ReasonOriginBanned
		})
		resp := env.do("GET", target, "", signWith(t, down, "banned.test", "GET", target, "gw.test", ""))
		expectDenied(t, env.testGateway, resp, http.StatusForbidden, policy.ReasonOriginBanned)
		inbound++
	}
	env.waitRequests(inbound, 1)
}

// egress sends a GET for destination through the worker proxy protocol, as
// Synapse would, and returns the answer.
func (env *consoleEnv) egress(destination, target string) *http.Response {
	t := env.t
	t.Helper()
	conn, err := net.Dial("tcp", env.egressAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "GET %s%s%s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer %s\r\n%s\r\n\r\n",
		workerProxyScheme, destination, target, destination, consoleEgressSecret,
		signWith(t, env.key, "gw.test", "GET", target, destination, ""))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// waitRequests waits until the recorder counted inbound and egress
// requests (they are recorded after the answer went out).
func (env *consoleEnv) waitRequests(inbound, egress uint64) {
	env.t.Helper()
	waitFor(env.t, "recorded requests", func() bool {
		h := env.gw.traffic.Traffic(time.Now(), 1, console.Names{}).Hour
		return h.Inbound >= inbound && h.Egress >= egress
	})
}

// get fetches path from the admin listener, with the token when one is
// configured.
func (env *consoleEnv) get(path string) (int, http.Header, string) {
	env.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+env.admin+path, nil)
	if env.token != "" {
		req.Header.Set("Authorization", "Bearer "+env.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		env.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// statusJSON fetches and decodes /status.json.
func (env *consoleEnv) statusJSON() map[string]any {
	env.t.Helper()
	status, _, body := env.get("/status.json")
	if status != 200 {
		env.t.Fatalf("/status.json: %d %s", status, body)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		env.t.Fatal(err)
	}
	return m
}

// TestConsoleStatusJSON: after the seeded traffic, status.json tells who
// talked to us, whom we refused and why, whose keys fail, which
// destination is in backoff, and when the certificate expires.
func TestConsoleStatusJSON(t *testing.T) {
	env := startConsole(t, consoleSetup{})
	env.seed()
	waitFor(t, "the homeserver probe", func() bool { return homeserverReached(env.gw) })
	m := env.statusJSON()
	js, _ := json.Marshal(m)
	text := string(js)

	top := m["traffic"].(map[string]any)["top_origins"].([]any)
	if first := top[0].(map[string]any); first["server"] != "busy.test" || first["requests"] != 4.0 || first["denied"] != 2.0 {
		t.Errorf("top origin %v", first)
	}
	var denials []string
	for _, d := range m["traffic"].(map[string]any)["recent_denials"].([]any) {
		d := d.(map[string]any)
		denials = append(denials, fmt.Sprintf("%s %s %s %v %v", d["server"], d["reason"], d["stage"], d["status"], d["count"]))
	}
	want := []string{"down.test key_fetch_failed origin_key 401 1", "busy.test rate_per_origin origin_limits 429 2", "evil.test origin_denied origin_policy 403 1"}
	if strings.Join(denials, "\n") != strings.Join(want, "\n") {
		t.Errorf("recent denials:\n%s\nwant:\n%s", strings.Join(denials, "\n"), strings.Join(want, "\n"))
	}
	kr := m["keyring"].(map[string]any)
	failing := kr["failing"].([]any)
	if kr["failing_total"] != 1.0 || len(failing) != 1 {
		t.Fatalf("keyring %v", kr)
	}
	f := failing[0].(map[string]any)
	retry, _ := time.Parse(time.RFC3339, f["next_retry"].(string))
	if f["server"] != "down.test" || !strings.Contains(f["error"].(string), "connection refused") || !retry.After(time.Now()) {
		t.Errorf("failing fetch %v", f)
	}
	backoff := m["egress"].(map[string]any)["backoff"].([]any)
	if len(backoff) != 1 || backoff[0].(map[string]any)["destination"] != "slow.test" || backoff[0].(map[string]any)["kind"] != "rate_limited" {
		t.Errorf("egress backoff %v", backoff)
	}
	cert := m["certificates"].(map[string]any)["items"].([]any)[0].(map[string]any)
	if na, _ := time.Parse(time.RFC3339, cert["not_after"].(string)); !na.Equal(env.certNotAfter) || cert["source"] != "files" {
		t.Errorf("certificate %v, want not_after %v", cert, env.certNotAfter)
	}
	if up := m["upstream"].(map[string]any); up["up"] != true || up["url"] != env.hs.URL {
		t.Errorf("upstream %v", up)
	}
	if r := m["readiness"].(map[string]any); r["ready"] != true {
		t.Errorf("readiness %v", r)
	}
	keys := m["signing_keys"].(map[string]any)
	if cur := keys["current"].([]any)[0].(map[string]any); cur["id"] != "ed25519:gw_1" || cur["public_key"] != auth.EncodeBase64(env.key.Public()) {
		t.Errorf("signing keys %v", keys)
	}
	for _, s := range []string{"good.test", "top_destinations", "slow.test"} {
		if !strings.Contains(text, s) {
			t.Errorf("status.json lacks %s", s)
		}
	}
	// One hosted server, no [cluster], no policy source: their sections
	// are left out.
	for _, absent := range []string{"servers", "cluster"} {
		if _, ok := m[absent]; ok {
			t.Errorf("status.json has %s", absent)
		}
	}
	p := m["policy"].(map[string]any)
	if _, ok := p["rooms"]; ok {
		t.Errorf("status.json has policy rooms: %v", p)
	}
}

// TestConsoleHostedServersAndPolicyRoom: with a second hosted server and a
// policy room, status.json and the page show each server's keys and
// policy under its name, the room's state, rules and ignored rules, and
// the denial its ban caused, naming the room.
func TestConsoleHostedServersAndPolicyRoom(t *testing.T) {
	env := startConsole(t, consoleSetup{second: true, room: true})
	env.seed()
	m := env.statusJSON()
	servers := m["servers"].([]any)
	if len(servers) != 1 {
		t.Fatalf("servers %v", servers)
	}
	gw2 := servers[0].(map[string]any)
	key := gw2["signing_keys"].(map[string]any)["current"].([]any)[0].(map[string]any)
	pol := gw2["policy"].(map[string]any)
	if gw2["name"] != "gw2.test" || key["id"] != "ed25519:gw2_1" || key["public_key"] != auth.EncodeBase64(env.second.Public()) ||
		pol["default"] != "deny" || pol["allow"] != 1.0 || pol["rooms"] != nil {
		t.Errorf("gw2.test: %v", gw2)
	}
	if top := m["signing_keys"].(map[string]any)["current"].([]any)[0].(map[string]any); top["id"] != "ed25519:gw_1" {
		t.Errorf("top-level keys %v", top)
	}
	var room map[string]any
	waitFor(t, "the room's status", func() bool {
		rooms := env.statusJSON()["policy"].(map[string]any)["rooms"].([]any)
		room = rooms[0].(map[string]any)
		return room["state"] == "syncing" && room["ignored"].(map[string]any)["recommendation"] == 1.0
	})
	if room["room"] != consoleRoomAlias || room["room_id"] != consoleRoomID || room["rules"] != 1.0 || room["stale"] != false ||
		room["dry_run"] != false || room["last_sync"] == nil || room["last_error"] != nil {
		t.Errorf("room %v", room)
	}
	var denied bool
	for _, d := range m["traffic"].(map[string]any)["recent_denials"].([]any) {
		d := d.(map[string]any)
		if d["server"] == "banned.test" && d["reason"] == "origin_banned" && strings.Contains(d["rule"].(string), consoleRoomAlias) {
			denied = true
		}
	}
	if !denied {
		t.Errorf("no origin_banned denial naming the room in %v", m["traffic"].(map[string]any)["recent_denials"])
	}

	_, _, page := env.get("/")
	for _, want := range []string{
		`<tr class="server"><th colspan="3"><span class="mono">gw.test</span>`, `<tr class="server"><th colspan="3"><span class="mono">gw2.test</span>`,
		"ed25519:gw2_1", `<div class="server"><span class="mono">gw2.test</span>`, "default deny · 1 allow, 0 deny entries",
		consoleRoomAlias, consoleRoomID, "1 not a ban", "1 policy room, 1 ban in force",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// TestConsoleCluster: with [cluster], the page and status.json show
// Redis's address (never its password), node, prefix, round trips by
// operation and, once Redis is killed, that it is down and what that
// means.
func TestConsoleCluster(t *testing.T) {
	r := fedtest.StartRedis(t)
	const password = "redis-pa55word-do-not-show"
	if got := r.Do("CONFIG SET requirepass " + password); got != "+OK" {
		t.Fatalf("setting a password: %q", got)
	}
	env := startConsole(t, consoleSetup{redisURL: "redis://:" + password + "@" + r.Addr + "/0"})
	env.seed()
	c := env.statusJSON()["cluster"].(map[string]any)
	ops := map[string]map[string]any{}
	for _, o := range c["operations"].([]any) {
		ops[o.(map[string]any)["name"].(string)] = o.(map[string]any)
	}
	if c["up"] != true || c["redis"] != "redis://"+r.Addr+"/0" || c["node"] != "gw-console" || c["prefix"] != "fgconsole:" ||
		ops["rate_limit"]["round_trips"].(float64) < 4 || c["rate_limit_round_trip"].(map[string]any)["count"].(float64) < 4 {
		t.Errorf("cluster %v", c)
	}

	r.Kill()
	killed := time.Now()
	const target = "/_matrix/federation/v1/query/profile?user_id=%40alice%3Agw.test"
	if resp := signedGet(env.testGateway, env.good, target); resp.StatusCode != 200 {
		t.Errorf("good.test with Redis down: %d", resp.StatusCode)
	}
	waitFor(t, "Redis marked down", func() bool { return env.statusJSON()["cluster"].(map[string]any)["up"] == false })
	c = env.statusJSON()["cluster"].(map[string]any)
	if since, _ := time.Parse(time.RFC3339, c["since"].(string)); since.Before(killed.Add(-time.Second)) || c["downs"] != 1.0 {
		t.Errorf("cluster after the kill %v", c)
	}
	_, _, page := env.get("/")
	for _, want := range []string{`<span class="pill warn">Redis DOWN</span>`, "enforces the rate limits on its own", `href="#cluster"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, body := range []string{page, fmt.Sprint(env.statusJSON())} {
		if strings.Contains(body, password) {
			t.Error("the Redis password is shown")
		}
	}
}

// TestConsoleNeverShowsSecrets: no secret of the configuration (egress
// secret, admin token, log hashing key, both hosted servers' signing key
// seeds, the policy room's access token, the Redis password in the URL
// and in password_file) appears on the page or in status.json, in any of
// their encodings.
func TestConsoleNeverShowsSecrets(t *testing.T) {
	for _, redis := range []struct{ name, url, passwordFile string }{
		{"password in the Redis URL", "redis://fedgate:redis-url-s3cret-do-not-show@" + fedtest.FreeAddr(t) + "/0", ""},
		{"password in password_file", "redis://fedgate@" + fedtest.FreeAddr(t) + "/0", "redis-file-s3cret-do-not-show"},
	} {
		t.Run(redis.name, func(t *testing.T) {
			env := startConsole(t, consoleSetup{hashNames: true, token: consoleTokenValue, second: true, room: true,
				redisURL: redis.url, redisPassword: redis.passwordFile})
			env.seed()
			env.expectNoSecrets()
			// Names are hashed: the room's ban names no remote server.
			for _, path := range []string{"/", "/status.json"} {
				if _, _, body := env.get(path); strings.Contains(body, "banned.test") || !strings.Contains(body, env.gw.rt.Load().names.name("banned.test")) {
					t.Errorf("%s shows banned.test by name, or not at all", path)
				}
			}
		})
	}
}

// expectNoSecrets checks the page and status.json for every secret of
// the configuration.
func (env *consoleEnv) expectNoSecrets() {
	t := env.t
	t.Helper()
	raw, err := os.ReadFile(env.cfg.Keys.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := strings.Fields(string(raw)) // "ed25519 gw_1 <seed>"
	secrets := append(env.secrets, keyFile[len(keyFile)-1])
	if len(secrets) < 8 {
		t.Fatalf("only %d secrets configured", len(secrets))
	}
	for _, path := range []string{"/", "/status.json"} {
		status, _, body := env.get(path)
		if status != 200 {
			t.Fatalf("%s: %d", path, status)
		}
		for _, want := range []string{"gw2.test", consoleRoomAlias, "fgconsole:"} { // the sections are there
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %s", path, want)
			}
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(body, s) {
				t.Errorf("%s shows a secret (%.6s...)", path, s)
			}
		}
	}
}

// TestConsoleHashesNames: with log.hash_server_names, remote servers
// appear as their hashes, never by name, on the page and in status.json.
func TestConsoleHashesNames(t *testing.T) {
	env := startConsole(t, consoleSetup{hashNames: true})
	env.seed()
	names := env.gw.rt.Load().names
	for _, path := range []string{"/", "/status.json"} {
		_, _, body := env.get(path)
		for _, n := range []string{"good.test", "evil.test", "busy.test", "down.test", "slow.test"} {
			if strings.Contains(body, n) {
				t.Errorf("%s shows %s", path, n)
			}
			if !strings.Contains(body, names.name(n)) {
				t.Errorf("%s lacks the hash of %s", path, n)
			}
		}
		if regexp.MustCompile(`127\.0\.0\.1:\d+: connect`).MatchString(body) {
			t.Errorf("%s shows a remote address in an error", path)
		}
	}
	m := env.statusJSON()
	if m["server"].(map[string]any)["names_hashed"] != true {
		t.Error("status.json does not say names are hashed")
	}
}

// TestConsoleTokenRequired: with admin.token_file, the console and
// status.json need the token; metrics and health do not; a reload with a
// new token applies at once.
func TestConsoleTokenRequired(t *testing.T) {
	env := startConsole(t, consoleSetup{token: consoleTokenValue})
	fetch := func(path, auth string) int {
		req, _ := http.NewRequest("GET", "http://"+env.admin+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/", "/status.json"} {
		if got := fetch(path, ""); got != 401 {
			t.Errorf("%s without the token: %d", path, got)
		}
		if got := fetch(path, "Bearer wrong-token-0123456789"); got != 401 {
			t.Errorf("%s with a wrong token: %d", path, got)
		}
		if got := fetch(path, "Bearer "+consoleTokenValue); got != 200 {
			t.Errorf("%s with the token: %d", path, got)
		}
	}
	for _, path := range []string{"/metrics", "/healthz"} {
		if got := fetch(path, ""); got != 200 {
			t.Errorf("%s without the token: %d", path, got)
		}
	}
	if got := fetch("/readyz", ""); got == 401 {
		t.Errorf("/readyz asks for the token")
	}

	// A reload reads the token file again.
	if err := os.WriteFile(env.cfg.Admin.TokenFile, []byte("a-new-token-for-the-console\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(env.cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.gw.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if fetch("/", "Bearer "+consoleTokenValue) != 401 || fetch("/", "Bearer a-new-token-for-the-console") != 200 {
		t.Error("the reloaded token does not apply")
	}
	// A token file that became unusable refuses the reload: the running
	// token stays.
	if err := os.WriteFile(env.cfg.Admin.TokenFile, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = config.Load(env.cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.gw.Reload(cfg); err == nil || !strings.Contains(err.Error(), "admin.token_file") {
		t.Fatalf("reload with a short token: %v", err)
	}
	if fetch("/", "Bearer a-new-token-for-the-console") != 200 {
		t.Error("a refused reload changed the token")
	}
	if err := Check(cfg); err == nil || !strings.Contains(err.Error(), "admin.token_file") {
		t.Errorf("check-config accepts a short token: %v", err)
	}
}

// TestConsoleStatusJSONMatchesDocs: every field status.json has after real
// traffic is documented in docs/console.md with its type.
func TestConsoleStatusJSONMatchesDocs(t *testing.T) {
	env := startConsole(t, consoleSetup{second: true, room: true, redisURL: "redis://" + fedtest.FreeAddr(t) + "/0"})
	env.seed()
	documented := fedtest.ReadStatusDoc(t, "../docs/console.md")
	seen := map[string]string{}
	waitFor(t, "the policy room synced", func() bool {
		rooms, _ := env.gw.rt.Load().primary().state.sources.Status()
		return rooms[0].State == policyroom.StateSyncing
	})
	collectJSONPaths("", env.statusJSON(), seen)
	for path, typ := range seen {
		doc, ok := documented.Type(path)
		switch {
		case !ok:
			t.Errorf("status.json has %s (%s), which docs/console.md does not document", path, typ)
		case doc != typ && !(doc == "time" && typ == "string"):
			t.Errorf("status.json's %s is a %s; docs/console.md says %s", path, typ, doc)
		}
	}
	for _, required := range []string{"schema", "generated", "traffic.minutes[].start", "traffic.top_origins[].server",
		"traffic.recent_denials[].reason", "keyring.failing[].next_retry", "egress.backoff[].until", "certificates.items[].not_after",
		"servers[].name", "servers[].signing_keys.valid_until_ts", "servers[].policy.default", "policy.rooms[].state",
		"policy.rooms[].ignored.recommendation", "policy.rooms[].last_sync", "cluster.up", "cluster.since", "cluster.operations[].fallbacks",
		"cluster.rate_limit_round_trip.count"} {
		if _, ok := seen[required]; !ok {
			t.Errorf("status.json lacks %s", required)
		}
	}
}

// collectJSONPaths records the path and JSON type of every value in v.
func collectJSONPaths(prefix string, v any, out map[string]string) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch v := v.(type) {
	case map[string]any:
		if prefix != "" && !strings.HasSuffix(prefix, "[]") { // array elements are documented by their fields
			out[prefix] = "object"
		}
		for k, e := range v {
			collectJSONPaths(join(k), e, out)
		}
	case []any:
		out[prefix] = "array"
		for _, e := range v {
			collectJSONPaths(prefix+"[]", e, out)
		}
	case string:
		out[prefix] = "string"
	case float64:
		out[prefix] = "number"
	case bool:
		out[prefix] = "boolean"
	}
}

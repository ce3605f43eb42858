package console

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func renderPage(t testing.TB, st *Status) string {
	t.Helper()
	r, err := newRenderer()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := r.render(&b, st, 15); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestPageShowsEverySection: each section of a full status appears, with
// what a person looks for in it.
func TestPageShowsEverySection(t *testing.T) {
	t.Parallel()
	page := renderPage(t, fullStatus(fixtureNow))
	wantOnPage(t, page,
		`<meta http-equiv="refresh" content="15">`,
		`id="readiness"`, "NOT READY", "failing: upstream",
		`id="chart-requests"`, `id="chart-denials"`, `id="chart-errors"`,
		`id="denials"`, "evil.example", "origin_denied", `policy.deny[0] &#34;evil.example&#34;`, "limiter per_origin", "×180",
		`id="top-origins"`, `id="top-destinations"`, "dest0.example",
		`id="keyring"`, "down.example", "connection refused", "in 40 s",
		`id="egress"`, "slow.example", "it asked us to wait (429)",
		`id="upstream"`, "http://127.0.0.1:8008",
		"http://127.0.0.1:8084", `<span class="pill warn">retrying</span>`, "request: no response: EOF", "origin: send", "retried in 20 s",
		`id="certificates"`, "10 days left", "R11",
		`id="signing-keys"`, "ed25519:a1", "signs requests", "ed25519:old",
		`id="policy"`, "/etc/fedgate/lists.json", "42",
		"#community-bans:example.org", "!bans:example.org", "1,234", "3 not bans, 1 too broad (matching every server)", "dry run",
		`<span class="pill warn">error</span>`, "M_UNKNOWN_TOKEN", "Policy sources", "1 of 3 degraded", "!partner:example.net error",
		`id="cluster"`, `<span class="pill ok">Redis up</span>`, "redis://10.0.0.5:6379/0", "gw-1", "fedgate:", "rate_limit", "812,345",
		"mean 0.3 ms, 99% within 2.1 ms", "timeout 50 ms", "marked down once",
	)
}

// TestPageShowsEveryHostedServer: with several hosted servers the
// homeserver section shows each server's pools under its name and how
// many servers are reachable; a failing advisory check shows "warn" and
// leaves the page ready.
func TestPageShowsEveryHostedServer(t *testing.T) {
	t.Parallel()
	st := fullStatus(fixtureNow)
	st.Readiness = &Readiness{Ready: true, Checks: []Check{
		{Name: "upstream", OK: true, Detail: "1 of 2 hosted servers' homeservers reached; not reached: b.example"},
		{Name: "upstream a.example", OK: true, Advisory: true, Detail: "http://10.0.0.1:8008 reached 1s ago"},
		{Name: "upstream b.example", OK: false, Advisory: true, Detail: "http://10.0.0.2:8008 not reached yet"},
	}}
	member := func(url, state string) []UpstreamMember { return []UpstreamMember{{URL: url, State: state}} }
	st.Upstream = &Upstream{URL: "http://10.0.0.1:8008", Hosted: 2, HostedUp: 1, LastSeen: fixtureNow.Add(-time.Second),
		LastError: "b.example: probe: not sent: connection refused", Probing: true,
		Pools: []UpstreamPool{
			{Server: "a.example", Name: "default", Balance: "round_robin", Members: member("http://10.0.0.1:8008", "up")},
			{Server: "a.example", Name: "send", Balance: "origin", Endpoints: []string{"send"}, Members: member("http://10.0.0.1:8083", "up")},
			{Server: "b.example", Name: "default", Balance: "round_robin", Members: member("http://10.0.0.2:8008", "down")},
		}}
	page := renderPage(t, st)
	wantOnPage(t, page,
		"Homeservers", `<span class="pill warn">1 of 2 reachable</span>`,
		`<tr class="server"><th colspan="8" class="mono">a.example</th></tr>`,
		`<tr class="server"><th colspan="8" class="mono">b.example</th></tr>`,
		"http://10.0.0.1:8083", "http://10.0.0.2:8008", "b.example: probe: not sent",
		"1 of 2 reachable", "ready; warn: upstream b.example", `>warn</span>`,
	)
	if n := strings.Count(page, `<tr class="server">`); n != 2 {
		t.Errorf("%d server rows, want 2 (one per server)", n)
	}
	if strings.Contains(page, "NOT READY") {
		t.Error("an advisory check made the page not ready")
	}
}

// TestPageLeavesOutMissingSections: a nil section is not shown at all.
func TestPageLeavesOutMissingSections(t *testing.T) {
	t.Parallel()
	st := fullStatus(fixtureNow)
	st.Egress, st.Policy, st.Cluster = nil, nil, nil
	page := renderPage(t, st)
	for _, absent := range []string{`id="egress"`, `id="policy"`, "Egress backoff", `id="cluster"`, "Redis", "POLICY SOURCES"} {
		if strings.Contains(page, absent) {
			t.Errorf("page shows %q", absent)
		}
	}
}

// TestPageShowsEveryHostedServersKeysAndPolicy: with several hosted
// servers, the keys and the policy sources are grouped under each
// server's name; a server whose sources are in sync is folded, one with a
// problem is open and says what it is; a list signer's certificate takes
// the certificates' colours.
func TestPageShowsEveryHostedServersKeysAndPolicy(t *testing.T) {
	t.Parallel()
	now := fixtureNow
	st := multiStatus(now, 4, 2)
	st.Policy.Rooms = st.Policy.Rooms[:1] // the top-level server in sync
	st.Servers[0].Policy.FederationList.SignerNotAfter = now.Add(60 * 24 * time.Hour)
	st.Servers[1].Policy.FederationList.SignerNotAfter = now.Add(-time.Hour)
	st.Servers[2].Policy.Rooms[1].Stale, st.Servers[2].Policy.Rooms[1].State = true, "error"
	page := renderPage(t, st)
	wantOnPage(t, page,
		"each hosted server's key document",
		`<tr class="server"><th colspan="3"><span class="mono">example.org</span>`,
		`<tr class="server"><th colspan="3"><span class="mono">customer3.example</span>`,
		"ed25519:c2_old", "valid_until_ts "+strconv.FormatInt(now.Add(7*24*time.Hour).UnixMilli(), 10),
		`<details class="server">`+"\n"+`    <summary><span class="mono">example.org</span> <span class="pill ok">in sync</span>`,
		`<details class="server">`+"\n"+`    <summary><span class="mono">customer1.example</span> <span class="pill ok">in sync</span>`,
		`<details class="server" open>`+"\n"+`    <summary><span class="mono">customer2.example</span> <span class="pill warn">degraded</span> <span class="warn-text">list signer expired</span>`,
		`<details class="server" open>`+"\n"+`    <summary><span class="mono">customer3.example</span> <span class="pill bad">stale: fails closed</span> <span class="err">#bans-1:example.org</span>`,
		"default deny · 2 allow, 0 deny entries in the configuration · 2 policy rooms, 201 bans in force · signed list version 20302",
		`<span class="signer-expiry pill ok"`, "certificate 60 days left", `<span class="signer-expiry pill bad"`, "certificate expired",
		`<span class="signer-expiry pill warn"`, "certificate 12 days left",
		"FAILS CLOSED", "stale: #bans-1:example.org (customer3.example)",
	)
	if n := strings.Count(page, `<details class="server"`); n != 4 {
		t.Errorf("%d policy groups, want 4", n)
	}
}

// TestPageOneServerAsBefore: with one hosted server, nothing names the
// server: no group rows, no folded blocks.
func TestPageOneServerAsBefore(t *testing.T) {
	t.Parallel()
	page := renderPage(t, fullStatus(fixtureNow))
	for _, absent := range []string{`<tr class="server"><th colspan="3">`, "<details", "each hosted server"} {
		if strings.Contains(page, absent) {
			t.Errorf("a one-server page shows %q", absent)
		}
	}
	wantOnPage(t, page, "key document valid until 2030-03-08 14:30:20 UTC", "<dt>default</dt><dd>allow</dd>")
}

// TestPageClusterDown: with Redis down the section, its pill and its card
// turn amber and say what that means for the limits and the keys.
func TestPageClusterDown(t *testing.T) {
	t.Parallel()
	st := fullStatus(fixtureNow)
	st.Cluster.Up, st.Cluster.Since, st.Cluster.Downs = false, fixtureNow.Add(-95*time.Second), 3
	page := renderPage(t, st)
	wantOnPage(t, page,
		`<section id="cluster" class="panel alert">`, `<span class="pill warn">Redis DOWN</span>`,
		"Redis has not answered for 1 min", "enforces the rate limits on its own", "fetches remote servers' keys itself",
		"Federation traffic is not refused", "down for 1 min", "marked down 3 times",
		`<a class="card warn" href="#cluster">`, "limits per instance since 1 min",
	)
}

// TestPolicyCard: the summary tile for the policy sources, red when one
// fails closed, amber when one is degraded, absent without any.
func TestPolicyCard(t *testing.T) {
	t.Parallel()
	now := fixtureNow
	for _, tt := range []struct {
		name         string
		policy       Policy
		state, value string
		detail       string
	}{
		{"none", Policy{Default: "allow"}, "", "", ""},
		{"room in sync", Policy{Rooms: []PolicyRoom{{Room: "#a:x", State: "syncing"}}}, "ok", "in sync", "1 policy room"},
		{"room restored", Policy{Rooms: []PolicyRoom{{Room: "#a:x", State: "restored"}}}, "warn", "1 of 1 degraded", "#a:x restored"},
		{"room stale", Policy{Rooms: []PolicyRoom{{Room: "#a:x", State: "error", Stale: true}, {Room: "#b:x", State: "syncing"}}}, "bad", "FAILS CLOSED", "stale: #a:x"},
		{"list fine", Policy{FederationList: &FederationList{Version: 3, SignerNotAfter: now.Add(100 * 24 * time.Hour)}}, "ok", "in sync", "1 signed list"},
		{"list none yet", Policy{FederationList: &FederationList{Version: -1}}, "warn", "1 of 1 degraded", "no federation list yet"},
		{"signer soon", Policy{FederationList: &FederationList{Version: 3, SignerNotAfter: now.Add(5 * 24 * time.Hour)}}, "warn", "1 of 1 degraded", "list signer expires in 5 days"},
		{"list failing", Policy{FederationList: &FederationList{Version: 3, SignerNotAfter: now.Add(100 * 24 * time.Hour), LastError: "x"}}, "warn", "1 of 1 degraded", "federation list failing"},
		{"list stale", Policy{FederationList: &FederationList{Version: 3, Stale: true}}, "bad", "FAILS CLOSED", "stale: federation list"},
		{"file refused", Policy{ListFile: &ListFile{LastError: "bad json"}}, "warn", "1 of 1 degraded", "list file refused"},
	} {
		st := &Status{Generated: now, Server: &Server{Name: "a.example"}, Policy: &tt.policy}
		_, views := hostedViews(st, st.Server.Name)
		c, ok := policyCard(views, len(st.Servers) > 0)
		if ok != (tt.state != "") || c.State != tt.state || c.Value != tt.value || c.Detail != tt.detail {
			t.Errorf("%s: %v %+v", tt.name, ok, c)
		}
	}
}

// TestPageEscapesRemoteText: server names and error texts come from the
// network; they are text on the page, never markup.
func TestPageEscapesRemoteText(t *testing.T) {
	t.Parallel()
	st := fullStatus(fixtureNow)
	evil := `<script>alert(1)</script><img src=x onerror=alert(2)>`
	rec := NewRecorder(RecorderOptions{})
	rec.Record(&Request{Time: fixtureNow, Server: evil, Outcome: Denied, Reason: "bad_signature", Rule: evil})
	st.Traffic = rec.Traffic(fixtureNow, 10, Names{})
	st.Keyring.Failing[0].Server, st.Keyring.Failing[0].Error = evil, evil
	// A policy room's moderators write its tombstones; a list's publisher
	// its signer's subject and the errors about its list.
	room := &st.Policy.Rooms[1]
	room.RoomID, room.Upgrade, room.LastError = evil, evil, evil
	st.Policy.FederationList = &FederationList{Location: "https://lists.example/x.jws", Signer: evil, LastError: evil,
		SignerNotAfter: fixtureNow.Add(time.Hour)}
	page := renderPage(t, st)
	if strings.Contains(page, "<script") || strings.Contains(page, "<img") {
		t.Fatal("remote text became markup")
	}
	if !strings.Contains(page, "&lt;script&gt;") {
		t.Fatal("remote text is missing")
	}
}

// TestPageLoadsNothing: no script, no external stylesheet, font or image:
// the page is one response.
func TestPageLoadsNothing(t *testing.T) {
	t.Parallel()
	page := renderPage(t, fullStatus(fixtureNow))
	for _, re := range []string{`<script`, `<link rel="stylesheet"`, `@import`, `url\(`, `src=`, `href="(https?:)?//`} {
		if regexp.MustCompile(re).MatchString(page) {
			t.Errorf("page matches %s", re)
		}
	}
}

func TestCertificateStates(t *testing.T) {
	t.Parallel()
	now := fixtureNow
	for _, tt := range []struct {
		name  string
		cert  Certificate
		state string
	}{
		{"30 days", Certificate{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour)}, "ok"},
		{"13 days", Certificate{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(13 * 24 * time.Hour)}, "warn"},
		{"expired", Certificate{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(-time.Second)}, "bad"},
		{"not yet valid", Certificate{NotBefore: now.Add(time.Hour), NotAfter: now.Add(90 * 24 * time.Hour)}, "bad"},
		{"pending", Certificate{Pending: true}, "bad"},
	} {
		if got := certState(now, tt.cert); got != tt.state {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.state)
		}
	}
	page := renderPage(t, fullStatus(now))
	if !regexp.MustCompile(`<tr class="warn">\s*<td class="mono">example.org</td>`).MatchString(page) {
		t.Error("the certificate expiring in 10 days is not shown as a warning")
	}
	if !regexp.MustCompile(`<tr class="ok">\s*<td class="mono">matrix.example.org</td>`).MatchString(page) {
		t.Error("the certificate expiring in 70 days is not shown as fine")
	}
}

func TestHumanTimes(t *testing.T) {
	t.Parallel()
	now := fixtureNow
	for _, tt := range []struct{ got, want string }{
		{ago(now, now.Add(-500*time.Millisecond)), "just now"},
		{ago(now, now.Add(-12*time.Second)), "12 s ago"},
		{ago(now, now.Add(-3*time.Hour)), "3 h ago"},
		{ago(now, time.Time{}), "never"},
		{until(now, now.Add(90*time.Second)), "in 1 min"},
		{until(now, now.Add(-time.Second)), "now"},
		{daysLeft(now, now.Add(10*24*time.Hour+time.Hour)), "10 days left"},
		{daysLeft(now, now.Add(5*time.Hour)), "5 h left"},
		{daysLeft(now, now.Add(-time.Hour)), "expired"},
		{formatCount(1234567), "1,234,567"},
		{formatCount(999), "999"},
		{share(1, 300), "<1%"},
		{share(30, 300), "10%"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	for n, want := range map[uint64]uint64{0: 1, 1: 1, 3: 5, 7: 10, 11: 20, 180: 200, 501: 1000} {
		if got := niceCeil(n); got != want {
			t.Errorf("niceCeil(%d) = %d, want %d", n, got, want)
		}
	}
}

// newTestConsole serves st behind token (nil: none).
// wantOnPage reports each of wants that page lacks.
func wantOnPage(t *testing.T, page string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func newTestConsole(t *testing.T, st *Status, token *Token) *httptest.Server {
	t.Helper()
	c, err := New(Options{Status: func(time.Time) *Status { return st }, Token: func() *Token { return token }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", c.Page())
	mux.Handle("GET /status.json", c.JSON())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestTokenRequired: with a token, the page and status.json answer 401
// without it or with a wrong one, and 200 with Bearer or Basic.
func TestTokenRequired(t *testing.T) {
	t.Parallel()
	tok, err := NewToken("s3cret-admin-token-1234")
	if err != nil {
		t.Fatal(err)
	}
	srv := newTestConsole(t, fullStatus(fixtureNow), tok)
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	for _, path := range []string{"/", "/status.json"} {
		for _, tt := range []struct {
			name, auth string
			status     int
		}{
			{"none", "", 401},
			{"wrong bearer", "Bearer s3cret-admin-token-123", 401},
			{"empty bearer", "Bearer ", 401},
			{"wrong basic", basic("admin", "nope-nope-nope-nope"), 401},
			{"bearer", "Bearer s3cret-admin-token-1234", 200},
			{"bearer, any case", "bearer s3cret-admin-token-1234", 200},
			{"basic", basic("anyone", "s3cret-admin-token-1234"), 200},
		} {
			var h []string
			if tt.auth != "" {
				h = []string{"Authorization", tt.auth}
			}
			resp, body := get(t, srv.URL+path, h...)
			if resp.StatusCode != tt.status {
				t.Errorf("%s %s: %d", path, tt.name, resp.StatusCode)
			}
			if tt.status == 401 {
				if strings.Contains(body, "example.org") || len(resp.Header.Values("WWW-Authenticate")) != 2 {
					t.Errorf("%s %s: 401 leaks or lacks a challenge: %v %q", path, tt.name, resp.Header, body)
				}
			}
		}
	}
	// Without a token everything is open.
	open := newTestConsole(t, fullStatus(fixtureNow), nil)
	if resp, _ := get(t, open.URL+"/"); resp.StatusCode != 200 {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
}

func TestTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tt := range []struct {
		name, content, err string
	}{
		{"good", "0123456789abcdef0123\n", ""},
		{"short", "short\n", "at least 16"},
		{"spaces", "0123456789 abcdef0123\n", "whitespace"},
		{"empty", "", "at least 16"},
		{"huge", strings.Repeat("a", 5000), "larger than"},
	} {
		path := dir + "/" + tt.name
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadToken(path)
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if _, err := LoadToken(dir + "/missing"); err == nil {
		t.Error("a missing file is accepted")
	}
}

// TestPageHeaders: the page forbids scripts and outside content, and its
// CSP admits exactly the stylesheet it inlines.
func TestPageHeaders(t *testing.T) {
	t.Parallel()
	srv := newTestConsole(t, fullStatus(fixtureNow), nil)
	resp, body := get(t, srv.URL+"/")
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no inline style")
	}
	sum := sha256.Sum256([]byte(m[1]))
	if !strings.Contains(csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q does not admit the inline style", csp)
	}
	for _, h := range []string{"Cache-Control", "X-Content-Type-Options", "X-Frame-Options"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("no %s", h)
		}
	}
	for query, want := range map[string]string{"?refresh=0": "", "?refresh=1": `content="5"`, "?refresh=60": `content="60"`, "?refresh=junk": `content="15"`} {
		_, body := get(t, srv.URL+"/"+query)
		has := strings.Contains(body, `http-equiv="refresh"`)
		if (want == "") == has || (want != "" && !strings.Contains(body, want)) {
			t.Errorf("%s: refresh %v", query, has)
		}
	}
	resp, body = get(t, srv.URL+"/status.json")
	var st Status
	if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &st) != nil || st.Schema != SchemaVersion {
		t.Errorf("status.json: %s %.200s", resp.Header.Get("Content-Type"), body)
	}
}

// TestRenderingIsBounded: however much traffic was recorded, the page
// holds at most the fixed number of rows, so its size, and the work of
// rendering it, stay within a bound.
func TestRenderingIsBounded(t *testing.T) {
	t.Parallel()
	st := fullStatus(fixtureNow)
	rec := NewRecorder(RecorderOptions{})
	for i := range 50_000 {
		out := Forwarded
		if i%3 == 0 {
			out = Denied
		}
		rec.Record(&Request{Time: fixtureNow.Add(-time.Duration(i%3600) * time.Second), Server: "s" + strconv.Itoa(i%20_000) + ".example",
			Outcome: out, Reason: "r" + strconv.Itoa(i%7), Status: 403})
	}
	st.Traffic = rec.Traffic(fixtureNow, 10, Names{})
	if len(st.Traffic.RecentDenials) > DefaultDenials || len(st.Traffic.TopOrigins) > 10 {
		t.Fatalf("%d denials, %d top origins", len(st.Traffic.RecentDenials), len(st.Traffic.TopOrigins))
	}
	if page := renderPage(t, st); len(page) > 256<<10 {
		t.Fatalf("page is %d bytes", len(page))
	}
}

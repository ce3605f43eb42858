package gateway

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// signedGet sends a GET signed by origin and returns the response.
func signedGet(tg *testGateway, o *testOrigin, target string) *http.Response {
	tg.t.Helper()
	return tg.do("GET", target, "", o.sign("GET", target, "gw.test", ""))
}

func signedSend(tg *testGateway, o *testOrigin, method, target, body string) *http.Response {
	tg.t.Helper()
	return tg.do(method, target, body, o.sign(method, target, "gw.test", body), "Content-Type: application/json")
}

// expectDenied asserts a policy denial naming reason, not forwarded.
func expectDenied(t *testing.T, tg *testGateway, resp *http.Response, status int, reason string) {
	t.Helper()
	code := CodeForbidden
	if status == http.StatusTooManyRequests {
		code = CodeLimitExceeded
	}
	m := matrixError(t, resp, status, code)
	if !strings.Contains(m["error"].(string), reason) {
		t.Fatalf("error %q does not name %s", m["error"], reason)
	}
}

func expectForwarded(t *testing.T, resp *http.Response) {
	t.Helper()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
}

// TestPolicyRulesEndToEnd runs each rule class through the whole inbound
// pipeline with signed requests, checking both the denial and that allowed
// neighbours still pass.
func TestPolicyRulesEndToEnd(t *testing.T) {
	const profile = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	tests := []struct {
		name    string
		policy  string
		origins []string
		check   func(t *testing.T, tg *testGateway, o []*testOrigin)
	}{
		{
			name:    "closed federation",
			policy:  "[policy]\ndefault = \"deny\"\nallow = [\"friend.test\", \"*.partners.test\", \"re:^node[0-9]+\\\\.corp\\\\.test$\"]\n",
			origins: []string{"friend.test", "a.partners.test", "node7.corp.test", "stranger.test", "node7.corp.test.evil"},
			check: func(t *testing.T, tg *testGateway, o []*testOrigin) {
				for _, ok := range o[:3] {
					expectForwarded(t, signedGet(tg, ok, profile))
				}
				expectDenied(t, tg, signedGet(tg, o[3], profile), 403, "not_in_allow_list")
				expectDenied(t, tg, signedGet(tg, o[4], profile), 403, "not_in_allow_list")
				if o[3].fetches.Load() != 0 || o[4].fetches.Load() != 0 {
					t.Fatal("keys fetched for origins outside the allow list")
				}
			},
		},
		{
			name:    "deny wins over allow",
			policy:  "[policy]\ndefault = \"deny\"\nallow = [\"*.test\"]\ndeny = [\"bad.test\"]\n",
			origins: []string{"good.test", "bad.test"},
			check: func(t *testing.T, tg *testGateway, o []*testOrigin) {
				expectForwarded(t, signedGet(tg, o[0], profile))
				expectDenied(t, tg, signedGet(tg, o[1], profile), 403, "origin_denied")
			},
		},
		{
			name:    "endpoint classes with a per-origin exception",
			policy:  "[policy]\ndeny_endpoints = [\"media\", \"public_rooms\"]\n[policy.origins.\"trusted.test\"]\nallow_endpoints = [\"media\"]\n",
			origins: []string{"remote.test", "trusted.test"},
			check: func(t *testing.T, tg *testGateway, o []*testOrigin) {
				media := "/_matrix/federation/v1/media/download/abc"
				expectDenied(t, tg, signedGet(tg, o[0], media), 403, "endpoint_denied")
				expectDenied(t, tg, signedGet(tg, o[0], "/_matrix/federation/v1/publicRooms"), 403, "endpoint_denied")
				expectDenied(t, tg, signedSend(tg, o[0], "POST", "/_matrix/federation/v1/publicRooms", `{"limit":5}`), 403, "endpoint_denied")
				expectForwarded(t, signedGet(tg, o[1], media))
				expectDenied(t, tg, signedGet(tg, o[1], "/_matrix/federation/v1/publicRooms"), 403, "endpoint_denied")
				expectForwarded(t, signedGet(tg, o[0], profile))
			},
		},
		{
			name:    "denied rooms",
			policy:  "[policy]\ndeny_rooms = [\"!secret:gw.test\", \"*:evil.test\"]\n",
			origins: []string{"remote.test"},
			check: func(t *testing.T, tg *testGateway, o []*testOrigin) {
				for _, target := range []string{
					"/_matrix/federation/v1/state/%21secret%3Agw.test?event_id=%24e",
					"/_matrix/federation/v1/state/!secret:gw.test?event_id=%24e",
					"/_matrix/federation/v1/make_join/%21room%3Aevil.test/%40a%3Aremote.test",
					"/_matrix/federation/v1/backfill/%21ROOM%3AEVIL.test?v=%24e",
				} {
					expectDenied(t, tg, signedGet(tg, o[0], target), 403, "room_denied")
				}
				expectDenied(t, tg, signedSend(tg, o[0], "PUT", "/_matrix/federation/v2/invite/%21x%3Aevil.test/%24e", `{"room_version":"10","event":{}}`), 403, "room_denied")
				expectForwarded(t, signedGet(tg, o[0], "/_matrix/federation/v1/state/%21open%3Agw.test?event_id=%24e"))
			},
		},
		{
			name:    "locality checks",
			policy:  "",
			origins: []string{"remote.test"},
			check: func(t *testing.T, tg *testGateway, o []*testOrigin) {
				expectDenied(t, tg, signedGet(tg, o[0], "/_matrix/federation/v1/query/profile?user_id=%40bob%3Aelsewhere.test"), 403, "user_not_local")
				expectDenied(t, tg, signedGet(tg, o[0], "/_matrix/federation/v1/user/devices/%40bob%3Aelsewhere.test"), 403, "user_not_local")
				expectDenied(t, tg, signedSend(tg, o[0], "POST", "/_matrix/federation/v1/user/keys/query", `{"device_keys":{"@bob:gw.test":[],"@eve:elsewhere.test":[]}}`), 403, "user_not_local")
				expectDenied(t, tg, signedGet(tg, o[0], "/_matrix/federation/v1/make_join/%21r%3Agw.test/%40mallory%3Agw.test?ver=10"), 403, "user_not_origin")
				expectDenied(t, tg, signedGet(tg, o[0], "/_matrix/federation/v1/make_leave/%21r%3Agw.test/%40x%3Aother.test"), 403, "user_not_origin")
				expectForwarded(t, signedGet(tg, o[0], "/_matrix/federation/v1/user/devices/%40bob%3Agw.test"))
				expectForwarded(t, signedSend(tg, o[0], "POST", "/_matrix/federation/v1/user/keys/claim", `{"one_time_keys":{"@bob:gw.test":{"DEV":"signed_curve25519"}}}`))
				expectForwarded(t, signedGet(tg, o[0], "/_matrix/federation/v1/make_join/%21r%3Agw.test/%40alice%3Aremote.test?ver=10"))
			},
		},
		{
			name:    "locality checks off",
			policy:  "[policy]\nlocality_checks = false\n",
			origins: []string{"remote.test"},
			check: func(t *testing.T, tg *testGateway, o []*testOrigin) {
				expectForwarded(t, signedGet(tg, o[0], "/_matrix/federation/v1/query/profile?user_id=%40bob%3Aelsewhere.test"))
			},
		},
		{
			name:    "per-origin and class rate limits",
			policy:  "[rate_limit]\nper_origin = { rate = \"1/h\", burst = 3 }\nexempt = [\"friend.test\"]\n[rate_limit.classes]\nmedia = { rate = \"1/h\", burst = 1 }\n",
			origins: []string{"remote.test", "friend.test"},
			check: func(t *testing.T, tg *testGateway, o []*testOrigin) {
				media := "/_matrix/federation/v1/media/download/abc"
				expectForwarded(t, signedGet(tg, o[0], media))
				expectDenied(t, tg, signedGet(tg, o[0], media), 429, "rate_class")
				expectForwarded(t, signedGet(tg, o[0], profile))
				resp := signedGet(tg, o[0], profile)
				expectDenied(t, tg, resp, 429, "rate_per_origin")
				for i := 0; i < 5; i++ {
					expectForwarded(t, signedGet(tg, o[1], profile))
				}
			},
		},
		{
			name:    "dry run logs but denies nothing",
			policy:  "[policy]\ndry_run = true\ndefault = \"deny\"\ndeny_rooms = [\"*:gw.test\"]\n[rate_limit]\nper_origin = { rate = \"1/h\", burst = 1 }\n",
			origins: []string{"remote.test"},
			check: func(t *testing.T, tg *testGateway, o []*testOrigin) {
				for i := 0; i < 3; i++ {
					expectForwarded(t, signedGet(tg, o[0], "/_matrix/federation/v1/state/%21r%3Agw.test?event_id=%24e"))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, origins := startGatewayWithOrigins(t, tt.policy, tt.origins...)
			tt.check(t, tg, origins)
		})
	}
}

// TestConcurrencyCap: with one slot and a short wait, a second request from
// the same origin gets 429 while the first is in the homeserver.
func TestConcurrencyCap(t *testing.T) {
	tg, o := startGatewayWithOrigins(t, "[rate_limit]\nconcurrent_per_origin = 1\nconcurrent_wait = \"100ms\"\n", "remote.test", "other.test")
	inside, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	tg.hs.Handle(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.RequestURI, "slow") {
			once.Do(func() { close(inside) })
			<-release
		}
		w.Write([]byte("{}"))
	})
	done := make(chan int)
	go func() {
		resp := signedGet(tg, o[0], "/_matrix/federation/v1/event/%24slow")
		done <- resp.StatusCode
	}()
	<-inside
	expectDenied(t, tg, signedGet(tg, o[0], "/_matrix/federation/v1/event/%24fast"), 429, "concurrent_per_origin")
	expectForwarded(t, signedGet(tg, o[1], "/_matrix/federation/v1/event/%24fast"))
	close(release)
	if s := <-done; s != 200 {
		t.Fatalf("slow request: %d", s)
	}
	// The slot was returned.
	expectForwarded(t, signedGet(tg, o[0], "/_matrix/federation/v1/event/%24after"))
}

// TestListFile: the external list is read at start, re-read when it
// changes (a bad version keeps the last good list) and fails closed when
// it goes stale.
func TestListFile(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "list.json")
	write := func(s string) {
		t.Helper()
		tmp := list + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, list); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"version":1,"allow":["a.test"],"deny":[]}`)
	tg, o := startGatewayWithOrigins(t, fmt.Sprintf("[policy]\ndefault = \"deny\"\nlist_file = %q\nlist_max_age = \"1h\"\n", list), "a.test", "b.test")
	const profile = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	expectForwarded(t, signedGet(tg, o[0], profile))
	expectDenied(t, tg, signedGet(tg, o[1], profile), 403, "not_in_allow_list")

	write(`{"version":2,"allow":["b.test"],"deny":[]}`)
	tg.gw.rt.Load().primary().policy().PollList()
	expectForwarded(t, signedGet(tg, o[1], profile))
	expectDenied(t, tg, signedGet(tg, o[0], profile), 403, "not_in_allow_list")

	write(`{"version":3,"allow":[`) // broken: the last good list stays
	tg.gw.rt.Load().primary().policy().PollList()
	expectForwarded(t, signedGet(tg, o[1], profile))
	write(`{"version":1,"allow":["a.test"],"deny":[]}`) // older: refused
	tg.gw.rt.Load().primary().policy().PollList()
	expectForwarded(t, signedGet(tg, o[1], profile))

	write(`{"version":4,"allow":["b.test"],"deny":[]}`)
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(list, old, old); err != nil {
		t.Fatal(err)
	}
	tg.gw.rt.Load().primary().policy().PollList()
	expectDenied(t, tg, signedGet(tg, o[1], profile), 403, "list_stale")
}

// TestReloadUnderLoad swaps the configuration many times while requests
// flow: none fails, and the new policy takes effect.
func TestReloadUnderLoad(t *testing.T) {
	ca := fedtest.NewCA(t)
	origin := newOrigin(t, ca, "remote.test")
	base := outboundTOML(t, ca, origin) + "[rate_limit]\nper_ip = { rate = \"0\" }\nper_origin = { rate = \"0\" }\n"
	tg := startGateway(t, base)
	reloadWith := func(policy string) {
		t.Helper()
		path := filepath.Join(tg.dir, "gateway.toml")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if i := strings.Index(text, "\n# reload\n"); i >= 0 {
			text = text[:i]
		}
		if err := os.WriteFile(path, []byte(text+"\n# reload\n"+policy), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := tg.gw.Reload(c); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var failures, total atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				target := fmt.Sprintf("/_matrix/federation/v1/event/%%24w%di%d", w, i)
				resp := tg.do("GET", target, "", origin.sign("GET", target, "gw.test", ""))
				io.Copy(io.Discard, resp.Body)
				total.Add(1)
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		reloadWith(fmt.Sprintf("[policy]\ndeny = [\"x%d.test\"]\n", i))
		time.Sleep(20 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if failures.Load() != 0 || total.Load() < 20 {
		t.Fatalf("%d of %d requests failed during reloads", failures.Load(), total.Load())
	}
	// The last reload is in force; a bad one is refused and changes nothing.
	reloadWith("[policy]\ndeny = [\"remote.test\"]\n")
	expectDenied(t, tg, signedGet(tg, origin, "/_matrix/federation/v1/event/%24z"), 403, "origin_denied")
	// A configuration that parses but does not compile (the request key is
	// not in the key file) is refused by Reload, and the running one stays:
	// its policy still denies, the new one would have allowed.
	path := filepath.Join(tg.dir, "gateway.toml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "deny = [\"remote.test\"]", "deny = []", 1)
	text = strings.Replace(text, "[keys]\n", "[keys]\nrequest_key = \"ed25519:not_there\"\n", 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("the broken configuration should parse: %v", err)
	}
	if err := tg.gw.Reload(c); err == nil || !strings.Contains(err.Error(), "keys.request_key") {
		t.Fatalf("Reload accepted a configuration that does not compile: %v", err)
	}
	expectDenied(t, tg, signedGet(tg, origin, "/_matrix/federation/v1/event/%24y"), 403, "origin_denied")
}

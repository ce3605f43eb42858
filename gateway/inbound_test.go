package gateway

import (
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/auth"
)

func TestStageOrder(t *testing.T) {
	var names []string
	for _, s := range inboundStages() {
		names = append(names, s.name)
	}
	want := []string{"peer", "route", "local", "x_matrix", "destination", "origin_policy", "body",
		"origin_key", "signature", "request_policy", "origin_limits"}
	if !slices.Equal(names, want) {
		t.Fatalf("stage order changed:\n got %v\nwant %v", names, want)
	}
}

// TestSignedRequestsForwardedByteForByte: valid signed requests reach the
// homeserver with method, request-target, Authorization and body exactly
// as sent, including escapes and a query in non-canonical order.
func TestSignedRequestsForwardedByteForByte(t *testing.T) {
	tg, o := startGatewayWithOrigins(t, "", "origin.test")
	origin := o[0]
	tests := []struct {
		method, target, body string
	}{
		{"GET", "/_matrix/federation/v1/make_join/%21room%3Agw.test/%40alice%3Aorigin.test?ver=10&ver=1", ""},
		{"GET", "/_matrix/federation/v1/state/%21a%2Fb%3Agw.test?event_id=%24ev%3Aorigin.test", ""},
		{"GET", "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test&field=displayname", ""},
		{"GET", "/_matrix/federation/v1/backfill/!room:gw.test?v=%24a&limit=10&v=%24b", ""},
		{"PUT", "/_matrix/federation/v1/send/1700000000000", `{ "origin":"origin.test", "origin_server_ts": 1700000000000,
  "pdus": [], "edus": [{"edu_type":"m.typing","content":{"room_id":"!r:gw.test","user_id":"@alice:origin.test","typing":true}}] }`},
		{"POST", "/_matrix/federation/v1/user/keys/query", `{"device_keys":{"@bob:gw.test":[]}}`},
		{"PUT", "/_matrix/federation/v2/invite/%21room%3Agw.test/%24event%3Aorigin.test", `{"room_version":"10","event":{"content":{"membership":"invite"}},"invite_room_state":[]}`},
	}
	for _, tt := range tests {
		tg.hs.Reset()
		auth := origin.sign(tt.method, tt.target, "gw.test", tt.body)
		resp := tg.do(tt.method, tt.target, tt.body, auth, "Content-Type: application/json")
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s %s: %d %s", tt.method, tt.target, resp.StatusCode, b)
		}
		got := tg.hs.Requests()
		if len(got) != 1 {
			t.Fatalf("%s: homeserver saw %d requests", tt.target, len(got))
		}
		r := got[0]
		if r.Method != tt.method || r.RequestURI != tt.target || string(r.Body) != tt.body {
			t.Errorf("changed on the way:\n sent %s %s %q\n  got %s %s %q", tt.method, tt.target, tt.body, r.Method, r.RequestURI, r.Body)
		}
		if r.Header.Get("Authorization") != strings.TrimPrefix(auth, "Authorization: ") {
			t.Errorf("Authorization changed: %q", r.Header.Get("Authorization"))
		}
	}
	if n := origin.fetches.Load(); n != 1 {
		t.Errorf("origin's keys fetched %d times, want 1 (cached)", n)
	}
}

// TestAuthenticationFailures: every failure gets the right status and
// errcode and never reaches the homeserver.
func TestAuthenticationFailures(t *testing.T) {
	tg, o := startGatewayWithOrigins(t, "", "origin.test", "dead.test")
	origin, dead := o[0], o[1]
	dead.handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	stranger, _ := auth.GenerateSigningKey("o_1") // same key id, different key
	rotated, _ := auth.GenerateSigningKey("unknown_2")
	const target = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	const send = "/_matrix/federation/v1/send/txn1"
	tests := []struct {
		name    string
		method  string
		target  string
		body    string
		headers []string
		status  int
		errcode string
		reason  string // expected in the error text, if set
	}{
		{"missing header", "GET", target, "", nil, 401, CodeUnauthorized, ""},
		{"not X-Matrix", "GET", target, "", []string{"Authorization: Bearer abc"}, 401, CodeUnauthorized, ""},
		{"malformed header", "GET", target, "", []string{`Authorization: X-Matrix origin="origin.test",key="ed25519:o_1"`}, 400, CodeUnauthorized, ""},
		{"bad signature", "GET", target, "", []string{signWith(t, stranger, "origin.test", "GET", target, "gw.test", "")}, 401, CodeUnauthorized, ""},
		{"signed for another target", "GET", target, "", []string{origin.sign("GET", target+"x", "gw.test", "")}, 401, CodeUnauthorized, ""},
		{"signed for another method", "PUT", send, `{}`, []string{origin.sign("POST", send, "gw.test", `{}`)}, 401, CodeUnauthorized, ""},
		{"body changed", "PUT", send, `{"a":2}`, []string{origin.sign("PUT", send, "gw.test", `{"a":1}`)}, 401, CodeUnauthorized, ""},
		{"unknown key id", "GET", target, "", []string{signWith(t, rotated, "origin.test", "GET", target, "gw.test", "")}, 401, CodeUnauthorized, ""},
		{"origin key server down", "GET", target, "", []string{dead.sign("GET", target, "gw.test", "")}, 401, CodeUnauthorized, ""},
		{"destination mismatch", "GET", target, "", []string{origin.sign("GET", target, "other.test", "")}, 401, CodeUnauthorized, ""},
		{"origin is us", "GET", target, "", []string{signWith(t, tg.key, "gw.test", "GET", target, "gw.test", "")}, 401, CodeUnauthorized, ""},
		{"origin is us in upper case", "GET", target, "", []string{signWith(t, tg.key, "GW.TEST", "GET", target, "gw.test", "")}, 401, CodeUnauthorized, ""},
		{"non-JSON body", "PUT", send, `{"a":`, []string{origin.sign("PUT", send, "gw.test", `{}`)}, 400, CodeNotJSON, ""},
		{"array body", "PUT", send, `[1]`, []string{origin.sign("PUT", send, "gw.test", `{}`)}, 400, CodeBadJSON, ""},
		{"float in body", "PUT", send, `{"a":1.5}`, []string{origin.sign("PUT", send, "gw.test", `{}`)}, 400, CodeBadJSON, ""},
		{"duplicate key", "PUT", send, `{"a":1,"a":2}`, []string{origin.sign("PUT", send, "gw.test", `{}`)}, 400, CodeBadJSON, ""},
		{"empty PUT body", "PUT", send, ``, []string{origin.sign("PUT", send, "gw.test", ``)}, 400, CodeNotJSON, ""},
		{"two origins", "GET", target, "", []string{origin.sign("GET", target, "gw.test", ""), dead.sign("GET", target, "gw.test", "")}, 400, CodeUnauthorized, ""},
		{"one of two signatures bad", "GET", target, "", []string{origin.sign("GET", target, "gw.test", ""), signWith(t, stranger, "origin.test", "GET", target, "gw.test", "")}, 401, CodeUnauthorized, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg.hs.Reset()
			resp := tg.do(tt.method, tt.target, tt.body, tt.headers...)
			matrixError(t, resp, tt.status, tt.errcode)
			if n := len(tg.hs.Requests()); n != 0 {
				t.Fatalf("forwarded %d requests", n)
			}
		})
	}
}

// TestOriginWithoutDestinationAccepted: servers older than spec v1.3 send
// no destination; the signature still covers our name.
func TestOriginWithoutDestinationAccepted(t *testing.T) {
	tg, o := startGatewayWithOrigins(t, "", "origin.test")
	x, err := auth.SignRequest(o[0].key, "GET", "/_matrix/federation/v1/event/%24e%3Aorigin.test", "origin.test", "gw.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	x.Destination = ""
	resp := tg.do("GET", "/_matrix/federation/v1/event/%24e%3Aorigin.test", "", "Authorization: "+x.String())
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

// TestDeniedOriginNeverFetchesKeys pins the security property of the stage
// order: policy refuses an origin before anything is fetched for it.
func TestDeniedOriginNeverFetchesKeys(t *testing.T) {
	tg, o := startGatewayWithOrigins(t, "[policy]\ndeny = [\"*.evil.test\"]\n", "origin.evil.test")
	const target = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	m := matrixError(t, tg.do("GET", target, "", o[0].sign("GET", target, "gw.test", "")), 403, CodeForbidden)
	if !strings.Contains(m["error"].(string), "origin_denied") {
		t.Fatalf("error %v", m["error"])
	}
	if n := o[0].fetches.Load(); n != 0 {
		t.Fatalf("keys fetched %d times for a denied origin", n)
	}
}

// TestKeyringFetchesOnceUnderLoad: 200 concurrent requests from an origin
// fedgate has never seen make exactly one key fetch.
func TestKeyringFetchesOnceUnderLoad(t *testing.T) {
	tg, o := startGatewayWithOrigins(t, "[rate_limit]\nper_ip = { rate = \"0\" }\nper_origin = { rate = \"0\" }\nconcurrent_per_origin = 0\n", "new.test")
	origin := o[0]
	gate := make(chan struct{})
	origin.mu.Lock()
	origin.gate = gate
	origin.mu.Unlock()
	const n = 200
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			target := "/_matrix/federation/v1/event/%24e" + string(rune('a'+i%26)) + "%3Anew.test"
			resp := tg.do("GET", target, "", origin.sign("GET", target, "gw.test", ""))
			statuses[i] = resp.StatusCode
			io.Copy(io.Discard, resp.Body)
		}()
	}
	// Let the requests pile up on the one fetch, then let it finish.
	deadline := time.Now().Add(10 * time.Second)
	for origin.fetches.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	close(gate)
	wg.Wait()
	for i, s := range statuses {
		if s != 200 {
			t.Fatalf("request %d: status %d", i, s)
		}
	}
	if f := origin.fetches.Load(); f != 1 {
		t.Fatalf("%d key fetches, want exactly 1", f)
	}
	if got := len(tg.hs.Requests()); got != n {
		t.Fatalf("homeserver saw %d requests, want %d", got, n)
	}
}

// TestKeyDocument: our document is self-signed by every current key, lists
// old keys and is valid for valid_for; the removed forms answer too.
func TestKeyDocument(t *testing.T) {
	old, _ := auth.GenerateSigningKey("old_1")
	tg := startGateway(t, "[keys]\nvalid_for = \"48h\"\n[[keys.old]]\nkey_id = \"ed25519:old_1\"\npublic_key = \""+
		auth.EncodeBase64(old.Public())+"\"\nexpired_ts = 1600000000000\n")
	for _, target := range []string{"/_matrix/key/v2/server", "/_matrix/key/v2/server/", "/_matrix/key/v2/server/ed25519:gw_1"} {
		resp := tg.do("GET", target, "")
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", target, resp.StatusCode, body)
		}
		sk, err := auth.ParseServerKeys(body, "gw.test", time.Now())
		if err != nil {
			t.Fatalf("%s: our own document does not check out: %v", target, err)
		}
		if err := auth.VerifyJSON(body, "gw.test", tg.key.ID, tg.key.Public()); err != nil {
			t.Fatalf("not signed by %s: %v", tg.key.ID, err)
		}
		if _, ok := sk.VerifyKeys[tg.key.ID]; !ok {
			t.Fatalf("verify_keys lacks %s", tg.key.ID)
		}
		if o, ok := sk.OldVerifyKeys["ed25519:old_1"]; !ok || o.ExpiredTS != 1600000000000 {
			t.Fatalf("old_verify_keys %+v", sk.OldVerifyKeys)
		}
		if d := time.Until(sk.ValidUntil); d < 47*time.Hour || d > 48*time.Hour {
			t.Fatalf("valid for %v", d)
		}
	}
	if n := len(tg.hs.Requests()); n != 0 {
		t.Fatalf("key document request reached the homeserver")
	}
}

// TestKeyDocumentResignedBeforeExpiry: the cached document is replaced
// once it gets within an hour of valid_until_ts.
func TestKeyDocumentResignedBeforeExpiry(t *testing.T) {
	key, _ := auth.GenerateSigningKey("k_1")
	d := &keyDocument{serverName: "gw.test", keys: []auth.SigningKey{key}, validFor: 3 * time.Hour}
	t0 := time.Now()
	first, err := d.get(t0)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := d.get(t0.Add(time.Hour)); again != first {
		t.Fatal("rebuilt too early")
	}
	later, _ := d.get(t0.Add(2*time.Hour + time.Minute))
	if later == first || !later.validUntil.After(first.validUntil) {
		t.Fatal("not rebuilt within the last hour")
	}
}

// TestNotary: notary answers carry the origin's signature and ours; our
// own keys come from our document; unknown servers are left out.
func TestNotary(t *testing.T) {
	tg, o := startGatewayWithOrigins(t, "", "origin.test", "dead.test")
	o[1].handle(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	check := func(body []byte, wantServers ...string) {
		t.Helper()
		var resp struct {
			ServerKeys []json.RawMessage `json:"server_keys"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		var got []string
		for _, raw := range resp.ServerKeys {
			var head struct {
				ServerName string `json:"server_name"`
			}
			json.Unmarshal(raw, &head)
			got = append(got, head.ServerName)
			if _, err := auth.ParseServerKeys(raw, head.ServerName, time.Now()); err != nil {
				t.Errorf("%s: self-signature: %v", head.ServerName, err)
			}
			if err := auth.CheckNotarySignature(raw, "gw.test", map[auth.KeyID]ed25519.PublicKey{tg.key.ID: tg.key.Public()}); err != nil {
				t.Errorf("%s: notary signature: %v", head.ServerName, err)
			}
		}
		slices.Sort(got)
		slices.Sort(wantServers)
		if !slices.Equal(got, wantServers) {
			t.Fatalf("servers %v, want %v", got, wantServers)
		}
	}
	resp := tg.do("GET", "/_matrix/key/v2/query/origin.test?minimum_valid_until_ts=1", "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	check(body, "origin.test")
	resp = tg.do("POST", "/_matrix/key/v2/query", `{"server_keys":{"origin.test":{},"gw.test":{"ed25519:gw_1":{"minimum_valid_until_ts":1}},"dead.test":{},"bad name":{}}}`)
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	check(body, "origin.test", "gw.test")
	resp = tg.do("GET", "/_matrix/key/v2/query/dead.test", "")
	body, _ = io.ReadAll(resp.Body)
	check(body)
	matrixError(t, tg.do("GET", "/_matrix/key/v2/query/bad%20name", ""), 400, CodeInvalidParam)
	matrixError(t, tg.do("POST", "/_matrix/key/v2/query", `{"nope":1}`), 400, CodeBadJSON)
	if n := o[0].fetches.Load(); n != 1 {
		t.Fatalf("origin fetched %d times", n)
	}
}

// TestNotaryOff: with keys.notary = false only our own keys are answered.
func TestNotaryOff(t *testing.T) {
	tg, o := startGatewayWithOrigins(t, "[keys]\nnotary = false\n", "origin.test")
	resp := tg.do("POST", "/_matrix/key/v2/query", `{"server_keys":{"origin.test":{},"gw.test":{}}}`)
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"server_name":"gw.test"`) || strings.Contains(string(body), "origin.test") {
		t.Fatalf("%s", body)
	}
	if o[0].fetches.Load() != 0 {
		t.Fatal("fetched keys for a notary query with the notary off")
	}
}

package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/fedtest"
)

func TestEgressStageOrder(t *testing.T) {
	var names []string
	for _, s := range egressStages() {
		names = append(names, s.name)
	}
	want := []string{"route", "x_matrix", "destination", "endpoint_policy", "body", "signature", "destination_limit", "backoff"}
	if !slices.Equal(names, want) {
		t.Fatalf("egress stage order changed:\n got %v\nwant %v", names, want)
	}
}

// egressTargets are request-targets whose bytes Go's URL handling would
// rewrite if given the chance; the remote must see them exactly.
var egressTargets = []struct {
	method, target, body string
}{
	{"PUT", "/_matrix/federation/v1/send/1700000000000", "{ \"origin\":\"gw.test\",\n  \"origin_server_ts\": 1700000000000, \"pdus\": [], \"edus\": [{\"edu_type\":\"m.typing\",\"content\":{\"room_id\":\"!r:remote.test\",\"user_id\":\"@a:gw.test\",\"typing\":true}}] }"},
	{"GET", "/_matrix/federation/v1/make_join/%21room%3Aremote.test/%40alice%3Agw.test?ver=10&ver=1", ""},
	{"GET", "/_matrix/federation/v1/state/%21a%2Fb%3Aremote.test?event_id=%24ev%3aremote.test", ""},
	{"GET", "/_matrix/federation/v1/backfill/!room:remote.test?v=%24a&limit=10&v=%24b", ""},
	{"GET", "/_matrix/federation/v1/query/profile?user_id=%40bob%3Aremote.test&field=displayname", ""},
	{"GET", "/_matrix/federation/v1/event/%24e%3Aremote.test?", ""},
	{"GET", "/_matrix/federation/v1/query/directory?room_alias=%23a;b%3Aremote.test", ""},
	{"POST", "/_matrix/federation/v1/user/keys/query", `{"device_keys":{"@bob:remote.test":[]}}`},
	{"GET", "/_matrix/key/v2/server", ""},
}

// TestWorkerProxyDelivers drives mode 1 as Synapse does: absolute
// matrix-federation:// targets with the bearer secret, signed with the
// shared key. The remote verifies fedgate's fresh signature against the
// published key document and sees method, request-target and body
// exactly as Synapse sent them, with only the headers the protocol
// forwards.
func TestWorkerProxyDelivers(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true})
	env.remote.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Remote", "yes")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "must not pass")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"pdus":{}}`)
	})
	for _, tt := range egressTargets {
		env.remote.reset()
		resp := env.worker(tt.method, "remote.test", tt.target, tt.body,
			bearer(testSecret), env.sign(tt.method, tt.target, "remote.test", tt.body),
			"Content-Type: application/json", "User-Agent: Synapse/1.130.0", "Cookie: secret=1", "X-Forwarded-For: 10.0.0.1")
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != `{"pdus":{}}` {
			t.Fatalf("%s %s: %d %s", tt.method, tt.target, resp.StatusCode, body)
		}
		if resp.Header.Get("X-Remote") != "yes" || resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
			t.Errorf("response headers %v", resp.Header)
		}
		got := env.remote.federationRequests()
		if len(got) != 1 {
			t.Fatalf("%s: remote saw %d requests", tt.target, len(got))
		}
		r := got[0]
		if r.Method != tt.method || r.RequestURI != tt.target || string(r.Body) != tt.body {
			t.Errorf("changed on the way:\n sent %s %s %q\n  got %s %s %q", tt.method, tt.target, tt.body, r.Method, r.RequestURI, r.Body)
		}
		if r.XMatrix == nil || r.VerifyErr != nil {
			t.Fatalf("%s: signature %+v: %v", tt.target, r.XMatrix, r.VerifyErr)
		}
		if r.XMatrix.Origin != "gw.test" || r.XMatrix.Destination != "remote.test" || r.XMatrix.Key != env.key.ID {
			t.Errorf("X-Matrix %+v", r.XMatrix)
		}
		if r.Header.Get("User-Agent") != "Synapse/1.130.0" {
			t.Errorf("User-Agent %q", r.Header.Get("User-Agent"))
		}
		if tt.body != "" && r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
		}
		for _, h := range []string{"Cookie", "X-Forwarded-For", "Proxy-Authorization"} {
			if v := r.Header.Get(h); v != "" {
				t.Errorf("%s forwarded: %q", h, v)
			}
		}
		if r.SNI != "remote.test" {
			t.Errorf("SNI %q", r.SNI)
		}
	}
	line := env.waitAccess(func(m map[string]any) bool { return m["endpoint"] == "server_keys" })
	if line["mode"] != modeWorkerProxy || line["destination"] != "remote.test" || line["decision"] != "forwarded" || line["status"] != int64(200) {
		t.Errorf("access line %v", line)
	}
	if _, ok := line["upstream_duration"]; !ok {
		t.Errorf("no upstream_duration: %v", line)
	}
}

// TestWorkerProxyKeepAlive: Synapse reuses its connection to the proxy.
func TestWorkerProxyKeepAlive(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true})
	conn, err := net.Dial("tcp", env.egressAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := range 3 {
		target := "/_matrix/federation/v1/event/%24e" + string(rune('a'+i)) + "%3Aremote.test"
		resp := env.workerOn(conn, br, "GET", "remote.test", target, "", bearer(testSecret), env.sign("GET", target, "remote.test", ""))
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
}

// TestWorkerProxyCredentials: Synapse's proxy answers, byte for byte in
// status and errcode, with the message under "err".
func TestWorkerProxyCredentials(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true})
	const target = "/_matrix/federation/v1/version"
	tests := []struct {
		name    string
		headers []string
		errcode string
	}{
		{"missing", nil, CodeMissingToken},
		{"wrong secret", []string{bearer("nope")}, CodeUnauthorized},
		{"secret prefix", []string{bearer(testSecret[:5])}, CodeUnauthorized},
		{"two headers", []string{bearer(testSecret), bearer(testSecret)}, CodeUnauthorized},
		{"lower-case scheme", []string{"Proxy-Authorization: bearer " + testSecret}, CodeUnauthorized},
		{"double space", []string{"Proxy-Authorization: Bearer  " + testSecret}, CodeUnauthorized},
		{"basic", []string{"Proxy-Authorization: Basic " + testSecret}, CodeUnauthorized},
		{"trailing part", []string{"Proxy-Authorization: Bearer " + testSecret + " x"}, CodeUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := env.worker("GET", "remote.test", target, "", tt.headers...)
			egressError(t, resp, http.StatusUnauthorized, tt.errcode, "err")
		})
	}
	if n := len(env.remote.Requests()); n != 0 {
		t.Fatalf("remote saw %d requests", n)
	}
	if n := env.dns.CountQueries("remote.test", "A"); n != 0 {
		t.Fatalf("%d DNS queries for a refused request", n)
	}
}

// TestEgressSenderCheck: with require_signature (the default) nothing on
// the internal network can use the egress to speak as this server.
func TestEgressSenderCheck(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true, extra: "[[keys.old]]\nkey_id = \"ed25519:old\"\npublic_key = \"" + oldKeyB64(t) + "\"\nexpired_ts = 1600000000000\n"})
	const send = "/_matrix/federation/v1/send/txn1"
	const get = "/_matrix/federation/v1/event/%24e%3Aremote.test"
	foreign, _ := auth.GenerateSigningKey("gw_1") // same key id, another key
	other, _ := auth.GenerateSigningKey("o_1")
	tests := []struct {
		name    string
		method  string
		target  string
		body    string
		headers []string
		status  int
		errcode string
	}{
		{"unsigned", "PUT", send, `{}`, nil, 401, CodeUnauthorized},
		{"foreign key, same id", "PUT", send, `{}`, []string{signWith(t, foreign, "gw.test", "PUT", send, "remote.test", `{}`)}, 401, CodeUnauthorized},
		{"unknown key id", "GET", get, "", []string{signWith(t, other, "gw.test", "GET", get, "remote.test", "")}, 401, CodeUnauthorized},
		{"other origin", "GET", get, "", []string{signWith(t, other, "o.test", "GET", get, "remote.test", "")}, 401, CodeUnauthorized},
		{"signed for another destination", "GET", get, "", []string{env.sign("GET", get, "other.test", "")}, 401, CodeUnauthorized},
		{"signed for another target", "GET", get, "", []string{env.sign("GET", get+"x", "remote.test", "")}, 401, CodeUnauthorized},
		{"body changed", "PUT", send, `{"a":2}`, []string{env.sign("PUT", send, "remote.test", `{"a":1}`)}, 401, CodeUnauthorized},
		{"method changed", "POST", "/_matrix/federation/v1/user/keys/query", `{}`, []string{env.sign("PUT", "/_matrix/federation/v1/user/keys/query", "remote.test", `{}`)}, 401, CodeUnauthorized},
		{"malformed", "GET", get, "", []string{`Authorization: X-Matrix origin="gw.test"`}, 400, CodeUnauthorized},
		{"not JSON", "PUT", send, `{"a":`, []string{env.sign("PUT", send, "remote.test", `{}`)}, 400, CodeNotJSON},
		{"body on GET", "GET", get, `{}`, []string{env.sign("GET", get, "remote.test", "")}, 400, CodeBadJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := env.worker(tt.method, "remote.test", tt.target, tt.body, append([]string{bearer(testSecret)}, tt.headers...)...)
			key := "error"
			if tt.status == 401 {
				key = "err"
			}
			egressError(t, resp, tt.status, tt.errcode, key)
		})
	}
	if n := len(env.remote.federationRequests()); n != 0 {
		t.Fatalf("remote saw %d requests", n)
	}
	// Unauthenticated endpoints may come unsigned and go out unsigned.
	resp := env.worker("GET", "remote.test", "/_matrix/federation/v1/version", "", bearer(testSecret))
	if resp.StatusCode != 200 {
		t.Fatalf("version: %d", resp.StatusCode)
	}
	got := env.remote.federationRequests()
	if len(got) != 1 || got[0].Header.Get("Authorization") != "" {
		t.Fatalf("remote saw %+v", got)
	}
}

// oldKeyB64 is a retired public key for [[keys.old]].
func oldKeyB64(t *testing.T) string {
	k, err := auth.GenerateSigningKey("old")
	if err != nil {
		t.Fatal(err)
	}
	return auth.EncodeBase64(k.Public())
}

// TestEgressWithoutRequireSignature: fedgate signs for a homeserver that
// does not share the key (or does not sign at all).
func TestEgressWithoutRequireSignature(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true, egress: "require_signature = false"})
	const send = "/_matrix/federation/v1/send/txn2"
	resp := env.worker("PUT", "remote.test", send, `{"pdus":[]}`, bearer(testSecret))
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	got := env.remote.federationRequests()
	if len(got) != 1 || got[0].XMatrix == nil || got[0].VerifyErr != nil || got[0].XMatrix.Destination != "remote.test" {
		t.Fatalf("remote saw %+v", got)
	}
}

// TestEgressDestinationPolicy: denied destinations and endpoints get 403
// and nothing leaves: no DNS query, no connection.
func TestEgressDestinationPolicy(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true,
		extra: "[policy]\ndeny = [\"evil.test\"]\ndeny_endpoints = [\"public_rooms\"]\n"})
	const target = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Aevil.test"
	m := egressError(t, env.worker("GET", "evil.test", target, "", bearer(testSecret), env.sign("GET", target, "evil.test", "")),
		http.StatusForbidden, CodeForbidden, "error")
	if !strings.Contains(m["error"].(string), "destination_denied") {
		t.Errorf("message %v", m["error"])
	}
	const rooms = "/_matrix/federation/v1/publicRooms"
	egressError(t, env.worker("GET", "remote.test", rooms, "", bearer(testSecret), env.sign("GET", rooms, "remote.test", "")),
		http.StatusForbidden, CodeForbidden, "error")
	// Intercepted: the X-Matrix destination decides, not the CONNECT host.
	client := env.proxyClient(env.egressCA, nil)
	resp, err := env.through(client, "GET", "matrix.remote.test:8448", target, "", env.sign("GET", target, "evil.test", ""))
	if err != nil {
		t.Fatal(err)
	}
	egressError(t, resp, http.StatusForbidden, CodeForbidden, "error")
	if n := len(env.remote.Requests()); n != 0 {
		t.Fatalf("remote saw %d requests", n)
	}
	if n := env.dns.CountQueries("evil.test", "A") + env.dns.CountQueries("_matrix-fed._tcp.evil.test", "SRV"); n != 0 {
		t.Fatalf("%d DNS queries for a denied destination", n)
	}
	line := env.waitAccess(func(m map[string]any) bool { return m["destination"] == "evil.test" && m["mode"] == modeIntercept })
	if line["decision"] != "denied" || line["reason"] != "destination_denied" || line["stage"] != "destination" || line["status"] != int64(403) {
		t.Errorf("access line %v", line)
	}
}

// TestEgressRemoteDown: a destination that cannot be reached gets 502
// JSON with "err"; further requests are answered at once while its
// backoff lasts, and tried again after.
func TestEgressRemoteDown(t *testing.T) {
	env := startEgress(t, egressOptions{overrides: map[string]string{"down.test": fedtest.FreeAddr(t)}})
	const target = "/_matrix/federation/v1/version"
	m := egressError(t, env.worker("GET", "down.test", target, "", bearer(testSecret)), http.StatusBadGateway, CodeUnknown, "err")
	if !strings.Contains(m["err"].(string), "remote_unreachable") {
		t.Errorf("err %v", m["err"])
	}
	m = egressError(t, env.worker("GET", "down.test", target, "", bearer(testSecret)), http.StatusBadGateway, CodeUnknown, "err")
	if !strings.Contains(m["err"].(string), "remote_backoff") {
		t.Errorf("second answer not from backoff: %v", m["err"])
	}
	env.clock.Advance(2 * time.Second)
	m = egressError(t, env.worker("GET", "down.test", target, "", bearer(testSecret)), http.StatusBadGateway, CodeUnknown, "err")
	if !strings.Contains(m["err"].(string), "remote_unreachable") {
		t.Errorf("not retried after the window: %v", m["err"])
	}
	// Two failures in a row: the window doubled.
	if wait, kind, n := env.gw.egress.backoff.check("down.test", env.clock.Now()); kind != backoffFailing || n != 2 || wait != 2*time.Second {
		t.Errorf("backoff %v %v %d", wait, kind, n)
	}
	line := env.waitAccess(func(m map[string]any) bool { return m["decision"] == "backoff" })
	if line["reason"] != "remote_backoff" || line["status"] != int64(502) {
		t.Errorf("access line %v", line)
	}
}

// TestEgressRemote429: a 429 is relayed, then honoured: until Retry-After
// has passed fedgate answers 429 itself, without contacting the remote.
func TestEgressRemote429(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true})
	env.remote.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":30000}`)
	})
	const target = "/_matrix/federation/v1/event/%24e%3Aremote.test"
	send := func() *http.Response {
		return env.worker("GET", "remote.test", target, "", bearer(testSecret), env.sign("GET", target, "remote.test", ""))
	}
	resp := send()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 429 || !strings.Contains(string(body), "slow down") {
		t.Fatalf("remote's 429 not relayed: %d %s", resp.StatusCode, body)
	}
	m := egressError(t, send(), http.StatusTooManyRequests, CodeLimitExceeded, "error")
	if ms, _ := m["retry_after_ms"].(float64); ms <= 0 || ms > 30000 {
		t.Errorf("retry_after_ms %v", m["retry_after_ms"])
	}
	if n := len(env.remote.federationRequests()); n != 1 {
		t.Fatalf("remote saw %d requests, want 1", n)
	}
	env.clock.Advance(31 * time.Second)
	env.remote.handle(nil)
	if resp := send(); resp.StatusCode != 200 {
		t.Fatalf("after Retry-After: %d", resp.StatusCode)
	}
	if n := env.gw.egress.backoff.len(); n != 0 {
		t.Errorf("backoff still remembers %d destinations after a success", n)
	}
}

// TestEgressRemote5xxCountsAsFailure: a 5xx is relayed as is and opens the
// backoff window.
func TestEgressRemote5xxCountsAsFailure(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true})
	env.remote.handle(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "down for maintenance")
	})
	resp := env.worker("GET", "remote.test", "/_matrix/federation/v1/version", "", bearer(testSecret))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || string(body) != "down for maintenance" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	egressError(t, env.worker("GET", "remote.test", "/_matrix/federation/v1/version", "", bearer(testSecret)), http.StatusBadGateway, CodeUnknown, "err")
}

// TestEgressSSRF: a destination whose DNS points into a private or
// loopback network is refused by the SSRF guard (outbound.allow_networks
// does not list it), in every mode.
func TestEgressSSRF(t *testing.T) {
	env := startEgress(t, egressOptions{})
	const target = "/_matrix/federation/v1/version"
	m := egressError(t, env.worker("GET", "internal.test", target, "", bearer(testSecret)), http.StatusBadGateway, CodeUnknown, "err")
	if !strings.Contains(m["err"].(string), "ssrf_blocked") {
		t.Errorf("err %v", m["err"])
	}
	client := env.proxyClient(env.egressCA, nil)
	resp, err := env.through(client, "GET", "internal.test:8448", target, "")
	if err != nil {
		t.Fatal(err)
	}
	egressError(t, resp, http.StatusBadGateway, CodeUnknown, "error")
	if n := len(env.remote.Requests()); n != 0 {
		t.Fatalf("remote saw %d requests", n)
	}
}

// TestEgressDispatch: the listener takes CONNECT and matrix-federation://
// only, each if enabled.
func TestEgressDispatch(t *testing.T) {
	env := startEgress(t, egressOptions{egress: "connect = \"off\""})
	raw := func(request string) *http.Response {
		conn, err := net.Dial("tcp", env.egressAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		io.WriteString(conn, request)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	egressError(t, raw("GET /_matrix/federation/v1/version HTTP/1.1\r\nHost: remote.test\r\n\r\n"), 400, CodeUnrecognized, "error")
	egressError(t, raw("GET http://remote.test/_matrix/federation/v1/version HTTP/1.1\r\nHost: remote.test\r\n\r\n"), 400, CodeUnrecognized, "error")
	egressError(t, raw("CONNECT remote.test:8448 HTTP/1.1\r\nHost: remote.test:8448\r\n\r\n"), 400, CodeUnrecognized, "error")
	egressError(t, raw("GET matrix-federation://remote.test HTTP/1.1\r\nHost: remote.test\r\n"+bearer(testSecret)+"\r\n\r\n"), 400, CodeInvalidParam, "error")
	egressError(t, raw("GET matrix-federation://bad_name!/x HTTP/1.1\r\nHost: remote.test\r\n"+bearer(testSecret)+"\r\n\r\n"), 400, CodeInvalidParam, "error")
	egressError(t, raw("GET matrix-federation://gw.test/_matrix/federation/v1/version HTTP/1.1\r\nHost: gw.test\r\n"+bearer(testSecret)+"\r\n\r\n"), 400, CodeInvalidParam, "error")

	env2 := startEgress(t, egressOptions{egress: "worker_proxy = false"})
	resp := env2.worker("GET", "remote.test", "/_matrix/federation/v1/version", "", bearer(testSecret))
	egressError(t, resp, 400, CodeUnrecognized, "error")
}

// TestEgressDestinationRateLimit: [rate_limit] per_destination answers 429
// with Retry-After before anything is sent.
func TestEgressDestinationRateLimit(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true, extra: "[rate_limit]\nper_destination = { rate = \"1/h\", burst = 1 }\n"})
	const target = "/_matrix/federation/v1/version"
	if resp := env.worker("GET", "remote.test", target, "", bearer(testSecret)); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	resp := env.worker("GET", "remote.test", target, "", bearer(testSecret))
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	egressError(t, resp, http.StatusTooManyRequests, CodeLimitExceeded, "error")
	// Another destination has its own budget.
	if resp := env.worker("GET", "other.test", target, "", bearer(testSecret)); resp.StatusCode != 200 {
		t.Fatalf("other destination: %d", resp.StatusCode)
	}
	if n := len(env.remote.federationRequests()); n != 2 {
		t.Fatalf("remote saw %d requests, want 2", n)
	}
	line := env.waitAccess(func(m map[string]any) bool { return m["status"] == int64(429) })
	if line["limiter"] != "per_destination" || line["stage"] != "destination_limit" {
		t.Errorf("access line %v", line)
	}
}

// TestEgressBrokenResponse: a remote answer that breaks off after its
// headers is never passed on as complete; the homeserver's connection is
// cut.
func TestEgressBrokenResponse(t *testing.T) {
	env := startEgress(t, egressOptions{loopbackAllowed: true})
	env.remote.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		io.WriteString(w, `{"partial":`)
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	const target = "/_matrix/federation/v1/event/%24e%3Aremote.test"
	resp := env.worker("GET", "remote.test", target, "", bearer(testSecret), env.sign("GET", target, "remote.test", ""))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a broken answer was read to the end without error")
	}
	line := env.waitAccess(func(m map[string]any) bool { return m["reason"] == "remote_broken" })
	if line["decision"] != "failed" {
		t.Errorf("access line %v", line)
	}
}

// TestEgressReloadSecret: a reload re-reads egress.secret_file; the old
// secret stops working at once.
func TestEgressReloadSecret(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/secret"
	if err := os.WriteFile(file, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := startEgress(t, egressOptions{loopbackAllowed: true, egress: fmt.Sprintf("secret_file = %q", file)})
	const target = "/_matrix/federation/v1/version"
	if resp := env.worker("GET", "remote.test", target, "", bearer("first")); resp.StatusCode != 200 {
		t.Fatalf("first secret: %d", resp.StatusCode)
	}
	if err := os.WriteFile(file, []byte("second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(env.cfg.File)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.gw.Reload(c); err != nil {
		t.Fatal(err)
	}
	egressError(t, env.worker("GET", "remote.test", target, "", bearer("first")), http.StatusUnauthorized, CodeUnauthorized, "err")
	if resp := env.worker("GET", "remote.test", target, "", bearer("second")); resp.StatusCode != 200 {
		t.Fatalf("second secret: %d", resp.StatusCode)
	}
}

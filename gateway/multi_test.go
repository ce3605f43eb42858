package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/auth"
)

// hostedNames returns n hosted server names: a.test, b.test, then s2.test ...
func hostedNames(n int) []string {
	names := []string{"a.test", "b.test"}
	for i := 2; i < n; i++ {
		names = append(names, fmt.Sprintf("s%d.test", i))
	}
	return names[:n]
}

// withWellKnown gives every hosted server its own delegated host.
func withWellKnown(i int, section func(string) string) string {
	return fmt.Sprintf("%s\nserver = \"fed%d.test:443\"\n", section("well_known"), i)
}

// TestMultiKeyDocumentsAndWellKnown: with 2 and 50 hosted servers on one
// listener, each Host gets its own server's key document (signed only by
// its own key), notary answer and well-known document.
func TestMultiKeyDocumentsAndWellKnown(t *testing.T) {
	for _, n := range []int{2, 50} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			env := startMulti(t, multiOptions{names: hostedNames(n), perServer: withWellKnown})
			for i, name := range hostedNames(n) {
				ht := env.servers[name]
				for _, host := range []string{name, name + ":8448", fmt.Sprintf("fed%d.test:443", i)} {
					wantOwnKeyDocument(t, env.do(name, host, "GET", "/_matrix/key/v2/server", ""), ht, host)
				}
				resp := env.do(name, name, "GET", "/.well-known/matrix/server", "")
				body, _ := io.ReadAll(resp.Body)
				if want := fmt.Sprintf(`{"m.server":"fed%d.test:443"}`, i); string(body) != want {
					t.Fatalf("well-known of %s: %s, want %s", name, body, want)
				}
			}
			// A notary query sent to b answers for every hosted server from
			// memory, each countersigned by b.
			query := map[string]any{}
			for _, name := range []string{"a.test", "b.test", hostedNames(n)[n-1]} {
				query[name] = map[string]any{}
			}
			q, _ := json.Marshal(map[string]any{"server_keys": query})
			resp := env.do("b.test", "b.test", "POST", "/_matrix/key/v2/query", string(q), "Content-Type: application/json")
			raw, _ := io.ReadAll(resp.Body)
			var answer struct {
				ServerKeys []json.RawMessage `json:"server_keys"`
			}
			if err := json.Unmarshal(raw, &answer); err != nil || len(answer.ServerKeys) != len(query) {
				t.Fatalf("notary answer %s", raw)
			}
			for _, doc := range answer.ServerKeys {
				var d struct {
					ServerName string                       `json:"server_name"`
					Signatures map[string]map[string]string `json:"signatures"`
				}
				json.Unmarshal(doc, &d)
				if d.Signatures["b.test"][string(env.servers["b.test"].key.ID)] == "" {
					t.Errorf("notary answer for %s is not signed by b.test: %v", d.ServerName, d.Signatures)
				}
			}
			for _, o := range env.origins {
				if o.fetches.Load() != 0 {
					t.Error("a key was fetched")
				}
			}
		})
	}
}

// wantOwnKeyDocument checks that resp, the answer for Host host, is ht's
// key document: ht's key only, signed by that key only.
func wantOwnKeyDocument(t *testing.T, resp *http.Response, ht *hostedTest, host string) {
	t.Helper()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("key document for Host %s: %d %s", host, resp.StatusCode, raw)
	}
	keys, err := auth.ParseServerKeys(raw, ht.name, time.Now())
	if err != nil {
		t.Fatalf("key document for Host %s: %v", host, err)
	}
	if len(keys.VerifyKeys) != 1 || !keys.VerifyKeys[ht.key.ID].Equal(ht.key.Public()) {
		t.Fatalf("%s publishes %v for Host %s", ht.name, keys.VerifyKeys, host)
	}
	var doc struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	json.Unmarshal(raw, &doc)
	if len(doc.Signatures) != 1 || len(doc.Signatures[ht.name]) != 1 || doc.Signatures[ht.name][string(ht.key.ID)] == "" {
		t.Fatalf("%s's document is signed by %v, want its own key only", ht.name, doc.Signatures)
	}
}

// TestMultiRoutesToOwnUpstream: signed requests for each hosted server
// reach that server's homeserver, byte for byte, and no other.
func TestMultiRoutesToOwnUpstream(t *testing.T) {
	for _, n := range []int{2, 50} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			env := startMulti(t, multiOptions{names: hostedNames(n), origins: []string{"origin.test"}})
			o := env.origins[0]
			names := hostedNames(n)
			for i, name := range names {
				target := fmt.Sprintf("/_matrix/federation/v1/send/txn%d?x=%%2Fa;b", i)
				body := fmt.Sprintf(`{"origin":"origin.test","origin_server_ts":1, "pdus":[],"edus":[{"edu_type":"m.typing","content":{"room_id":"!r:%s"}}]}`, name)
				resp := env.signed(o, name, "PUT", target, body)
				if resp.StatusCode != 200 {
					b, _ := io.ReadAll(resp.Body)
					t.Fatalf("%s: %d %s", name, resp.StatusCode, b)
				}
				resp.Body.Close()
			}
			for i, name := range names {
				got := env.servers[name].hs.Requests()
				if len(got) != 1 {
					t.Fatalf("%s's homeserver saw %d requests", name, len(got))
				}
				r := got[0]
				wantTarget := fmt.Sprintf("/_matrix/federation/v1/send/txn%d?x=%%2Fa;b", i)
				wantBody := fmt.Sprintf(`{"origin":"origin.test","origin_server_ts":1, "pdus":[],"edus":[{"edu_type":"m.typing","content":{"room_id":"!r:%s"}}]}`, name)
				if r.RequestURI != wantTarget || string(r.Body) != wantBody {
					t.Fatalf("%s's homeserver got %s %q", name, r.RequestURI, r.Body)
				}
				if want := o.sign("PUT", wantTarget, name, wantBody); "Authorization: "+r.Header.Get("Authorization") != want {
					t.Fatalf("%s: Authorization changed on the way", name)
				}
			}
			if o.fetches.Load() != 1 {
				t.Errorf("origin keys fetched %d times, want once for all hosted servers", o.fetches.Load())
			}
		})
	}
}

// TestMultiPolicyPerServer: one hosted server federates openly, the other
// only with its allow list; each server's limits are its own.
func TestMultiPolicyPerServer(t *testing.T) {
	env := startMulti(t, multiOptions{
		origins: []string{"origin.test", "partner.test"},
		perServer: func(i int, section func(string) string) string {
			if i == 0 {
				return section("rate_limit") + "\nper_origin = { rate = \"1/h\", burst = 2 }\n"
			}
			return section("policy") + "\ndefault = \"deny\"\nallow = [\"partner.test\"]\n"
		},
	})
	origin, partner := env.origins[0], env.origins[1]
	const target = "/_matrix/federation/v1/query/profile?user_id=%40u%3Ab.test"
	for _, tc := range []struct {
		o      *testOrigin
		dest   string
		status int
	}{
		{origin, "a.test", 200},
		{partner, "a.test", 200},
		{partner, "b.test", 200},
		{origin, "b.test", 403}, // closed federation
	} {
		tgt := strings.Replace(target, "b.test", tc.dest, 1)
		resp := env.signed(tc.o, tc.dest, "GET", tgt, "")
		if resp.StatusCode != tc.status {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s -> %s: %d %s, want %d", tc.o.name, tc.dest, resp.StatusCode, b, tc.status)
		}
		resp.Body.Close()
	}
	if n := len(env.servers["b.test"].hs.Requests()); n != 1 {
		t.Fatalf("b's homeserver saw %d requests, want the partner's only", n)
	}
	// a's per-origin limit (burst 2, spent above by origin's request and
	// one more) is a's alone: b uses its own (the top-level default is
	// inherited only when b has no [rate_limit] of its own; here b has
	// none, so b inherits a's table but not a's buckets).
	resp := env.signed(origin, "a.test", "GET", "/_matrix/federation/v1/query/profile?user_id=%40u%3Aa.test", "")
	resp.Body.Close()
	resp = env.signed(origin, "a.test", "GET", "/_matrix/federation/v1/query/profile?user_id=%40u%3Aa.test", "")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a's per-origin limit: %d", resp.StatusCode)
	}
	resp = env.signed(partner, "b.test", "GET", "/_matrix/federation/v1/query/profile?user_id=%40u%3Ab.test", "")
	if resp.StatusCode != 200 {
		t.Fatalf("b's limits were charged for a's requests: %d", resp.StatusCode)
	}
}

// TestMultiDestinationConfusion: a request signed for one hosted server and
// sent to another (Host, SNI) is refused with 401 and reaches nobody; a
// destination that is no hosted name is refused too.
func TestMultiDestinationConfusion(t *testing.T) {
	env := startMulti(t, multiOptions{
		origins: []string{"origin.test"},
		perServer: func(i int, section func(string) string) string {
			// Both delegate to one shared host: it names neither.
			return section("well_known") + "\nserver = \"fed.shared.test:443\"\n"
		},
	})
	o := env.origins[0]
	const target = "/_matrix/federation/v1/query/profile?user_id=%40u%3Ab.test"
	auth := o.sign("GET", target, "b.test", "")
	for _, tc := range []struct {
		what, sni, host string
		headers         []string
		status          int
	}{
		{"Host of another hosted server", "a.test", "a.test", []string{auth}, 401},
		{"Host right, connection made for another", "a.test", "b.test", []string{auth}, 401},
		{"SNI right, Host of another", "b.test", "a.test", []string{auth}, 401},
		{"destination not hosted", "b.test", "b.test", []string{o.sign("GET", target, "c.test", "")}, 401},
		{"destination in another letter case", "b.test", "b.test", []string{o.sign("GET", target, "B.test", "")}, 401},
		{"two headers, two destinations", "b.test", "b.test", []string{auth, o.sign("GET", target, "a.test", "")}, 400},
		{"origin claims a hosted name it is sent to", "b.test", "b.test", []string{signWith(t, o.key, "b.test", "GET", target, "b.test", "")}, 401},
		{"shared delegated host, destination decides", "fed.shared.test", "fed.shared.test", []string{auth}, 200},
		{"unknown host, destination decides", "127.0.0.1", "127.0.0.1:8448", []string{auth}, 200},
		{"right server", "b.test", "b.test", []string{auth}, 200},
	} {
		resp := env.do(tc.sni, tc.host, "GET", target, "", tc.headers...)
		if resp.StatusCode != tc.status {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s: %d %s, want %d", tc.what, resp.StatusCode, b, tc.status)
		}
		if tc.status == 401 {
			if m := matrixError(t, resp, 401, "M_UNAUTHORIZED"); m == nil {
				t.Fatal(tc.what)
			}
		}
		resp.Body.Close()
	}
	if n := len(env.servers["a.test"].hs.Requests()); n != 0 {
		t.Fatalf("a's homeserver saw %d requests meant for b", n)
	}
	if n := len(env.servers["b.test"].hs.Requests()); n != 3 {
		t.Fatalf("b's homeserver saw %d requests, want 3", n)
	}
	// The shared host does not say whose key document is wanted.
	resp := env.do("fed.shared.test", "fed.shared.test", "GET", "/_matrix/key/v2/server", "")
	matrixError(t, resp, 400, "M_INVALID_PARAM")
	// Logs name the hosted server; refusals before the destination is
	// known name the one the Host named.
	var sawB bool
	mismatches := 0
	for _, l := range env.accessLines("inbound") {
		if l["server"] == "b.test" && l["decision"] == "forwarded" {
			sawB = true
		}
		if l["reason"] == "destination_mismatch" {
			mismatches++
			if l["server"] == nil {
				t.Errorf("access line without server: %v", l)
			}
		}
	}
	if !sawB {
		t.Error("no access line names b.test")
	}
	if mismatches == 0 {
		t.Error("no destination_mismatch access line: the check on their server field saw nothing")
	}
}

// TestHostileMultiHostHeaders: Host headers and SNI names are remote
// input. Odd ones on a gateway hosting two servers get a clean answer (the
// first server's, or a refusal), never a crash, a 5xx or a request
// forwarded to the wrong homeserver.
func TestHostileMultiHostHeaders(t *testing.T) {
	env := startMulti(t, multiOptions{origins: []string{"origin.test"}})
	o := env.origins[0]
	const target = "/_matrix/federation/v1/query/profile?user_id=%40u%3Ab.test"
	signedB := o.sign("GET", target, "b.test", "")
	for _, host := range []string{
		"[", "[::1", "]:", ":", "::::", "b.test:", "b.test:99999", "B.TEST.", "b.test..", "b.test.:8448",
		strings.Repeat("b", 300) + ".test", "b.test\x00a.test", "a.test, b.test", "xn--b-test", "[::ffff:127.0.0.1]:8448",
	} {
		for _, req := range []string{
			"GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + signedB + "\r\nConnection: close\r\n\r\n",
			"GET /_matrix/key/v2/server HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n",
		} {
			conn, err := tls.Dial("tcp", env.addr, &tls.Config{RootCAs: env.ca.Pool(), ServerName: "b.test", NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, req)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				conn.Close()
				t.Fatalf("Host %q: %v", host, err)
			}
			body, _ := io.ReadAll(resp.Body)
			conn.Close()
			if resp.StatusCode >= 500 {
				t.Fatalf("Host %q: %d %s", host, resp.StatusCode, body)
			}
		}
	}
	if n := len(env.servers["a.test"].hs.Requests()); n != 0 {
		t.Fatalf("a's homeserver got %d requests signed for b", n)
	}
}

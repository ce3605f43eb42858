package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/certs"
)

// TestMultiEgressSignsAsEachServer: the egress signs as the hosted server
// the X-Matrix origin names, with only that server's key, and a homeserver
// may send only as the server its egress secret belongs to.
func TestMultiEgressSignsAsEachServer(t *testing.T) {
	env := startMulti(t, multiOptions{})
	const target = "/_matrix/federation/v1/query/profile?user_id=%40u%3Aremote.test"
	for _, from := range []string{"a.test", "b.test"} {
		resp := env.worker(env.servers[from].secret, "GET", "remote.test", target, "", env.signAs(from, "GET", target, "remote.test", ""))
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s: %d %s", from, resp.StatusCode, b)
		}
		got := env.remote.federation()
		verifyFrom(t, got[len(got)-1], from, env.servers[from].key, "remote.test")
	}
	sent := len(env.remote.federation())
	for _, tc := range []struct {
		what, secret, as string
		errcode          string
	}{
		{"a's secret, signed as b", "secret-a.test", "b.test", "M_UNAUTHORIZED"},
		{"b's secret, signed as a", "secret-b.test", "a.test", "M_UNAUTHORIZED"},
		{"no hosted server's secret", "secret-c.test", "a.test", "M_UNAUTHORIZED"},
		{"no secret", "", "a.test", "M_MISSING_TOKEN"},
	} {
		resp := env.worker(tc.secret, "GET", "remote.test", target, "", env.signAs(tc.as, "GET", target, "remote.test", ""))
		egressError(t, resp, 401, tc.errcode, "err")
	}
	// Signed as a server that is not hosted here, with a's key.
	resp := env.worker("secret-a.test", "GET", "remote.test", target, "", signWith(t, env.servers["a.test"].key, "c.test", "GET", target, "remote.test", ""))
	egressError(t, resp, 401, "M_UNAUTHORIZED", "err")
	// Signed as b by a's key, with b's secret: not one of b's keys.
	resp = env.worker("secret-b.test", "GET", "remote.test", target, "", signWith(t, env.servers["a.test"].key, "b.test", "GET", target, "remote.test", ""))
	egressError(t, resp, 401, "M_UNAUTHORIZED", "err")
	if n := len(env.remote.federation()); n != sent {
		t.Fatalf("%d refused requests reached the remote", n-sent)
	}

	// Intercepted CONNECT tunnels: without credentials the signature
	// decides who speaks; with them, only their server may.
	pemBytes, err := os.ReadFile(filepath.Join(env.gw.rt.Load().cfg.Egress.CADir, certs.EgressCACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	through := func(user *url.Userinfo, header string) *http.Response {
		t.Helper()
		tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: env.egress, User: user}), TLSClientConfig: &tls.Config{RootCAs: roots}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://remote.test:8448/", nil)
		path, query, _ := strings.Cut(target, "?")
		req.URL.Opaque, req.URL.RawQuery = path, query
		k, v, _ := strings.Cut(header, ": ")
		req.Header.Set(k, v)
		resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	resp = through(nil, env.signAs("b.test", "GET", target, "remote.test", ""))
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("intercepted as b: %d %s", resp.StatusCode, b)
	}
	got := env.remote.federation()
	verifyFrom(t, got[len(got)-1], "b.test", env.servers["b.test"].key, "remote.test")
	resp = through(url.UserPassword("synapse", "secret-a.test"), env.signAs("b.test", "GET", target, "remote.test", ""))
	egressError(t, resp, 401, "M_UNAUTHORIZED", "error")

	// The egress writes its access line after the response, so the last
	// one may still be on its way.
	forwardedAsB := func() int {
		var lines int
		for _, l := range env.accessLines("egress") {
			if l["server"] == "b.test" && l["decision"] == "forwarded" {
				lines++
			}
		}
		return lines
	}
	waitFor(t, "two egress lines naming b.test as the sender", func() bool { return forwardedAsB() >= 2 })
	if lines := forwardedAsB(); lines != 2 {
		t.Errorf("%d egress lines name b.test as the sender, want 2", lines)
	}
}

// TestMultiHostedFederation: a.test and b.test federate through the same
// gateway: invite, join and messages both ways, each request leaving one
// homeserver through the egress and reaching the other's homeserver
// in-process, re-signed, byte for byte, under the receiver's policy, the
// sender's key taken from memory.
func TestMultiHostedFederation(t *testing.T) {
	env := startMulti(t, multiOptions{
		perServer: func(i int, section func(string) string) string {
			if i == 1 {
				// b federates only with a.
				return section("policy") + "\ndefault = \"deny\"\nallow = [\"a.test\"]\n"
			}
			return section("policy") + "\ndeny = [\"b.test\"]\n" // until the test allows it
		},
	})
	A, B := env.servers["a.test"].hs, env.servers["b.test"].hs
	const makeJoin = `{"room_version":"10","event":{"type":"m.room.member","state_key":"@bob:b.test","content":{"membership":"join"}}}`
	A.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.URL.Path, "/make_join/") {
			io.WriteString(w, makeJoin)
			return
		}
		io.WriteString(w, `{}`)
	})
	type step struct {
		what, from, to, method, target, body string
		want                                 string // the receiver's answer, relayed
	}
	steps := []step{
		{"a invites bob", "a.test", "b.test", "PUT", "/_matrix/federation/v2/invite/%21room%3Aa.test/%24inv%3Aa.test",
			`{"room_version":"10","event":{"type":"m.room.member","state_key":"@bob:b.test","content":{"membership":"invite"}},"invite_room_state":[]}`, `{}`},
		{"b asks to join", "b.test", "a.test", "GET", "/_matrix/federation/v1/make_join/%21room%3Aa.test/%40bob%3Ab.test?ver=10&ver=11", "", makeJoin},
		{"b joins", "b.test", "a.test", "PUT", "/_matrix/federation/v2/send_join/%21room%3Aa.test/%24join%3Ab.test",
			`{"type":"m.room.member","state_key":"@bob:b.test","content":{"membership":"join"}}`, `{}`},
		{"a sends a message", "a.test", "b.test", "PUT", "/_matrix/federation/v1/send/1700000000001",
			`{"origin":"a.test","origin_server_ts":1700000000001,"pdus":[{"type":"m.room.message","content":{"body":"hi bob"}}]}`, `{}`},
		{"b answers", "b.test", "a.test", "PUT", "/_matrix/federation/v1/send/1700000000002",
			`{"origin":"b.test","origin_server_ts":1700000000002,"pdus":[{"type":"m.room.message","content":{"body":"hi alice"}}]}`, `{}`},
	}
	// a's policy denies b as a destination: nothing leaves a for b.
	resp := env.worker("secret-a.test", steps[0].method, "b.test", steps[0].target, steps[0].body,
		env.signAs("a.test", steps[0].method, steps[0].target, "b.test", steps[0].body))
	egressError(t, resp, 403, "M_FORBIDDEN", "error")
	if len(B.Requests()) != 0 {
		t.Fatal("a denied request reached b")
	}
	if err := env.reload(multiOptions{perServer: func(i int, section func(string) string) string {
		if i == 1 {
			return section("policy") + "\ndefault = \"deny\"\nallow = [\"a.test\"]\n"
		}
		return ""
	}}); err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		receiver := env.servers[st.to].hs
		receiver.Reset()
		var headers []string
		if st.body != "" {
			headers = append(headers, "Content-Type: application/json")
		}
		headers = append(headers, env.signAs(st.from, st.method, st.target, st.to, st.body), "User-Agent: Synapse/1.120")
		resp := env.worker(env.servers[st.from].secret, st.method, st.to, st.target, st.body, headers...)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != st.want {
			t.Fatalf("%s: %d %s", st.what, resp.StatusCode, body)
		}
		got := receiver.Requests()
		if len(got) != 1 {
			t.Fatalf("%s: the receiving homeserver saw %d requests", st.what, len(got))
		}
		r := got[0]
		if r.Method != st.method || r.RequestURI != st.target || string(r.Body) != st.body {
			t.Fatalf("%s: changed on the way: %s %s %q", st.what, r.Method, r.RequestURI, r.Body)
		}
		verifyFrom(t, r, st.from, env.servers[st.from].key, st.to)
		if r.Header.Get("User-Agent") != "Synapse/1.120" {
			t.Errorf("%s: User-Agent %q", st.what, r.Header.Get("User-Agent"))
		}
	}
	if n := len(env.remote.federation()); n != 0 {
		t.Fatalf("%d hosted-to-hosted requests left the machine", n)
	}
	if n := env.gw.keyring.Len(); n != 0 {
		t.Fatalf("the keyring holds %d servers: hosted keys must come from memory", n)
	}
	// b's closed policy still applies to its own hosted neighbours: c is
	// not hosted, and a request from b claiming to be a is refused.
	resp = env.worker("secret-b.test", "PUT", "a.test", steps[3].target, steps[3].body, env.signAs("a.test", "PUT", steps[3].target, "a.test", steps[3].body))
	egressError(t, resp, 401, "M_UNAUTHORIZED", "err")
	// b's inbound policy judges a like any origin: off its allow list,
	// a's request is refused by b and reaches nobody.
	if err := env.reload(multiOptions{perServer: func(i int, section func(string) string) string {
		if i == 1 {
			return section("policy") + "\ndefault = \"deny\"\nallow = [\"partner.test\"]\n"
		}
		return ""
	}}); err != nil {
		t.Fatal(err)
	}
	B.Reset()
	resp = env.worker("secret-a.test", "PUT", "b.test", steps[3].target, steps[3].body, env.signAs("a.test", "PUT", steps[3].target, "b.test", steps[3].body))
	egressError(t, resp, 403, "M_FORBIDDEN", "error")
	if len(B.Requests()) != 0 {
		t.Fatal("b's policy let a's request through")
	}
	// Both sides logged it: a's egress line and b's inbound line (each
	// written once its response is, so they may lag the answer).
	var egressLine, inboundLine bool
	logged := func() bool {
		for _, l := range env.accessLines("egress") {
			if l["server"] == "a.test" && l["destination"] == "b.test" && l["endpoint"] == "send" && l["decision"] == "forwarded" {
				egressLine = true
			}
		}
		for _, l := range env.accessLines("inbound") {
			if l["server"] == "b.test" && l["origin"] == "a.test" && l["endpoint"] == "send" && l["decision"] == "forwarded" {
				inboundLine = true
			}
		}
		return egressLine && inboundLine
	}
	waitFor(t, "a's egress line and b's inbound line", logged)
}

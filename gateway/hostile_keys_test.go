package gateway

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// TestHostileKeyServers signs requests as origins whose key servers
// misbehave: documents that lie or expire, keys that are retired, servers
// that are slow, huge, silent or absent. Every such request gets 401
// M_UNAUTHORIZED within the configured fetch limits, nothing is forwarded,
// and the well-behaved origin is unaffected.
func TestHostileKeyServers(t *testing.T) {
	t.Parallel()
	now := time.Now()
	// serveDoc makes an origin whose key server answers with doc(o).
	serveDoc := func(name string, doc func(t *testing.T, o *testOrigin) []byte) func(ca *fedtest.CA) *testOrigin {
		return func(ca *fedtest.CA) *testOrigin {
			o := newOrigin(t, ca, name)
			body := doc(t, o)
			o.handle(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Write(body)
			})
			return o
		}
	}
	serve := func(name string, h func(o *testOrigin) http.HandlerFunc) func(ca *fedtest.CA) *testOrigin {
		return func(ca *fedtest.CA) *testOrigin {
			o := newOrigin(t, ca, name)
			o.handle(h(o))
			return o
		}
	}
	// withCert makes an origin whose key server presents cert instead.
	withCert := func(name string, cert func(ca *fedtest.CA) tls.Certificate) func(ca *fedtest.CA) *testOrigin {
		return func(ca *fedtest.CA) *testOrigin {
			key, err := auth.GenerateSigningKey("o_1")
			if err != nil {
				t.Fatal(err)
			}
			o := &testOrigin{t: t, name: name, key: key}
			o.srv = httptest.NewUnstartedServer(http.HandlerFunc(o.serve))
			o.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert(ca)}}
			o.srv.StartTLS()
			t.Cleanup(o.srv.Close)
			return o
		}
	}
	mustJSON := func(t *testing.T, v any) []byte {
		b, err := auth.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// released unblocks the slow key servers when the test ends.
	released := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(released) }) })

	silent := listenSilent(t)
	makers := []func(ca *fedtest.CA) *testOrigin{
		serveDoc("oldkey.test", func(t *testing.T, o *testOrigin) []byte {
			// The request key o_1 was retired into old_verify_keys: good for
			// old events, never for requests.
			next, _ := auth.GenerateSigningKey("o_2")
			doc, err := auth.BuildKeyDocument(o.name, []auth.SigningKey{next},
				[]auth.OldVerifyKey{{ID: o.key.ID, Key: o.key.Public(), ExpiredTS: now.Add(-time.Hour).UnixMilli()}}, now.Add(24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			return doc
		}),
		serveDoc("expired.test", func(t *testing.T, o *testOrigin) []byte {
			doc, err := auth.BuildKeyDocument(o.name, []auth.SigningKey{o.key}, nil, now.Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			return doc
		}),
		serveDoc("liar.test", func(t *testing.T, o *testOrigin) []byte {
			// A document for origin.test, correctly self-signed by the liar's
			// key: it must not stand for liar.test.
			doc, err := auth.BuildKeyDocument("origin.test", []auth.SigningKey{o.key}, nil, now.Add(24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			return doc
		}),
		serveDoc("unlisted.test", func(t *testing.T, o *testOrigin) []byte {
			// Lists o_1 but is signed only by a key it does not list.
			stranger, _ := auth.GenerateSigningKey("o_9")
			doc := mustJSON(t, map[string]any{
				"server_name": o.name, "valid_until_ts": now.Add(24 * time.Hour).UnixMilli(),
				"verify_keys": map[string]any{string(o.key.ID): map[string]string{"key": auth.EncodeBase64(o.key.Public())}},
			})
			signed, err := auth.SignJSON(doc, o.name, stranger)
			if err != nil {
				t.Fatal(err)
			}
			return signed
		}),
		serveDoc("unsigned.test", func(t *testing.T, o *testOrigin) []byte {
			return mustJSON(t, map[string]any{
				"server_name": o.name, "valid_until_ts": now.Add(24 * time.Hour).UnixMilli(),
				"verify_keys": map[string]any{string(o.key.ID): map[string]string{"key": auth.EncodeBase64(o.key.Public())}},
			})
		}),
		serveDoc("tampered.test", func(t *testing.T, o *testOrigin) []byte {
			// Signed, then valid_until_ts pushed out by a year.
			doc, err := auth.BuildKeyDocument(o.name, []auth.SigningKey{o.key}, nil, now.Add(24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			json.Unmarshal(doc, &m)
			m["valid_until_ts"] = now.Add(365 * 24 * time.Hour).UnixMilli()
			return mustJSON(t, m)
		}),
		serveDoc("notjson.test", func(t *testing.T, o *testOrigin) []byte { return []byte("<html>keys</html>") }),
		serveDoc("floats.test", func(t *testing.T, o *testOrigin) []byte {
			return []byte(fmt.Sprintf(`{"server_name":%q,"valid_until_ts":1.5e12,"verify_keys":{}}`, o.name))
		}),
		serve("status500.test", func(o *testOrigin) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "broken", http.StatusInternalServerError) }
		}),
		serve("redirect.test", func(o *testOrigin) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "https://origin.test/_matrix/key/v2/server", http.StatusFound)
			}
		}),
		serve("slow.test", func(o *testOrigin) http.HandlerFunc {
			// Never answers; the fetch must give up on its own.
			return func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-released:
				}
			}
		}),
		serve("huge.test", func(o *testOrigin) http.HandlerFunc {
			// Ten MiB of a never-ending string.
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"server_name":%q,"x":"`, o.name)
				chunk := []byte(strings.Repeat("a", 64<<10))
				for range 160 {
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			}
		}),
		serve("trickle.test", func(o *testOrigin) http.HandlerFunc {
			// Headers at once, then a byte every 50 ms for as long as the
			// reader stays.
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusOK)
				rc := http.NewResponseController(w)
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					if _, err := w.Write([]byte(" ")); err != nil {
						return
					}
					rc.Flush()
					select {
					case <-tick.C:
					case <-r.Context().Done():
						return
					case <-released:
						return
					}
				}
			}
		}),
		withCert("wrongname.test", func(ca *fedtest.CA) tls.Certificate { return ca.Issue(t, "someone-else.test") }),
		withCert("untrusted.test", func(ca *fedtest.CA) tls.Certificate { return fedtest.NewCA(t).Issue(t, "untrusted.test") }),
		withCert("expiredcert.test", func(ca *fedtest.CA) tls.Certificate {
			return ca.IssueValid(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "expiredcert.test")
		}),
	}
	e, origins := startHostile(t, "", map[string]string{
		"silent.test": silent,
		"dead.test":   fedtest.FreeAddr(t),
	}, makers...)

	const target = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	denied := func(name string, key auth.SigningKey, origin string) hostileCase {
		return hostileCase{name: name, status: 401, errcode: CodeUnauthorized,
			request: rawRequest("GET", target, "", signWith(t, key, origin, "GET", target, "gw.test", ""))}
	}
	var cases []hostileCase
	for _, o := range origins {
		cases = append(cases, denied(o.name, o.key, o.name))
	}
	stray, _ := auth.GenerateSigningKey("o_1")
	cases = append(cases,
		denied("silent.test: accepts TCP, never speaks TLS", stray, "silent.test"),
		denied("dead.test: nothing listens", stray, "dead.test"),
		// The liar's own document named origin.test; the real origin.test
		// must not have picked up the liar's key from it.
		denied("origin.test signed with the liar's key", origins[2].key, "origin.test"),
	)
	e.run(t, cases)
}

// listenSilent accepts TCP connections on loopback and never writes to
// them, until the test ends.
func listenSilent(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

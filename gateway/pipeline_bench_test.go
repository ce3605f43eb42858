package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
)

// Benchmarks of the inbound pipeline in process, without TLS or sockets
// on the remote side: what fedgate itself spends per request. Every
// iteration uses another of benchDistinct pre-signed requests, so no cache
// of verified signatures could stand in for verification (there is none).
// Run with:
//
//	go test -run '^$' -bench 'Inbound|Stages' -benchmem ./gateway/

const benchDistinct = 1024

type benchEnv struct {
	g      *Gateway
	origin auth.SigningKey
}

// newBenchEnv builds a Gateway in front of a minimal loopback upstream,
// with origin.test's key pinned (the keyring's hit path costs the same) and
// the access log encoded as in production, to io.Discard.
func newBenchEnv(b *testing.B, extraTOML ...string) *benchEnv {
	b.Helper()
	return newBenchEnvUpstream(b, fmt.Sprintf("url = %q\n", startBenchUpstream(b)), extraTOML...)
}

// newBenchEnvUpstream is newBenchEnv with the given [upstream] keys.
func newBenchEnvUpstream(b *testing.B, upstreamTOML string, extraTOML ...string) *benchEnv {
	b.Helper()
	dir := b.TempDir()
	gwKey, _ := auth.GenerateSigningKey("gw_1")
	keyFile := filepath.Join(dir, "signing.key")
	if err := auth.WriteKeyFile(keyFile, auth.FormatSynapse, []auth.SigningKey{gwKey}); err != nil {
		b.Fatal(err)
	}
	origin, _ := auth.GenerateSigningKey("o_1")
	toml := fmt.Sprintf(`server_name = "gw.test"
data_dir = %q
[listen]
federation = ["127.0.0.1:0"]
[well_known]
server = "gw.test:443"
[rate_limit]
per_ip = { rate = "1000000000/s", burst = 1000000 }
per_origin = { rate = "1000000000/s", burst = 1000000 }
[keys]
signing_key = %q
[[keys.pinned]]
server_name = "origin.test"
key_id = "ed25519:o_1"
public_key = %q
[upstream]
%s`, filepath.Join(dir, "data"), keyFile, auth.EncodeBase64(origin.Public()), upstreamTOML) + strings.Join(extraTOML, "\n")
	return &benchEnv{g: loadBenchGateway(b, dir, toml), origin: origin}
}

// startBenchUpstream starts the cheapest upstream that still reads the
// request and answers like a homeserver, until the benchmark ends, and
// returns its URL.
func startBenchUpstream(b *testing.B) string {
	b.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	}))
	b.Cleanup(up.Close)
	return up.URL
}

// loadBenchGateway writes toml to dir/gateway.toml and builds a Gateway
// from it, with the access log encoded as in production to io.Discard,
// closed when the benchmark ends.
func loadBenchGateway(b *testing.B, dir, toml string) *Gateway {
	b.Helper()
	path := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		b.Fatalf("%v\n%s", err, toml)
	}
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
	g, err := New(Options{Config: cfg, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { closeUpstreams(g.rt.Load().servers); g.keyring.Close() })
	return g
}

// benchRequest is one pre-signed request.
type benchRequest struct {
	method, target, auth string
	body                 []byte
}

func (e *benchEnv) presign(b *testing.B, method string, target func(i int) string, body []byte) []benchRequest {
	b.Helper()
	out := make([]benchRequest, benchDistinct)
	for i := range out {
		tg := target(i)
		x, err := auth.SignRequest(e.origin, method, tg, "origin.test", "gw.test", body)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = benchRequest{method: method, target: tg, auth: x.String(), body: body}
	}
	return out
}

// newRequest builds the *http.Request net/http would hand the handler.
func (r *benchRequest) newRequest() *http.Request {
	var body io.Reader = http.NoBody
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req := httptest.NewRequest(r.method, r.target, body)
	req.RemoteAddr = "192.0.2.1:40000"
	req.TLS = nil
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// benchTxn builds a /send body of about size bytes: PDUs with text,
// hashes and signatures, in canonical form (as Synapse sends it).
func benchTxn(b *testing.B, size int) []byte {
	b.Helper()
	var pdus []any
	for i := 0; ; i++ {
		pdus = append(pdus, map[string]any{
			"auth_events": []any{"$aXJzdC1ldmVudC1pZC1oYXNoLWJhc2U2NA" + fmt.Sprint(i), "$c2Vjb25kLWV2ZW50LWlkLWhhc2gtYmFzZTY0"},
			"content":     map[string]any{"body": "Grüße — hello <b>world</b> " + strings.Repeat("x", i%40), "msgtype": "m.text"},
			"depth":       1000 + i, "hashes": map[string]any{"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
			"origin_server_ts": 1700000000000 + i, "prev_events": []any{"$cHJldi1ldmVudC1pZA" + fmt.Sprint(i)},
			"room_id": "!OGEhHVWSdvArJzumhm:gw.test", "sender": "@alice:origin.test", "type": "m.room.message",
			"signatures": map[string]any{"origin.test": map[string]any{"ed25519:o_1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},
		})
		body, err := auth.Marshal(map[string]any{"origin": "origin.test", "origin_server_ts": 1700000000000, "pdus": pdus, "edus": []any{}})
		if err != nil {
			b.Fatal(err)
		}
		if len(body) >= size {
			return body
		}
	}
}

// discardWriter is the cheapest ResponseWriter that still looks like one.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Flush()                      {}

// serveLoop serves reqs in turn through the whole handler for as long as
// b.Loop runs, and fails on any answer but 200.
func (e *benchEnv) serveLoop(b *testing.B, reqs []benchRequest) {
	w := &discardWriter{h: http.Header{}}
	i := 0
	for b.Loop() {
		r := &reqs[i%len(reqs)]
		i++
		clear(w.h)
		w.status = 0
		e.g.serveFederation(w, r.newRequest())
		if w.status != 0 && w.status != http.StatusOK {
			b.Fatalf("%s %s: status %d", r.method, r.target, w.status)
		}
	}
}

func (e *benchEnv) cases(b *testing.B) []struct {
	name string
	reqs []benchRequest
} {
	profile := func(i int) string {
		return fmt.Sprintf("/_matrix/federation/v1/query/profile?user_id=%%40u%d%%3Agw.test&field=displayname", i)
	}
	send := func(i int) string { return fmt.Sprintf("/_matrix/federation/v1/send/%d", 1700000000000+i) }
	media := func(i int) string { return fmt.Sprintf("/_matrix/federation/v1/media/download/media%d", i) }
	local := func(method, target string) []benchRequest {
		return []benchRequest{{method: method, target: target}}
	}
	return []struct {
		name string
		reqs []benchRequest
	}{
		{"GET-profile", e.presign(b, "GET", profile, nil)},
		{"GET-media", e.presign(b, "GET", media, nil)},
		{"PUT-send-2KiB", e.presign(b, "PUT", send, benchTxn(b, 2<<10))},
		{"PUT-send-16KiB", e.presign(b, "PUT", send, benchTxn(b, 16<<10))},
		// As other encoders than Synapse's write it: the gateway must
		// write its canonical form to check the signature.
		{"PUT-send-16KiB-noncanonical", e.presign(b, "PUT", send, nonCanonicalTxn(b, benchTxn(b, 16<<10)))},
		{"local-key-document", local("GET", "/_matrix/key/v2/server")},
		{"local-well-known", local("GET", "/.well-known/matrix/server")},
	}
}

// BenchmarkInbound runs whole requests through the handler: every stage,
// the reverse proxy to a loopback upstream (whose own work counts too), and
// the access log. ns/op is wall time on one goroutine.
func BenchmarkInbound(b *testing.B) {
	e := newBenchEnv(b)
	for _, c := range e.cases(b) {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.reqs[0].body)))
			b.ReportAllocs()
			e.serveLoop(b, c.reqs)
		})
	}
}

// BenchmarkInboundAccessLog is BenchmarkInbound's verified GET with the
// access log off and on (JSON lines encoded as in production, written to
// io.Discard: the encoding's cost, not the write's).
func BenchmarkInboundAccessLog(b *testing.B) {
	for _, access := range []bool{false, true} {
		e := newBenchEnv(b, fmt.Sprintf("[log]\naccess = %t\n", access))
		c := e.cases(b)[0] // GET-profile
		b.Run(fmt.Sprintf("access=%t", access), func(b *testing.B) {
			b.ReportAllocs()
			e.serveLoop(b, c.reqs)
		})
	}
}

// BenchmarkStages runs only the pipeline's checks (no forwarding, no
// access log): the cost fedgate adds to a request on top of HTTP and the
// proxy, signature verification included.
func BenchmarkStages(b *testing.B) {
	e := newBenchEnv(b)
	for _, c := range e.cases(b) {
		if strings.HasPrefix(c.name, "local") {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.reqs[0].body)))
			b.ReportAllocs()
			w := &discardWriter{h: http.Header{}}
			i := 0
			for b.Loop() {
				r := &c.reqs[i%len(c.reqs)]
				i++
				in := e.g.newInbound(w, r.newRequest())
				for _, st := range e.g.stages {
					if err := st.check(e.g, in); err != nil {
						b.Fatalf("%s: stage %s: %v", r.target, st.name, err)
					}
				}
				if in.release != nil {
					in.release()
				}
			}
		})
	}
}

// nonCanonicalTxn re-encodes a canonical body with its members in reverse
// order and spaces after ',' and ':', as Python's json.dumps does.
func nonCanonicalTxn(b *testing.B, canon []byte) []byte {
	b.Helper()
	var v any
	if err := json.Unmarshal(canon, &v); err != nil {
		b.Fatal(err)
	}
	var out []byte
	var enc func(v any)
	enc = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			keys := slices.Sorted(maps.Keys(v))
			slices.Reverse(keys)
			out = append(out, '{')
			for i, k := range keys {
				if i > 0 {
					out = append(out, ", "...)
				}
				enc(k)
				out = append(out, ": "...)
				enc(v[k])
			}
			out = append(out, '}')
		case []any:
			out = append(out, '[')
			for i, e := range v {
				if i > 0 {
					out = append(out, ", "...)
				}
				enc(e)
			}
			out = append(out, ']')
		default:
			j, _ := json.Marshal(v) // escapes <, > and & as \u003c..., unlike canonical JSON
			out = append(out, j...)
		}
	}
	enc(v)
	return out
}

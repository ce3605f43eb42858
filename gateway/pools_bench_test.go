package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
)

// BenchmarkInboundPools runs whole requests through the handler, as
// BenchmarkInbound does, in front of one homeserver and in front of pools
// (a default pool of two members taken in turn, and /send routed to four
// workers by origin), so that the two compare in one run:
//
//	go test -run '^$' -bench InboundPools -benchmem ./gateway/
func BenchmarkInboundPools(b *testing.B) {
	var urls []string
	for range 6 {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{}`)
		}))
		b.Cleanup(up.Close)
		urls = append(urls, up.URL)
	}
	quote := func(us []string) string { return `["` + strings.Join(us, `", "`) + `"]` }
	setups := []struct{ name, upstream string }{
		{"one-member", fmt.Sprintf("url = %q\n", urls[0])},
		{"pools", fmt.Sprintf("urls = %s\n[[upstream.route]]\nendpoints = [\"send\"]\nurls = %s\nbalance = \"origin\"\n", quote(urls[:2]), quote(urls[2:]))},
	}
	for _, s := range setups {
		e := newPoolBenchEnv(b, s.upstream)
		for _, c := range e.cases(b) {
			if c.name != "GET-profile" && c.name != "PUT-send-2KiB" {
				continue
			}
			b.Run(s.name+"/"+c.name, func(b *testing.B) {
				b.SetBytes(int64(len(c.reqs[0].body)))
				b.ReportAllocs()
				w := &discardWriter{h: http.Header{}}
				i := 0
				for b.Loop() {
					r := &c.reqs[i%len(c.reqs)]
					i++
					clear(w.h)
					w.status = 0
					e.g.serveFederation(w, r.newRequest())
					if w.status != 0 && w.status != http.StatusOK {
						b.Fatalf("%s %s: status %d", r.method, r.target, w.status)
					}
				}
			})
		}
	}
}

// newPoolBenchEnv is newBenchEnv with the given [upstream] keys.
func newPoolBenchEnv(b *testing.B, upstreamTOML string) *benchEnv {
	b.Helper()
	dir := b.TempDir()
	gwKey, _ := auth.GenerateSigningKey("gw_1")
	keyFile := filepath.Join(dir, "signing.key")
	if err := auth.WriteKeyFile(keyFile, auth.FormatSynapse, []auth.SigningKey{gwKey}); err != nil {
		b.Fatal(err)
	}
	origin, _ := auth.GenerateSigningKey("o_1")
	text := fmt.Sprintf(`server_name = "gw.test"
data_dir = %q
[listen]
federation = ["127.0.0.1:0"]
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
%s`, filepath.Join(dir, "data"), keyFile, auth.EncodeBase64(origin.Public()), upstreamTOML)
	path := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
	g, err := New(Options{Config: cfg, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { closeUpstreams(g.rt.Load().servers); g.keyring.Close() })
	return &benchEnv{g: g, origin: origin}
}

package gateway

import (
	"fmt"
	"net/http"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/fedgate/fedgate/auth"
)

// BenchmarkMultiServers compares the per-request cost with 1 and with 50
// hosted servers on one gateway: the request is for the last server
// configured, so anything linear in the number of names would show. It
// runs in process like BenchmarkInbound (no TLS, a loopback upstream whose
// work counts too). Besides wall time it reports cpu-ns/op, the process's
// CPU time per request, which stays meaningful on a busy machine.
// docs/multiple-servers.md has the numbers; run with:
//
//	go test -run '^$' -bench MultiServers -benchmem -count 6 ./gateway/
func BenchmarkMultiServers(b *testing.B) {
	envs := []*multiBench{newMultiBench(b, 1), newMultiBench(b, 50)}
	cases := [][]multiBenchCase{envs[0].cases(b), envs[1].cases(b)}
	// Each case runs for 1 and then 50 servers, back to back, so that a
	// shared machine's changing load weighs on both alike.
	for ci := range cases[0] {
		for ei, e := range envs {
			c := cases[ei][ci]
			b.Run(fmt.Sprintf("%s/servers=%d", c.name, e.n), func(b *testing.B) {
				b.ReportAllocs()
				w := &discardWriter{h: http.Header{}}
				i := 0
				cpu := processCPU()
				defer func() {
					if cpu > 0 {
						b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
					}
				}()
				for b.Loop() {
					r := &c.reqs[i%len(c.reqs)]
					i++
					clear(w.h)
					w.status = 0
					req := r.newRequest()
					req.Host = e.dest
					if c.stagesOnly {
						in := e.g.newInbound(w, req)
						for _, st := range e.g.stages {
							if err := st.check(e.g, in); err != nil {
								b.Fatalf("stage %s: %v", st.name, err)
							}
						}
						if in.release != nil {
							in.release()
						}
						continue
					}
					e.g.serveFederation(w, req)
					if w.status != 0 && w.status != http.StatusOK {
						b.Fatalf("%s %s: status %d", r.method, r.target, w.status)
					}
				}
			})
		}
	}
}

type multiBench struct {
	n      int
	g      *Gateway
	origin auth.SigningKey
	dest   string // the hosted server requests are for: the last one
}

// newMultiBench builds a Gateway with n hosted servers in front of one
// loopback upstream, origin.test's key pinned, the access log encoded to
// io.Discard.
func newMultiBench(b *testing.B, n int) *multiBench {
	b.Helper()
	upURL := startBenchUpstream(b)
	dir := b.TempDir()
	origin, _ := auth.GenerateSigningKey("o_1")
	var t strings.Builder
	e := &multiBench{n: n, origin: origin}
	for i := range n {
		name := fmt.Sprintf("s%d.test", i)
		key, _ := auth.GenerateSigningKey(fmt.Sprintf("k%d", i))
		keyFile := filepath.Join(dir, name+".key")
		if err := auth.WriteKeyFile(keyFile, auth.FormatSynapse, []auth.SigningKey{key}); err != nil {
			b.Fatal(err)
		}
		section := func(s string) string { return "[servers." + s + "]" }
		if i == 0 {
			section = func(s string) string { return "[" + s + "]" }
			fmt.Fprintf(&t, "server_name = %q\ndata_dir = %q\n[listen]\nfederation = [\"127.0.0.1:0\"]\n", name, filepath.Join(dir, "data"))
			t.WriteString("[rate_limit]\nper_ip = { rate = \"1000000000/s\", burst = 1000000 }\nper_origin = { rate = \"1000000000/s\", burst = 1000000 }\n")
			fmt.Fprintf(&t, "[[keys.pinned]]\nserver_name = \"origin.test\"\nkey_id = \"ed25519:o_1\"\npublic_key = %q\n", auth.EncodeBase64(origin.Public()))
		} else {
			fmt.Fprintf(&t, "\n[[servers]]\nserver_name = %q\n", name)
		}
		fmt.Fprintf(&t, "%s\nurl = %q\n%s\nsigning_key = %q\n%s\nserver = \"fed%d.test:443\"\n",
			section("upstream"), upURL, section("keys"), keyFile, section("well_known"), i)
		e.dest = name
	}
	e.g = loadBenchGateway(b, dir, t.String())
	return e
}

type multiBenchCase struct {
	name       string
	reqs       []benchRequest
	stagesOnly bool
}

func (e *multiBench) cases(b *testing.B) []multiBenchCase {
	presign := func(method string, target func(int) string, body []byte) []benchRequest {
		out := make([]benchRequest, benchDistinct)
		for i := range out {
			tg := target(i)
			x, err := auth.SignRequest(e.origin, method, tg, "origin.test", e.dest, body)
			if err != nil {
				b.Fatal(err)
			}
			out[i] = benchRequest{method: method, target: tg, auth: x.String(), body: body}
		}
		return out
	}
	profile := func(i int) string {
		return fmt.Sprintf("/_matrix/federation/v1/query/profile?user_id=%%40u%d%%3A%s&field=displayname", i, e.dest)
	}
	send := func(i int) string { return fmt.Sprintf("/_matrix/federation/v1/send/%d", 1700000000000+i) }
	txn := benchTxn(b, 2<<10)
	return []multiBenchCase{
		{name: "stages-GET-profile", reqs: presign("GET", profile, nil), stagesOnly: true},
		{name: "GET-profile", reqs: presign("GET", profile, nil)},
		{name: "PUT-send-2KiB", reqs: presign("PUT", send, txn)},
		{name: "local-key-document", reqs: []benchRequest{{method: "GET", target: "/_matrix/key/v2/server"}}},
	}
}

// BenchmarkHostedServerMemory reports the heap a hosted server costs at
// rest (keys, key document, upstream pool, policy engine): the heap of a
// gateway with 50 servers minus one with 1, divided by 49.
//
//	go test -run '^$' -bench HostedServerMemory -benchtime 1x ./gateway/
func BenchmarkHostedServerMemory(b *testing.B) {
	heap := func(n int) uint64 {
		goruntime.GC()
		var before, after goruntime.MemStats
		goruntime.ReadMemStats(&before)
		e := newMultiBench(b, n)
		goruntime.GC()
		goruntime.ReadMemStats(&after)
		goruntime.KeepAlive(e)
		return after.HeapAlloc - before.HeapAlloc
	}
	for b.Loop() {
		one, fifty := heap(1), heap(50)
		b.ReportMetric(float64(fifty-one)/49, "heap-B/server")
	}
}

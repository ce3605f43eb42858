package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
)

// TestFailureUpstreamDiesDuringSend breaks the homeserver in the middle
// of /send transactions in every way a crash can look from the outside.
// The sending server must get 502 (never 200: it would drop the
// transaction), and the gateway must not keep a goroutine or a file
// descriptor per broken exchange. Not parallel: it counts the process's
// goroutines and descriptors.
func TestFailureUpstreamDiesDuringSend(t *testing.T) {
	inflight := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mode := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		mode = strings.TrimRight(mode, "0123456789")
		if mode == "ok" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"pdus":{}}`)
			return
		}
		if mode == "killed" {
			// The process dies with the request in flight: the test
			// severs every connection once we are here.
			inflight <- struct{}{}
			<-r.Context().Done()
			return
		}
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		switch mode {
		case "noanswer": // closes before any response
		case "headersonly":
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
		case "halfbody":
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"pdus\":{")
		case "brokenchunk":
			buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"pdu\r\n40\r\n")
		case "garbage":
			buf.WriteString("this is not HTTP\r\n\r\n")
		}
		buf.Flush()
	}))
	t.Cleanup(upstream.Close)

	ca := fedtest.NewCA(t)
	origin := newOrigin(t, ca, "origin.test")
	tg := startGatewayTo(t, nil, upstream.URL, outboundTOML(t, ca, origin))
	const body = `{"origin":"origin.test","origin_server_ts":1,"pdus":[],"edus":[]}`
	n := 0
	send := func(mode string) *http.Response {
		t.Helper()
		n++
		target := fmt.Sprintf("/_matrix/federation/v1/send/%s%d", mode, n)
		return tg.do("PUT", target, body, origin.sign("PUT", target, "gw.test", body))
	}
	// Warm up: keys fetched, connections pooled, lazily started
	// goroutines running, before the baseline is taken.
	for range 3 {
		if resp := send("ok"); resp.StatusCode != 200 {
			t.Fatalf("good transaction: %d", resp.StatusCode)
		}
	}
	settle := func() (goroutines, fds int) {
		tg.client.CloseIdleConnections()
		closeUpstreams(tg.gw.rt.Load().servers)
		upstream.CloseClientConnections()
		goruntime.GC()
		return goruntime.NumGoroutine(), countFDs(t)
	}
	g0, fd0 := settle()

	modes := []string{"noanswer", "headersonly", "halfbody", "brokenchunk", "garbage", "killed"}
	const rounds = 10
	for range rounds {
		for _, mode := range modes {
			var wg sync.WaitGroup
			if mode == "killed" {
				wg.Go(func() {
					<-inflight
					upstream.CloseClientConnections()
				})
			}
			resp := send(mode)
			b, _ := io.ReadAll(resp.Body)
			wg.Wait()
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("%s: status %d %s, want 502", mode, resp.StatusCode, b)
			}
			var m map[string]string
			if json.Unmarshal(b, &m) != nil || m["errcode"] != CodeUnknown {
				t.Fatalf("%s: body %s", mode, b)
			}
		}
	}
	if resp := send("ok"); resp.StatusCode != 200 {
		t.Fatalf("good transaction after the failures: %d", resp.StatusCode)
	}

	// Leaks would grow with the number of broken exchanges (60); allow a
	// little noise from connections still closing.
	const slack = 8
	var g1, fd1 int
	for deadline := time.Now().Add(10 * time.Second); ; {
		g1, fd1 = settle()
		if (g1 <= g0+slack && fd1 <= fd0+slack) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // closing connections leave no signal to wait on
	}
	if g1 > g0+slack {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after %d broken transactions\n%s", g0, g1, rounds*len(modes), buf[:goruntime.Stack(buf, true)])
	}
	if fd1 > fd0+slack {
		t.Fatalf("file descriptors: %d before, %d after %d broken transactions", fd0, fd1, rounds*len(modes))
	}
}

// countFDs counts this process's open file descriptors.
func countFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(entries)
}

// TestFailureKeyServerDown: an origin whose key server is down gets 401
// with a reason naming the problem, while origins with reachable (or
// cached) keys carry on, even while a fetch for the broken one hangs.
func TestFailureKeyServerDown(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	ca := fedtest.NewCA(t)
	good := newOrigin(t, ca, "good.test")
	cached := newOrigin(t, ca, "cached.test")
	down := newOrigin(t, ca, "down.test")
	hang := newOrigin(t, ca, "hang.test")
	hangStarted := make(chan struct{}, 1)
	hang.handle(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hangStarted <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	tg := startGateway(t, outboundTOML(t, ca, good, cached, down, hang)+"\n[keys]\nfetch_timeout = \"30s\"\n")

	const target = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	get := func(o *testOrigin) *http.Response {
		t.Helper()
		return tg.do("GET", target, "", o.sign("GET", target, "gw.test", ""))
	}
	// cached.test's keys are fetched while its key server is up.
	if resp := get(cached); resp.StatusCode != 200 {
		t.Fatalf("cached.test: %d", resp.StatusCode)
	}
	down.srv.Close()
	cached.srv.Close()

	m := matrixError(t, get(down), http.StatusUnauthorized, CodeUnauthorized)
	if msg := m["error"].(string); !strings.Contains(msg, "down.test") {
		t.Errorf("the 401 does not say whose keys could not be had: %q", msg)
	}
	if resp := get(cached); resp.StatusCode != 200 {
		t.Errorf("cached.test after its key server went down: %d", resp.StatusCode)
	}

	// A fetch for hang.test hangs; good.test must not wait behind it.
	hangDone := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", "https://"+tg.addr+target, nil)
		req.URL.Opaque = strings.SplitN(target, "?", 2)[0]
		req.Header.Set("Authorization", strings.TrimPrefix(hang.sign("GET", target, "gw.test", ""), "Authorization: "))
		resp, err := tg.client.Do(req)
		if err != nil {
			hangDone <- 0
			return
		}
		resp.Body.Close()
		hangDone <- resp.StatusCode
	}()
	<-hangStarted
	if resp := get(good); resp.StatusCode != 200 {
		t.Fatalf("good.test while hang.test's fetch is pending: %d", resp.StatusCode)
	}
	select {
	case code := <-hangDone:
		t.Fatalf("hang.test's request finished (%d) before its key server answered", code)
	default:
	}
	unblock() // the key server now answers with nothing: 401
	if code := <-hangDone; code != http.StatusUnauthorized {
		t.Fatalf("hang.test: %d, want 401", code)
	}
}

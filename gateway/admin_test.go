package gateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/internal/fedtest"
)

func TestHealthz(t *testing.T) {
	og := startOps(t, opsSetup{})
	for _, method := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(method, "http://"+og.admin+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || (method == "GET" && string(body) != "ok\n") {
			t.Fatalf("%s /healthz: %d %q", method, resp.StatusCode, body)
		}
	}
	if status, _ := og.get("/nothing"); status != 404 {
		t.Fatalf("unknown admin path: %d", status)
	}
}

// TestReadinessFlipsWhenUpstreamGoesAway: /readyz turns 200 once the probe
// reached the homeserver, and 503 within ready_window of it going away.
func TestReadinessFlipsWhenUpstreamGoesAway(t *testing.T) {
	og := startOps(t, opsSetup{extra: "\n[admin]\nready_window = \"1s\"\n"})
	waitFor(t, "/readyz 200", func() bool { s, _ := og.get("/readyz"); return s == 200 })
	_, body := og.get("/readyz")
	for _, want := range []string{"ok   keys: ed25519:gw_1", "ok   certificates:", "ok   upstream: " + og.hs.URL + " reached", "ok   shutdown: serving"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz lacks %q:\n%s", want, body)
		}
	}
	wantValue(t, og.scrape(), 1, "fedgate_ready")
	probes := og.hs.Requests()
	if len(probes) == 0 || probes[0].RequestURI != "/_matrix/federation/v1/version" {
		t.Fatalf("probe requests %v", probes)
	}

	og.hs.Close()
	waitFor(t, "/readyz 503", func() bool { s, _ := og.get("/readyz"); return s == 503 })
	_, body = og.get("/readyz")
	if !strings.Contains(body, "FAIL upstream: "+og.hs.URL+" not reached for") || !strings.Contains(body, "last probe:") {
		t.Errorf("/readyz does not say why:\n%s", body)
	}
	m := og.scrape()
	wantValue(t, m, 0, "fedgate_ready")
	wantValue(t, m, 0, "fedgate_ready_check", "check=upstream")
	wantValue(t, m, 1, "fedgate_ready_check", "check=keys")
	wantValue(t, m, 0, "fedgate_upstream_up")
	if n, _ := value(m, "fedgate_upstream_probes_total", "result=failed"); n < 1 {
		t.Errorf("failed probes %v", n)
	}
}

// fakeCerts is a certificate manager in a chosen state.
type fakeCerts struct {
	mu     sync.Mutex
	ready  bool
	status []certs.CertStatus
}

func (f *fakeCerts) Ready() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ready {
		return true, "files certificate for gw.test valid"
	}
	return false, "gw.test: certificate expired at 2020-01-01T00:00:00Z"
}

func (f *fakeCerts) Status() []certs.CertStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func TestReadinessNeedsCertificates(t *testing.T) {
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	fc := &fakeCerts{status: []certs.CertStatus{{Name: "gw.test", Source: certs.ModeFiles, NotBefore: expiry.Add(-90 * 24 * time.Hour), NotAfter: expiry}}}
	og := startOps(t, opsSetup{options: func(o *Options) { o.Certificates = fc }})
	waitFor(t, "the first probe", func() bool { return homeserverReached(og.gw) })
	status, body := og.get("/readyz")
	if status != 503 || !strings.Contains(body, "FAIL certificates: gw.test: certificate expired") {
		t.Fatalf("/readyz %d:\n%s", status, body)
	}
	m := og.scrape()
	wantValue(t, m, float64(expiry.Unix()), "fedgate_certs_not_after_timestamp_seconds", "name=gw.test", "source=files")
	wantValue(t, m, 0, "fedgate_certs_pending", "name=gw.test")
	fc.mu.Lock()
	fc.ready = true
	fc.mu.Unlock()
	if status, body := og.get("/readyz"); status != 200 {
		t.Fatalf("/readyz %d:\n%s", status, body)
	}
}

// TestShutdownDrains: Shutdown lets a request in flight finish with 200,
// /readyz says 503 while it drains, and nothing new is accepted.
func TestShutdownDrains(t *testing.T) {
	hs := fedtest.StartHomeserver(t)
	og := startOps(t, opsSetup{hs: hs})
	waitFor(t, "/readyz 200", func() bool { s, _ := og.get("/readyz"); return s == 200 })
	arrived := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	hs.Handle(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") == "fedgate readiness probe" {
			return
		}
		once.Do(func() { close(arrived) })
		<-release
		w.Write([]byte(`{"server":{"name":"slow"}}`))
	})
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", "https://"+og.addr+"/_matrix/federation/v1/version", nil)
		resp, err := og.client.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	<-arrived
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- og.gw.Shutdown(ctx)
	}()
	waitFor(t, "/readyz to report the shutdown", func() bool {
		s, body := og.get("/readyz")
		return s == 503 && strings.Contains(body, "FAIL shutdown: shutting down")
	})
	if _, err := http.Get("https://" + og.addr + "/"); err == nil {
		t.Error("federation listener still accepts connections while draining")
	}
	close(release)
	if r := <-done; r.err != nil || r.status != 200 {
		t.Fatalf("in-flight request: %d %v", r.status, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestPprofSwitch(t *testing.T) {
	for _, on := range []bool{true, false} {
		extra := "\n[admin]\npprof = false\n"
		if on {
			extra = ""
		}
		og := startOps(t, opsSetup{extra: extra})
		status, body := og.get("/debug/pprof/")
		if on && (status != 200 || !strings.Contains(body, "goroutine")) {
			t.Errorf("pprof on: %d", status)
		}
		if !on && status != 404 {
			t.Errorf("pprof off: %d", status)
		}
		if status, _ := og.get("/debug/pprof/cmdline"); (status == 200) != on {
			t.Errorf("pprof %v: cmdline %d", on, status)
		}
	}
}

// TestReloadMetrics: reloads are counted, a refused one flips
// fedgate_config_last_reload_successful.
func TestReloadMetrics(t *testing.T) {
	og := startOps(t, opsSetup{extra: "\n[admin]\npeers = [\"a.test\", \"b.test\"]\n"})
	cfg := *og.cfg
	cfg.Admin.Peers = []string{"a.test"}
	if err := og.gw.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	og.gw.ReloadFailed()
	m := og.scrape()
	wantValue(t, m, 1, "fedgate_config_reloads_total", "result=ok")
	wantValue(t, m, 1, "fedgate_config_reloads_total", "result=failed")
	wantValue(t, m, 0, "fedgate_config_last_reload_successful")
	if got := labelValues(m, "fedgate_gateway_peer_requests_total", "peer"); strings.Join(got, ",") != "a.test,other" {
		t.Errorf("after reload, peers %v", got)
	}
	if err := og.gw.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	wantValue(t, og.scrape(), 1, "fedgate_config_last_reload_successful")
}

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
)

// proc is a fedgate process started by a test, with its stderr (JSON log
// lines) followed.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	ctx    context.Context
	more   chan struct{} // signalled when a line arrives
	eof    chan struct{} // closed when stderr ends
	cursor int           // waitLine has looked at all[:cursor]

	mu  sync.Mutex
	all []string // every line read so far
}

// startProc runs "fedgate run -config cfg" and waits until it is ready.
func startProc(t *testing.T, bin, cfg string) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	p := &proc{t: t, cmd: exec.CommandContext(ctx, bin, "run", "-config", cfg), ctx: ctx,
		more: make(chan struct{}, 1), eof: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.all = append(p.all, sc.Text())
			p.mu.Unlock()
			select {
			case p.more <- struct{}{}:
			default: // a signal is already pending
			}
		}
		close(p.eof)
	}()
	p.waitLine(`"msg":"fedgate ready"`)
	return p
}

// waitLine returns the next log line (after the one the previous call
// returned) containing s.
func (p *proc) waitLine(s string) string {
	p.t.Helper()
	for {
		p.mu.Lock()
		lines := p.all
		p.mu.Unlock()
		for ; p.cursor < len(lines); p.cursor++ {
			if strings.Contains(lines[p.cursor], s) {
				p.cursor++
				return lines[p.cursor-1]
			}
		}
		select {
		case <-p.more:
		case <-p.eof:
			p.mu.Lock()
			n := len(p.all)
			p.mu.Unlock()
			if n == p.cursor {
				p.t.Fatalf("fedgate exited before logging %q:\n%s", s, p.log())
			}
		case <-p.ctx.Done():
			p.t.Fatalf("timed out waiting for %q:\n%s", s, p.log())
		}
	}
}

// addr finds the address a listener of kind logged.
func (p *proc) addr(kind string) string {
	p.t.Helper()
	re := regexp.MustCompile(`"msg":"listening".*"listener":"` + kind + `".*"addr":"([^"]+)"`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, l := range p.all {
			if m := re.FindStringSubmatch(l); m != nil {
				p.mu.Unlock()
				return m[1]
			}
		}
		p.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	p.t.Fatalf("no %s listener logged:\n%s", kind, p.log())
	return ""
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.all, "\n")
}

func (p *proc) signal(s os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}

// wait waits for the process to exit and fails unless it exited 0.
func (p *proc) wait() {
	p.t.Helper()
	<-p.eof // Wait closes the pipe: read everything first
	if err := p.cmd.Wait(); err != nil {
		p.t.Fatalf("fedgate exited with %v:\n%s", err, p.log())
	}
}

// processConfig is the configuration of the process tests; the verbs are
// the data folder, the upstream URL, the certificate files and extra TOML
// appended at the end. Every request comes from 127.0.0.1, so the per-IP
// limit is lifted.
const processConfig = `server_name = "example.test"
data_dir = %q
[upstream]
url = %q
timeout = "30s"
[listen]
federation = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
[server]
shutdown_grace = "30s"
[tls]
mode = "files"
cert_file = %q
key_file = %q
[keys]
generate = true
[log]
format = "json"
access = false
[rate_limit]
per_ip = { rate = "100000/s", burst = 100000 }
%s
`

// processSetup writes a configuration with certificates from a new test
// CA and returns its path, the CA and a client trusting it.
func processSetup(t *testing.T, hsURL, extra string) (cfg string, ca *fedtest.CA, client *http.Client) {
	t.Helper()
	dir := t.TempDir()
	ca = fedtest.NewCA(t)
	certFile, keyFile := ca.WriteLeafFiles(t, dir, "127.0.0.1")
	cfg = filepath.Join(dir, "gateway.toml")
	writeProcessConfig(t, cfg, hsURL, certFile, keyFile, extra)
	client = &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, MaxIdleConnsPerHost: 64},
		Timeout:   60 * time.Second,
	}
	t.Cleanup(client.CloseIdleConnections)
	return cfg, ca, client
}

func writeProcessConfig(t *testing.T, cfg, hsURL, certFile, keyFile, extra string) {
	t.Helper()
	text := fmt.Sprintf(processConfig, filepath.Join(filepath.Dir(cfg), "data"), hsURL, certFile, keyFile, extra)
	tmp := cfg + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, cfg); err != nil { // never read half-written
		t.Fatal(err)
	}
}

func isProbe(r *http.Request) bool { return r.Header.Get("User-Agent") == "fedgate readiness probe" }

// TestDrainOnSIGTERM: a real fedgate process in front of a slow homeserver
// gets SIGTERM while requests are in flight: it stops accepting, reports
// not ready, lets every in-flight request finish with 200 and exits 0.
func TestDrainOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const inFlight = 20
	hs := fedtest.StartHomeserver(t)
	var arrived atomic.Int32
	allArrived := make(chan struct{})
	release := make(chan struct{})
	hs.Handle(func(w http.ResponseWriter, r *http.Request) {
		if !isProbe(r) {
			if arrived.Add(1) == inFlight {
				close(allArrived)
			}
			<-release
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"server":{"name":"Slow","version":"1"}}`))
	})
	cfg, _, client := processSetup(t, hs.URL, "")
	p := startProc(t, buildBinary(t), cfg)
	fed, admin := p.addr("federation"), p.addr("admin")

	var wg sync.WaitGroup
	results := make(chan error, inFlight)
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get("https://" + fed + "/_matrix/federation/v1/version")
			if err != nil {
				results <- err
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), "Slow") {
				results <- fmt.Errorf("status %d body %q err %v", resp.StatusCode, body, err)
				return
			}
			results <- nil
		}()
	}
	select {
	case <-allArrived:
	case <-p.ctx.Done():
		t.Fatalf("only %d requests reached the homeserver", arrived.Load())
	}

	p.signal(syscall.SIGTERM)
	p.waitLine(`"msg":"shutting down"`)
	// Draining: new connections are refused, /readyz says why.
	waitCondition(t, "the federation listener to close", func() bool {
		c, err := net.DialTimeout("tcp", fed, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	resp, err := http.Get("http://" + admin + "/readyz")
	if err != nil {
		t.Fatalf("admin listener gone while draining: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "FAIL shutdown: shutting down") {
		t.Errorf("/readyz while draining: %d %s", resp.StatusCode, body)
	}

	close(release)
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Errorf("in-flight request failed: %v", err)
		}
	}
	p.waitLine(`"msg":"stopped"`)
	p.wait()
}

// TestSIGHUPUnderLoad: SIGHUP while requests keep flowing reloads the
// configuration (a new endpoint rule) and the certificate files, and not
// one request fails.
func TestSIGHUPUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	hs := fedtest.StartHomeserver(t)
	hs.Handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	})
	cfg, ca, client := processSetup(t, hs.URL, "")
	p := startProc(t, buildBinary(t), cfg)
	fed := p.addr("federation")
	const media = "/_matrix/media/v3/download/example.test/abc"
	get := func(path string) (int, error) {
		resp, err := client.Get("https://" + fed + path)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if s, err := get(media); s != 200 {
		t.Fatalf("media before the reload: %d %v", s, err)
	}
	serial := func() string {
		conn, err := tls.Dial("tcp", fed, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()

	// Load: a few clients send requests without pause.
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := get("/_matrix/federation/v1/version")
				if err != nil || s != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d, error %v", s, err))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	waitCondition(t, "load to flow", func() bool { return ok.Load() > 50 })

	// New configuration and new certificate files, then SIGHUP.
	dir := filepath.Dir(cfg)
	certFile, keyFile := ca.WriteLeafFiles(t, dir, "127.0.0.1")
	writeProcessConfig(t, cfg, hs.URL, certFile, keyFile, "[policy]\ndeny_endpoints = [\"media\"]\n")
	atReload := ok.Load()
	p.signal(syscall.SIGHUP)
	p.waitLine(`"msg":"configuration reloaded"`)
	waitCondition(t, "load to continue after the reload", func() bool { return ok.Load() > atReload+200 })
	close(stop)
	wg.Wait()

	t.Logf("%d requests, %d of them after the SIGHUP", ok.Load()+failed.Load(), ok.Load()-atReload)
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed during the reload; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	if s, err := get(media); s != 403 {
		t.Errorf("media after the reload: %d %v (want 403: deny_endpoints applied)", s, err)
	}
	if after := serial(); after == before {
		t.Errorf("still serving certificate %s after the reload", before)
	}
	p.signal(syscall.SIGTERM)
	p.waitLine(`"msg":"stopped"`)
	p.wait()
}

// waitCondition polls cond until it holds or 30 s pass.
func waitCondition(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBufferedAccessLogOnSIGTERM: with log.access_buffer a real fedgate
// process writes every access line by the time it exits, those still in
// the buffer at SIGTERM included, each a whole JSON line.
func TestBufferedAccessLogOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const requests = 50
	hs := fedtest.StartHomeserver(t)
	cfg, _, client := processSetup(t, hs.URL, "")
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	buffered := strings.Replace(string(text), "access = false", "access = true\naccess_buffer = \"64KiB\"", 1)
	if err := os.WriteFile(cfg, []byte(buffered), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, buildBinary(t), cfg)
	fed := p.addr("federation")
	for range requests {
		resp, err := client.Get("https://" + fed + "/_matrix/federation/v1/version")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	p.signal(syscall.SIGTERM)
	p.wait()
	n := 0
	for _, line := range strings.Split(p.log(), "\n") {
		if strings.Contains(line, `"logger":"access"`) {
			if !strings.HasPrefix(line, "{") || !strings.HasSuffix(line, "}") {
				t.Errorf("not a whole line: %q", line)
			}
			n++
		}
	}
	if n != requests {
		t.Fatalf("%d access lines after exit, want %d:\n%s", n, requests, p.log())
	}
}

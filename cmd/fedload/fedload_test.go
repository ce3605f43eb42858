package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/gateway"
)

// TestScenariosThroughGateway runs every scenario, briefly, through a
// gateway built in process from the configuration fedload writes: the
// pre-signed requests must verify and be forwarded, and the local
// endpoints answered, without a single error.
func TestScenariosThroughGateway(t *testing.T) {
	dir := t.TempDir()
	e, err := newEnv(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.close)
	key, err := auth.GenerateSigningKey("gw")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "fedgate-data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := auth.WriteKeyFile(filepath.Join(dir, "fedgate-data", "signing.key"), auth.FormatSynapse, []auth.SigningKey{key}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fedgate.toml")
	if err := os.WriteFile(path, []byte(e.fedgateTOML("fedgate", 0, 0, logBuffered, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("fedload's configuration: %v", err)
	}
	if !cfg.Log.Access || cfg.Log.AccessBuffer != 64<<10 {
		t.Fatalf("access log %v, buffer %d: not what -access-log buffered asks for", cfg.Log.Access, cfg.Log.AccessBuffer)
	}
	cert, err := tls.LoadX509KeyPair(e.certFile, e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Options{Config: cfg, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gw.Shutdown(ctx)
	})
	scenarios, err := buildScenarios(scenarioNames, e.origins, 20)
	if err != nil {
		t.Fatal(err)
	}
	targets := []*target{
		{name: "direct", base: "http://" + e.upstream.addr},
		{name: "fedgate", base: "https://" + gw.Addrs(gateway.ListenerFederation)[0].String(), pid: os.Getpid()},
	}
	client := newClient(e.ca, 4)
	t.Cleanup(client.CloseIdleConnections)
	for _, s := range scenarios {
		for _, tg := range targets {
			r, err := run(context.Background(), client, tg, s, loadSpec{requests: 40, duration: 20 * time.Second, conns: 4})
			if err != nil {
				t.Fatal(err)
			}
			if r.n != 40 || r.errors != 0 {
				t.Fatalf("%s against %s: %d requests, %d errors, first: %s", s.name, tg.name, r.n, r.errors, r.firstError)
			}
			if tg.pid != 0 && r.cpu < 0 {
				t.Fatalf("negative CPU time %v", r.cpu)
			}
		}
	}
	for _, o := range e.origins {
		if o.fetches.Load() == 0 {
			t.Errorf("%s: fedgate never fetched its keys", o.name)
		}
	}
}

func TestProcReadings(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	cpu, err := procCPU(os.Getpid())
	if err != nil || cpu < 0 {
		t.Fatalf("procCPU: %v %v", cpu, err)
	}
	m, err := readProcMem(os.Getpid())
	if err != nil || m.RSS <= 0 || m.Threads <= 0 || m.FDs <= 0 {
		t.Fatalf("readProcMem: %+v %v", m, err)
	}
	if _, err := procCPU(-1); err == nil {
		t.Fatal("procCPU of no process succeeded")
	}
}

func TestDispatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"help"}, 0, "Usage"},
		{[]string{"bench", "-h"}, 0, "interleaved rounds"},
		{[]string{"soak", "-h"}, 0, "steady mixed load"},
		{[]string{"nonsense"}, 2, "unknown mode"},
		{[]string{"bench", "-requests", "0"}, 1, "must be positive"},
		{[]string{"bench", "-scenarios", "nope", "-fedgate", "none", "-caddy", "none", "-nginx", "none", "-origins", "1", "-distinct", "1"}, 1, "unknown scenario"},
		{[]string{"soak", "-rate", "0"}, 1, "must be positive"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		code := dispatch(context.Background(), tt.args, &out, &out)
		if code != tt.code || !strings.Contains(out.String(), tt.out) {
			t.Errorf("%v: code %d, output %q", tt.args, code, out.String())
		}
	}
}

// TestFindBinaryMakesPathsAbsolute: fedload starts the proxies in its work
// folder, so "-fedgate bin/fedgate" must not be resolved there.
func TestFindBinaryMakesPathsAbsolute(t *testing.T) {
	got := findBinary("bin/fedgate", "fedgate")
	if !filepath.IsAbs(got) || !strings.HasSuffix(got, filepath.Join("bin", "fedgate")) {
		t.Fatalf("findBinary(bin/fedgate) = %q", got)
	}
	if got := findBinary("none", "fedgate"); got != "" {
		t.Fatalf("none: %q", got)
	}
	if got := findBinary("caddy", "caddy"); got != "caddy" {
		t.Fatalf("a bare name stays for PATH lookup: %q", got)
	}
}

func TestWorkDirIsAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	dir, cleanup, err := workDir("bench-run")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if !filepath.IsAbs(dir) {
		t.Fatalf("workDir(bench-run) = %q", dir)
	}
}

// TestNonCanonicalKeepsContent: the put-send-16k-nc bodies differ from
// their canonical form but canonicalise back to it, so their signatures
// (made over the content) verify.
func TestNonCanonicalKeepsContent(t *testing.T) {
	t.Parallel()
	canon := transaction("o0.origins.fedload.test", 7, 4<<10)
	nc := nonCanonical(canon)
	if bytes.Equal(nc, canon) || auth.IsCanonical(nc) {
		t.Fatal("the re-encoded body is still canonical")
	}
	back, err := auth.CanonicalizeContent(nil, nc)
	if err != nil || !bytes.Equal(back, canon) {
		t.Fatalf("canonicalised back: %v\n%s\nwant\n%s", err, back, canon)
	}
	if bytes.ContainsFunc(nc, func(r rune) bool { return r >= 0x80 }) {
		t.Fatal("non-ASCII left unescaped")
	}
}

func TestFedgateBinariesFlag(t *testing.T) {
	t.Parallel()
	bins, err := fedgateBinaries("new=bin/fedgate,main=/tmp/fedgate-main")
	if err != nil || len(bins) != 2 || bins[0].label != "new" || bins[1].label != "main" || !filepath.IsAbs(bins[0].path) {
		t.Fatalf("%+v %v", bins, err)
	}
	for _, bad := range []string{"a=x,a=y", "caddy=x", "=x", "a b=x", "a=", "x+log=y"} {
		if _, err := fedgateBinaries(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if bins, err := fedgateBinaries("none"); err != nil || bins != nil {
		t.Fatalf("none: %v %v", bins, err)
	}
	for _, v := range []string{"on", "off", "both", "true", "false", "buffered", "all", "off,buffered"} {
		if _, err := accessLogModes(v); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	// Each mode is one target named after it: a mode named twice would
	// start two fedgates on the same configuration file and data folder.
	if modes, err := accessLogModes("on,true,buffered,on"); err != nil || !slices.Equal(modes, []logMode{logOn, logBuffered}) {
		t.Errorf("on,true,buffered,on: %v %v", modes, err)
	}
	for _, bad := range []string{"maybe", "on,maybe", ""} {
		if _, err := accessLogModes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

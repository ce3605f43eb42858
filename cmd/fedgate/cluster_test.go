package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
)

// TestRunClusterMode runs the real binary with [cluster] against a real
// redis-server: it logs cluster mode, exports the cluster metrics with
// Redis up, and a reload that changes [cluster] says a restart is needed.
func TestRunClusterMode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	r := fedtest.StartRedis(t)
	bin := buildBinary(t)
	hs := fedtest.StartHomeserver(t)
	extra := "[cluster]\nredis = \"" + r.URL + "\"\nnode = \"p1\"\nprefix = \"proctest:\"\n"
	cfg, _, _ := processSetup(t, hs.URL, extra)
	p := startProc(t, bin, cfg)
	if !strings.Contains(p.log(), `"msg":"cluster mode: sharing limits, keys, backoff and ACME storage in Redis"`) {
		t.Fatalf("no cluster mode line before ready:\n%s", p.log())
	}
	admin := p.addr("admin")
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"fedgate_cluster_redis_up 1", `fedgate_cluster_info{node="p1",prefix="proctest:"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// fedgate_cluster_redis_up is 1 from the start, before any round trip,
	// so it does not show that fedgate reached Redis: Redis itself must
	// count the instance's subscription to the shared backoff channel.
	// The reply: *2, $<length>, the channel, :<subscribers>.
	subscribers := func() string {
		lines := r.DoLines("PUBSUB NUMSUB proctest:backoff", 4)
		if len(lines) < 4 {
			return "(reply " + strings.Join(lines, " ") + ")"
		}
		return lines[3]
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		got := subscribers()
		if got == ":1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis counts %s subscribers of proctest:backoff, want fedgate's one:\n%s", got, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	writeProcessConfig(t, cfg, hs.URL, certFileOf(t, cfg), keyFileOf(t, cfg), strings.Replace(extra, `"p1"`, `"p2"`, 1))
	p.signal(syscall.SIGHUP)
	p.waitLine("cluster settings changed; restart fedgate to apply them")
	p.signal(syscall.SIGTERM)
	p.wait()
}

// TestCheckConfigCluster: check-config shows [cluster] with the password
// hidden, and refuses a bad URL at its line.
func TestCheckConfigCluster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := "server_name = \"example.org\"\n[upstream]\nurl = \"http://127.0.0.1:8008\"\n[keys]\ngenerate = true\nsigning_key = \"" + filepath.Join(dir, "k") + "\"\n"
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte(base+"[cluster]\nredis = \"redis://fedgate:s3cr3t@10.0.0.20:6379/0\"\n"), 0o600)
	code, out, errOut := runCLI("check-config", "-config", good)
	if code != exitOK || !strings.Contains(out, "cluster:") || !strings.Contains(out, "10.0.0.20:6379") || strings.Contains(out, "s3cr3t") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte(base+"[cluster]\nredis = \"redis://10.0.0.20:6379/zero\"\n"), 0o600)
	code, _, errOut = runCLI("check-config", "-config", bad)
	if code == exitOK || !strings.Contains(errOut, "bad.toml:8: cluster.redis") {
		t.Fatalf("bad URL: exit %d\n%s", code, errOut)
	}
}

// certFileOf and keyFileOf read the certificate paths back from a
// configuration processSetup wrote.
func certFileOf(t *testing.T, cfg string) string { return configValue(t, cfg, "cert_file") }
func keyFileOf(t *testing.T, cfg string) string  { return configValue(t, cfg, "key_file") }

func configValue(t *testing.T, cfg, key string) string {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+" = "); ok {
			return strings.Trim(v, `"`)
		}
	}
	t.Fatalf("%s not in %s", key, cfg)
	return ""
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedgate/fedgate/auth"
)

// runCLI runs a subcommand in-process and returns its exit code and output.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = dispatch(&environment{stdout: &out, stderr: &errOut}, args)
	return code, out.String(), errOut.String()
}

func TestDispatchUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string // substring of stdout+stderr
	}{
		{nil, exitUsage, "Commands:"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"help"}, exitOK, "check-config"},
		{[]string{"-h"}, exitOK, "keygen"},
		{[]string{"run", "-bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{[]string{"check-config", "-config"}, exitUsage, "flag needs an argument"},
		{[]string{"version", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"keygen"}, exitUsage, "-out is required"},
		{[]string{"keygen", "-out", "x", "-format", "pem"}, exitUsage, "-format must be synapse or dendrite"},
		{[]string{"keygen", "-out", "x", "-version", "a-b"}, exitUsage, "letters, digits and _"},
		{[]string{"help", "keygen"}, exitOK, "-format"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out+errOut, tt.out) {
				t.Errorf("output lacks %q:\n%s%s", tt.out, out, errOut)
			}
		})
	}
}

// TestHelpDescribesEveryFlag checks that -h on every subcommand exits 0 and
// mentions each of its flags with an explanation.
func TestHelpDescribesEveryFlag(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			code, out, _ := runCLI(c.name, "-h")
			if code != exitOK {
				t.Fatalf("exit %d", code)
			}
			if !strings.Contains(out, "Usage: fedgate "+c.name) {
				t.Fatalf("no usage line:\n%s", out)
			}
			// flag.PrintDefaults puts each description on the line after the
			// flag's name; a flag without one would end the block early.
			lines := strings.Split(out, "\n")
			for i, line := range lines {
				if strings.HasPrefix(line, "  -") && (i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "    \t")) {
					t.Errorf("flag %s has no description", strings.TrimSpace(line))
				}
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	code, out, errOut := runCLI("check-config", "-config", "../../gateway.toml.example")
	if code != exitOK {
		t.Fatalf("example: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"configuration OK", "server_name:", "localhost:8448", "listeners:", "tls:", "self_signed", "signing keys:", "policy:", "upstream:"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI("check-config", "-config", "../../gateway.toml.example", "-print")
	if code != exitOK || !strings.Contains(out, "# effective configuration") || !strings.Contains(out, "read_header_timeout = '10s'") {
		t.Errorf("-print: exit %d\n%s", code, out)
	}
}

// TestCheckConfigSummaryPools: the summary shows the default pool's
// members and balance, each route with its endpoints, members and balance
// (round_robin when unset), and a buffered access log.
func TestCheckConfigSummaryPools(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.toml")
	if err := os.WriteFile(path, []byte(`server_name = "a.example"
[upstream]
urls = ["http://127.0.0.1:8008", "http://127.0.0.1:8009"]
balance = "least_busy"
[[upstream.route]]
endpoints = ["send"]
urls = ["http://127.0.0.1:8083", "http://127.0.0.1:8084"]
balance = "origin"
[[upstream.route]]
name = "media"
endpoints = ["media", "version"]
urls = ["http://127.0.0.1:8085"]
[[upstream.route]]
endpoints = ["backfill"]
urls = ["http://127.0.0.1:8086", "http://127.0.0.1:8087"]
[keys]
generate = true
[log]
access = true
access_buffer = "64KiB"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI("check-config", "-config", path)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	for _, want := range []string{
		"upstream:     http://127.0.0.1:8008 http://127.0.0.1:8009 (least_busy) (timeout 1m0s); " +
			"route send: send -> http://127.0.0.1:8083 http://127.0.0.1:8084 (origin); " +
			"route media: media version -> http://127.0.0.1:8085; " +
			"route backfill: backfill -> http://127.0.0.1:8086 http://127.0.0.1:8087 (round_robin)\n",
		"access log on, buffered (64KiB, written at least once a second)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// TestCheckConfigInvalid runs check-config on every invalid test file of the
// config package: exit 1 and only FILE:LINE: lines on stderr.
func TestCheckConfigInvalid(t *testing.T) {
	files, _ := filepath.Glob("../../config/testdata/invalid/*.toml")
	if len(files) < 8 {
		t.Fatalf("only %d invalid files", len(files))
	}
	located := regexp.MustCompile(`^\S+\.toml:\d+: .+`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			code, out, errOut := runCLI("check-config", "-config", f)
			if code != exitFailure {
				t.Fatalf("exit %d, want 1\n%s", code, out)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			for _, l := range lines {
				if !located.MatchString(l) {
					t.Errorf("not FILE:LINE: %q", l)
				}
			}
		})
	}
	code, _, errOut := runCLI("check-config", "-config", filepath.Join(t.TempDir(), "missing.toml"))
	if code != exitFailure || !strings.Contains(errOut, "no such file") {
		t.Fatalf("missing file: exit %d %s", code, errOut)
	}
}

// TestCheckConfigBadKeyFile: a key file that exists but does not parse is
// reported at the signing_key line.
func TestCheckConfigBadKeyFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.key"), []byte("ed25519 1 notbase64!\n"), 0o600)
	cfg := filepath.Join(dir, "f.toml")
	os.WriteFile(cfg, []byte("server_name = \"example.org\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[keys]\nsigning_key = \"bad.key\"\n"), 0o600)
	code, _, errOut := runCLI("check-config", "-config", cfg)
	if code != exitFailure || !strings.Contains(errOut, "f.toml:5: keys.signing_key:") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestKeygenRoundTrip(t *testing.T) {
	for _, format := range []string{"synapse", "dendrite"} {
		t.Run(format, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "signing.key")
			code, out, errOut := runCLI("keygen", "-out", path, "-format", format, "-version", "test_1")
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			keys, err := auth.LoadKeyFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 || keys[0].ID != "ed25519:test_1" {
				t.Fatalf("keys %+v", keys)
			}
			if !strings.Contains(out, "ed25519:test_1") || !strings.Contains(out, auth.EncodeBase64(keys[0].Public())) {
				t.Fatalf("output lacks key id or public key:\n%s", out)
			}
			data, _ := os.ReadFile(path)
			switch format {
			case "synapse":
				if !regexp.MustCompile(`^ed25519 test_1 [A-Za-z0-9+/]{43}\n$`).Match(data) {
					t.Fatalf("synapse file %q", data)
				}
			case "dendrite":
				if !bytes.HasPrefix(data, []byte("-----BEGIN MATRIX PRIVATE KEY-----\nKey-ID: ed25519:test_1\n")) {
					t.Fatalf("dendrite file %q", data)
				}
			}
			code, _, errOut = runCLI("keygen", "-out", path, "-format", format)
			if code != exitFailure || !strings.Contains(errOut, "exists") {
				t.Fatalf("overwrite: exit %d %s", code, errOut)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI("version")
	if code != exitOK || !strings.Contains(out, "fedgate ") || !strings.Contains(out, "go1.") || !strings.Contains(out, "commit ") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

// buildBinary compiles fedgate once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fedgate")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("building fedgate: %v", err)
	}
	return bin
}

// TestRunStopsOnSIGTERM starts the real binary, waits until it serves, then
// sends SIGTERM and expects a clean exit 0.
func TestRunStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.toml")
	os.WriteFile(cfg, []byte(`server_name = "example.org"
[upstream]
url = "http://127.0.0.1:1"
[listen]
federation = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
[keys]
generate = true
[log]
format = "json"
`), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "-config", cfg)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Lines are kept: the listeners log from their own goroutines, so
	// their lines and "fedgate ready" come in either order.
	var seen []string
	waitFor := func(what string) string {
		for _, l := range seen {
			if strings.Contains(l, what) {
				return l
			}
		}
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("process ended before %q", what)
				}
				seen = append(seen, l)
				if strings.Contains(l, what) {
					return l
				}
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %q", what)
			}
		}
	}
	waitFor(`"msg":"fedgate ready"`)
	adminLine := waitFor(`"listener":"admin"`)
	addr := regexp.MustCompile(`"addr":"([^"]+)"`).FindStringSubmatch(adminLine)[1]
	if err := checkHealthz(addr); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "signing.key")); err != nil {
		t.Fatalf("signing key not generated: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(`"msg":"stopped"`)
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

func checkHealthz(addr string) error {
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	return nil
}

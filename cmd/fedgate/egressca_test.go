package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEgressCACommand: the first run creates the CA where "fedgate run"
// would, later runs print the same one; -pem prints a certificate only.
func TestEgressCACommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.toml")
	os.WriteFile(cfg, []byte("server_name = \"example.org\"\ndata_dir = \"data\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[keys]\ngenerate = true\n"), 0o600)

	code, out, errOut := runCLI("egress-ca", "-config", cfg)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	caFile := filepath.Join(dir, "data", "egress-ca", "ca.pem")
	for _, want := range []string{"egress CA (created): " + caFile, "sha256:", "federation_custom_ca_list", "SSL_CERT_FILE", "-----BEGIN CERTIFICATE-----"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if errOut != "" {
		t.Errorf("stderr: %s", errOut)
	}
	fingerprint := lineWith(out, "sha256:")

	code, out, _ = runCLI("egress-ca", "-config", cfg)
	if code != exitOK || !strings.Contains(out, "egress CA (loaded)") || lineWith(out, "sha256:") != fingerprint {
		t.Fatalf("second run: exit %d\n%s", code, out)
	}

	code, out, _ = runCLI("egress-ca", "-config", cfg, "-pem")
	block, rest := pem.Decode([]byte(out))
	if code != exitOK || block == nil || strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("-pem: exit %d\n%s", code, out)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !cert.IsCA {
		t.Fatalf("-pem printed no CA certificate: %v", err)
	}
	onDisk, _ := os.ReadFile(caFile)
	if string(onDisk) != out {
		t.Fatal("-pem differs from the file")
	}

	// Passthrough users are told the CA is not used.
	os.WriteFile(cfg, []byte("server_name = \"example.org\"\ndata_dir = \"data\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[keys]\ngenerate = true\n[egress]\nconnect = \"passthrough\"\n"), 0o600)
	if code, _, errOut := runCLI("egress-ca", "-config", cfg); code != exitOK || !strings.Contains(errOut, `"passthrough"`) {
		t.Fatalf("passthrough: exit %d %s", code, errOut)
	}
}

func TestEgressCACommandErrors(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := runCLI("egress-ca", "-config", filepath.Join(dir, "missing.toml"))
	if code != exitFailure || !strings.Contains(errOut, "no such file") {
		t.Fatalf("missing config: exit %d %s", code, errOut)
	}
	// Half a CA is refused, never replaced.
	caDir := filepath.Join(dir, "ca")
	os.MkdirAll(caDir, 0o700)
	os.WriteFile(filepath.Join(caDir, "ca.pem"), []byte("junk"), 0o644)
	cfg := filepath.Join(dir, "gateway.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("server_name = \"example.org\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[keys]\ngenerate = true\n[egress]\nca_dir = %q\n", caDir)), 0o600)
	code, _, errOut = runCLI("egress-ca", "-config", cfg)
	if code != exitFailure || !strings.Contains(errOut, "incomplete") {
		t.Fatalf("half a CA: exit %d %s", code, errOut)
	}
}

func lineWith(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

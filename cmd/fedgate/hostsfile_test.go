package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSelftestHostsFile: a deployment whose host (the SRV target) only the
// hosts file names, as on a Docker network or with Kubernetes hostAliases,
// passes the self-test when outbound.hosts_file lists it, says where the
// addresses came from, and fails discovery without the hosts file.
func TestSelftestHostsFile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fedgate")
	}
	d := startDeployment(t, deploymentSetup{hostsOnly: true})
	hosts := filepath.Join(d.dir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 fed.example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withHosts := func(name, value string) string {
		p := d.writeConfig(name, "", "", d.keyFile)
		data, _ := os.ReadFile(p)
		text := strings.Replace(string(data), "[outbound]\n", "[outbound]\nhosts_file = \""+value+"\"\n", 1)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	code, out, errOut := runCLI("selftest", "-config", withHosts("hosts.toml", hosts), "-timeout", "30s")
	lines := parseSelftest(t, out)
	for check, want := range map[string]string{
		"discovery": "PASS example.test: spec rule 4 (_matrix-fed._tcp SRV) -> Host example.test, TLS name example.test, addresses " + d.fedAddr + " (hosts file) -- fix: addresses from the hosts file reach only servers that share it",
		"tls":       "PASS " + d.fedAddr + ": certificate for example.test",
		"keys":      "PASS key document from " + d.fedAddr,
		"version":   "PASS the homeserver answers through fedgate",
	} {
		if !strings.HasPrefix(lines[check], want) {
			t.Errorf("%s:\n got %s\nwant %s", check, lines[check], want)
		}
	}
	if code != exitOK {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}

	// The same configuration without the hosts file (the flag overrides
	// outbound.hosts_file): the SRV target has no address.
	code, out, _ = runCLI("selftest", "-config", withHosts("hosts2.toml", hosts), "-hosts-file", "", "-timeout", "30s")
	if got := parseSelftest(t, out)["discovery"]; code != exitFailure || !strings.Contains(got, "fed.example.test has no AAAA or A records") {
		t.Errorf("without the hosts file: exit %d, discovery %s", code, got)
	}
	// hosts_file = "" in the configuration does the same.
	code, out, _ = runCLI("selftest", "-config", withHosts("nohosts.toml", ""), "-timeout", "30s")
	if got := parseSelftest(t, out)["discovery"]; code != exitFailure || !strings.HasPrefix(got, "FAIL") {
		t.Errorf("hosts_file = \"\": exit %d, discovery %s", code, got)
	}
}

// TestCheckConfigHostsFile: check-config names the hosts file in its
// summary, and a hosts file that cannot be used is a problem at the
// outbound.hosts_file line.
func TestCheckConfigHostsFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.toml")
	write := func(hosts string) {
		text := "server_name = \"example.org\"\n[upstream]\nurl = \"http://127.0.0.1:8008\"\n[keys]\ngenerate = true\n[outbound]\nresolvers = [\"127.0.0.1:53\"]\nhosts_file = \"" + hosts + "\"\n"
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "hosts"))
	code, out, errOut := runCLI("check-config", "-config", cfg)
	if code != exitOK || !strings.Contains(out, "outbound:     hosts file "+filepath.Join(dir, "hosts")+" before DNS; resolvers 127.0.0.1:53") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	write(dir) // a folder
	code, _, errOut = runCLI("check-config", "-config", cfg)
	if code != exitFailure || !strings.Contains(errOut, "gateway.toml:8: outbound.hosts_file: hosts file unusable: "+dir+" is a folder") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
}

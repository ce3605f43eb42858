package config

import "testing"

// TestHostsFile: outbound.hosts_file defaults to the host's /etc/hosts, ""
// turns it off, and a relative path is relative to the configuration file.
func TestHostsFile(t *testing.T) {
	base := "server_name = \"example.org\"\n[upstream]\nurl = \"http://127.0.0.1:8008\"\n[keys]\ngenerate = true\n[outbound]\n"
	for _, tt := range []struct{ line, want string }{
		{"", "/etc/hosts"},
		{`hosts_file = ""`, ""},
		{`hosts_file = "peers.hosts"`, "/srv/fedgate/peers.hosts"},
		{`hosts_file = "/run/hosts"`, "/run/hosts"},
	} {
		c, err := Parse("/srv/fedgate/gateway.toml", []byte(base+tt.line+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", tt.line, err)
		}
		if c.Outbound.HostsFile != tt.want {
			t.Errorf("%q: hosts_file %q, want %q", tt.line, c.Outbound.HostsFile, tt.want)
		}
	}
}

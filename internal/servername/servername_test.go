package servername

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in     string
		host   string
		port   int
		isIP   bool
		String string
	}{
		{in: "matrix.org", host: "matrix.org"},
		{in: "matrix.org:8888", host: "matrix.org", port: 8888},
		{in: "1.2.3.4", host: "1.2.3.4", isIP: true},
		{in: "1.2.3.4:1234", host: "1.2.3.4", port: 1234, isIP: true},
		{in: "[1234:5678::abcd]", host: "1234:5678::abcd", isIP: true},
		{in: "[1234:5678::abcd]:5678", host: "1234:5678::abcd", port: 5678, isIP: true},
		{in: "[::1]:8448", host: "::1", port: 8448, isIP: true},
		{in: "[::ffff:1.2.3.4]", host: "::ffff:1.2.3.4", isIP: true},
		{in: "localhost", host: "localhost"},
		{in: "MiXeD.Example", host: "MiXeD.Example"},
		{in: "xn--bcher-kva.example:1", host: "xn--bcher-kva.example", port: 1},
		{in: "a:65535", host: "a", port: 65535},
		{in: "1.2.3", host: "1.2.3"}, // not four groups: a DNS name by the grammar
		{in: "1.2.3.4.5", host: "1.2.3.4.5"},
		{in: "a:08448", host: "a", port: 8448, String: "a:8448"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if n.Host != tt.host || n.Port != tt.port || n.IsIP() != tt.isIP {
				t.Fatalf("Parse(%q) = %+v, want host %q port %d ip %v", tt.in, n, tt.host, tt.port, tt.isIP)
			}
			want := tt.String
			if want == "" {
				want = tt.in
			}
			if n.String() != want {
				t.Fatalf("String() = %q, want %q", n.String(), want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	bad := []string{
		"",
		":8448",
		"example.org:",
		"example.org:0",
		"example.org:65536",
		"example.org:99999",
		"example.org:123456",
		"example.org:8a",
		"example.org:-1",
		"exa mple.org",
		"example_org",
		"example.org/",
		"example..org",
		".example.org",
		"example.org.",
		"ex\u00e4mple.org",
		"1234:5678::abcd",
		"[1234:5678::abcd",
		"[1234:5678::abcd]x",
		"[1234:5678::abcd]:",
		"[1.2.3.4]",
		"[fe80::1%eth0]",
		"[zz::1]",
		"256.1.1.1",
		"01.2.3.4",
		"a:b:c",
		strings.Repeat("a", 64) + ".org",
		strings.Repeat("a.", 128) + "org",
	}
	for _, s := range bad {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) succeeded, want error", s)
		}
	}
}

func TestStripPort(t *testing.T) {
	for in, want := range map[string]string{
		"example.org":        "example.org",
		"example.org:8448":   "example.org",
		"[::1]":              "[::1]",
		"[::1]:8448":         "[::1]",
		"1.2.3.4:80":         "1.2.3.4",
		"evil.example:12345": "evil.example",
	} {
		if got := StripPort(in); got != want {
			t.Errorf("StripPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"matrix.org", "matrix.org:8448", "[::1]:1", "1.2.3.4", "a..b", "[", ":"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			return
		}
		// A valid name renders to a string that parses to the same name.
		again, err := Parse(n.String())
		if err != nil {
			t.Fatalf("Parse(%q) ok but Parse(String()=%q): %v", s, n.String(), err)
		}
		if again != n {
			t.Fatalf("round trip changed %+v to %+v", n, again)
		}
	})
}

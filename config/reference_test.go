package config_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/fedgate/fedgate/config/internal/refgen"
)

// TestConfigurationReference keeps docs/configuration.md what the schema
// produces: every key with its type, default, reload behaviour and the doc
// comment of its field. It fails on a field without a doc comment too.
func TestConfigurationReference(t *testing.T) {
	want, err := refgen.Markdown(".")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		line := 0
		for line < len(gl) && line < len(wl) && gl[line] == wl[line] {
			line++
		}
		var first string
		if line < len(wl) {
			first = wl[line]
		}
		t.Fatalf("docs/configuration.md is out of date with the configuration schema (first difference at line %d: %q).\n"+
			"Regenerate it with: go generate ./config/", line+1, first)
	}
}

// TestReferenceMarksRestartKeys: keys whose doc comment says they need a
// restart are reported so, with children of such keys, and others as
// applying on reload.
func TestReferenceMarksRestartKeys(t *testing.T) {
	md, err := refgen.Markdown(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ row, applies string }{
		{"| `federation` |", "restart"},
		{"| `trusted_key_servers` |", "restart"},
		{"| `verify_keys` |", "restart"},
		{"| `mode` |", "restart"},
		{"| `hosts_file` |", "reload"},
		{"| `deny` |", "reload"},
	} {
		i := bytes.Index(md, []byte(tt.row))
		if i < 0 {
			t.Errorf("no row %s", tt.row)
			continue
		}
		line, _, _ := bytes.Cut(md[i:], []byte("\n"))
		if cells := strings.Split(string(line), " | "); len(cells) < 5 || cells[3] != tt.applies {
			t.Errorf("%s: %s, want applies on %s", tt.row, line, tt.applies)
		}
	}
}

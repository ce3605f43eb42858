package fedtest

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// StatusDoc is the field table of docs/console.md's "## status.json"
// section: each documented path with its type. The console package's
// schema test (from the Go types) and the gateway's (from a live
// status.json) both check against it.
type StatusDoc map[string]string

// statusDocRow is one row of the table: | `path` | type | ...
var statusDocRow = regexp.MustCompile("(?m)^\\| `([a-z0-9_.\\[\\]]+)` \\| ([a-z]+) \\|")

// ReadStatusDoc reads the status.json field table of the console page at
// file (docs/console.md, relative to the test's package).
func ReadStatusDoc(t testing.TB, file string) StatusDoc {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	start := strings.Index(doc, "\n## status.json\n")
	if start < 0 {
		t.Fatalf("%s has no status.json section", file)
	}
	doc = doc[start+1:]
	if end := strings.Index(doc[3:], "\n## "); end >= 0 {
		doc = doc[:end+3]
	}
	out := StatusDoc{}
	for _, m := range statusDocRow.FindAllStringSubmatch(doc, -1) {
		out[m[1]] = m[2]
	}
	if len(out) < 20 {
		t.Fatalf("%s documents only %d status.json fields", file, len(out))
	}
	return out
}

// Type returns the documented type of path and whether the table
// documents it. A field inside a [[servers]] entry, whose sections have
// the fields of the top-level ones, is documented once by the top-level
// row (servers[].policy.rooms[].room by policy.rooms[].room), provided
// the table has a row for the section (servers[].policy).
func (d StatusDoc) Type(path string) (string, bool) {
	if rest, ok := strings.CutPrefix(path, "servers[]."); ok {
		if head, _, nested := strings.Cut(rest, "."); nested {
			if _, ok := d["servers[]."+head]; ok {
				path = rest
			}
		}
	}
	typ, ok := d[path]
	return typ, ok
}

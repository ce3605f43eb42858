package console

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// jsonPaths lists every field status.json can have, with its JSON type
// ("object", "array", "string", "number", "boolean", "time"), from the
// Go types: optional fields and sections included.
func jsonPaths() map[string]string {
	out := map[string]string{}
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous {
				walk(prefix, f.Type)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case ft == reflect.TypeFor[time.Time]():
				out[path] = "time"
			case ft.Kind() == reflect.Struct:
				out[path] = "object"
				walk(path, ft)
			case ft.Kind() == reflect.Slice:
				out[path] = "array"
				if el := ft.Elem(); el.Kind() == reflect.Struct {
					walk(path+"[]", el)
				} else {
					out[path+"[]"] = jsonType(el)
				}
			default:
				out[path] = jsonType(ft)
			}
		}
	}
	walk("", reflect.TypeFor[Status]())
	return out
}

func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	}
	return "number"
}

// documentedAs returns the row of docs/console.md's status.json table
// that documents path: path itself, except inside a [[servers]] entry,
// whose sections have the fields of the top-level ones and are documented
// once (servers[].policy.rooms[].room by policy.rooms[].room), provided
// the table has a row for the section (servers[].policy).
func documentedAs(path string, documented map[string]string) string {
	if rest, ok := strings.CutPrefix(path, "servers[]."); ok {
		if head, _, nested := strings.Cut(rest, "."); nested {
			if _, ok := documented["servers[]."+head]; ok {
				return rest
			}
		}
	}
	return path
}

// TestStatusJSONDocumented: docs/console.md documents every field of
// status.json with its type, and nothing that does not exist.
func TestStatusJSONDocumented(t *testing.T) {
	data, err := os.ReadFile("../docs/console.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	start := strings.Index(doc, "\n## status.json\n")
	if start < 0 {
		t.Fatal("docs/console.md has no status.json section")
	}
	doc = doc[start+1:]
	if end := strings.Index(doc[3:], "\n## "); end >= 0 {
		doc = doc[:end+3]
	}
	documented := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_.\\[\\]]+)` \\| ([a-z]+) \\|").FindAllStringSubmatch(doc, -1) {
		documented[m[1]] = m[2]
	}
	fields := jsonPaths()
	for path, typ := range fields {
		if got, ok := documented[documentedAs(path, documented)]; !ok {
			t.Errorf("docs/console.md does not document %s (%s)", path, typ)
		} else if got != typ {
			t.Errorf("docs/console.md says %s is %s; it is %s", path, got, typ)
		}
	}
	for path := range documented {
		if _, ok := fields[path]; !ok {
			t.Errorf("docs/console.md documents %s, which status.json does not have", path)
		}
	}
}

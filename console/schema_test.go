package console

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
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

// TestStatusJSONDocumented: docs/console.md documents every field of
// status.json with its type, and nothing that does not exist.
func TestStatusJSONDocumented(t *testing.T) {
	documented := fedtest.ReadStatusDoc(t, "../docs/console.md")
	fields := jsonPaths()
	for path, typ := range fields {
		if got, ok := documented.Type(path); !ok {
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

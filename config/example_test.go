package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestExampleListsEveryKey keeps gateway.toml.example complete: every key
// of the schema appears in it, set or commented out, inside its section.
func TestExampleListsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../gateway.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	// Split the file into sections by their headers, commented or not
	// ("[keys]", "# [[keys.old]]"); keys before the first header are top level.
	sections := map[string]string{}
	header := regexp.MustCompile(`^#?\s*\[\[?([a-z_.]+)\]\]?\s*$`)
	current := ""
	for _, line := range strings.Split(string(data), "\n") {
		if m := header.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			current = m[1]
			continue
		}
		sections[current] += line + "\n"
	}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			key := f.Tag.Get("toml")
			if key == "" || key == "-" {
				continue
			}
			if topLevelOnly(prefix, key) {
				continue // refused in [[servers]], documented at the top level
			}
			ft := f.Type
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				ft = ft.Elem() // [[array.tables]]
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Rate]() && ft != reflect.TypeFor[Limit]() {
				walk(strings.TrimPrefix(prefix+"."+key, "."), ft)
				continue
			}
			if ft.Kind() == reflect.Map {
				// Tables keyed by server names, globs or classes: their own
				// section ([outbound.overrides]) or an inline key.
				if _, ok := sections[strings.TrimPrefix(prefix+"."+key, ".")]; ok {
					continue
				}
			}
			section := prefix
			text, ok := sections[section]
			if !ok {
				t.Errorf("gateway.toml.example has no [%s] section (for %s)", section, key)
				continue
			}
			if strings.HasPrefix(section, "servers.") && section != "servers.egress" {
				// A [[servers]] section takes the keys of the top-level
				// section of the same name, documented there: the example
				// shows its header.
				continue
			}
			if !regexp.MustCompile(`(?m)^#?\s*` + regexp.QuoteMeta(key) + `\s*=`).MatchString(text) {
				t.Errorf("gateway.toml.example does not mention %s in [%s]", key, section)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
}

// topLevelOnly reports keys of a [[servers]] section that only the top
// level may set (the shared keyring's, the egress listener's).
func topLevelOnly(prefix, key string) bool {
	switch prefix {
	case "servers.keys":
		return keyringKeys[key]
	case "servers.egress":
		return !serverEgressKeys[key]
	}
	return false
}

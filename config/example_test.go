package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestExampleListsEveryKey keeps gateway.toml.example and the Debian
// package's /etc/fedgate/gateway.toml (packaging/gateway.toml) complete:
// every key of the schema appears in each, set or commented out, inside
// its section, so the two cannot drift apart.
func TestExampleListsEveryKey(t *testing.T) {
	for _, file := range []string{"../gateway.toml.example", "../packaging/gateway.toml"} {
		t.Run(file, func(t *testing.T) { checkListsEveryKey(t, file) })
	}
}

func checkListsEveryKey(t *testing.T, file string) {
	data, err := os.ReadFile(file)
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
			if strings.Count(section, ".") > 1 && strings.HasPrefix(section, "servers.") {
				// Tables inside a [[servers]] section ([[servers.policy.rooms]],
				// [servers.policy.origins]) are those of the top level,
				// documented there.
				continue
			}
			text, ok := sections[section]
			if !ok {
				t.Errorf("%s has no [%s] section (for %s)", file, section, key)
				continue
			}
			if strings.HasPrefix(section, "servers.") && section != "servers.egress" {
				// A [[servers]] section takes the keys of the top-level
				// section of the same name, documented there: the example
				// shows its header.
				continue
			}
			if !regexp.MustCompile(`(?m)^#?\s*` + regexp.QuoteMeta(key) + `\s*=`).MatchString(text) {
				t.Errorf("%s does not mention %s in [%s]", file, key, section)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
}

// TestPackageConfig: the configuration the Debian package installs loads
// with production paths and leaves the placeholder server name the
// package's postinst looks for before starting the service.
func TestPackageConfig(t *testing.T) {
	c, err := Load("../packaging/gateway.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/lib/fedgate" || c.Keys.SigningKey != "/var/lib/fedgate/signing.key" ||
		c.Keys.CacheFile != "/var/lib/fedgate/keyring.json" || c.TLS.Storage != "/var/lib/fedgate/acme" ||
		c.Outbound.HostsFile != "/etc/hosts" || c.TLS.Mode != TLSModeACME || c.Log.Format != "json" {
		t.Fatalf("paths and modes: %+v", c)
	}
	data, _ := os.ReadFile("../packaging/gateway.toml")
	if !regexp.MustCompile(`(?m)^server_name = "example\.org"$`).Match(data) {
		t.Fatal(`packaging/gateway.toml must keep server_name = "example.org": packaging/deb/postinst looks for it`)
	}
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

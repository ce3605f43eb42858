package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/fedgate/fedgate/internal/servername"
)

// This file holds what [[servers]] adds to the configuration: the defaults
// an entry starts from, the inheritance of sections from the top level
// (resolved once, in derive), the per-server view [Config.Hosted] returns,
// which maps problem locations onto the entry, and the checks across
// hosted servers (duplicate names, conflicting delegated hosts, shared key
// files and egress secrets).

// Keys of [keys] that configure the shared keyring; they are set at the
// top level only.
var keyringKeys = map[string]bool{"trusted_key_servers": true, "pinned": true, "cache_file": true, "fetch_timeout": true}

// Keys of [egress] a [[servers]] entry may set: its homeserver's
// credentials. The other keys configure the egress listener.
var serverEgressKeys = map[string]bool{"secret": true, "secret_file": true}

// Keys of [tls] a [[servers]] entry inherits one by one from the top level
// when it does not set them. names is always the entry's own.
var inheritedTLSKeys = []string{"mode", "email", "ca", "ca_root", "storage", "cert_file", "key_file"}

// TopLevelOnly reports whether key, a key of a hosted server's sections
// ("keys.cache_file", "egress.connect"), may be set at the top level only:
// the keyring's keys and the egress listener's. A [[servers]] entry that
// sets one is refused.
func TopLevelOnly(key string) bool {
	section, sub, _ := strings.Cut(key, ".")
	sub, _, _ = strings.Cut(sub, ".")
	switch section {
	case "keys":
		return keyringKeys[sub]
	case "egress":
		return sub != "" && !serverEgressKeys[sub]
	}
	return false
}

// setDefaults gives a [[servers]] entry the defaults of the sections it
// holds before the file's keys are decoded into it.
func (s *HostedServer) setDefaults() {
	d := Default()
	*s = HostedServer{Upstream: d.Upstream, Keys: d.Keys, TLS: d.TLS, Policy: d.Policy, RateLimit: d.RateLimit, Egress: d.Egress}
}

// serverScope marks the configuration of one [[servers]] entry (see
// [Config.Hosted]): problems it reports are located in the entry where the
// entry sets the value, at the top level where the value is inherited.
type serverScope struct {
	index  int    // position in Servers
	prefix string // "servers[index]"
}

// fileKey maps a key path of the configuration (as every section reads it,
// "keys.signing_key") onto the path in the file ("servers[1].keys.signing_key"
// for a value of the entry; unchanged for an inherited or global one).
func (c *Config) fileKey(key string) string {
	if c.scope == nil {
		return key
	}
	section, rest, _ := strings.Cut(key, ".")
	if i := strings.IndexByte(section, '['); i >= 0 {
		section = section[:i]
	}
	sub, _, _ := strings.Cut(rest, ".")
	if i := strings.IndexByte(sub, '['); i >= 0 {
		sub = sub[:i]
	}
	own := false
	switch section {
	case "server_name", "upstream", "well_known":
		own = true
	case "keys":
		own = !keyringKeys[sub]
	case "egress":
		own = key == "egress" || serverEgressKeys[sub]
	case "policy", "rate_limit":
		own = c.isSetRaw(c.scope.prefix + "." + section)
	case "tls":
		own = sub == "" || sub == "names" || c.isSetRaw(c.scope.prefix+".tls."+sub)
	}
	if own {
		return c.scope.prefix + "." + key
	}
	return key
}

func (c *Config) isSetRaw(key string) bool {
	if c.src == nil {
		return false
	}
	_, ok := c.src.lines[key]
	return ok
}

// Hosted returns the configuration of every hosted server: c itself first
// (the top-level settings), then one per [[servers]] entry, in file order.
// An entry's configuration is c with the entry's sections in place of the
// top-level ones (inheritance already applied) and Servers empty; its
// [Config.Errorf] locates problems in the entry, or at the top level for
// inherited and global values. The results must not be modified.
func (c *Config) Hosted() []*Config {
	out := make([]*Config, 0, 1+len(c.Servers))
	out = append(out, c)
	for i := range c.Servers {
		out = append(out, c.serverView(i))
	}
	return out
}

// HostedIndex is the position of this configuration in [Config.Hosted]: 0
// for the top level, 1 + its index in Servers for a [[servers]] entry.
func (c *Config) HostedIndex() int {
	if c.scope == nil {
		return 0
	}
	return c.scope.index + 1
}

// serverView builds the configuration of Servers[i]; derive has already
// applied inheritance to the entry.
func (c *Config) serverView(i int) *Config {
	s := &c.Servers[i]
	v := *c
	v.Servers = nil
	v.ServerName = s.ServerName
	v.Upstream = s.Upstream
	v.WellKnown = s.WellKnown
	v.Keys = s.Keys
	v.TLS = s.TLS
	v.Policy = s.Policy
	v.RateLimit = s.RateLimit
	v.Egress.Secret, v.Egress.SecretFile = s.Egress.Secret, s.Egress.SecretFile
	v.scope = &serverScope{index: i, prefix: "servers[" + strconv.Itoa(i) + "]"}
	return &v
}

// serverStateDir is the folder of per-server state under data_dir.
func serverStateDir(dataDir, name string) string {
	safe := strings.NewReplacer(":", "_", "[", "", "]", "", "/", "_").Replace(strings.ToLower(name))
	return filepath.Join(dataDir, "servers", safe)
}

// deriveServers applies inheritance and defaults to every [[servers]]
// entry and makes its paths absolute (relative to dir). It runs after the
// top level is derived.
func (c *Config) deriveServers(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.Servers {
		s := &c.Servers[i]
		prefix := "servers[" + strconv.Itoa(i) + "]"
		set := func(key string) bool { return c.isSetRaw(prefix + "." + key) }

		// The keyring is shared: its settings come from the top level
		// (setting them here is refused by validation).
		s.Keys.TrustedKeyServers, s.Keys.Pinned = c.Keys.TrustedKeyServers, c.Keys.Pinned
		s.Keys.CacheFile, s.Keys.FetchTimeout = c.Keys.CacheFile, c.Keys.FetchTimeout
		if s.Keys.SigningKey == "" {
			s.Keys.SigningKey = filepath.Join(serverStateDir(c.DataDir, s.ServerName), "signing.key")
		}
		if !set("policy") {
			s.Policy = c.Policy // derived already, its rooms' homeserver the top level's
		} else {
			derivePolicyRooms(s.Policy.Rooms, s.Upstream, abs)
		}
		if !set("rate_limit") {
			s.RateLimit = c.RateLimit
		}
		tv, tt := reflect.ValueOf(&s.TLS).Elem(), reflect.ValueOf(c.TLS)
		for _, k := range inheritedTLSKeys {
			if !set("tls." + k) {
				f := tlsField(k)
				tv.FieldByName(f).Set(tt.FieldByName(f))
			}
		}
		for _, p := range []*string{
			&s.Upstream.CAFile, &s.Keys.SigningKey, &s.TLS.CARoot, &s.TLS.CertFile, &s.TLS.KeyFile,
			&s.TLS.Storage, &s.Egress.SecretFile, &s.Policy.ListFile, &s.Policy.ListTrust,
		} {
			abs(p)
		}
		if len(s.TLS.Names) == 0 {
			switch s.TLS.Mode {
			case TLSModeSelfSigned:
				s.TLS.Names = []string{"localhost", "127.0.0.1", "::1"}
			case TLSModeACME:
				s.TLS.Names = defaultACMENames(&Config{ServerName: s.ServerName, WellKnown: s.WellKnown})
			}
		}
	}
}

// tlsField is the Go field of a [tls] key.
func tlsField(key string) string {
	t := reflect.TypeFor[TLS]()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("toml") == key {
			return t.Field(i).Name
		}
	}
	panic("config: no tls key " + key)
}

// servers validates every [[servers]] entry with the checks of the
// top-level sections (run on the entry's configuration, so problems point
// into the entry) and the checks across hosted servers.
func (v *validator) servers() {
	c := v.c
	for i := range c.Servers {
		prefix := "servers[" + strconv.Itoa(i) + "]"
		sv := &validator{c: c.serverView(i), skip: v.skip}
		if !c.isSetRaw(prefix + ".upstream") {
			sv.fail("upstream", "required: this server's homeserver, e.g. [servers.upstream] url = \"http://10.0.0.2:8008\"")
		} else {
			sv.upstream()
		}
		sv.top()
		sv.keys()
		sv.tls()
		sv.policy()
		sv.rateLimit()
		sv.serverEgress()
		if w := c.Server.WriteTimeout; w != 0 && w <= sv.c.Upstream.Timeout {
			sv.fail("upstream.timeout", "%v must be shorter than server.write_timeout (%v)", sv.c.Upstream.Timeout.D(), w.D())
		}
		v.refuseTopLevelOnly(prefix)
		v.problems = append(v.problems, sv.problems...)
	}
	v.hostedConflicts()
}

// serverEgress checks a [[servers]] entry's egress credentials.
func (v *validator) serverEgress() {
	e := v.c.Egress
	if e.Secret != "" && e.SecretFile != "" {
		v.fail("egress.secret_file", "set egress.secret or egress.secret_file, not both")
	}
	v.readable("egress.secret_file", e.SecretFile)
}

// refuseTopLevelOnly reports keys of a [[servers]] entry that only the top
// level may set: the keyring's and the egress listener's.
func (v *validator) refuseTopLevelOnly(prefix string) {
	check := func(section string, typ reflect.Type, why string) {
		for i := 0; i < typ.NumField(); i++ {
			tag := typ.Field(i).Tag.Get("toml")
			if tag == "" || tag == "-" || !TopLevelOnly(section+"."+tag) {
				continue
			}
			if key := prefix + "." + section + "." + tag; v.c.isSetRaw(key) {
				v.fail(key, "%s: set %s.%s at the top level", why, section, tag)
			}
		}
	}
	check("keys", reflect.TypeFor[Keys](),
		"the keyring of remote keys is shared by every hosted server")
	check("egress", reflect.TypeFor[Egress](),
		"this configures the egress listener, shared by every hosted server (a [[servers]] entry sets only its secret or secret_file)")
}

// hostedName is one hosted server for the checks across servers.
type hostedName struct {
	cfg  *Config // its configuration (Hosted)
	what string  // how problems name it: "server_name" or "servers[1]"
	host string  // lower-case host of its server name
}

// hostedConflicts refuses what would let a request for one hosted server
// be taken for another's, and secrets shared between them: duplicate
// names, two names on one host, a delegated host or certificate name that
// is another hosted server's name, one signing key file for two names,
// and one egress secret for two homeservers.
func (v *validator) hostedConflicts() {
	c := v.c
	if len(c.Servers) == 0 {
		return
	}
	var hosted []hostedName
	for _, hc := range c.Hosted() {
		what := "the top level"
		if hc.scope != nil {
			what = hc.scope.prefix
		}
		n, err := servername.Parse(hc.ServerName)
		if err != nil {
			continue // reported as an invalid name
		}
		hosted = append(hosted, hostedName{cfg: hc, what: what, host: strings.ToLower(n.Host)})
	}
	byName := map[string]hostedName{}
	byHost := map[string]hostedName{}
	for _, h := range hosted {
		name := strings.ToLower(h.cfg.ServerName)
		if prev, dup := byName[name]; dup {
			h.fail(v, "server_name", "%s is already hosted (%s, line %d)", h.cfg.ServerName, prev.what, c.Line(prev.cfg.fileKey("server_name")))
			continue
		}
		byName[name] = h
		if prev, dup := byHost[h.host]; dup {
			h.fail(v, "server_name", "%s shares its host with %s (%s, line %d): requests for the two could be told apart only by port; give each hosted server its own host name",
				h.cfg.ServerName, prev.cfg.ServerName, prev.what, c.Line(prev.cfg.fileKey("server_name")))
			continue
		}
		byHost[h.host] = h
	}
	claim := func(h hostedName, key, value string) {
		n, err := servername.Parse(value)
		if err != nil || n.IsIP() {
			return
		}
		if owner, ok := byHost[strings.ToLower(n.Host)]; ok && owner.cfg != h.cfg {
			h.fail(v, key, "%s is the host of %s, another hosted server (%s): a request sent to it could not be told apart from one for %s; give %s a host of its own",
				n.Host, owner.cfg.ServerName, owner.what, owner.cfg.ServerName, h.cfg.ServerName)
		}
	}
	keyFiles := map[string]hostedName{}
	var keyStats []struct {
		h  hostedName
		st os.FileInfo
	}
	secrets := map[string]hostedName{}
	for _, h := range hosted {
		hc := h.cfg
		if hc.WellKnown.Server != "" {
			claim(h, "well_known.server", hc.WellKnown.Server)
		}
		if hc.isSetRaw(hc.fileKey("tls.names")) {
			for i, n := range hc.TLS.Names {
				claim(h, fmt.Sprintf("tls.names[%d]", i), n)
			}
		}
		if prev, dup := keyFiles[hc.Keys.SigningKey]; dup {
			h.fail(v, "keys.signing_key", "%s is also the signing key file of %s (%s): every hosted server signs with its own key", hc.Keys.SigningKey, prev.cfg.ServerName, prev.what)
		} else {
			keyFiles[hc.Keys.SigningKey] = h
			if st, err := os.Stat(hc.Keys.SigningKey); err == nil {
				for _, o := range keyStats {
					if os.SameFile(o.st, st) {
						h.fail(v, "keys.signing_key", "%s is the same file as %s, the signing key file of %s (%s): every hosted server signs with its own key",
							hc.Keys.SigningKey, o.h.cfg.Keys.SigningKey, o.h.cfg.ServerName, o.h.what)
					}
				}
				keyStats = append(keyStats, struct {
					h  hostedName
					st os.FileInfo
				}{h, st})
			}
		}
		for _, sc := range []struct{ key, value, kind string }{
			{"egress.secret", hc.Egress.Secret, "secret:"}, {"egress.secret_file", hc.Egress.SecretFile, "file:"},
		} {
			if sc.value == "" {
				continue
			}
			key, secret := sc.key, sc.kind+sc.value
			if prev, dup := secrets[secret]; dup {
				h.fail(v, key, "the same as the egress secret of %s (%s): a secret names the one server its homeserver may send as, so each hosted server needs its own", prev.cfg.ServerName, prev.what)
				continue
			}
			secrets[secret] = h
		}
	}
}

// fail reports a problem at key of h's configuration.
func (h hostedName) fail(v *validator, key, format string, args ...any) {
	sub := &validator{c: h.cfg, skip: v.skip}
	sub.fail(key, format, args...)
	v.problems = append(v.problems, sub.problems...)
}

// dedupe drops repeated problems: a [[servers]] entry that inherits a bad
// top-level value reports it at the same place as the top level does.
func dedupe(ps Problems) Problems {
	type at struct {
		line     int
		key, msg string
	}
	seen := map[at]bool{}
	out := ps[:0]
	for _, p := range ps {
		k := at{p.Line, p.Key, p.Msg}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, p)
	}
	return out
}

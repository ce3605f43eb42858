package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fedgate/fedgate/internal/endpoints"
	"github.com/fedgate/fedgate/internal/glob"
	"github.com/fedgate/fedgate/internal/servername"
)

// validator collects problems for one Config.
type validator struct {
	c        *Config
	problems Problems
	skip     map[string]bool // keys that failed to decode
}

// fail records a problem unless key (or a key enclosing it) already failed
// to decode, so that one mistake is reported once.
func (v *validator) fail(key, format string, args ...any) {
	for k := v.c.fileKey(key); k != ""; k = parentKey(k) {
		if v.skip[k] {
			return
		}
	}
	v.problems = append(v.problems, v.c.Errorf(key, format, args...))
}

// validate checks every value that decoding could not check by type alone.
// Keys in failed were already reported by the decoder.
func (c *Config) validate(failed map[string]bool) Problems {
	v := &validator{c: c, skip: failed}
	v.top()
	v.upstream()
	v.listen()
	v.server()
	v.inbound()
	v.keys()
	v.tls()
	v.outbound()
	v.egress()
	v.policy()
	v.rateLimit()
	v.log()
	v.admin()
	v.cluster()
	v.servers()
	return dedupe(v.problems)
}

func sortProblems(ps Problems) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
}

func (v *validator) top() {
	c := v.c
	if c.ServerName == "" {
		v.fail("server_name", "required: the Matrix server name fedgate fronts, e.g. \"example.org\"")
	} else {
		v.serverName("server_name", c.ServerName)
	}
	if c.WellKnown.Server != "" {
		v.serverName("well_known.server", c.WellKnown.Server)
	}
	if st, err := os.Stat(c.DataDir); err == nil && !st.IsDir() {
		v.fail("data_dir", "%s is not a folder", c.DataDir)
	}
}

func (v *validator) upstream() {
	u := v.c.Upstream
	switch {
	case u.URL != "" && len(u.URLs) > 0:
		v.fail("upstream.urls", "set upstream.url or upstream.urls, not both")
	case u.URL == "" && len(u.URLs) == 0:
		v.fail("upstream.url", "required: the homeserver's federation address, e.g. \"http://127.0.0.1:8008\" (or upstream.urls for several)")
	case u.URL != "":
		v.memberURL("upstream.url", u.URL)
	default:
		v.memberURLs("upstream.urls", u.URLs)
	}
	v.balance("upstream.balance", u.Balance)
	v.positive("upstream.timeout", u.Timeout)
	v.positive("upstream.body_timeout", u.BodyTimeout)
	v.positive("upstream.dial_timeout", u.DialTimeout)
	if u.MaxIdleConns < 0 {
		v.fail("upstream.max_idle_conns", "must not be negative")
	}
	v.readable("upstream.ca_file", u.CAFile)
	if p := u.ProbePath; !strings.HasPrefix(p, "/") || len(p) > 1024 || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		v.fail("upstream.probe_path", "%q must be a request-target starting with \"/\", without spaces or control characters", p)
	}
	if u.ProbeInterval != 0 && u.ProbeInterval < Duration(100*time.Millisecond) {
		v.fail("upstream.probe_interval", "must be at least 100ms (or unset)")
	}
	v.positive("upstream.probe_timeout", u.ProbeTimeout)
	v.positive("upstream.down_period", u.DownPeriod)
	if u.DownPeriodMax < u.DownPeriod {
		v.fail("upstream.down_period_max", "%v must not be shorter than upstream.down_period (%v)", u.DownPeriodMax.D(), u.DownPeriod.D())
	}
	v.upstreamRoutes()
}

// memberURL checks one homeserver address.
func (v *validator) memberURL(key, s string) {
	parsed, err := url.Parse(s)
	if err != nil {
		v.fail(key, "not a URL: %v", err)
		return
	}
	switch {
	case parsed.Scheme != "http" && parsed.Scheme != "https":
		v.fail(key, "scheme must be http or https, not %q", parsed.Scheme)
	case parsed.Host == "":
		v.fail(key, "has no host")
	case parsed.Path != "" && parsed.Path != "/", parsed.RawQuery != "", parsed.Fragment != "", parsed.User != nil:
		v.fail(key, "must be scheme://host[:port] only; requests are forwarded with their own path")
	}
}

// memberURLs checks the members of one pool: at least one, each valid,
// none twice.
func (v *validator) memberURLs(key string, urls []string) {
	if len(urls) == 0 {
		v.fail(key, "required: the pool's members, e.g. [\"http://127.0.0.1:8083\", \"http://127.0.0.1:8084\"]")
		return
	}
	seen := map[string]string{}
	for i, s := range urls {
		k := fmt.Sprintf("%s[%d]", key, i)
		v.memberURL(k, s)
		id := strings.ToLower(strings.TrimSuffix(s, "/"))
		if prev, dup := seen[id]; dup {
			v.fail(k, "%s is also listed at %s", s, prev)
		}
		seen[id] = k
	}
}

func (v *validator) balance(key, b string) {
	switch b {
	case "", "round_robin", "origin", "least_busy":
	default:
		v.fail(key, "must be \"round_robin\", \"origin\" or \"least_busy\", not %q", b)
	}
}

var poolNameRE = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// upstreamRoutes checks [[upstream.route]]: names, members, and that every
// endpoint listed can be reached: an endpoint an earlier route (or an
// earlier entry of the same route) already takes is refused, and so is a
// route all of whose endpoints are taken before it.
func (v *validator) upstreamRoutes() {
	names := map[string]string{"default": "the default pool"}
	taken := map[string]string{} // operation -> key of the route that takes it
	for i, r := range v.c.Upstream.Routes {
		key := fmt.Sprintf("upstream.route[%d]", i)
		if r.Name != "" && (!poolNameRE.MatchString(r.Name) || r.Name == "default") {
			v.fail(key+".name", "%q must be 1-32 lower-case letters, digits, '_' or '-', and not \"default\"", r.Name)
		} else if name := r.PoolName(); len(r.Endpoints) > 0 {
			if prev, dup := names[name]; dup {
				v.fail(key, "pool name %q is also used by %s; set name to tell them apart", name, prev)
			}
			names[name] = fmt.Sprintf("%s (line %d)", key, v.c.Line(key))
		}
		v.memberURLs(key+".urls", r.URLs)
		v.balance(key+".balance", r.Balance)
		if len(r.Endpoints) == 0 {
			v.fail(key+".endpoints", "required: the endpoint classes or operations this route takes, e.g. [\"send\"]%s", endpointHint())
			continue
		}
		// An entry is dead when every operation it covers is taken already:
		// by an earlier route, or by an earlier entry of this route.
		type deadEntry struct {
			key, name string
			by        []string
		}
		var deads []deadEntry
		valid := 0
		mine := map[string]string{} // operation -> entry key, within this route
		for j, n := range r.Endpoints {
			ek := fmt.Sprintf("%s.endpoints[%d]", key, j)
			if !endpoints.Known(n) {
				v.fail(ek, "unknown endpoint class or operation %q%s", n, endpointHint())
				continue
			}
			ops := forwardedOps(n)
			if len(ops) == 0 {
				v.fail(ek, "%q is served by fedgate itself and never forwarded", n)
				continue
			}
			valid++
			var by []string
			fresh := false
			for _, op := range ops {
				prev := taken[op]
				if prev == "" {
					prev = mine[op]
				}
				if prev == "" {
					fresh = true
					mine[op] = ek
					continue
				}
				by = appendOnce(by, fmt.Sprintf("%s (line %d)", prev, v.c.Line(prev)))
			}
			if !fresh {
				deads = append(deads, deadEntry{ek, n, by})
			}
		}
		if valid > 0 && len(deads) == valid {
			var by []string
			for _, d := range deads {
				for _, b := range d.by {
					by = appendOnce(by, b)
				}
			}
			v.fail(key, "can never match: an earlier route takes every endpoint it lists (%s)", strings.Join(by, ", "))
			continue
		}
		for _, d := range deads {
			v.fail(d.key, "%q is already taken by %s: an endpoint goes to one route only", d.name, strings.Join(d.by, ", "))
		}
		for op := range mine {
			taken[op] = key
		}
	}
}

// forwardedOps returns the operation names a class or operation name
// covers among the endpoints fedgate forwards.
func forwardedOps(name string) []string {
	var ops []string
	for _, ep := range endpoints.All() {
		if !ep.Local && (ep.Name == name || ep.Class == name) {
			ops = appendOnce(ops, ep.Name)
		}
	}
	return ops
}

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func (v *validator) listen() {
	l := v.c.Listen
	type bound struct {
		key       string
		host      string
		port      int
		wildcard  bool
		canonical string
	}
	var all []bound
	add := func(key, addr string) {
		if addr == "" {
			v.fail(key, "empty address")
			return
		}
		host, portText, err := net.SplitHostPort(addr)
		if err != nil {
			v.fail(key, "address %q: %v (write it as \"host:port\", \"[::]:8448\" or \":8448\")", addr, err)
			return
		}
		port, err := strconv.Atoi(portText)
		if err != nil || port < 0 || port > 65535 {
			v.fail(key, "address %q: port must be 0-65535", addr)
			return
		}
		wildcard := host == ""
		if host != "" {
			if ip, err := netip.ParseAddr(host); err == nil {
				wildcard = ip.IsUnspecified()
				host = ip.String()
			} else if servername.Valid(host) {
				host = strings.ToLower(host)
			} else {
				v.fail(key, "address %q: %q is neither an IP address nor a host name", addr, host)
				return
			}
		}
		b := bound{key: key, host: host, port: port, wildcard: wildcard, canonical: net.JoinHostPort(host, portText)}
		for _, other := range all {
			if port != 0 && other.port == port && (other.host == host || other.wildcard || wildcard) {
				v.fail(key, "address %q conflicts with %s (%s): both bind port %d", addr, other.key, other.canonical, port)
				return
			}
		}
		all = append(all, b)
	}
	for i, a := range l.Federation {
		add(fmt.Sprintf("listen.federation[%d]", i), a)
	}
	for i, a := range l.HTTPS {
		add(fmt.Sprintf("listen.https[%d]", i), a)
	}
	for _, kv := range []struct{ key, addr string }{
		{"listen.http", l.HTTP}, {"listen.egress", l.Egress}, {"listen.admin", l.Admin},
	} {
		if kv.addr != "" {
			add(kv.key, kv.addr)
		}
	}
	if len(l.Federation) == 0 && len(l.HTTPS) == 0 && l.Egress == "" {
		v.fail("listen", "nothing to serve: set listen.federation, listen.https or listen.egress")
	}
}

func (v *validator) server() {
	s := v.c.Server
	v.positive("server.read_header_timeout", s.ReadHeaderTimeout)
	v.positive("server.read_timeout", s.ReadTimeout)
	v.positive("server.idle_timeout", s.IdleTimeout)
	v.positive("server.shutdown_grace", s.ShutdownGrace)
	if s.WriteTimeout != 0 && s.WriteTimeout <= v.c.Upstream.Timeout {
		v.fail("server.write_timeout", "%v must be longer than upstream.timeout (%v), or 0 for none",
			s.WriteTimeout.D(), v.c.Upstream.Timeout.D())
	}
	if s.MaxHeaderBytes < 4<<10 {
		v.fail("server.max_header_bytes", "must be at least 4KiB")
	}
}

func (v *validator) inbound() {
	in := v.c.Inbound
	if in.MaxBody < 1<<10 {
		v.fail("inbound.max_body", "must be at least 1KiB")
	}
	if in.MaxBodySend < 1<<10 {
		v.fail("inbound.max_body_send", "must be at least 1KiB")
	}
	for i, p := range in.Passthrough {
		key := fmt.Sprintf("inbound.passthrough[%d]", i)
		switch {
		case !strings.HasPrefix(p, "/_matrix/"):
			v.fail(key, "prefix %q must start with /_matrix/", p)
		case strings.Contains(p, "?"), strings.Contains(p, "%"), strings.Contains(p, "/../"), strings.Contains(p, "/./"), strings.Contains(p, "//"):
			v.fail(key, "prefix %q must be a plain path without escapes, dot segments or a query", p)
		}
	}
}

func (v *validator) keys() {
	k := v.c.Keys
	if k.SigningKey != "" {
		if _, err := os.Stat(k.SigningKey); errors.Is(err, fs.ErrNotExist) {
			if !k.Generate {
				v.fail("keys.signing_key", "%s does not exist; create it with \"fedgate keygen -out %s\" or set keys.generate = true", k.SigningKey, k.SigningKey)
			}
		} else {
			v.readable("keys.signing_key", k.SigningKey)
		}
	}
	if k.ValidFor <= Duration(time.Hour) {
		v.fail("keys.valid_for", "must be more than 1h (servers refuse key documents that expire within the hour)")
	}
	if k.RequestKey != "" {
		v.keyID("keys.request_key", k.RequestKey)
	}
	v.positive("keys.fetch_timeout", k.FetchTimeout)
	seen := map[string]string{}
	for i, o := range k.Old {
		key := fmt.Sprintf("keys.old[%d]", i)
		v.keyID(key+".key_id", o.KeyID)
		v.publicKey(key+".public_key", o.PublicKey)
		if o.ExpiredTS <= 0 {
			v.fail(key+".expired_ts", "required: when the key was retired, in milliseconds since 1970")
		}
		if prev, dup := seen[o.KeyID]; dup && o.KeyID != "" {
			v.fail(key+".key_id", "%s is also listed at %s", o.KeyID, prev)
		}
		seen[o.KeyID] = key
	}
	for i, t := range k.TrustedKeyServers {
		key := fmt.Sprintf("keys.trusted_key_servers[%d]", i)
		v.serverName(key+".server_name", t.ServerName)
		if len(t.VerifyKeys) == 0 {
			v.fail(key+".verify_keys", "required: the notary's keys, e.g. { \"ed25519:auto\" = \"<base64>\" }")
		}
		for _, id := range sortedMapKeys(t.VerifyKeys) {
			sub := joinKey(key+".verify_keys", id)
			v.keyID(sub, id)
			v.publicKey(sub, t.VerifyKeys[id])
		}
	}
	for i, p := range k.Pinned {
		key := fmt.Sprintf("keys.pinned[%d]", i)
		v.serverName(key+".server_name", p.ServerName)
		v.keyID(key+".key_id", p.KeyID)
		v.publicKey(key+".public_key", p.PublicKey)
	}
}

func (v *validator) tls() {
	t := v.c.TLS
	switch t.Mode {
	case TLSModeSelfSigned:
		for i, n := range t.Names {
			if _, err := netip.ParseAddr(n); err != nil && !servername.Valid(n) {
				v.fail(fmt.Sprintf("tls.names[%d]", i), "%q is neither an IP address nor a DNS name", n)
			}
		}
	case TLSModeFiles:
		if t.CertFile == "" {
			v.fail("tls.cert_file", "required when tls.mode = \"files\"")
		}
		if t.KeyFile == "" {
			v.fail("tls.key_file", "required when tls.mode = \"files\"")
		}
		v.readable("tls.cert_file", t.CertFile)
		v.readable("tls.key_file", t.KeyFile)
	case TLSModeACME:
		if len(t.Names) == 0 {
			v.fail("tls.names", "required when tls.mode = \"acme\" and server_name is an IP address")
		}
		for i, n := range t.Names {
			key := fmt.Sprintf("tls.names[%d]", i)
			sn, err := servername.Parse(n)
			switch {
			case err != nil || sn.Port != 0:
				v.fail(key, "%q is not a DNS name", n)
			case sn.IsIP():
				v.fail(key, "%q is an IP address; ACME certificates here are for DNS names", n)
			}
		}
		switch {
		case t.CA == "letsencrypt", t.CA == "letsencrypt-staging":
		case strings.HasPrefix(t.CA, "https://"), strings.HasPrefix(t.CA, "http://"):
			if _, err := url.Parse(t.CA); err != nil {
				v.fail("tls.ca", "not a URL: %v", err)
			}
		default:
			v.fail("tls.ca", "must be \"letsencrypt\", \"letsencrypt-staging\" or an ACME directory URL, not %q", t.CA)
		}
		if t.Email != "" && !strings.Contains(t.Email, "@") {
			v.fail("tls.email", "%q is not an email address", t.Email)
		}
		v.readable("tls.ca_root", t.CARoot)
		if len(v.c.Listen.Federation) == 0 && len(v.c.Listen.HTTPS) == 0 {
			v.fail("tls.mode", "acme needs a TLS listener (listen.federation or listen.https)")
		}
	default:
		v.fail("tls.mode", "must be \"acme\", \"files\" or \"self_signed\", not %q", t.Mode)
	}
}

func (v *validator) outbound() {
	o := v.c.Outbound
	v.readable("outbound.ca_file", o.CAFile)
	for i, g := range o.InsecureSkipVerify {
		key := fmt.Sprintf("outbound.insecure_skip_verify[%d]", i)
		if _, err := glob.CompileServerName(g); err != nil {
			v.fail(key, "bad glob: %v", err)
		}
	}
	v.cidrs("outbound.allow_networks", o.AllowNetworks)
	for i, r := range o.Resolvers {
		key := fmt.Sprintf("outbound.resolvers[%d]", i)
		if _, err := netip.ParseAddr(r); err == nil {
			continue
		}
		if _, err := netip.ParseAddrPort(r); err != nil {
			v.fail(key, "%q is not \"IP\" or \"IP:port\"", r)
		}
	}
	for _, name := range sortedMapKeys(o.Overrides) {
		key := joinKey("outbound.overrides", name)
		v.serverName(key, name)
		target := o.Overrides[name]
		host, port, err := net.SplitHostPort(target)
		if err != nil || host == "" {
			v.fail(key, "target %q must be \"host:port\"", target)
			continue
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			v.fail(key, "target %q: port must be 1-65535", target)
		}
	}
	v.positive("outbound.dns_timeout", o.DNSTimeout)
	v.positive("outbound.dial_timeout", o.DialTimeout)
	v.positive("outbound.tls_timeout", o.TLSTimeout)
	v.positive("outbound.response_header_timeout", o.ResponseHeaderTimeout)
	if o.MaxIdlePerHost < 0 {
		v.fail("outbound.max_idle_per_host", "must not be negative")
	}
}

func (v *validator) egress() {
	e := v.c.Egress
	switch e.Connect {
	case ConnectIntercept, ConnectPassthrough, ConnectOff:
	default:
		v.fail("egress.connect", "must be \"intercept\", \"passthrough\" or \"off\", not %q", e.Connect)
	}
	if e.Secret != "" && e.SecretFile != "" {
		v.fail("egress.secret_file", "set egress.secret or egress.secret_file, not both")
	}
	v.readable("egress.secret_file", e.SecretFile)
	v.positive("egress.timeout", e.Timeout)
	if v.c.Listen.Egress == "" {
		return
	}
	if !e.WorkerProxy && e.Connect == ConnectOff {
		v.fail("egress", "listen.egress is set but every capture mode is off (worker_proxy = false, connect = \"off\")")
	}
	if e.WorkerProxy && e.Secret == "" && e.SecretFile == "" && v.c.scope == nil {
		v.fail("egress.secret", "required with worker_proxy: the homeserver's worker_replication_secret")
	}
}

func (v *validator) policy() {
	p := v.c.Policy
	switch p.Default {
	case PolicyAllow, PolicyDeny:
	default:
		v.fail("policy.default", "must be \"allow\" or \"deny\", not %q", p.Default)
	}
	for i, s := range p.Allow {
		v.serverPattern(fmt.Sprintf("policy.allow[%d]", i), s)
	}
	for i, s := range p.Deny {
		v.serverPattern(fmt.Sprintf("policy.deny[%d]", i), s)
	}
	v.cidrs("policy.allow_networks", p.AllowNetworks)
	v.cidrs("policy.deny_networks", p.DenyNetworks)
	v.readable("policy.list_file", p.ListFile)
	v.federationList()
	v.policyRooms()
	v.endpointNames("policy.deny_endpoints", p.DenyEndpoints)
	for i, r := range p.DenyRooms {
		key := fmt.Sprintf("policy.deny_rooms[%d]", i)
		if r == "" || !strings.ContainsAny(r[:1], "!*?") {
			v.fail(key, "%q must be a room ID (\"!abc:example.org\") or a glob on one (\"*:evil.example\")", r)
			continue
		}
		if _, err := glob.Compile(r); err != nil {
			v.fail(key, "bad glob: %v", err)
		}
	}
	for _, name := range sortedMapKeys(p.Origins) {
		key := joinKey("policy.origins", name)
		v.serverPattern(key, name)
		v.endpointNames(key+".deny_endpoints", p.Origins[name].DenyEndpoints)
		v.endpointNames(key+".allow_endpoints", p.Origins[name].AllowEndpoints)
	}
}

// federationList checks list_file, list_url and their signature settings.
func (v *validator) federationList() {
	p := v.c.Policy
	if p.ListFile != "" && p.ListURL != "" {
		v.fail("policy.list_url", "set policy.list_file or policy.list_url, not both")
	}
	if p.ListURL != "" {
		if u, err := url.Parse(p.ListURL); err != nil {
			v.fail("policy.list_url", "not a URL: %v", err)
		} else if u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
			v.fail("policy.list_url", "must be an https URL without user info or fragment, e.g. \"https://lists.example/federation.jws\"")
		}
		if p.ListSignature == "" {
			v.fail("policy.list_signature", "required with policy.list_url: a list fetched over the network must be signed (list_signature = \"jws\" with list_trust)")
		}
		if p.ListRefresh < Duration(10*time.Second) {
			v.fail("policy.list_refresh", "must be at least 10s")
		}
		if p.ListMaxAge != 0 && p.ListRefresh >= p.ListMaxAge {
			v.fail("policy.list_refresh", "%v must be shorter than policy.list_max_age (%v)", p.ListRefresh.D(), p.ListMaxAge.D())
		}
	}
	switch p.ListSignature {
	case "":
		if p.ListTrust != "" {
			v.fail("policy.list_trust", "only meaningful with policy.list_signature = \"jws\"")
		}
	case "jws":
		if p.ListFile == "" && p.ListURL == "" {
			v.fail("policy.list_signature", "needs policy.list_file or policy.list_url")
		}
		if p.ListTrust == "" {
			v.fail("policy.list_trust", "required with policy.list_signature = \"jws\": a PEM file of the roots the signer's certificate chain must reach")
		}
		v.readable("policy.list_trust", p.ListTrust)
	default:
		v.fail("policy.list_signature", "must be \"\" or \"jws\", not %q", p.ListSignature)
	}
	if p.ListMaxAge != 0 && p.ListFile == "" && p.ListURL == "" {
		v.fail("policy.list_max_age", "only meaningful with policy.list_file or policy.list_url")
	}
}

// policyRooms checks [[policy.rooms]].
func (v *validator) policyRooms() {
	seen := map[string]string{}
	for i, r := range v.c.Policy.Rooms {
		key := fmt.Sprintf("policy.rooms[%d]", i)
		switch {
		case r.Room == "":
			v.fail(key+".room", "required: the policy room's ID (\"!abc:example.org\") or alias (\"#bans:example.org\")")
		case !validRoomRef(r.Room):
			v.fail(key+".room", "%q is neither a room ID (\"!abc:example.org\") nor a room alias (\"#bans:example.org\")", r.Room)
		}
		if prev, dup := seen[r.Room]; dup && r.Room != "" {
			v.fail(key+".room", "%s is also listed at %s", r.Room, prev)
		}
		seen[r.Room] = key
		if u, err := url.Parse(r.Homeserver); err != nil {
			v.fail(key+".homeserver", "not a URL: %v", err)
		} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			v.fail(key+".homeserver", "must be the client-server API's http(s)://host[:port], e.g. \"http://127.0.0.1:8008\"")
		}
		if r.AccessTokenFile == "" {
			v.fail(key+".access_token_file", "required: a file holding the bot account's access token")
		}
		v.readable(key+".access_token_file", r.AccessTokenFile)
		switch r.Apply {
		case ApplyDeny, ApplyDryRun:
		default:
			v.fail(key+".apply", "must be %q or %q, not %q", ApplyDeny, ApplyDryRun, r.Apply)
		}
		if r.MaxAge != 0 && r.MaxAge < Duration(time.Minute) {
			v.fail(key+".max_age", "must be at least 1m (or unset): a healthy sync answers every 30s")
		}
		if r.MaxRules < 1 || r.MaxRules > 1<<20 {
			v.fail(key+".max_rules", "must be between 1 and %d", 1<<20)
		}
	}
}

// validRoomRef accepts a room ID ("!opaque", with or without ":server")
// or an alias ("#local:server").
func validRoomRef(s string) bool {
	if len(s) < 2 || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f || s[i] == '/' {
			return false
		}
	}
	switch s[0] {
	case '!':
		return true
	case '#':
		_, server, ok := strings.Cut(s[1:], ":")
		return ok && servername.Valid(server)
	}
	return false
}

func (v *validator) rateLimit() {
	r := v.c.RateLimit
	v.limit("rate_limit.per_ip", r.PerIP)
	v.limit("rate_limit.per_origin", r.PerOrigin)
	v.limit("rate_limit.per_destination", r.PerDestination)
	if r.ConcurrentPerOrigin < 0 {
		v.fail("rate_limit.concurrent_per_origin", "must not be negative (0 is unlimited)")
	}
	for _, name := range sortedMapKeys(r.Classes) {
		key := joinKey("rate_limit.classes", name)
		if !endpoints.Known(name) {
			v.fail(key, "unknown endpoint class or operation %q%s", name, endpointHint())
		}
		v.limit(key, r.Classes[name])
	}
	v.positive("rate_limit.idle_eviction", r.IdleEviction)
	for i, s := range r.Exempt {
		v.serverPattern(fmt.Sprintf("rate_limit.exempt[%d]", i), s)
	}
}

func (v *validator) log() {
	l := v.c.Log
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		v.fail("log.level", "must be debug, info, warn or error, not %q", l.Level)
	}
	switch l.Format {
	case "json", "console":
	default:
		v.fail("log.format", "must be json or console, not %q", l.Format)
	}
	if l.AccessBuffer < 0 || l.AccessBuffer > maxAccessBuffer {
		v.fail("log.access_buffer", "must be between 0 (off) and 16MiB")
	}
}

// maxAccessBuffer bounds log.access_buffer: a second of lines at a rate no
// single instance reaches fits in far less.
const maxAccessBuffer = 16 << 20

func (v *validator) admin() {
	a := v.c.Admin
	for i, p := range a.Peers {
		v.serverName(fmt.Sprintf("admin.peers[%d]", i), p)
	}
	v.positive("admin.ready_window", a.ReadyWindow)
}

func (v *validator) cluster() {
	c := v.c.Cluster
	if !c.Enabled() {
		if v.c.IsSet("cluster") {
			v.fail("cluster.redis", "required in [cluster]: the Redis URL, e.g. \"redis://127.0.0.1:6379/0\" (remove [cluster] to run without Redis)")
		}
		return
	}
	u, err := url.Parse(c.Redis)
	switch {
	case err != nil:
		v.fail("cluster.redis", "not a URL: %v", err)
	case u.Scheme != "redis" && u.Scheme != "rediss":
		v.fail("cluster.redis", "scheme must be redis or rediss (TLS), not %q", u.Scheme)
	case u.Host == "":
		v.fail("cluster.redis", "has no host")
	case u.Path != "" && u.Path != "/":
		if db, err := strconv.Atoi(strings.TrimPrefix(u.Path, "/")); err != nil || db < 0 {
			v.fail("cluster.redis", "database %q must be a number, e.g. redis://host:6379/0", strings.TrimPrefix(u.Path, "/"))
		}
	}
	if c.PasswordFile != "" {
		if u != nil && u.User != nil {
			if _, has := u.User.Password(); has {
				v.fail("cluster.password_file", "set the password in cluster.redis or in cluster.password_file, not both")
			}
		}
		v.readable("cluster.password_file", c.PasswordFile)
	}
	if c.CAFile != "" {
		if u != nil && u.Scheme != "rediss" {
			v.fail("cluster.ca_file", "only meaningful with a rediss:// URL")
		}
		v.readable("cluster.ca_file", c.CAFile)
	}
	if c.Prefix == "" {
		v.fail("cluster.prefix", "must not be empty: every instance of the cluster writes its keys under it")
	} else if len(c.Prefix) > 64 || strings.ContainsAny(c.Prefix, " {}\r\n\t") {
		v.fail("cluster.prefix", "%q must be at most 64 characters without spaces or braces", c.Prefix)
	}
	if len(c.Node) > 64 || strings.ContainsAny(c.Node, " \r\n\t") {
		v.fail("cluster.node", "%q must be at most 64 characters without spaces", c.Node)
	}
	v.positive("cluster.timeout", c.Timeout)
}

// Helpers shared by the sections.

func (v *validator) positive(key string, d Duration) {
	if d <= 0 {
		v.fail(key, "must be a positive duration")
	}
}

func (v *validator) serverName(key, s string) {
	if _, err := servername.Parse(s); err != nil {
		v.fail(key, "invalid server name: %v", err)
	}
}

// serverPattern checks an allow/deny entry: "re:<regexp>", a glob, or an
// exact server name.
func (v *validator) serverPattern(key, s string) {
	if expr, ok := strings.CutPrefix(s, "re:"); ok {
		if expr == "" {
			v.fail(key, "empty regular expression")
		} else if _, err := regexp.Compile(expr); err != nil {
			v.fail(key, "bad regular expression: %v", err)
		}
		return
	}
	g, err := glob.CompileServerName(s)
	if err != nil {
		v.fail(key, "bad glob: %v", err)
		return
	}
	if g.IsLiteral() && !servername.Valid(s) {
		v.fail(key, "%q is not a valid server name, so it can never match", s)
	}
}

func (v *validator) endpointNames(key string, names []string) {
	for i, n := range names {
		if !endpoints.Known(n) {
			v.fail(fmt.Sprintf("%s[%d]", key, i), "unknown endpoint class or operation %q%s", n, endpointHint())
		}
	}
}

func endpointHint() string {
	classes, _ := endpoints.Names()
	return " (classes: " + strings.Join(classes, ", ") + ")"
}

func (v *validator) cidrs(key string, list []string) {
	for i, s := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		if ip, err := netip.ParseAddr(s); err == nil {
			_ = ip // a bare address is a single-host network
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			v.fail(k, "bad CIDR %q: %v", s, err)
			continue
		}
		if p.Masked() != p {
			v.fail(k, "CIDR %q has host bits set; did you mean %s?", s, p.Masked())
		}
	}
}

func (v *validator) limit(key string, l Limit) {
	if l.Enabled() && l.Burst < 1 {
		v.fail(key+".burst", "must be at least 1 when a rate is set")
	}
	if l.Burst < 0 {
		v.fail(key+".burst", "must not be negative")
	}
}

var keyVersionRE = regexp.MustCompile(`^[a-zA-Z0-9_]+$`)

func (v *validator) keyID(key, id string) {
	version, ok := strings.CutPrefix(id, "ed25519:")
	if !ok || !keyVersionRE.MatchString(version) {
		v.fail(key, "key id %q must be \"ed25519:<version>\" with a version of letters, digits and _", id)
	}
}

func (v *validator) publicKey(key, b64 string) {
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(b64, "="))
	if err != nil {
		v.fail(key, "public key is not base64: %v", err)
		return
	}
	if len(raw) != 32 {
		v.fail(key, "public key is %d bytes, an ed25519 key has 32", len(raw))
	}
}

func (v *validator) readable(key, path string) {
	if path == "" {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		v.fail(key, "cannot read %s: %v", path, unwrapPathError(err))
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		v.fail(key, "%s is a folder, not a file", path)
	}
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func sortedMapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package discovery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/fedgate/fedgate/internal/glob"
	"github.com/fedgate/fedgate/internal/servername"
)

const (
	// defaultPort is the federation port when discovery gives none.
	defaultPort = 8448
	// maxTargets caps the addresses one resolution yields (and so the
	// connection attempts one request may make).
	maxTargets = 16
	// maxSRVTargets caps the SRV records whose targets are resolved.
	maxSRVTargets = 8
	// sessionCacheSize is the number of TLS sessions kept for resumption.
	sessionCacheSize = 1024
)

// Resolver runs the spec's server discovery with caching. Create it with
// [NewResolver]; it is safe for concurrent use and must not be copied.
type Resolver struct {
	opts      Options
	guard     guard
	dns       *dnsClient
	hosts     *hostsFile // nil without Options.HostsFile
	wk        *boundedCache[string, *wkEntry]
	wkFlights flightGroup[string, *wkEntry]
	wkHTTP    *http.Client
	overrides map[string]override
	insecure  []glob.Glob
	sessions  tls.ClientSessionCache
	log       *slog.Logger
	now       func() time.Time
}

// override is a compiled Options.Overrides entry.
type override struct {
	target string     // as configured
	host   string     // DNS name, or "" when ip is set
	ip     netip.Addr // IP literal target
	port   uint16
}

// NewResolver checks opts and builds a Resolver. With no Options.Resolvers
// it reads the nameservers from Options.ResolvConf (/etc/resolv.conf) once,
// now; Options.HostsFile is read now too (and again when it changes), and
// one that exists but cannot be used is an error. Nothing is contacted.
func NewResolver(opts Options) (*Resolver, error) {
	o := opts.withDefaults()
	o.PortMap = maps.Clone(o.PortMap)
	servers, err := resolverAddrs(o.Resolvers, o.ResolvConf)
	if err != nil {
		return nil, err
	}
	r := &Resolver{
		opts:      o,
		guard:     newGuard(o.AllowNetworks),
		dns:       newDNSClient(servers, o),
		wk:        newBoundedCache[string, *wkEntry](o.MaxCacheEntries),
		overrides: make(map[string]override, len(o.Overrides)),
		sessions:  tls.NewLRUClientSessionCache(sessionCacheSize),
		log:       o.Logger,
		now:       o.Now,
	}
	for _, p := range o.AllowNetworks {
		if !p.IsValid() {
			return nil, fmt.Errorf("allow network %v is not a valid prefix", p)
		}
	}
	for name, target := range o.Overrides {
		ov, err := parseOverride(name, target)
		if err != nil {
			return nil, err
		}
		r.overrides[strings.ToLower(name)] = ov
	}
	for _, pattern := range o.InsecureSkipVerify {
		g, err := glob.CompileServerName(pattern)
		if err != nil {
			return nil, fmt.Errorf("insecure_skip_verify: %w", err)
		}
		r.insecure = append(r.insecure, g)
	}
	if o.HostsFile != "" {
		if r.hosts, err = newHostsFile(o.HostsFile, o.Now, o.Logger); err != nil {
			return nil, err
		}
	}
	r.wkHTTP = r.newWellKnownClient()
	return r, nil
}

func parseOverride(name, target string) (override, error) {
	if _, err := servername.Parse(name); err != nil {
		return override{}, fmt.Errorf("override for %q: %w", name, err)
	}
	host, portText, err := net.SplitHostPort(target)
	if err != nil {
		return override{}, fmt.Errorf("override for %q: target %q must be \"host:port\": %w", name, target, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return override{}, fmt.Errorf("override for %q: target %q: port must be 1-65535", name, target)
	}
	ov := override{target: target, port: uint16(port)}
	if ip, err := netip.ParseAddr(host); err == nil {
		ov.ip = ip.Unmap()
		return ov, nil
	}
	n, err := servername.Parse(host)
	if err != nil || n.IsIP() {
		return override{}, fmt.Errorf("override for %q: target host %q is neither an IP address nor a DNS name", name, host)
	}
	ov.host = host
	return ov, nil
}

// CheckAddr applies the SSRF guard to addr: nil if it may be dialled, or an
// error wrapping [ErrBlocked]. Refused unless [Options.AllowNetworks]
// contains them (IPv4-mapped IPv6 addresses are judged as IPv4):
//
//   - IPv4: 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10 (CGNAT), 127.0.0.0/8,
//     169.254.0.0/16, 172.16.0.0/12, 192.0.0.0/24, 192.0.2.0/24,
//     192.88.99.0/24, 192.168.0.0/16, 198.18.0.0/15, 198.51.100.0/24,
//     203.0.113.0/24, 224.0.0.0/4 (multicast), 240.0.0.0/4 (reserved and
//     broadcast);
//   - IPv6: everything outside global unicast 2000::/3 (unspecified,
//     loopback, IPv4-compatible and -translated, discard-only, unique local
//     fc00::/7, link-local, site-local, multicast, 64:ff9b:1::/48, ...),
//     and inside it 2001::/23 (Teredo and other IETF assignments),
//     2001:db8::/32 and 3fff::/20 (documentation);
//   - NAT64 64:ff9b::/96 and 6to4 2002::/16 addresses are judged by the
//     IPv4 address they embed.
func (r *Resolver) CheckAddr(addr netip.Addr) error { return r.guard.check(addr) }

// insecureFor reports whether serverName matches an InsecureSkipVerify glob,
// as given or without its port.
func (r *Resolver) insecureFor(serverName string) bool {
	for _, g := range r.insecure {
		if g.Match(serverName) || g.Match(servername.StripPort(serverName)) {
			return true
		}
	}
	return false
}

// Rows of the spec's resolution table (server-server API, "Resolving
// server names"), as reported in [Result.Rule].
const (
	RuleIPLiteral       = "1"   // the server name is an IP literal
	RuleExplicitPort    = "2"   // hostname with an explicit port
	RuleDelegatedIP     = "3.1" // well-known delegates to an IP literal
	RuleDelegatedPort   = "3.2" // well-known delegates to hostname:port
	RuleDelegatedSRV    = "3.3" // delegated hostname, _matrix-fed._tcp SRV
	RuleDelegatedOldSRV = "3.4" // delegated hostname, deprecated _matrix._tcp SRV
	RuleDelegatedHost   = "3.5" // delegated hostname, A/AAAA on 8448
	RuleSRV             = "4"   // no delegation, _matrix-fed._tcp SRV
	RuleOldSRV          = "5"   // no delegation, deprecated _matrix._tcp SRV
	RuleHost            = "6"   // no delegation, A/AAAA on 8448
	RuleOverride        = "override"
)

// Result is where and how to reach a server. It is a fresh value owned by
// the caller.
type Result struct {
	// ServerName is the server name as asked (before any delegation): the
	// name X-Matrix destination and key documents use.
	ServerName string `json:"server_name"`
	// Rule is the row of the spec's table that applied (Rule* constants).
	Rule string `json:"rule"`
	// Delegated is the well-known m.server value, when delegation applied.
	Delegated string `json:"delegated,omitempty"`
	// Host is the Host header to send.
	Host string `json:"host"`
	// TLSServerName is the SNI to send and the DNS name the certificate
	// must be valid for; "" when the certificate must cover CertIP instead
	// (IP literals), and then no SNI is sent.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// CertIP is the address the certificate must cover when TLSServerName
	// is "".
	CertIP netip.Addr `json:"cert_ip,omitzero"`
	// Targets are the addresses to try, in order of preference.
	Targets []Target `json:"targets"`
	// Steps record what discovery did, for "fedgate resolve" and logs.
	Steps []Step `json:"steps"`
	// Expires is when the earliest cached input used here (DNS answer,
	// well-known document) expires; zero when nothing can expire (IP
	// literals).
	Expires time.Time `json:"expires,omitzero"`
}

// Target is one address to connect to.
type Target struct {
	// Addr is the address and port discovery chose (before Options.PortMap).
	Addr netip.AddrPort `json:"addr"`
	// Host is the DNS name Addr was resolved from (SRV target, hostname or
	// override host); "" for IP literals.
	Host string `json:"host,omitempty"`
	// Override marks targets from Options.Overrides, which the SSRF guard
	// does not apply to.
	Override bool `json:"override,omitempty"`
	// Source says where Addr came from: a Source* constant. Override
	// targets whose host is a name keep the source of its addresses.
	Source string `json:"source"`
}

// Address sources, as reported in [Target.Source] and [Step.Source].
const (
	SourceHostsFile = "hosts file" // Options.HostsFile listed the host
	SourceDNS       = "dns"        // AAAA/A records
	SourceOverride  = "override"   // an IP address in Options.Overrides
	SourceLiteral   = "ip literal" // the server name or its delegation is an IP address
)

// Step kinds.
const (
	StepOverride  = "override"
	StepIPLiteral = "ip-literal"
	StepWellKnown = "well-known"
	StepSRV       = "srv"
	StepAddress   = "address"
)

// Step is one thing discovery did.
type Step struct {
	Kind   string   `json:"kind"`             // a Step* constant
	Query  string   `json:"query"`            // URL fetched or DNS question asked
	Answer []string `json:"answer,omitempty"` // what came back, one item per record or value
	Error  string   `json:"error,omitempty"`  // why the step gave nothing; "" when it did
	Note   string   `json:"note,omitempty"`   // anything else worth knowing
	Cached bool     `json:"cached,omitempty"` // answered from the cache
	// Source is where an address step's answer came from: SourceHostsFile
	// or SourceDNS; "" for other steps.
	Source string `json:"source,omitempty"`
}

// String renders the step on one line, as "fedgate resolve" prints it.
func (s Step) String() string {
	var b strings.Builder
	b.WriteString(s.Kind)
	b.WriteString(" ")
	b.WriteString(s.Query)
	if s.Source != "" {
		b.WriteString(" via ")
		b.WriteString(s.Source)
	}
	switch {
	case s.Error != "":
		b.WriteString(": ")
		b.WriteString(s.Error)
	case len(s.Answer) > 0:
		b.WriteString(": ")
		b.WriteString(strings.Join(s.Answer, ", "))
	}
	if s.Note != "" {
		b.WriteString(" (")
		b.WriteString(s.Note)
		b.WriteString(")")
	}
	if s.Cached {
		b.WriteString(" [cached]")
	}
	return b.String()
}

// Resolve finds where serverName lives by the spec's algorithm. It fails
// with an [*Error]: PhaseName for an invalid name, PhaseDNS when DNS has no
// usable answer or the resolvers fail, PhaseWellKnown only when ctx ends
// during a well-known fetch. A failed well-known fetch falls through to
// SRV and A/AAAA and shows in Result.Steps. Resolve does not apply the SSRF
// guard: [Client] does, before every connection.
func (r *Resolver) Resolve(ctx context.Context, serverName string) (*Result, error) {
	name, err := servername.Parse(serverName)
	if err != nil {
		return nil, &Error{ServerName: serverName, Phase: PhaseName, Err: err}
	}
	s := &resolution{r: r, name: name, res: &Result{ServerName: serverName, Host: serverName}}
	switch ov, ok := r.overrides[strings.ToLower(serverName)]; {
	case ok:
		err = s.override(ctx, ov)
	case name.IsIP():
		s.res.Rule = RuleIPLiteral
		s.res.CertIP = name.IP.Unmap()
		s.add(Target{Addr: netip.AddrPortFrom(s.res.CertIP, portOr(name.Port)), Source: SourceLiteral})
		s.step(Step{Kind: StepIPLiteral, Query: serverName, Answer: []string{s.res.Targets[0].Addr.String()}})
	case name.Port != 0:
		s.res.Rule = RuleExplicitPort
		s.res.TLSServerName = name.Host
		err = s.addresses(ctx, name.Host, uint16(name.Port), false, false)
	default:
		err = s.delegation(ctx)
	}
	if err != nil {
		return nil, err
	}
	return s.res, nil
}

// resolution is the state of one Resolve call.
type resolution struct {
	r    *Resolver
	name servername.Name
	res  *Result
}

func (s *resolution) step(st Step) { s.res.Steps = append(s.res.Steps, st) }

func (s *resolution) expire(t time.Time) { s.res.Expires = earliest(s.res.Expires, t) }

func (s *resolution) fail(phase Phase, target string, err error) error {
	return &Error{ServerName: s.res.ServerName, Phase: phase, Target: target, Err: err, Steps: s.res.Steps}
}

// add appends targets, skipping duplicates, up to maxTargets.
func (s *resolution) add(ts ...Target) {
	for _, t := range ts {
		if len(s.res.Targets) >= maxTargets {
			return
		}
		dup := false
		for _, have := range s.res.Targets {
			dup = dup || have.Addr == t.Addr
		}
		if !dup {
			s.res.Targets = append(s.res.Targets, t)
		}
	}
}

func portOr(p int) uint16 {
	if p == 0 {
		return defaultPort
	}
	return uint16(p)
}

// override applies an Options.Overrides entry: fixed target, Host = the
// server name, certificate checked against the server name's host.
func (s *resolution) override(ctx context.Context, ov override) error {
	s.res.Rule = RuleOverride
	if s.name.IsIP() {
		s.res.CertIP = s.name.IP.Unmap()
	} else {
		s.res.TLSServerName = s.name.Host
	}
	s.step(Step{Kind: StepOverride, Query: s.res.ServerName, Answer: []string{ov.target}})
	if ov.ip.IsValid() {
		s.add(Target{Addr: netip.AddrPortFrom(ov.ip, ov.port), Override: true, Source: SourceOverride})
		return nil
	}
	return s.addresses(ctx, ov.host, ov.port, false, true)
}

// delegation is row 3 onwards: well-known, then SRV or A/AAAA.
func (s *resolution) delegation(ctx context.Context) error {
	host := s.name.Host
	e, cached, err := s.r.wellKnown(ctx, host)
	if err != nil {
		return s.fail(PhaseWellKnown, wellKnownURL(host), err)
	}
	s.expire(e.expires)
	st := Step{Kind: StepWellKnown, Query: wellKnownURL(host), Cached: cached}
	if e.delegated == "" {
		st.Error = e.err.Error()
		st.Note = "retry after " + e.expires.UTC().Format(time.RFC3339)
		s.step(st)
		s.res.Host, s.res.TLSServerName = host, host
		return s.srv(ctx, host, RuleSRV, RuleOldSRV, RuleHost)
	}
	st.Answer = []string{"m.server: " + e.delegated}
	st.Note = "valid until " + e.expires.UTC().Format(time.RFC3339)
	if e.stale {
		st.Note = "kept from an earlier fetch after: " + e.err.Error()
	}
	s.step(st)
	d, err := servername.Parse(e.delegated)
	if err != nil { // parseWellKnown validated it; be safe anyway
		return s.fail(PhaseName, e.delegated, err)
	}
	s.res.Delegated = e.delegated
	switch {
	case d.IsIP():
		s.res.Rule = RuleDelegatedIP
		s.res.Host = e.delegated
		s.res.CertIP = d.IP.Unmap()
		s.add(Target{Addr: netip.AddrPortFrom(s.res.CertIP, portOr(d.Port)), Source: SourceLiteral})
		return nil
	case d.Port != 0:
		s.res.Rule = RuleDelegatedPort
		s.res.Host, s.res.TLSServerName = e.delegated, d.Host
		return s.addresses(ctx, d.Host, uint16(d.Port), false, false)
	}
	s.res.Host, s.res.TLSServerName = d.Host, d.Host
	return s.srv(ctx, d.Host, RuleDelegatedSRV, RuleDelegatedOldSRV, RuleDelegatedHost)
}

// srv tries _matrix-fed._tcp, then _matrix._tcp, then A/AAAA on 8448. Only
// "no such records" moves on; a resolver failure stops here.
func (s *resolution) srv(ctx context.Context, host string, ruleFed, ruleOld, ruleHost string) error {
	for _, svc := range []struct{ prefix, rule string }{{"_matrix-fed._tcp.", ruleFed}, {"_matrix._tcp.", ruleOld}} {
		qname := svc.prefix + host
		recs, l, err := s.r.dns.lookupSRV(ctx, qname)
		st := Step{Kind: StepSRV, Query: qname + " SRV", Cached: l.cached}
		if err != nil {
			st.Error = err.Error()
			if errors.Is(err, ErrNotFound) {
				st.Error = "no records"
			}
			s.step(st)
			if errors.Is(err, ErrNotFound) {
				s.expire(l.expires)
				continue
			}
			return s.fail(PhaseDNS, qname, err)
		}
		s.expire(l.expires)
		for _, rec := range recs {
			st.Answer = append(st.Answer, fmt.Sprintf("%d %d %d %s", rec.Priority, rec.Weight, rec.Port, rec.Target))
		}
		if svc.rule == RuleOldSRV || svc.rule == RuleDelegatedOldSRV {
			st.Note = "_matrix._tcp is deprecated since Matrix 1.8; publish _matrix-fed._tcp"
		}
		s.step(st)
		if unavailable(recs) {
			return s.fail(PhaseDNS, qname, ErrServiceUnavailable)
		}
		s.res.Rule = svc.rule
		var errs []error
		ordered := orderSRV(recs, randN)
		for _, rec := range ordered[:min(len(ordered), maxSRVTargets)] {
			if rec.Port == 0 {
				errs = append(errs, fmt.Errorf("SRV target %s has port 0", rec.Target))
				continue
			}
			if err := s.addresses(ctx, srvTarget(rec), rec.Port, true, false); err != nil {
				errs = append(errs, err)
			}
		}
		if len(s.res.Targets) == 0 {
			return s.fail(PhaseDNS, qname, fmt.Errorf("no SRV target has an address: %w", errors.Join(errs...)))
		}
		return nil
	}
	s.res.Rule = ruleHost
	return s.addresses(ctx, host, defaultPort, false, false)
}

// addresses resolves host, from the hosts file or with AAAA/A (following
// CNAMEs), and adds its addresses at port. srvTarget marks an SRV target:
// RFC 2782 forbids aliases there, but Synapse and Dendrite follow them, and
// refusing would break federation with servers that work with everyone
// else, so the alias is followed and noted in the step.
func (s *resolution) addresses(ctx context.Context, host string, port uint16, srvTarget, isOverride bool) error {
	a, err := s.r.lookupAddrs(ctx, host)
	st := Step{Kind: StepAddress, Query: host + " AAAA/A", Source: a.source, Cached: a.cached, Note: a.note}
	for _, c := range a.chain {
		st.Answer = append(st.Answer, "CNAME "+strings.TrimSuffix(c, "."))
	}
	for _, ip := range a.list {
		st.Answer = append(st.Answer, ip.String())
	}
	if a.partial != nil {
		st.Note = "partial answer: " + a.partial.Error()
	}
	if srvTarget && len(a.chain) > 0 {
		note := "SRV target is an alias (CNAME), which RFC 2782 forbids; followed as Synapse and Dendrite do"
		if st.Note != "" {
			note = st.Note + "; " + note
		}
		st.Note = note
	}
	if err != nil {
		st.Error = err.Error()
		s.step(st)
		return s.fail(PhaseDNS, host, err)
	}
	s.step(st)
	s.expire(a.expires)
	for _, ip := range a.list {
		s.add(Target{Addr: netip.AddrPortFrom(ip, port), Host: strings.ToLower(host), Override: isOverride, Source: a.source})
	}
	return nil
}

// lookupAddrs resolves host to addresses as the host's resolver does with
// "hosts: files dns": from the hosts file when it lists host (DNS is then
// not asked, for either address family), otherwise from DNS. Every
// address lookup of discovery goes through here.
func (r *Resolver) lookupAddrs(ctx context.Context, host string) (addrs, error) {
	if list, ok := r.hosts.lookup(host); ok {
		return addrs{list: list, source: SourceHostsFile, note: r.hosts.path}, nil
	}
	a, err := r.dns.lookupAddrs(ctx, host)
	a.source = SourceDNS
	return a, err
}

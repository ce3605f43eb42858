package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/gateway"
	"github.com/fedgate/fedgate/internal/servername"
	"github.com/fedgate/fedgate/policy"
)

// Check outcomes.
const (
	checkPass = "PASS"
	checkFail = "FAIL"
	checkSkip = "SKIP"
)

// Selftest limits.
const (
	// maxSelftestTargets is how many discovered addresses get a TLS check.
	maxSelftestTargets = 4
	// maxSmallResponse bounds the version, error and /readyz bodies read.
	maxSmallResponse = 64 << 10
	// certExpiryWarning is when a certificate's coming expiry is mentioned.
	certExpiryWarning = 14 * 24 * time.Hour
)

func cmdSelftest(env *environment, args []string) int {
	fs := newFlagSet(env, "selftest", "-config FILE [-json] [-resolver IP:PORT] [-hosts-file FILE] [-timeout D]",
		"Checks the deployment FILE describes from the outside, the way remote servers and\n"+
			"the federation tester see it, and prints one line per check with the fix for\n"+
			"each failure:\n\n"+
			"  discovery  server_name resolves by the spec's algorithm (well-known,\n"+
			"             _matrix-fed._tcp and _matrix._tcp SRV, A/AAAA), using [outbound]\n"+
			"             hosts_file, resolvers and overrides; well_known.server is what\n"+
			"             others find\n"+
			"  tls        every address found presents a certificate valid for the name\n"+
			"             remote servers check, from a CA in the system roots or\n"+
			"             outbound.ca_file (outbound.insecure_skip_verify does not apply)\n"+
			"  keys       the key document is served, signed by every key it lists, and\n"+
			"             lists every key of keys.signing_key and [[keys.old]]\n"+
			"  version    /_matrix/federation/v1/version reaches the homeserver through fedgate\n"+
			"  egress     listen.egress answers the worker proxy protocol and refuses a\n"+
			"             destination policy denies (403 M_FORBIDDEN); skipped without\n"+
			"             listen.egress and egress.worker_proxy\n"+
			"  admin      listen.admin's /readyz answers 200; skipped without listen.admin\n\n"+
			"Private and loopback addresses are allowed: this is your own server.\n"+
			"With [[servers]], every hosted server is checked in turn (one report each).\n"+
			"Exits 0 when no check failed, 1 otherwise.")
	path := fs.String("config", "gateway.toml", "configuration `file` of the fedgate to check")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	resolver := fs.String("resolver", "", "DNS server to ask, `IP:PORT` or IP, instead of outbound.resolvers or the system's")
	hostsFile := hostsFileFlag(fs, "outbound.hosts_file")
	timeout := fs.Duration("timeout", 60*time.Second, "overall time limit")
	if code, ok := parseFlags(env, fs, args, 0); !ok {
		return code
	}
	c, err := config.Load(*path)
	if err != nil {
		printConfigError(env.stderr, err)
		return exitFailure
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	code := exitOK
	for _, hc := range c.Hosted() {
		st, err := newSelftest(hc, *resolver, hostsFile)
		if err != nil {
			printConfigError(env.stderr, err)
			return exitFailure
		}
		rep := st.run(ctx)
		st.client.CloseIdleConnections()
		if writeReport(env, *asJSON, rep, rep.OK) != exitOK {
			code = exitFailure
		}
	}
	return code
}

// checkResult is one line of the selftest.
type checkResult struct {
	Name   string `json:"name"`
	Status string `json:"status"` // PASS, FAIL or SKIP
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// selftestReport is what "fedgate selftest" prints.
type selftestReport struct {
	ServerName string        `json:"server_name"`
	Config     string        `json:"config"`
	OK         bool          `json:"ok"`
	Checks     []checkResult `json:"checks"`
}

func (rep *selftestReport) print(w io.Writer) {
	fmt.Fprintf(w, "fedgate selftest of %s (%s)\n", rep.ServerName, rep.Config)
	failed := 0
	for _, c := range rep.Checks {
		line := fmt.Sprintf("%s %-9s %s", c.Status, c.Name, c.Detail)
		if c.Fix != "" {
			line += " -- fix: " + c.Fix
		}
		fmt.Fprintln(w, line)
		if c.Status == checkFail {
			failed++
		}
	}
	switch failed {
	case 0:
		fmt.Fprintln(w, "all checks passed")
	case 1:
		fmt.Fprintln(w, "1 check failed")
	default:
		fmt.Fprintf(w, "%d checks failed\n", failed)
	}
}

// selftest holds what the checks share.
type selftest struct {
	c      *config.Config
	client *discovery.Client
	roots  *x509.CertPool // nil: the system roots
	now    func() time.Time
}

// nameCheck is the state of the checks of one server name: what the
// discovery check found, the later ones use.
type nameCheck struct {
	*selftest
	name  string
	res   *discovery.Result // from the discovery check
	tlsOK bool              // at least one address passed the TLS check
}

// newSelftest builds the federation client the checks use: [outbound] as
// fedgate uses it, except that certificates are always verified and our
// own (possibly private) addresses may be dialled. resolver and hostsFile
// (when not nil) replace outbound.resolvers and outbound.hosts_file.
func newSelftest(c *config.Config, resolver string, hostsFile *string) (*selftest, error) {
	opts, err := gateway.DiscoveryOptions(c, nil)
	if err != nil {
		return nil, err
	}
	if resolver != "" {
		opts.Resolvers = []string{resolver}
	}
	if hostsFile != nil && *hostsFile != noFlag {
		opts.HostsFile = *hostsFile
	}
	opts.InsecureSkipVerify = nil
	opts.AllowNetworks = append(opts.AllowNetworks, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
	r, err := discovery.NewResolver(opts)
	if err != nil {
		return nil, fmt.Errorf("outbound: %w", err)
	}
	return &selftest{c: c, client: discovery.NewClient(r), roots: opts.RootCAs, now: time.Now}, nil
}

// run performs every check in order; later checks need what earlier ones
// found and are skipped when it is missing.
func (st *selftest) run(ctx context.Context) *selftestReport {
	rep := &selftestReport{ServerName: st.c.ServerName, Config: st.c.File}
	rep.Checks = st.checkServerName(ctx, st.c.ServerName)
	for _, check := range []func(context.Context) checkResult{st.checkEgress, st.checkAdmin} {
		rep.Checks = append(rep.Checks, check(ctx))
	}
	rep.OK = true
	for _, c := range rep.Checks {
		if c.Status == checkFail {
			rep.OK = false
		}
	}
	return rep
}

// checkServerName runs the checks of one server name this fedgate serves,
// in order: discovery, tls, keys, version. Each needs what the earlier
// ones found and is skipped without it.
func (st *selftest) checkServerName(ctx context.Context, name string) []checkResult {
	nc := &nameCheck{selftest: st, name: name}
	var out []checkResult
	for _, check := range []func(context.Context) checkResult{nc.checkDiscovery, nc.checkTLS, nc.checkKeys, nc.checkVersion} {
		out = append(out, check(ctx))
	}
	return out
}

// ruleText explains a row of the spec's resolution table.
func ruleText(rule string) string {
	switch rule {
	case discovery.RuleIPLiteral:
		return "IP literal"
	case discovery.RuleExplicitPort:
		return "explicit port"
	case discovery.RuleDelegatedIP:
		return "well-known delegation to an IP literal"
	case discovery.RuleDelegatedPort:
		return "well-known delegation with a port"
	case discovery.RuleDelegatedSRV:
		return "well-known delegation, then _matrix-fed._tcp SRV"
	case discovery.RuleDelegatedOldSRV:
		return "well-known delegation, then the deprecated _matrix._tcp SRV"
	case discovery.RuleDelegatedHost:
		return "well-known delegation, then A/AAAA on port 8448"
	case discovery.RuleSRV:
		return "_matrix-fed._tcp SRV"
	case discovery.RuleOldSRV:
		return "deprecated _matrix._tcp SRV"
	case discovery.RuleHost:
		return "A/AAAA on port 8448"
	case discovery.RuleOverride:
		return "outbound.overrides (only this fedgate sees it; remote servers do not)"
	}
	return "rule " + rule
}

func (st *nameCheck) checkDiscovery(ctx context.Context) checkResult {
	r := checkResult{Name: "discovery"}
	name := st.name
	res, err := st.client.Resolver().Resolve(ctx, name)
	if err != nil {
		r.Status, r.Detail = checkFail, "cannot resolve "+name+": "+err.Error()
		host := servername.StripPort(name)
		var de *discovery.Error
		switch {
		case errors.As(err, &de) && de.Phase == discovery.PhaseName:
			r.Fix = "server_name must be a valid Matrix server name (hostname or IP, optional port)"
		case errors.As(err, &de) && de.Phase == discovery.PhaseWellKnown:
			r.Fix = "https://" + host + "/.well-known/matrix/server did not answer in time; serve it (fedgate does with well_known.server and a listen.https on :443) or remove it"
		default:
			r.Fix = fmt.Sprintf("publish \"_matrix-fed._tcp.%s. SRV 10 5 8448 <fedgate's host>.\" and A/AAAA records for that host, "+
				"or serve https://%s/.well-known/matrix/server; check that the resolvers answer (outbound.resolvers); "+
				"on a private network whose servers share a hosts file, list the host there (outbound.hosts_file)", host, host)
		}
		return r
	}
	st.res = res
	tlsName := res.TLSServerName
	if tlsName == "" {
		tlsName = res.CertIP.String()
	}
	r.Status = checkPass
	r.Detail = fmt.Sprintf("%s: spec rule %s (%s) -> Host %s, TLS name %s, addresses %s",
		name, res.Rule, ruleText(res.Rule), res.Host, tlsName, describeTargets(res.Targets))
	fromHosts := false
	for _, t := range res.Targets {
		fromHosts = fromHosts || t.Source == discovery.SourceHostsFile
	}
	switch want := st.c.WellKnown.Server; {
	case want != "" && res.Delegated != want:
		found := "no delegation"
		if res.Delegated != "" {
			found = "m.server " + res.Delegated
		}
		r.Status = checkFail
		r.Detail = fmt.Sprintf("fedgate serves m.server %s (well_known.server) but discovery found %s; %s", want, found, r.Detail)
		r.Fix = "https://" + servername.StripPort(name) + "/.well-known/matrix/server must reach fedgate (listen.https on :443, or a proxy that forwards it); " +
			"a cached well-known can take up to a day to change on remote servers"
	case res.Rule == discovery.RuleOldSRV || res.Rule == discovery.RuleDelegatedOldSRV:
		r.Fix = "works, but _matrix._tcp is deprecated: publish the same record as _matrix-fed._tcp too"
	case res.Rule == discovery.RuleOverride:
		r.Fix = "this fedgate's outbound.overrides hides what remote servers see; run with -resolver to check public DNS"
	case fromHosts:
		r.Fix = "addresses from the hosts file reach only servers that share it (as on one host or one container network); " +
			"run with -hosts-file \"\" -resolver <public resolver> to check what the rest of the federation sees"
	}
	return r
}

func (st *nameCheck) checkTLS(ctx context.Context) checkResult {
	r := checkResult{Name: "tls"}
	if st.res == nil {
		r.Status, r.Detail = checkSkip, "needs discovery"
		return r
	}
	var good, bad []string
	var fix string
	targets := st.res.Targets
	if len(targets) > maxSelftestTargets {
		targets = targets[:maxSelftestTargets]
	}
	for _, t := range targets {
		detail, f, ok := st.tlsTarget(ctx, t.Addr)
		if ok {
			good = append(good, detail)
			st.tlsOK = true
		} else {
			bad = append(bad, detail)
			if fix == "" {
				fix = f
			}
		}
	}
	if len(bad) > 0 {
		r.Status, r.Detail, r.Fix = checkFail, strings.Join(append(bad, good...), "; "), fix
		return r
	}
	r.Status, r.Detail = checkPass, strings.Join(good, "; ")
	return r
}

// tlsTarget checks one address: handshake with the SNI remote servers
// send, then the chain and the name they verify.
func (st *nameCheck) tlsTarget(ctx context.Context, addr netip.AddrPort) (detail, fix string, ok bool) {
	res := st.res
	name := res.TLSServerName
	if name == "" {
		name = res.CertIP.String()
	}
	timeout := st.c.Outbound.DialTimeout.D() + st.c.Outbound.TLSTimeout.D()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return fmt.Sprintf("%s: cannot connect: %v", addr, err),
			"make " + addr.String() + " reach fedgate's federation listener (listen.federation; firewall, port forwarding)", false
	}
	defer raw.Close()
	conn := tls.Client(raw, &tls.Config{
		ServerName:         res.TLSServerName,
		InsecureSkipVerify: true, // verified below, so that a bad certificate can be described
		NextProtos:         []string{"http/1.1"},
		MinVersion:         tls.VersionTLS12,
	})
	if err := conn.HandshakeContext(ctx); err != nil {
		return fmt.Sprintf("%s: TLS handshake failed: %v", addr, err),
			"fedgate must serve TLS on this address with a certificate for " + name + " (tls.mode, tls.names)", false
	}
	certs := conn.ConnectionState().PeerCertificates
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	now := st.now()
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: st.roots, Intermediates: inter, CurrentTime: now})
	covers := strings.Join(certNames(leaf), ", ")
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case err == nil:
		detail = fmt.Sprintf("%s: certificate for %s valid until %s (issuer %s)", addr, name, leaf.NotAfter.UTC().Format(time.RFC3339), issuerName(leaf))
		switch left := leaf.NotAfter.Sub(now); {
		case left < 48*time.Hour:
			detail += fmt.Sprintf(", expires in %d hours", int(left.Hours()))
		case left < certExpiryWarning:
			detail += fmt.Sprintf(", expires in %d days", int(left.Hours()/24))
		}
		return detail, "", true
	case errors.As(err, &hostErr):
		return fmt.Sprintf("%s: certificate covers %s, not %s", addr, covers, name),
			"remote servers check the certificate against " + name + ": add it to tls.names (acme) or use a certificate for it (tls.cert_file)", false
	case errors.As(err, &authErr):
		return fmt.Sprintf("%s: certificate for %s is signed by %q, which is not a trusted CA", addr, covers, issuerName(leaf)),
			"use a certificate from a public CA (tls.mode = \"acme\"), and serve the whole chain; self-signed certificates are refused by federation", false
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Sprintf("%s: certificate for %s is not valid now (valid %s to %s)", addr, covers,
				leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339)),
			"renew the certificate (acme renews by itself: check fedgate's log and fedgate_certs_pending)", false
	}
	return fmt.Sprintf("%s: certificate does not verify: %v", addr, err),
		"serve a complete chain from a public CA for " + name, false
}

func certNames(c *x509.Certificate) []string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, "CN="+c.Subject.CommonName)
	}
	if len(names) == 0 {
		names = []string{"no names"}
	}
	return names
}

func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	if len(c.Issuer.Organization) > 0 {
		return c.Issuer.Organization[0]
	}
	return c.Issuer.String()
}

// needsTLS is the SKIP result of checks that talk HTTPS to our server.
func (st *nameCheck) needsTLS(name string) (checkResult, bool) {
	switch {
	case st.res == nil:
		return checkResult{Name: name, Status: checkSkip, Detail: "needs discovery"}, false
	case !st.tlsOK:
		return checkResult{Name: name, Status: checkSkip, Detail: "needs an address whose certificate verifies"}, false
	}
	return checkResult{}, true
}

func (st *nameCheck) checkKeys(ctx context.Context) checkResult {
	if r, ok := st.needsTLS("keys"); !ok {
		return r
	}
	r := checkResult{Name: "keys"}
	body, fr := fetch(ctx, st.client, st.res, "/_matrix/key/v2/server")
	if fr.Error != "" {
		r.Status, r.Detail = checkFail, fr.describe("")
		r.Fix = "fedgate serves /_matrix/key/v2/server itself on its federation listeners; check that " + st.res.Host + " reaches fedgate"
		return r
	}
	kr := &keysReport{fetchReport: *fr}
	checkKeys(kr, body, st.name, st.now())
	var problems []string
	if kr.Error != "" {
		problems = append(problems, kr.Error)
	}
	var ids []string
	for _, k := range kr.Keys {
		ids = append(ids, k.KeyID)
		if !k.SelfSigned && k.Error != "" {
			problems = append(problems, k.KeyID+": "+k.Error)
		}
	}
	fix := "fedgate signs its key document with every key in keys.signing_key; is " + fr.Target + " this fedgate?"
	ours, note, err := ourKeys(st.c)
	switch {
	case err != nil:
		problems = append(problems, err.Error())
	case ours != nil:
		if p := compareKeyDocument(body, ours, st.c.Keys.Old); len(p) > 0 {
			problems = append(problems, p...)
			fix = "the server answering does not publish exactly the keys of this configuration: reload fedgate after changing keys " +
				"(systemctl reload fedgate, or SIGHUP) and check that " + fr.Target + " is this fedgate"
		}
	}
	if len(problems) > 0 {
		r.Status, r.Fix = checkFail, fix
		r.Detail = fmt.Sprintf("key document from %s: %s", fr.Target, strings.Join(problems, "; "))
		return r
	}
	r.Status = checkPass
	r.Detail = fmt.Sprintf("key document from %s lists %s, each signing it; valid until %s%s",
		fr.Target, strings.Join(ids, ", "), kr.ValidUntil.Format(time.RFC3339), note)
	return r
}

// ourKeys loads keys.signing_key; nil keys and a note when it does not
// exist yet (keys.generate creates it on the first run).
func ourKeys(c *config.Config) ([]auth.SigningKey, string, error) {
	keys, err := auth.LoadKeyFile(c.Keys.SigningKey)
	if errors.Is(err, os.ErrNotExist) && c.Keys.Generate {
		return nil, " (keys.signing_key does not exist yet, so the keys were not compared)", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("keys.signing_key: %w", err)
	}
	return keys, "; matches keys.signing_key", nil
}

// compareKeyDocument lists how a served key document differs from the
// configured keys: every current key must be in verify_keys with its
// public key, nothing else may be there, and every [[keys.old]] entry must
// be in old_verify_keys. raw comes from the network.
func compareKeyDocument(raw []byte, current []auth.SigningKey, old []config.OldKey) []string {
	doc, err := decodeJSONObject(raw)
	if err != nil {
		return []string{"key document is not a JSON object: " + err.Error()}
	}
	served := func(field string) map[string]string {
		out := map[string]string{}
		m, _ := doc[field].(map[string]any)
		for id, v := range m {
			entry, _ := v.(map[string]any)
			key, _ := entry["key"].(string)
			out[id] = key
		}
		return out
	}
	verify, oldServed := served("verify_keys"), served("old_verify_keys")
	var problems []string
	want := map[string]bool{}
	for _, k := range current {
		id := string(k.ID)
		want[id] = true
		got, ok := verify[id]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s from keys.signing_key is not in verify_keys", id))
		case got != auth.EncodeBase64(k.Public()):
			problems = append(problems, fmt.Sprintf("%s is served with another public key than keys.signing_key's", id))
		}
	}
	for id := range verify {
		if !want[id] {
			problems = append(problems, fmt.Sprintf("verify_keys has %s, which is not in keys.signing_key", clip(id)))
		}
	}
	for _, o := range old {
		got, ok := oldServed[o.KeyID]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s from [[keys.old]] is not in old_verify_keys", o.KeyID))
		case got != o.PublicKey:
			problems = append(problems, fmt.Sprintf("%s is served in old_verify_keys with another public key than [[keys.old]]'s", o.KeyID))
		}
	}
	return problems
}

// clip shortens remote text quoted in a report.
func clip(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// versionName reads {"server":{"name":...,"version":...}}.
func versionName(body []byte) (string, error) {
	var v struct {
		Server struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"server"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return "", fmt.Errorf("not the version JSON: %w", err)
	}
	name := strings.TrimSpace(v.Server.Name)
	if name == "" {
		return "", errors.New("no server.name in the version JSON")
	}
	return strings.TrimSpace(name + " " + strings.TrimSpace(v.Server.Version)), nil
}

// matrixError reads a Matrix error body; Synapse's worker proxy protocol
// puts the message under "err".
func matrixError(body []byte) (errcode, msg string) {
	var e struct {
		Errcode string `json:"errcode"`
		Error   string `json:"error"`
		Err     string `json:"err"`
	}
	if json.Unmarshal(body, &e) != nil {
		return "", ""
	}
	if e.Error == "" {
		e.Error = e.Err
	}
	return e.Errcode, e.Error
}

func (st *nameCheck) checkVersion(ctx context.Context) checkResult {
	if r, ok := st.needsTLS("version"); !ok {
		return r
	}
	r := checkResult{Name: "version"}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/_matrix/federation/v1/version", nil)
	if err != nil {
		r.Status, r.Detail = checkFail, err.Error()
		return r
	}
	req.Header.Set("User-Agent", "fedgate/"+version+" (selftest)")
	resp, err := st.client.DoResolved(ctx, st.res, req)
	if err != nil {
		r.Status, r.Detail = checkFail, "GET /_matrix/federation/v1/version: "+err.Error()
		r.Fix = "check that " + st.res.Host + " reaches fedgate's federation listener"
		return r
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxSmallResponse))
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		name, err := versionName(body)
		if err != nil {
			r.Status, r.Detail = checkFail, "GET /_matrix/federation/v1/version answered 200 but "+err.Error()
			r.Fix = "upstream.url must be the homeserver's federation listener"
			return r
		}
		r.Status, r.Detail = checkPass, "the homeserver answers through fedgate: "+name
		return r
	}
	code, msg := matrixError(body)
	r.Status = checkFail
	r.Detail = "GET /_matrix/federation/v1/version: " + statusText(resp.StatusCode, code, msg)
	switch {
	case resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout:
		r.Fix = "fedgate cannot reach the homeserver: check " + upstreamSetting(st.c.Upstream) + " and that the homeserver's federation listener is running"
	case resp.StatusCode == http.StatusForbidden:
		r.Fix = "policy refuses the request: remove \"version\" from policy.deny_endpoints, or this host's address from policy.deny_networks"
	case resp.StatusCode == http.StatusTooManyRequests:
		r.Fix = "rate_limit.per_ip refused the selftest; run it again later"
	case resp.StatusCode == http.StatusNotFound:
		r.Fix = "the homeserver does not serve federation at upstream.url: point it at the federation listener (Synapse: the listener with the federation resource)"
	default:
		r.Fix = "see fedgate's access log for this request"
	}
	return r
}

// statusText renders "HTTP 502 M_UNKNOWN message", leaving out what is
// missing.
func statusText(status int, errcode, msg string) string {
	s := fmt.Sprintf("HTTP %d", status)
	if errcode != "" {
		s += " " + clipText(errcode)
	}
	if msg != "" {
		s += " " + clipText(msg)
	}
	return s
}

// clipText shortens a message quoted from a response.
func clipText(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// deniedDestination picks a server name the configured policy denies as a
// destination, for the egress check: an entry of policy.deny (globs made
// concrete), or a made-up name under default = "deny". dryRun reports that
// policy denies nothing.
func deniedDestination(c *config.Config) (name string, dryRun bool, err error) {
	eng, err := policy.New(policy.Options{ServerName: c.ServerName, Policy: c.Policy, RateLimit: c.RateLimit})
	if err != nil {
		return "", false, err
	}
	snap := eng.Snapshot()
	if snap.DryRun() {
		return "", true, nil
	}
	const probe = "fedgate-selftest"
	var candidates []string
	for _, d := range c.Policy.Deny {
		if strings.HasPrefix(d, "re:") {
			continue
		}
		n := strings.NewReplacer("*", probe, "?", "x").Replace(d)
		if servername.Valid(n) {
			candidates = append(candidates, n)
		}
	}
	candidates = append(candidates, probe+".invalid")
	for _, n := range candidates {
		if d := snap.CheckDestination(n); !d.Allowed {
			return n, false, nil
		}
	}
	return "", false, nil
}

// egressSecret returns egress.secret or the content of egress.secret_file.
func egressSecret(c *config.Config) (string, error) {
	if c.Egress.SecretFile == "" {
		return c.Egress.Secret, nil
	}
	b, err := os.ReadFile(c.Egress.SecretFile)
	if err != nil {
		return "", fmt.Errorf("egress.secret_file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// dialAddr turns a listen address into one to connect to: an unspecified
// host ("[::]:8449", ":8449") becomes loopback.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		if err == nil && ip.Is6() {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return listen
}

func (st *selftest) checkEgress(ctx context.Context) checkResult {
	r := checkResult{Name: "egress"}
	c := st.c
	switch {
	case c.Listen.Egress == "":
		r.Status, r.Detail = checkSkip, "listen.egress is not set"
		return r
	case !c.Egress.WorkerProxy:
		r.Status, r.Detail = checkSkip, "egress.worker_proxy is off (the check speaks Synapse's worker proxy protocol)"
		return r
	}
	secret, err := egressSecret(c)
	if err != nil {
		r.Status, r.Detail = checkFail, err.Error()
		return r
	}
	if secret == "" && c.HostedIndex() > 0 {
		r.Status, r.Detail = checkSkip, "this [[servers]] entry has no egress secret (its homeserver cannot use the worker proxy protocol)"
		return r
	}
	dest, dryRun, err := deniedDestination(c)
	switch {
	case err != nil:
		r.Status, r.Detail = checkFail, "policy: "+err.Error()
		return r
	case dryRun:
		r.Status, r.Detail = checkSkip, "policy.dry_run is on: the egress denies nothing"
		return r
	case dest == "":
		r.Status, r.Detail = checkSkip, "policy denies no destination, so enforcement cannot be shown (add a policy.deny entry to test it)"
		return r
	}
	addr := dialAddr(c.Listen.Egress)
	status, body, err := workerProxyGet(ctx, addr, dest, secret)
	if err != nil {
		r.Status, r.Detail = checkFail, fmt.Sprintf("egress at %s: %v", addr, err)
		r.Fix = "is fedgate running with listen.egress = " + c.Listen.Egress + "?"
		return r
	}
	code, msg := matrixError(body)
	r.Detail = fmt.Sprintf("egress at %s answered GET matrix-federation://%s/_matrix/federation/v1/version with %s", addr, dest, statusText(status, code, msg))
	switch {
	case status == http.StatusForbidden && code == gateway.CodeForbidden:
		r.Status = checkPass
		r.Detail = fmt.Sprintf("egress at %s refused %s, which policy denies: 403 %s", addr, dest, code)
	case status == http.StatusUnauthorized:
		r.Status, r.Fix = checkFail, "the running fedgate expects another secret: egress.secret (or secret_file) must match; reload fedgate after changing it"
	case status < 300 || status == http.StatusBadGateway || status == http.StatusGatewayTimeout:
		r.Status, r.Fix = checkFail, "the egress tried to deliver to a denied destination: reload fedgate so it runs this configuration's policy"
	case status == http.StatusBadRequest || status == http.StatusMethodNotAllowed:
		r.Status, r.Fix = checkFail, "the egress does not accept worker proxy requests: set egress.worker_proxy = true and reload fedgate"
	default:
		r.Status, r.Fix = checkFail, "expected 403 M_FORBIDDEN; see fedgate's access log (direction egress)"
	}
	return r
}

// workerProxyGet sends one absolute-form request of Synapse's worker proxy
// protocol to the egress listener and returns the status and body.
func workerProxyGet(ctx context.Context, addr, dest, secret string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET matrix-federation://%s/_matrix/federation/v1/version HTTP/1.1\r\n", dest)
	fmt.Fprintf(&req, "Host: %s\r\nProxy-Authorization: Bearer %s\r\nUser-Agent: fedgate/%s (selftest)\r\nConnection: close\r\n\r\n", dest, secret, version)
	if _, err := conn.Write(req.Bytes()); err != nil {
		return 0, nil, fmt.Errorf("sending: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxSmallResponse))
	return resp.StatusCode, body, nil
}

func (st *selftest) checkAdmin(ctx context.Context) checkResult {
	r := checkResult{Name: "admin"}
	if st.c.Listen.Admin == "" {
		r.Status, r.Detail = checkSkip, "listen.admin is not set"
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u := "http://" + dialAddr(st.c.Listen.Admin) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		r.Status, r.Detail = checkFail, err.Error()
		return r
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		r.Status, r.Detail, r.Fix = checkFail, "GET "+u+": "+err.Error(), "is fedgate running with listen.admin = "+st.c.Listen.Admin+"?"
		return r
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxSmallResponse))
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		r.Status, r.Detail = checkPass, u+" says ready"
		return r
	}
	var failing []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "FAIL ") {
			failing = append(failing, strings.TrimPrefix(line, "FAIL "))
		}
	}
	r.Status = checkFail
	r.Detail = fmt.Sprintf("%s: HTTP %d: %s", u, resp.StatusCode, clipText(strings.Join(failing, "; ")))
	r.Fix = "fix what /readyz names; fedgate_ready_check in /metrics shows each check"
	return r
}

// upstreamSetting names the default pool's setting with its value, for a
// fix: "upstream.url (http://...)" or "upstream.urls (http://..., ...)".
func upstreamSetting(u config.Upstream) string {
	if u.URL != "" {
		return "upstream.url (" + u.URL + ")"
	}
	return "upstream.urls (" + strings.Join(u.URLs, ", ") + ")"
}

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/gateway"
)

// maxKeyDocument bounds the key document and version responses read.
const maxKeyDocument = 1 << 20

func cmdResolve(env *environment, args []string) int {
	fs := newFlagSet(env, "resolve", "[-config FILE] [-resolver IP:PORT] [-hosts-file FILE] [-json] [-timeout D] [SERVER_NAME]",
		"Runs server discovery for SERVER_NAME the way fedgate does and prints each\n"+
			"step: the well-known document, SRV records, addresses, and the Host header and\n"+
			"TLS name (SNI) it would use. Then it fetches /_matrix/federation/v1/version and\n"+
			"the server's key document through fedgate's federation client and checks that\n"+
			"the keys sign their own document.\n\n"+
			"Addresses come from the hosts file first, then DNS, as on the host\n"+
			"(\"hosts: files dns\"); each target says which (hosts file, dns, override).\n\n"+
			"With -config, the [outbound] settings apply (resolvers, hosts_file, ca_file,\n"+
			"overrides, allow_networks, timeouts); without, /etc/hosts, the system resolvers\n"+
			"and roots do and every private or special-purpose address is refused.\n\n"+
			"Without SERVER_NAME, -config names the servers: every server name the\n"+
			"configuration hosts (server_name and each [[servers]] entry) is checked.\n\n"+
			"Exits 0 only if federation with SERVER_NAME (every one) would work; 1 otherwise.")
	configPath := fs.String("config", "", "configuration `file` whose [outbound] section to use (optional)")
	resolver := fs.String("resolver", "", "DNS server to ask, `IP:PORT` or IP, instead of the configured or system ones")
	hostsFile := hostsFileFlag(fs, "outbound.hosts_file (or /etc/hosts)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	timeout := fs.Duration("timeout", 30*time.Second, "overall time limit")
	if code, ok := parseFlags(env, fs, args, 1); !ok {
		return code
	}
	if fs.NArg() != 1 && *configPath == "" {
		fmt.Fprintf(env.stderr, "fedgate resolve: give one server name, or -config to check every hosted one\n")
		fs.Usage()
		return exitUsage
	}
	opts := discovery.Options{HostsFile: discovery.DefaultHostsFile}
	names := fs.Args()
	if *configPath != "" {
		c, err := config.Load(*configPath)
		if err != nil {
			printConfigError(env.stderr, err)
			return exitFailure
		}
		if opts, err = gateway.DiscoveryOptions(c, nil); err != nil {
			printConfigError(env.stderr, err)
			return exitFailure
		}
		if len(names) == 0 {
			names = hostedNames(c)
		}
	}
	if *resolver != "" {
		opts.Resolvers = []string{*resolver}
	}
	if *hostsFile != noFlag {
		opts.HostsFile = *hostsFile
	}
	r, err := discovery.NewResolver(opts)
	if err != nil {
		fmt.Fprintf(env.stderr, "fedgate resolve: %v\n", err)
		return exitFailure
	}
	client := discovery.NewClient(r)
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	code := exitOK
	for _, name := range names {
		rep := probe(ctx, client, name, time.Now)
		if writeReport(env, *asJSON, rep, rep.OK) != exitOK {
			code = exitFailure
		}
	}
	return code
}

// noFlag is the value of a string flag that was not given.
const noFlag = "\x00"

// hostsFileFlag defines -hosts-file, which replaces the configured hosts
// file for this run ("" for DNS only); its value is noFlag when not given.
func hostsFileFlag(fs *flag.FlagSet, instead string) *string {
	v := noFlag
	fs.Func("hosts-file", "hosts `file` to read before DNS instead of "+instead+"; \"\" for DNS only", func(s string) error {
		v = s
		return nil
	})
	return &v
}

// report is what resolve and selftest print: as text or, with -json, as
// indented JSON.
type report interface{ print(io.Writer) }

// writeReport prints rep and returns the command's exit code.
func writeReport(env *environment, asJSON bool, rep report, ok bool) int {
	if asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.print(env.stdout)
	}
	if !ok {
		return exitFailure
	}
	return exitOK
}

// resolveReport is what "fedgate resolve" found out.
type resolveReport struct {
	ServerName   string            `json:"server_name"`
	Resolution   *discovery.Result `json:"resolution,omitempty"`
	ResolveError string            `json:"resolve_error,omitempty"`
	Version      *fetchReport      `json:"version,omitempty"`
	Keys         *keysReport       `json:"keys,omitempty"`
	OK           bool              `json:"ok"`
	Problems     []string          `json:"problems,omitempty"`
}

// fetchReport is one GET through the federation client.
type fetchReport struct {
	Path   string `json:"path"`
	Target string `json:"target,omitempty"` // the address that answered
	Status int    `json:"status,omitempty"`
	Server string `json:"server,omitempty"` // version: "name version"
	Error  string `json:"error,omitempty"`
}

// keysReport is the key document check.
type keysReport struct {
	fetchReport
	ValidUntil time.Time   `json:"valid_until,omitzero"`
	Keys       []keyReport `json:"keys,omitempty"`
}

type keyReport struct {
	KeyID      string `json:"key_id"`
	SelfSigned bool   `json:"self_signed"`
	Error      string `json:"error,omitempty"`
}

// probe resolves serverName and checks the version and key endpoints.
func probe(ctx context.Context, client *discovery.Client, serverName string, now func() time.Time) *resolveReport {
	rep := &resolveReport{ServerName: serverName}
	res, err := client.Resolver().Resolve(ctx, serverName)
	if err != nil {
		var de *discovery.Error
		if errors.As(err, &de) && len(de.Steps) > 0 {
			// Show how far discovery got.
			rep.Resolution = &discovery.Result{ServerName: serverName, Steps: de.Steps}
		}
		rep.ResolveError = err.Error()
		rep.Problems = append(rep.Problems, "discovery failed: "+err.Error())
		return rep
	}
	rep.Resolution = res

	body, ver := fetch(ctx, client, res, "/_matrix/federation/v1/version")
	rep.Version = ver
	if ver.Error == "" {
		var v struct {
			Server struct {
				Name    string `json:"name"`
				Version string `json:"version"`
			} `json:"server"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			ver.Error = "response is not the version JSON: " + err.Error()
		} else {
			ver.Server = strings.TrimSpace(v.Server.Name + " " + v.Server.Version)
		}
	}
	if ver.Error != "" {
		rep.Problems = append(rep.Problems, "version: "+ver.Error)
	}

	body, kf := fetch(ctx, client, res, "/_matrix/key/v2/server")
	rep.Keys = &keysReport{fetchReport: *kf}
	if kf.Error == "" {
		checkKeys(rep.Keys, body, serverName, now())
	}
	if rep.Keys.Error != "" {
		rep.Problems = append(rep.Problems, "keys: "+rep.Keys.Error)
	}
	rep.OK = len(rep.Problems) == 0
	return rep
}

// fetch GETs path from the resolved server, noting which address answered.
func fetch(ctx context.Context, client *discovery.Client, res *discovery.Result, path string) ([]byte, *fetchReport) {
	fr := &fetchReport{Path: path}
	trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		fr.Target = ci.Conn.RemoteAddr().String()
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, path, nil)
	if err != nil {
		fr.Error = err.Error()
		return nil, fr
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "fedgate/"+version+" (resolve)")
	resp, err := client.DoResolved(req.Context(), res, req)
	if err != nil {
		fr.Error = err.Error()
		return nil, fr
	}
	fr.Status = resp.StatusCode
	body, err := discovery.ReadBody(res.ServerName, resp, maxKeyDocument)
	if err != nil {
		fr.Error = err.Error()
		return nil, fr
	}
	return body, fr
}

// checkKeys checks a key document: it names serverName, is valid now, and
// every key in verify_keys that signed it did so correctly, at least one
// of them. This is a minimal stand-in for auth.ParseServerKeys.
func checkKeys(kr *keysReport, raw []byte, serverName string, now time.Time) {
	fail := func(format string, args ...any) { kr.Error = fmt.Sprintf(format, args...) }
	doc, err := decodeJSONObject(raw)
	if err != nil {
		fail("key document is not a JSON object: %v", err)
		return
	}
	if name, _ := doc["server_name"].(string); name != serverName {
		fail("key document is for server %q, not %q", name, serverName)
		return
	}
	if n, ok := doc["valid_until_ts"].(json.Number); ok {
		if ms, err := n.Int64(); err == nil {
			kr.ValidUntil = time.UnixMilli(ms).UTC()
		}
	}
	verifyKeys, _ := doc["verify_keys"].(map[string]any)
	sigs, _ := doc["signatures"].(map[string]any)
	mine, _ := sigs[serverName].(map[string]any)
	unsigned := make(map[string]any, len(doc))
	for k, v := range doc {
		if k != "signatures" && k != "unsigned" {
			unsigned[k] = v
		}
	}
	canonical, err := appendCanonicalJSON(nil, unsigned)
	if err != nil {
		fail("key document cannot be made canonical: %v", err)
		return
	}
	good, bad := 0, 0
	for _, id := range slices.Sorted(mapKeys(verifyKeys)) {
		k := keyReport{KeyID: id}
		kr.Keys = append(kr.Keys, k)
		last := &kr.Keys[len(kr.Keys)-1]
		entry, _ := verifyKeys[id].(map[string]any)
		keyText, _ := entry["key"].(string)
		pub, err := auth.DecodeBase64(keyText)
		switch {
		case !strings.HasPrefix(id, "ed25519:"):
			last.Error = "not an ed25519 key"
			continue
		case err != nil || len(pub) != ed25519.PublicKeySize:
			last.Error = "public key is not 32 bytes of base64"
			bad++
			continue
		}
		sigText, signed := mine[id].(string)
		if !signed {
			last.Error = "did not sign the document"
			continue
		}
		sig, err := auth.DecodeBase64(sigText)
		if err != nil || !ed25519.Verify(pub, canonical, sig) {
			last.Error = "signature does not verify"
			bad++
			continue
		}
		last.SelfSigned = true
		good++
	}
	switch {
	case len(verifyKeys) == 0:
		fail("key document lists no verify_keys")
	case bad > 0:
		fail("%d key(s) with a bad signature or key", bad)
	case good == 0:
		fail("no key in verify_keys signed the document")
	case kr.ValidUntil.IsZero():
		fail("valid_until_ts is missing or not an integer")
	case !kr.ValidUntil.After(now):
		fail("keys expired at %s (valid_until_ts)", kr.ValidUntil.Format(time.RFC3339))
	}
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// decodeJSONObject decodes a JSON object keeping numbers exact.
func decodeJSONObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the object")
	}
	if doc == nil {
		return nil, errors.New("null")
	}
	return doc, nil
}

// appendCanonicalJSON appends v (as decoded by decodeJSONObject) in the
// spec's canonical JSON: sorted keys, no whitespace, integers only, raw
// UTF-8 except the mandatory escapes.
func appendCanonicalJSON(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case string:
		return appendCanonicalString(dst, v), nil
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return strconv.AppendInt(dst, i, 10), nil
		}
		f, err := v.Float64()
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53-1 {
			return nil, fmt.Errorf("number %s is not an integer in the canonical range", v)
		}
		return strconv.AppendInt(dst, int64(f), 10), nil // also turns -0 into 0
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendCanonicalJSON(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case map[string]any:
		dst = append(dst, '{')
		for i, k := range slices.Sorted(mapKeys(v)) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonicalString(dst, k)
			dst = append(dst, ':')
			var err error
			if dst, err = appendCanonicalJSON(dst, v[k]); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	}
	return nil, fmt.Errorf("unexpected JSON value %T", v)
}

func appendCanonicalString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			dst = utf8.AppendRune(dst, r)
			i += size
			continue
		}
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			if c < 0x20 {
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			} else {
				dst = append(dst, c)
			}
		}
		i++
	}
	return append(dst, '"')
}

// print writes the report for people.
func (rep *resolveReport) print(w io.Writer) {
	fmt.Fprintf(w, "Resolving %s\n", rep.ServerName)
	if res := rep.Resolution; res != nil {
		for _, st := range res.Steps {
			fmt.Fprintf(w, "  %s\n", st)
		}
		if rep.ResolveError == "" {
			fmt.Fprintf(w, "Result (spec rule %s)\n", res.Rule)
			if res.Delegated != "" {
				fmt.Fprintf(w, "  delegated to   %s\n", res.Delegated)
			}
			fmt.Fprintf(w, "  Host header    %s\n", res.Host)
			if res.TLSServerName != "" {
				fmt.Fprintf(w, "  TLS name, SNI  %s\n", res.TLSServerName)
			} else {
				fmt.Fprintf(w, "  TLS name       %s (IP address: no SNI; the certificate must cover the IP)\n", res.CertIP)
			}
			fmt.Fprintf(w, "  targets        %s\n", describeTargets(res.Targets))
		}
	}
	if v := rep.Version; v != nil {
		fmt.Fprintf(w, "Version  %s\n", v.describe(v.Server))
	}
	if k := rep.Keys; k != nil {
		detail := ""
		if k.Error == "" || len(k.Keys) > 0 {
			var parts []string
			for _, key := range k.Keys {
				if key.SelfSigned {
					parts = append(parts, key.KeyID+" self-signature OK")
				} else {
					parts = append(parts, key.KeyID+": "+key.Error)
				}
			}
			if !k.ValidUntil.IsZero() {
				parts = append(parts, "valid until "+k.ValidUntil.Format(time.RFC3339))
			}
			detail = strings.Join(parts, "; ")
		}
		fmt.Fprintf(w, "Keys     %s\n", k.describe(detail))
	}
	if rep.OK {
		fmt.Fprintf(w, "OK: federation with %s should work\n", rep.ServerName)
		return
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "FAIL: %s\n", p)
	}
}

// describeTargets lists addresses with where each came from:
// "127.0.0.1:8448 (hosts file), [2001:db8::1]:8448 (dns)".
func describeTargets(targets []discovery.Target) string {
	out := make([]string, 0, len(targets))
	for _, t := range targets {
		source := t.Source
		if t.Override && source != discovery.SourceOverride {
			source = discovery.SourceOverride + ", " + source
		}
		out = append(out, t.Addr.String()+" ("+source+")")
	}
	return strings.Join(out, ", ")
}

func (f *fetchReport) describe(detail string) string {
	s := "GET " + f.Path
	if f.Target != "" {
		s += " via " + f.Target
	}
	if f.Status != 0 {
		s += ": HTTP " + strconv.Itoa(f.Status)
	}
	if detail != "" {
		s += ": " + detail
	}
	if f.Error != "" {
		s += ": " + f.Error
	}
	return s
}

package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/endpoints"
)

// naiveMatch is the reference for one compiled entry: what the entry means,
// without any index.
func naiveMatch(p pattern, n *name) bool {
	switch p.kind {
	case kindExact:
		if p.ip.IsValid() {
			return n.ip == p.ip && (!p.withPort || n.port == p.port)
		}
		if n.ip.IsValid() {
			return false
		}
		if p.withPort {
			return n.port != 0 && strings.EqualFold(n.full, p.exact)
		}
		return strings.EqualFold(n.host, p.exact)
	case kindGlob:
		if p.withPort {
			return n.port != 0 && p.glob.Match(n.full)
		}
		return p.glob.Match(n.host)
	case kindRegexp:
		return p.re.MatchString(n.full) || (n.port != 0 && p.re.MatchString(n.host))
	}
	return false
}

// FuzzCompilePatterns compiles newline-separated allow/deny entries (globs,
// "re:" expressions, names) and checks that the indexed set agrees with
// trying every entry on its own, for the fuzzed server name. Compiling must
// never panic, whatever the entries.
func FuzzCompilePatterns(f *testing.F) {
	f.Add("*.evil.example\nevil.example\nre:bad[0-9]+\\.org", "a.EVIL.example:8448")
	f.Add("*:8448\n[2001:db8::1]\n192.0.2.*", "[2001:DB8:0::1]:8448")
	f.Add("ma?rix.org\n*corp\nevil*", "matrix.org")
	f.Add("re:(?i)x|y\nre:a{2,1000}\nre:.*:443", "x:443")
	f.Add("*-1.shared.example\n*.zone.example:*", "b-1.shared.example")
	f.Fuzz(func(t *testing.T, entries, server string) {
		var ns nameSet
		var ps []pattern
		for _, e := range strings.Split(entries, "\n") {
			p, err := compilePattern(e)
			if err != nil {
				continue
			}
			ps = append(ps, p)
			ns.addPattern(p, rule{source: "fuzz", index: len(ps) - 1, text: e})
		}
		var buf nameBuf
		n, lower, err := parseName(server, &buf)
		if err != nil {
			return
		}
		want := false
		for _, p := range ps {
			if naiveMatch(p, &n) {
				want = true
				break
			}
		}
		if _, got := ns.lookup(&n, lower); got != want {
			t.Fatalf("entries %q, name %q: indexed lookup %v, entry by entry %v", entries, server, got, want)
		}
	})
}

// referenceBodyUsers lists the user-map keys of body with encoding/json's
// streaming decoder, every occurrence included.
func referenceBodyUsers(body []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // a number too large for float64 is still valid JSON
	tok, err := dec.Token()
	if err != nil {
		return nil, errNotJSON
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errNotObject
	}
	var users []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		if key == "device_keys" || key == "one_time_keys" {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, err
			}
			inner := json.NewDecoder(bytes.NewReader(raw))
			inner.UseNumber()
			if t, _ := inner.Token(); t != json.Delim('{') {
				continue
			}
			for inner.More() {
				t, err := inner.Token()
				if err != nil {
					return nil, err
				}
				users = append(users, t.(string))
				var skip json.RawMessage
				if err := inner.Decode(&skip); err != nil {
					return nil, err
				}
			}
			continue
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return users, nil
}

// FuzzBodyScan checks the allocation-free user/keys body scanner against
// encoding/json on the same bytes.
func FuzzBodyScan(f *testing.F) {
	f.Add([]byte(`{"device_keys":{"@a:example.org":[],"@b:evil.org":["D"]}}`))
	f.Add([]byte(`{"one_time_keys":{"@a:example.org":{"DEV":"signed_curve25519"}},"timeout":10000}`))
	f.Add([]byte(`{"x":[{"device_keys":{"@no:t.org":1}}],"device_keys":{"\u0040a:b\ud83d\ude00":null},"device_keys":{}}`))
	f.Add([]byte(`{"device_keys":"@a:b.org","one_time_keys":[1,2]}`))
	f.Add([]byte(` [ ] `))
	f.Add([]byte(`{"device_keys":{"\ud800\u0041":1,"a\"b\\c\/d\b\f\n\r\t":{"k":[{}]}}}`))
	f.Add([]byte(`{"device_keys":{`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var b bodyScan
		var got []string
		err := b.start(body)
		for err == nil {
			var buf idBuf
			user, ok, e := b.next(&buf)
			if !ok || e != nil {
				err = e
				break
			}
			got = append(got, string(user))
		}
		if !utf8.Valid(body) {
			return // encoding/json rewrites invalid UTF-8; the scanner keeps bytes
		}
		want, werr := referenceBodyUsers(body)
		if !json.Valid(body) {
			if !errors.Is(err, errNotJSON) {
				t.Fatalf("invalid JSON %q: error %v", body, err)
			}
			return
		}
		if errors.Is(werr, errNotObject) {
			if !errors.Is(err, errNotObject) {
				t.Fatalf("%q is not an object: error %v", body, err)
			}
			return
		}
		if werr != nil {
			t.Fatalf("reference failed on valid JSON %q: %v", body, werr)
		}
		// The scanner stops with errIDTooLong at the first over-long ID.
		for i, u := range want {
			if len(u) > maxIDLength {
				if !errors.Is(err, errIDTooLong) || len(got) != i {
					t.Fatalf("%q: long ID %d: got %q, %v", body, i, got, err)
				}
				want = want[:i]
				break
			}
		}
		if err != nil && !errors.Is(err, errIDTooLong) {
			t.Fatalf("%q: unexpected error %v", body, err)
		}
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") || len(got) != len(want) {
			t.Fatalf("%q: scanner found %q, encoding/json %q", body, got, want)
		}
	})
}

// FuzzQueryScan checks query-string decoding against net/url.
func FuzzQueryScan(f *testing.F) {
	f.Add("user_id=%40a%3Aexample.org&field=displayname")
	f.Add("user%5Fid=@b:evil.org&user_id=@a:b+c&user_id=")
	f.Add("a=1&&user_id&user_id=%zz")
	f.Add("user_id=@a:b;user_id=@c:d")
	f.Fuzz(func(t *testing.T, raw string) {
		q := queryScan{rest: raw, key: "user_id"}
		var got []string
		var err error
		for {
			var buf idBuf
			v, ok, e := q.next(&buf)
			if e != nil {
				err = e
				break
			}
			if !ok {
				break
			}
			got = append(got, string(v))
		}
		ref, rerr := url.ParseQuery(raw)
		if rerr != nil {
			return
		}
		want := ref["user_id"]
		for i, v := range want {
			if len(v) > maxIDLength {
				if !errors.Is(err, errIDTooLong) || len(got) != i {
					t.Fatalf("%q: long value %d: got %q, %v", raw, i, got, err)
				}
				want = want[:i]
				break
			}
		}
		if err != nil && !errors.Is(err, errIDTooLong) {
			t.Fatalf("%q: error %v where net/url succeeded", raw, err)
		}
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") || len(got) != len(want) {
			t.Fatalf("%q: got %q, net/url %q", raw, got, want)
		}
	})
}

// FuzzCheckRequest throws arbitrary requests at a snapshot with every kind
// of rule and checks that decisions are well formed.
func FuzzCheckRequest(f *testing.F) {
	f.Add("remote.org", "GET", "/_matrix/federation/v1/make_join/%21r%3Aevil.example/%40u%3Aremote.org", "ver=10", []byte(nil))
	f.Add("remote.org", "POST", "/_matrix/federation/v1/user/keys/query", "", []byte(`{"device_keys":{"@a:example.org":[]}}`))
	f.Add("", "GET", "/_matrix/media/v3/download/example.org/abc", "", []byte(nil))
	f.Add("x.partner.example", "GET", "/_matrix/federation/v1/query/profile", "user_id=%40a%3Aexample.org", []byte(nil))
	f.Add("remote.org", "GET", "/_matrix/federation/v1/state/%zz", "event_id=%24e", []byte(nil))
	router := endpoints.NewRouter()
	snap, err := compileSnapshot(&Options{
		ServerName: "example.org",
		Policy: config.Policy{
			Default:        "deny",
			Allow:          []string{"*.org", "*.example", "re:[a-z]+\\.partner\\.example"},
			Deny:           []string{"evil.org"},
			DenyEndpoints:  []string{"media", "public_rooms"},
			DenyRooms:      []string{"*:evil.example", "!bad:example.org"},
			LocalityChecks: true,
			Origins: map[string]config.OriginRule{
				"*.partner.example": {AllowEndpoints: []string{"media"}, DenyEndpoints: []string{"query"}},
			},
		},
	}, nil, listInfo{}, &counters{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, origin, method, path, rawQuery string, body []byte) {
		checkWellFormed(t, snap.CheckOrigin(origin))
		checkWellFormed(t, snap.CheckDestination(origin))
		checkWellFormed(t, snap.CheckRoom(path))
		m, res := router.Lookup(method, path)
		if res != endpoints.Found {
			return
		}
		checkWellFormed(t, snap.CheckRequest(origin, &m, rawQuery, body))
		checkWellFormed(t, snap.CheckOutbound(origin, &m, rawQuery))
	})
}

func checkWellFormed(t *testing.T, d Decision) {
	t.Helper()
	if d.Allowed != (d.Reason == "") {
		t.Fatalf("Allowed %v with reason %q", d.Allowed, d.Reason)
	}
	if d.Reason == "" {
		return
	}
	if reasonIndex(d.Reason) < 0 || !strings.Contains(d.Msg, "("+d.Reason+")") || d.Errcode == "" {
		t.Fatalf("malformed denial %+v", d)
	}
	if s := d.Status(); s != 400 && s != 403 {
		t.Fatalf("status %d for %+v", s, d)
	}
	if len(d.Msg) > 1024 {
		t.Fatalf("message of %d bytes", len(d.Msg))
	}
}

// FuzzParseList checks that no list file makes the parser panic, and that
// what it accepts is complete.
func FuzzParseList(f *testing.F) {
	f.Add([]byte(`{"version": 3, "allow": ["*.example.org", "re:a+"], "deny": ["evil.example"]}`))
	f.Add([]byte(`{"version": 1}`))
	f.Add([]byte(`{"version": -1, "deny": [""]}`))
	f.Add([]byte(`{"version": 2, "typo": []}`))
	f.Add([]byte(`{"version": 2} []`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseList(data)
		if err != nil {
			return
		}
		if l.version < 0 || len(l.allowP) != len(l.allow) || len(l.denyP) != len(l.deny) {
			t.Fatalf("accepted %q as %+v", data, l)
		}
		// It must have been a single JSON object.
		dec := json.NewDecoder(bytes.NewReader(data))
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("accepted %q, which is not an object: %v", data, err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			t.Fatalf("accepted %q with trailing data", data)
		}
	})
}

package policy_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/policy"
)

func TestCheckOriginMatching(t *testing.T) {
	t.Parallel()
	type check struct {
		name   string
		reason string // "" = allowed
		rule   string // substring of Decision.Rule when denied
	}
	tests := []struct {
		desc   string
		policy string
		checks []check
	}{
		{
			desc:   "exact name, case and port",
			policy: `deny = ["evil.example", "Shouty.Example"]`,
			checks: []check{
				{"evil.example", "origin_denied", `policy.deny[0] "evil.example"`},
				{"EVIL.Example", "origin_denied", "policy.deny[0]"},
				{"evil.example:8448", "origin_denied", "policy.deny[0]"},
				{"evil.example:1", "origin_denied", ""},
				{"shouty.example", "origin_denied", `policy.deny[1] "Shouty.Example"`},
				{"notevil.example", "", ""},
				{"sub.evil.example", "", ""},
				{"evil.example.org", "", ""},
				{"evil.exampl", "", ""},
			},
		},
		{
			desc:   "exact name with a port matches that port only",
			policy: `deny = ["evil.example:8448"]`,
			checks: []check{
				{"evil.example:8448", "origin_denied", "policy.deny[0]"},
				{"EVIL.EXAMPLE:8448", "origin_denied", ""},
				{"evil.example", "", ""},
				{"evil.example:443", "", ""},
			},
		},
		{
			desc:   "glob on subdomains",
			policy: `deny = ["*.evil.example"]`,
			checks: []check{
				{"a.evil.example", "origin_denied", `policy.deny[0] "*.evil.example"`},
				{"a.b.evil.example", "origin_denied", ""},
				{"A.EVIL.Example:1234", "origin_denied", ""},
				{"evil.example", "", ""},
				{"xevil.example", "", ""},
				{"a.evil.example.org", "", ""},
			},
		},
		{
			desc:   "question mark is one character",
			policy: `deny = ["evil?.example", "ma?rix.org"]`,
			checks: []check{
				{"evil1.example", "origin_denied", ""},
				{"evilX.example:80", "origin_denied", ""},
				{"evil12.example", "", ""},
				{"evil.example", "", ""},
				{"matrix.org", "origin_denied", "policy.deny[1]"},
				{"marix.org", "", ""},
			},
		},
		{
			desc:   "globs without a boundary in their suffix",
			policy: `deny = ["evil*", "*corp"]`,
			checks: []check{
				{"evil.org", "origin_denied", "policy.deny[0]"},
				{"evilcorp.net:80", "origin_denied", "policy.deny[0]"},
				{"megacorp", "origin_denied", "policy.deny[1]"},
				{"good.org", "", ""},
			},
		},
		{
			desc:   "glob with a port is matched against the whole name",
			policy: `deny = ["*.example:8448", "*:9999", "solo.example:*"]`,
			checks: []check{
				{"a.example:8448", "origin_denied", "policy.deny[0]"},
				{"a.example", "", ""},
				{"a.example:8449", "", ""},
				{"anything.org:9999", "origin_denied", "policy.deny[1]"},
				{"[::1]:9999", "origin_denied", "policy.deny[1]"},
				{"solo.example:1", "origin_denied", "policy.deny[2]"},
				{"solo.example", "", ""},
			},
		},
		{
			desc:   "star denies everything",
			policy: `deny = ["*"]`,
			checks: []check{
				{"a.org", "origin_denied", ""},
				{"[2001:db8::1]:8448", "origin_denied", ""},
				{"1.2.3.4", "origin_denied", ""},
			},
		},
		{
			desc:   "regular expressions are anchored and case-insensitive",
			policy: `deny = ['re:evil[0-9]+\.example', 're:.*\.ru']`,
			checks: []check{
				{"evil12.example", "origin_denied", `policy.deny[0] "re:evil[0-9]+\\.example"`},
				{"EVIL12.Example", "origin_denied", ""},
				{"evil12.example:8448", "origin_denied", ""},
				{"xevil12.example", "", ""},
				{"evil12.example.org", "", ""},
				{"evil.example", "", ""},
				{"mail.yandex.ru", "origin_denied", "policy.deny[1]"},
				{"mail.yandex.ru.com", "", ""},
			},
		},
		{
			desc:   "regular expressions may name a port",
			policy: `deny = ['re:.*:8448', 're:^a\.org$']`,
			checks: []check{
				{"b.org:8448", "origin_denied", "policy.deny[0]"},
				{"b.org", "", ""},
				{"a.org", "origin_denied", "policy.deny[1]"},
				{"a.org:443", "origin_denied", "policy.deny[1]"},
			},
		},
		{
			desc:   "IP literals compare as addresses",
			policy: `deny = ["192.0.2.7", "[2001:db8::1]", "[2001:db8::2]:8448", "198.51.100.*"]`,
			checks: []check{
				{"192.0.2.7", "origin_denied", "policy.deny[0]"},
				{"192.0.2.7:8448", "origin_denied", "policy.deny[0]"},
				{"192.0.2.70", "", ""},
				{"[2001:db8::1]", "origin_denied", "policy.deny[1]"},
				{"[2001:DB8:0:0::1]:443", "origin_denied", "policy.deny[1]"},
				{"[2001:db8::2]:8448", "origin_denied", "policy.deny[2]"},
				{"[2001:db8::2]", "", ""},
				{"198.51.100.3:8448", "origin_denied", "policy.deny[3]"},
			},
		},
		{
			desc: "deny wins over allow, default deny",
			policy: `default = "deny"
allow = ["*.example.net", "partner.example", "re:[a-z]+\\.corp\\.example"]
deny = ["bad.example.net", "re:evil\\.corp\\.example"]`,
			checks: []check{
				{"good.example.net", "", ""},
				{"partner.example", "", ""},
				{"PARTNER.example:8448", "", ""},
				{"hr.corp.example", "", ""},
				{"bad.example.net", "origin_denied", "policy.deny[0]"},
				{"evil.corp.example", "origin_denied", "policy.deny[1]"},
				{"example.net", "not_in_allow_list", `policy.default = "deny"`},
				{"stranger.org", "not_in_allow_list", ""},
				{"hr2.corp.example", "not_in_allow_list", ""},
			},
		},
		{
			desc:   "default deny with nothing allowed",
			policy: `default = "deny"`,
			checks: []check{
				{"matrix.org", "not_in_allow_list", ""},
				{"example.org", "not_in_allow_list", ""},
			},
		},
		{
			desc:   "default allow ignores allow entries",
			policy: `allow = ["only.example"]`,
			checks: []check{
				{"only.example", "", ""},
				{"other.example", "", ""},
			},
		},
		{
			desc:   "names that are not server names",
			policy: `deny = ["evil.example"]`,
			checks: []check{
				{"", "bad_request", ""},
				{"evil example", "bad_request", ""},
				{"evil.example:0", "bad_request", ""},
				{"evil.example:99999", "bad_request", ""},
				{"evil.example.", "bad_request", ""},
				{"2001:db8::1", "bad_request", ""},
				{strings.Repeat("a", 300), "bad_request", ""},
				{"evil.example\x00", "bad_request", ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "[policy]\n"+tt.policy+"\n")
			s := e.snap()
			for _, c := range tt.checks {
				d := s.CheckOrigin(c.name)
				wantDecision(t, "CheckOrigin("+c.name+")", d, c.reason, false)
				if c.rule != "" && !strings.Contains(d.Rule, c.rule) {
					t.Errorf("CheckOrigin(%q).Rule = %q, want it to contain %q", c.name, d.Rule, c.rule)
				}
				// Destinations follow the same lists.
				wantDest := c.reason
				if wantDest == "origin_denied" {
					wantDest = "destination_denied"
				}
				wantDecision(t, "CheckDestination("+c.name+")", s.CheckDestination(c.name), wantDest, false)
			}
		})
	}
}

func TestDecisionMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `[policy]
default = "deny"
deny = ["evil.example"]
`)
	d := e.snap().CheckOrigin("evil.example")
	const want = "Federation with evil.example is not allowed by this server's policy (origin_denied)"
	if d.Msg != want || d.Errcode != "M_FORBIDDEN" || d.Status() != 403 {
		t.Errorf("decision %+v, want message %q, M_FORBIDDEN, 403", d, want)
	}
	if d := e.snap().CheckOrigin("bad name"); d.Status() != 400 || d.Errcode != "M_INVALID_PARAM" {
		t.Errorf("bad name: %+v", d)
	}
	if d := e.snap().CheckOrigin("x.org"); d.Msg != "Federation with x.org is not allowed by this server's policy (not_in_allow_list)" {
		t.Errorf("not in allow list: %q", d.Msg)
	}
}

func TestCheckPeer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc   string
		policy string
		addrs  map[string]string // address -> reason
	}{
		{
			desc:   "no networks",
			policy: ``,
			addrs:  map[string]string{"203.0.113.5": "", "::1": "", "invalid": ""},
		},
		{
			desc:   "deny networks",
			policy: `deny_networks = ["203.0.113.0/24", "2001:db8::1", "2001:db8:ff::/48", "::ffff:198.51.100.0/120"]`,
			addrs: map[string]string{
				"203.0.113.5":        "peer_denied",
				"::ffff:203.0.113.5": "peer_denied",
				"203.0.114.5":        "",
				"2001:db8::1":        "peer_denied",
				"2001:db8::2":        "",
				"2001:db8:ff:1::9":   "peer_denied",
				"198.51.100.20":      "peer_denied",
				"invalid":            "",
			},
		},
		{
			desc: "allow networks close everything else, deny wins",
			policy: `allow_networks = ["10.0.0.0/8", "fd00::/8"]
deny_networks = ["10.6.6.0/24"]`,
			addrs: map[string]string{
				"10.1.2.3":    "",
				"10.6.6.6":    "peer_denied",
				"fd12::1":     "",
				"192.0.2.1":   "peer_denied",
				"2001:db8::1": "peer_denied",
				"invalid":     "peer_denied",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			s := newEnv(t, "[policy]\n"+tt.policy+"\n").snap()
			for a, reason := range tt.addrs {
				var addr netip.Addr
				if a != "invalid" {
					addr = netip.MustParseAddr(a)
				}
				wantDecision(t, "CheckPeer("+a+")", s.CheckPeer(addr), reason, false)
			}
		})
	}
}

// TestLargeListMatching checks the suffix index against many entries that
// share suffixes, where a wrong index would miss matches.
func TestLargeListMatching(t *testing.T) {
	t.Parallel()
	var deny []string
	for i := range 500 {
		deny = append(deny, "host"+strconv.Itoa(i)+".exact.example")
		deny = append(deny, "*.zone"+strconv.Itoa(i)+".example")
		deny = append(deny, "*-"+strconv.Itoa(i)+".shared.example")
	}
	e := newEnv(t, "[policy]\ndeny = "+tomlList(deny)+"\n")
	s := e.snap()
	for _, tc := range []struct {
		name, reason string
	}{
		{"host42.exact.example", "origin_denied"},
		{"host500.exact.example", ""},
		{"a.zone499.example", "origin_denied"},
		{"zone499.example", ""},
		{"a.zone500.example", ""},
		{"build-7.shared.example", "origin_denied"},
		{"build-700.shared.example", ""},
		{"shared.example", ""},
	} {
		wantDecision(t, tc.name, s.CheckOrigin(tc.name), tc.reason, false)
	}
}

func tomlList(items []string) string {
	var b strings.Builder
	b.WriteString("[")
	for i, s := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`"` + s + `"`)
	}
	b.WriteString("]")
	return b.String()
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	// Hand-built options skip config validation; compile must still refuse
	// bad entries with an error naming them, never panic.
	base := func() policy.Options {
		return policy.Options{ServerName: "example.org"}
	}
	tests := []struct {
		desc string
		mod  func(*policy.Options)
		want string
	}{
		{"no server name", func(o *policy.Options) { o.ServerName = "" }, "server name is required"},
		{"bad server name", func(o *policy.Options) { o.ServerName = "a b" }, "server name"},
		{"bad default", func(o *policy.Options) { o.Policy.Default = "maybe" }, "policy.default"},
		{"bad regexp", func(o *policy.Options) { o.Policy.Deny = []string{"ok.org", "re:(unclosed"} }, `policy.deny[1] "re:(unclosed"`},
		{"empty regexp", func(o *policy.Options) { o.Policy.Allow = []string{"re:"} }, "policy.allow[0]"},
		{"regexp escaping its anchors", func(o *policy.Options) { o.Policy.Deny = []string{"re:a)|(.*"} }, "policy.deny[0]"},
		{"empty entry", func(o *policy.Options) { o.Policy.Deny = []string{""} }, "policy.deny[0]"},
		{"bad glob", func(o *policy.Options) { o.Policy.Deny = []string{"evil/*"} }, "policy.deny[0]"},
		{"invalid name", func(o *policy.Options) { o.Policy.Deny = []string{"a..b"} }, "never match"},
		{"huge entry", func(o *policy.Options) { o.Policy.Deny = []string{strings.Repeat("a", 5000)} }, "more than"},
		{"bad cidr", func(o *policy.Options) { o.Policy.DenyNetworks = []string{"10.0.0.0/33"} }, "policy.deny_networks[0]"},
		{"bad endpoint", func(o *policy.Options) { o.Policy.DenyEndpoints = []string{"nope"} }, "policy.deny_endpoints[0]"},
		{"bad room", func(o *policy.Options) { o.Policy.DenyRooms = []string{"#alias:x"} }, "policy.deny_rooms[0]"},
		{"bad origin key", func(o *policy.Options) {
			o.Policy.Origins = map[string]config.OriginRule{"bad key": {}}
		}, "policy.origins"},
		{"bad class", func(o *policy.Options) {
			o.RateLimit.Classes = map[string]config.Limit{"nope": {}}
		}, "rate_limit.classes.nope"},
		{"bad exempt", func(o *policy.Options) { o.RateLimit.Exempt = []string{"re:["} }, "rate_limit.exempt[0]"},
		{"missing list", func(o *policy.Options) { o.Policy.ListFile = "/nonexistent/list.json" }, "list file"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			o := base()
			tt.mod(&o)
			_, err := policy.New(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

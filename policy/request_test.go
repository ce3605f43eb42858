package policy_test

import (
	"strings"
	"testing"
)

func TestCheckRequest(t *testing.T) {
	t.Parallel()
	type req struct {
		origin string
		method string
		target string // path?query
		body   string
		reason string
		errc   string // expected errcode when denied; "" = don't care
	}
	tests := []struct {
		desc   string
		policy string
		reqs   []req
	}{
		{
			desc:   "deny endpoint classes and operations",
			policy: `deny_endpoints = ["media", "public_rooms", "make_knock"]`,
			reqs: []req{
				{"remote.org", "GET", "/_matrix/federation/v1/media/download/abc", "", "endpoint_denied", "M_FORBIDDEN"},
				{"remote.org", "GET", "/_matrix/federation/v1/media/thumbnail/abc?width=1", "", "endpoint_denied", ""},
				{"", "GET", "/_matrix/media/v3/download/example.org/abc", "", "endpoint_denied", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/publicRooms", "", "endpoint_denied", ""},
				{"remote.org", "POST", "/_matrix/federation/v1/publicRooms", "{}", "endpoint_denied", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/make_knock/%21r%3Aremote.org/%40u%3Aremote.org", "", "endpoint_denied", ""},
				{"remote.org", "PUT", "/_matrix/federation/v1/send_knock/%21r%3Aremote.org/%24e", "{}", "", ""},
				{"remote.org", "PUT", "/_matrix/federation/v1/send/txn1", "{}", "", ""},
				{"", "GET", "/_matrix/federation/v1/version", "", "", ""},
			},
		},
		{
			desc: "per-origin overrides",
			policy: `deny_endpoints = ["media"]
[policy.origins."partner.example"]
allow_endpoints = ["media"]
[policy.origins."*.partner.example"]
allow_endpoints = ["media_download"]
[policy.origins."*.shady.example"]
deny_endpoints = ["query_profile", "user_keys"]
[policy.origins."re:.*\\.partner\\.example"]
deny_endpoints = ["media_thumbnail"]
`,
			reqs: []req{
				{"partner.example", "GET", "/_matrix/federation/v1/media/download/abc", "", "", ""},
				{"PARTNER.example:8448", "GET", "/_matrix/federation/v1/media/thumbnail/abc", "", "", ""},
				{"other.example", "GET", "/_matrix/federation/v1/media/download/abc", "", "endpoint_denied", ""},
				// Unauthenticated requests get the global rules only.
				{"", "GET", "/_matrix/media/v3/download/example.org/abc", "", "endpoint_denied", ""},
				{"a.partner.example", "GET", "/_matrix/federation/v1/media/download/abc", "", "", ""},
				// One override allows, another denies: deny wins.
				{"a.partner.example", "GET", "/_matrix/federation/v1/media/thumbnail/abc", "", "endpoint_denied", ""},
				{"x.shady.example", "GET", "/_matrix/federation/v1/query/profile?user_id=%40a%3Aexample.org", "", "endpoint_denied", ""},
				{"x.shady.example", "POST", "/_matrix/federation/v1/user/keys/query", `{"device_keys":{}}`, "endpoint_denied", ""},
				{"shady.example", "GET", "/_matrix/federation/v1/query/profile?user_id=%40a%3Aexample.org", "", "", ""},
			},
		},
		{
			desc:   "deny rooms",
			policy: `deny_rooms = ["!bad:example.net", "*:evil.example", "!Mixed:Case.example"]`,
			reqs: []req{
				{"remote.org", "GET", "/_matrix/federation/v1/state/!bad:example.net?event_id=%24e", "", "room_denied", "M_FORBIDDEN"},
				{"remote.org", "GET", "/_matrix/federation/v1/state/%21bad%3Aexample.net", "", "room_denied", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/state/%21bad%3aexample.net", "", "room_denied", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/state/%21mixed%3Acase.example", "", "room_denied", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/make_join/%21x%3Aevil.example/%40u%3Aremote.org", "", "room_denied", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/backfill/%21x%3AEvil.Example%3A8448", "", "room_denied", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/backfill/%21x%3Aevil.example.org", "", "", ""},
				{"remote.org", "PUT", "/_matrix/federation/v2/invite/%21bad%3Aexample.net/%24e", "{}", "room_denied", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/hierarchy/%21x%3Aevil.example", "", "room_denied", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/state/%21good%3Aexample.net", "", "", ""},
				// Room version 12 IDs have no server part.
				{"remote.org", "GET", "/_matrix/federation/v1/state/%2131hneApxJ_1o-63DmFrpeqnkFfWppnzWso1JvH3ogLM", "", "", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/event/%24e", "", "", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/state/%zz", "", "bad_request", "M_INVALID_PARAM"},
				{"remote.org", "GET", "/_matrix/federation/v1/state/%23alias%3Aexample.net", "", "bad_request", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/state/%21" + strings.Repeat("a", 300), "", "bad_request", ""},
			},
		},
		{
			desc:   "without room rules room IDs are not parsed",
			policy: ``,
			reqs: []req{
				{"remote.org", "GET", "/_matrix/federation/v1/state/%zz", "", "", ""},
			},
		},
		{
			desc:   "locality: users that must be ours",
			policy: ``,
			reqs: []req{
				{"remote.org", "GET", "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aexample.org&field=displayname", "", "", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/query/profile?user_id=@alice:EXAMPLE.org", "", "", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aother.org", "", "user_not_local", "M_FORBIDDEN"},
				{"remote.org", "GET", "/_matrix/federation/v1/query/profile?user_id=@alice:example.org:8448", "", "user_not_local", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/query/profile?user_id=@a:example.org&user_id=@b:evil.org", "", "user_not_local", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/query/profile?user%5Fid=@b:evil.org", "", "user_not_local", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/query/profile?field=displayname", "", "", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/query/profile?user_id=alice", "", "bad_request", "M_INVALID_PARAM"},
				{"remote.org", "GET", "/_matrix/federation/v1/query/profile?user_id=%4", "", "bad_request", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/user/devices/%40bob%3Aexample.org", "", "", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/user/devices/@bob:remote.org", "", "user_not_local", ""},
				{"remote.org", "POST", "/_matrix/federation/v1/user/keys/query", `{"device_keys":{"@a:example.org":[],"@b:example.org":["DEV"]}}`, "", ""},
				{"remote.org", "POST", "/_matrix/federation/v1/user/keys/query", `{"device_keys":{"@a:example.org":[],"@b:evil.org":[]}}`, "user_not_local", ""},
				{"remote.org", "POST", "/_matrix/federation/v1/user/keys/query", `{"device_keys":{"\u0040b:evil.org":[]}}`, "user_not_local", ""},
				{"remote.org", "POST", "/_matrix/federation/v1/user/keys/query", `{"other":{"@b:evil.org":1},"device_keys":{}}`, "", ""},
				{"remote.org", "POST", "/_matrix/federation/v1/user/keys/claim", `{"one_time_keys":{"@a:example.org":{"DEV":"signed_curve25519"}}}`, "", ""},
				{"remote.org", "POST", "/_matrix/federation/v1/user/keys/claim", `{"one_time_keys":{"@a:remote.org":{"DEV":"signed_curve25519"}}}`, "user_not_local", ""},
				{"remote.org", "POST", "/_matrix/federation/v1/user/keys/claim", `{"one_time_keys":{"nobody":{}}}`, "bad_request", "M_INVALID_PARAM"},
				{"remote.org", "POST", "/_matrix/federation/v1/user/keys/query", `{"device_keys":`, "bad_request", "M_NOT_JSON"},
				{"remote.org", "POST", "/_matrix/federation/v1/user/keys/query", `["@a:evil.org"]`, "bad_request", "M_BAD_JSON"},
				// A body the caller forgot to pass is not a pass.
				{"remote.org", "POST", "/_matrix/federation/v1/user/keys/query", "", "bad_request", "M_NOT_JSON"},
			},
		},
		{
			desc:   "locality: users that must belong to the origin",
			policy: ``,
			reqs: []req{
				{"remote.org", "GET", "/_matrix/federation/v1/make_join/%21r%3Aexample.org/%40u%3Aremote.org?ver=10", "", "", ""},
				{"Remote.ORG", "GET", "/_matrix/federation/v1/make_join/%21r%3Aexample.org/%40u%3Aremote.org", "", "", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/make_join/%21r%3Aexample.org/%40u%3Aexample.org", "", "user_not_origin", "M_FORBIDDEN"},
				{"remote.org", "GET", "/_matrix/federation/v1/make_leave/%21r%3Aexample.org/%40u%3Aother.org", "", "user_not_origin", ""},
				{"remote.org:8448", "GET", "/_matrix/federation/v1/make_knock/%21r%3Aexample.org/%40u%3Aremote.org", "", "user_not_origin", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/make_knock/%21r%3Aexample.org/u", "", "bad_request", ""},
			},
		},
		{
			desc:   "locality checks off",
			policy: `locality_checks = false`,
			reqs: []req{
				{"remote.org", "GET", "/_matrix/federation/v1/query/profile?user_id=@alice:other.org", "", "", ""},
				{"remote.org", "GET", "/_matrix/federation/v1/make_join/%21r%3Aexample.org/%40u%3Aexample.org", "", "", ""},
				{"remote.org", "POST", "/_matrix/federation/v1/user/keys/query", `not json`, "", ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			s := newEnv(t, "[policy]\n"+tt.policy+"\n").snap()
			for _, r := range tt.reqs {
				m, q := match(t, r.method, r.target)
				var body []byte
				if r.body != "" {
					body = []byte(r.body)
				}
				d := s.CheckRequest(r.origin, m, q, body)
				what := r.origin + " " + r.method + " " + r.target
				wantDecision(t, what, d, r.reason, false)
				if r.errc != "" && d.Errcode != r.errc {
					t.Errorf("%s: errcode %q, want %q", what, d.Errcode, r.errc)
				}
			}
		})
	}
}

func TestCheckRequestNilMatch(t *testing.T) {
	t.Parallel()
	s := newEnv(t, "[policy]\ndeny_endpoints = [\"media\"]\n").snap()
	wantDecision(t, "nil match", s.CheckRequest("remote.org", nil, "", nil), "", false)
	wantDecision(t, "nil outbound match", s.CheckOutbound("remote.org", nil, ""), "", false)
}

func TestCheckOutbound(t *testing.T) {
	t.Parallel()
	s := newEnv(t, `[policy]
deny_endpoints = ["media"]
deny_rooms = ["*:evil.example"]
[policy.origins."partner.example"]
allow_endpoints = ["media"]
`).snap()
	for _, r := range []struct {
		dest, method, target, reason string
	}{
		{"remote.org", "GET", "/_matrix/federation/v1/media/download/abc", "endpoint_denied"},
		{"partner.example", "GET", "/_matrix/federation/v1/media/download/abc", ""},
		{"remote.org", "PUT", "/_matrix/federation/v1/send/1", ""},
		{"remote.org", "GET", "/_matrix/federation/v1/state/%21r%3Aevil.example", "room_denied"},
		{"remote.org", "GET", "/_matrix/federation/v1/make_join/%21r%3Aremote.org/%40me%3Aexample.org", ""},
		{"remote.org", "GET", "/_matrix/federation/v1/make_join/%21r%3Aremote.org/%40u%3Aremote.org", "user_not_origin"},
		{"remote.org", "GET", "/_matrix/federation/v1/query/profile?user_id=%40u%3Aremote.org", ""},
		{"remote.org", "GET", "/_matrix/federation/v1/query/profile?user_id=%40u%3Athird.org", "user_not_local"},
		{"remote.org", "GET", "/_matrix/federation/v1/user/devices/%40u%3Aremote.org", ""},
		{"remote.org", "POST", "/_matrix/federation/v1/user/keys/query", ""},
	} {
		m, q := match(t, r.method, r.target)
		wantDecision(t, r.dest+" "+r.target, s.CheckOutbound(r.dest, m, q), r.reason, false)
	}
}

func TestCheckRoom(t *testing.T) {
	t.Parallel()
	s := newEnv(t, "[policy]\ndeny_rooms = [\"*:evil.example\", \"!one:good.example\"]\n").snap()
	for room, reason := range map[string]string{
		"!x:evil.example":        "room_denied",
		"!x:evil.example:8448":   "room_denied",
		"!one:good.example":      "room_denied",
		"!two:good.example":      "",
		"":                       "bad_request",
		strings.Repeat("!", 256): "bad_request",
	} {
		wantDecision(t, "CheckRoom("+room+")", s.CheckRoom(room), reason, false)
	}
	// Without room rules nothing is parsed.
	s = newEnv(t, "").snap()
	wantDecision(t, "no rules", s.CheckRoom(""), "", false)
}

func TestDryRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, `[policy]
dry_run = true
default = "deny"
allow = ["friend.example"]
deny = ["evil.example"]
deny_networks = ["192.0.2.0/24"]
deny_endpoints = ["media"]
deny_rooms = ["*:evil.example"]
`)
	s := e.snap()
	if !s.DryRun() {
		t.Fatal("DryRun() = false")
	}
	wantDecision(t, "origin", s.CheckOrigin("evil.example"), "origin_denied", true)
	wantDecision(t, "allow list", s.CheckOrigin("stranger.example"), "not_in_allow_list", true)
	wantDecision(t, "friend", s.CheckOrigin("friend.example"), "", false)
	wantDecision(t, "destination", s.CheckDestination("evil.example"), "destination_denied", true)
	wantDecision(t, "peer", s.CheckPeer(mustAddr("192.0.2.9")), "peer_denied", true)
	m, q := match(t, "GET", "/_matrix/federation/v1/media/download/x")
	wantDecision(t, "endpoint", s.CheckRequest("friend.example", m, q, nil), "endpoint_denied", true)
	m, q = match(t, "GET", "/_matrix/federation/v1/state/%21r%3Aevil.example")
	wantDecision(t, "room", s.CheckRequest("friend.example", m, q, nil), "room_denied", true)
	m, q = match(t, "GET", "/_matrix/federation/v1/query/profile?user_id=@a:b.org")
	wantDecision(t, "user", s.CheckRequest("friend.example", m, q, nil), "user_not_local", true)
	m, q = match(t, "GET", "/_matrix/federation/v1/state/%zz")
	wantDecision(t, "bad request", s.CheckRequest("friend.example", m, q, nil), "bad_request", true)

	st := e.engine.Stats()
	for _, r := range []string{"origin_denied", "not_in_allow_list", "destination_denied", "peer_denied", "endpoint_denied", "room_denied", "user_not_local", "bad_request"} {
		if st.DryRun[r] != 1 || st.Denied[r] != 0 {
			t.Errorf("%s: dry-run count %d, denied count %d; want 1 and 0", r, st.DryRun[r], st.Denied[r])
		}
	}
}

func TestDenialsAreCounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "[policy]\ndeny = [\"evil.example\"]\n")
	for range 3 {
		e.snap().CheckOrigin("evil.example")
	}
	e.snap().CheckOrigin("good.example")
	st := e.engine.Stats()
	if st.Denied["origin_denied"] != 3 {
		t.Errorf("origin_denied = %d, want 3", st.Denied["origin_denied"])
	}
	if len(st.Denied) != 18 || len(st.DryRun) != 18 {
		t.Errorf("stats should list every reason code: %v", st.Denied)
	}
}

package gateway

import (
	"testing"
)

// TestHostilePaths tries encoded path tricks against endpoint and room
// policy (deny_endpoints = ["user_devices", "version"], deny_rooms =
// ["*:evil.test"]). A trick either fails to name any endpoint (404), is
// caught by the rule it tries to dodge (403), or names a different,
// allowed resource, in which case it reaches the homeserver byte for byte,
// where it names the same thing it named here.
func TestHostilePaths(t *testing.T) {
	t.Parallel()
	e, _ := startHostile(t, "", nil)
	unknown := func(target string) hostileCase {
		return hostileCase{name: target, request: rawRequest("GET", target, ""), status: 404, errcode: CodeUnrecognized}
	}
	unknownSigned := func(target string) hostileCase {
		return hostileCase{name: target, request: e.signed("GET", target, ""), status: 404, errcode: CodeUnrecognized}
	}
	forbidden := func(target string) hostileCase {
		return hostileCase{name: target, request: e.signed("GET", target, ""), status: 403, errcode: CodeForbidden}
	}
	unaltered := func(target string) hostileCase {
		return hostileCase{name: target, request: e.signed("GET", target, ""), status: 200, forwarded: true, target: target}
	}
	cases := []hostileCase{
		// The denied unauthenticated endpoint, and ways around its name.
		{name: "control: version is denied", request: rawRequest("GET", "/_matrix/federation/v1/version", ""), status: 403, errcode: CodeForbidden},
		unknown("/_matrix/federation/v1/%76ersion"),
		unknown("/_matrix/federation/v1/VERSION"),
		unknown("/_matrix/federation/v1//version"),
		unknown("//_matrix/federation/v1/version"),
		unknown("/_matrix/federation/v1/./version"),
		unknown("/_matrix/federation/v1/x/../version"),
		unknown("/_matrix/federation/v1/x/%2e%2e/version"),
		unknown("/_matrix/federation/v1/x/%2E%2e/version"),
		unknown("/_matrix/federation/v1/x/..%2Fversion"),
		unknown("/_matrix/federation%2Fv1/version"),
		unknown("/_matrix/federation%2fv1%2fversion"),
		unknown("/_matrix/federation/v1/version/"),
		unknown("/_matrix/federation/v1/version;x=1"),
		unknown("/_matrix/federation/v1/version%00"),
		unknown("/_matrix/federation/v1/version%20"),
		unknown("/_matrix/federation/v1/version#fragment"),
		unknown("/_matrix/federation/v1/version\\"),
		unknown("/_matrix/federation/unstable/../v1/version"),
		// The denied X-Matrix endpoint.
		forbidden("/_matrix/federation/v1/user/devices/%40bob%3Agw.test"),
		unknownSigned("/_matrix/federation/v1/user%2Fdevices/%40bob%3Agw.test"),
		unknownSigned("/_matrix/federation/v1/user%2fdevices%2f%40bob%3Agw.test"),
		unknownSigned("/_matrix/federation/v1/user/./devices/%40bob%3Agw.test"),
		unknownSigned("/_matrix/federation/v1/user/devices/%40bob%3Agw.test/"),
		unknownSigned("/_matrix/federation/v1/user/%64evices/%40bob%3Agw.test"),
		// Denied rooms, however their IDs are written.
		forbidden("/_matrix/federation/v1/state/%21r%3Aevil.test"),
		forbidden("/_matrix/federation/v1/state/!r:evil.test"),
		forbidden("/_matrix/federation/v1/state/%21r%3aevil.test"),
		forbidden("/_matrix/federation/v1/state/%21r%3AEVIL.TEST"),
		forbidden("/_matrix/federation/v1/state/%21r%3Aevil%2Etest"),
		forbidden("/_matrix/federation/v1/make_join/%21r%3Aevil.test/%40alice%3Aorigin.test?ver=10"),
		forbidden("/_matrix/federation/v1/backfill/%21r%3Aevil.test?v=%24e&limit=10"),
		// Encoded separators and dots inside parameters name other, allowed
		// resources and are forwarded exactly as they came.
		unaltered("/_matrix/federation/v1/state/%21a%2Fb%3Agw.test"),
		unaltered("/_matrix/federation/v1/state/%21a%2fb%3Agw.test?event_id=%24x%2F%2e%2e"),
		unaltered("/_matrix/federation/v1/event/%24ev%2F..%2F..%2Fversion"),
		unaltered("/_matrix/federation/v1/query/..%2Fuser%2Fdevices%2F%40bob%3Agw.test"),
		// Decoded once, as the homeserver decodes it, a double-encoded ID is
		// no room ID at all.
		{name: "double-encoded room ID", request: e.signed("GET", "/_matrix/federation/v1/state/%2521r%253Aevil.test", ""), status: 400, errcode: CodeInvalidParam},
		unaltered("/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test&user_id=%40bob%3Agw.test"),
		// Locality: profile queries are about our users only.
		forbidden("/_matrix/federation/v1/query/profile?user_id=%40bob%3Aevil.test"),
		forbidden("/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test&user_id=%40x%3Aevil.test"),
		forbidden("/_matrix/federation/v1/query/profile?user_id=%40x%3Aevil.test&user_id=%40bob%3Agw.test"),
	}
	e.run(t, cases)
}

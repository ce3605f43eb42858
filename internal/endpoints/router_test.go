package endpoints

import (
	"slices"
	"testing"
)

func TestLookup(t *testing.T) {
	r := NewRouter()
	tests := []struct {
		method, path string
		want         Result
		name         string
		params       map[string]string // decoded
	}{
		{"GET", "/_matrix/federation/v1/version", Found, "version", nil},
		{"POST", "/_matrix/federation/v1/version", MethodNotAllowed, "version", nil},
		{"PUT", "/_matrix/federation/v1/send/txn1", Found, "send", map[string]string{"txnId": "txn1"}},
		{"GET", "/_matrix/federation/v1/send/txn1", MethodNotAllowed, "send", nil},
		{"PUT", "/_matrix/federation/v1/send/", NotFound, "", nil},
		{"PUT", "/_matrix/federation/v1/send", NotFound, "", nil},
		{"PUT", "/_matrix/federation/v1/send/a/b", NotFound, "", nil},
		{"GET", "/_matrix/federation/v1/make_join/%21room%3Aexample.org/%40alice%3Aorigin.example", Found, "make_join",
			map[string]string{"roomId": "!room:example.org", "userId": "@alice:origin.example"}},
		{"GET", "/_matrix/federation/v1/make_join/!room:example.org/@alice:origin.example", Found, "make_join",
			map[string]string{"roomId": "!room:example.org", "userId": "@alice:origin.example"}},
		{"GET", "/_matrix/federation/v1/state/%21a%2Fb%3Ax", Found, "state", map[string]string{"roomId": "!a/b:x"}},
		{"GET", "/_matrix/federation/v1/query/profile", Found, "query_profile", nil},
		{"GET", "/_matrix/federation/v1/query/directory", Found, "query_directory", nil},
		{"GET", "/_matrix/federation/v1/query/custom", Found, "query", map[string]string{"queryType": "custom"}},
		{"GET", "/_matrix/federation/v1/publicRooms", Found, "public_rooms", nil},
		{"POST", "/_matrix/federation/v1/publicRooms", Found, "public_rooms", nil},
		{"DELETE", "/_matrix/federation/v1/publicRooms", MethodNotAllowed, "public_rooms", nil},
		{"GET", "/_matrix/key/v2/server", Found, "server_keys", nil},
		{"GET", "/_matrix/key/v2/server/", Found, "server_keys", nil},
		{"GET", "/_matrix/key/v2/server/ed25519:abc", Found, "server_keys", map[string]string{"keyId": "ed25519:abc"}},
		{"GET", "/_matrix/key/v2/query/example.org", Found, "key_query", map[string]string{"serverName": "example.org"}},
		{"POST", "/_matrix/key/v2/query", Found, "key_query", nil},
		{"GET", "/.well-known/matrix/server", Found, "well_known", nil},
		{"POST", "/_matrix/policy/v1/sign", Found, "policy_sign", nil},
		{"GET", "/_matrix/federation/v1/media/download/abc", Found, "media_download", map[string]string{"mediaId": "abc"}},
		{"GET", "/_matrix/media/v3/download/example.org/abc/name.png", Found, "legacy_media_download", nil},
		{"PUT", "/_matrix/federation/v1/send_join/!r:x/$e", Found, "send_join", nil},
		{"PUT", "/_matrix/federation/v2/send_join/!r:x/$e", Found, "send_join", nil},
		// Encoding tricks never reach an endpoint.
		{"PUT", "/_matrix/federation/v1/%73end/txn", NotFound, "", nil},
		{"PUT", "/_matrix/federation/v1//send/txn", NotFound, "", nil},
		{"PUT", "/_matrix/federation/v1/./send/txn", NotFound, "", nil},
		{"PUT", "/_matrix/federation/v1/x/../send/txn", NotFound, "", nil},
		{"GET", "/_matrix/federation/v1/state/", NotFound, "", nil},
		{"GET", "/_matrix/federation/V1/version", NotFound, "", nil},
		{"GET", "/_matrix/federation/unstable/org.example/thing", NotFound, "", nil},
		{"GET", "", NotFound, "", nil},
		{"GET", "*", NotFound, "", nil},
		{"GET", "/", NotFound, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			m, res := r.Lookup(tt.method, tt.path)
			if res != tt.want {
				t.Fatalf("result %v, want %v", res, tt.want)
			}
			if tt.name != "" && (m.Endpoint == nil || m.Endpoint.Name != tt.name) {
				t.Fatalf("endpoint %+v, want %s", m.Endpoint, tt.name)
			}
			for k, want := range tt.params {
				got, err := m.Param(k)
				if err != nil || got != want {
					t.Errorf("Param(%s) = %q, %v; want %q", k, got, err, want)
				}
			}
		})
	}
}

func TestParamBadEscape(t *testing.T) {
	m, res := NewRouter().Lookup("GET", "/_matrix/federation/v1/state/%zz")
	if res != Found {
		t.Fatal(res)
	}
	if _, err := m.Param("roomId"); err == nil {
		t.Fatal("bad escape decoded without error")
	}
	if m.RawParam("roomId") != "%zz" {
		t.Fatal(m.RawParam("roomId"))
	}
}

func TestAllowed(t *testing.T) {
	got := NewRouter().Allowed("/_matrix/federation/v1/publicRooms")
	if !slices.Equal(got, []string{"GET", "POST"}) {
		t.Fatal(got)
	}
}

func TestKnownNames(t *testing.T) {
	for _, n := range []string{"media", "public_rooms", "query_profile", "user_keys", "invite", "join", "policy_sign", "make_join", "send"} {
		if !Known(n) {
			t.Errorf("%s unknown", n)
		}
	}
	if Known("medai") {
		t.Error("typo accepted")
	}
	classes, ops := Names()
	if len(classes) == 0 || len(ops) <= len(classes) {
		t.Fatalf("classes %v ops %v", classes, ops)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	r := NewRouter()
	allocs := testing.AllocsPerRun(200, func() {
		r.Lookup("GET", "/_matrix/federation/v1/make_join/%21room%3Aexample.org/%40alice%3Aorigin.example")
	})
	if allocs != 0 {
		t.Fatalf("Lookup allocates %v times", allocs)
	}
}

func BenchmarkLookup(b *testing.B) {
	r := NewRouter()
	for b.Loop() {
		r.Lookup("PUT", "/_matrix/federation/v1/send/1700000000000")
	}
}

func FuzzLookup(f *testing.F) {
	f.Add("GET", "/_matrix/federation/v1/make_join/%21r%3Ax/%40u%3Ay")
	f.Add("PUT", "/_matrix/federation/v1/send/x")
	f.Add("GET", "//")
	f.Fuzz(func(t *testing.T, method, path string) {
		r := NewRouter()
		m, res := r.Lookup(method, path)
		if res == Found && m.Endpoint.Method != method {
			t.Fatalf("found %s for method %s", m.Endpoint.Method, method)
		}
		if res != NotFound && m.Endpoint == nil {
			t.Fatal("no endpoint")
		}
		if res == Found {
			for _, name := range []string{"roomId", "userId", "eventId", "txnId"} {
				_, _ = m.Param(name)
			}
		}
	})
}

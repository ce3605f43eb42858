package console

import (
	"fmt"
	"net/netip"
	"time"
)

// fixtureNow is the clock of the fixtures.
var fixtureNow = time.Date(2030, 3, 1, 14, 30, 20, 0, time.UTC)

// fullStatus is a Status with every section filled and some traffic: what
// the render tests and the benchmark look at.
func fullStatus(now time.Time) *Status {
	rec := NewRecorder(RecorderOptions{})
	seedTraffic(rec, now)
	return &Status{
		Schema:    SchemaVersion,
		Generated: now,
		Server:    &Server{Name: "example.org", Version: "1.2.3", Started: now.Add(-26 * time.Hour)},
		Readiness: &Readiness{Ready: false, Checks: []Check{
			{Name: "keys", OK: true, Detail: "ed25519:a1; key document valid until 2030-03-08T14:00:00Z"},
			{Name: "certificates", OK: true, Detail: "files certificate for example.org valid"},
			{Name: "upstream", OK: false, Detail: "http://127.0.0.1:8008 not reached for 45s (admin.ready_window 30s) (last probe: dial tcp 127.0.0.1:8008: connect: connection refused)"},
			{Name: "shutdown", OK: true, Detail: "serving"},
		}},
		Traffic: rec.Traffic(now, 10, Names{}),
		Upstream: &Upstream{URL: "http://127.0.0.1:8008", Up: false, LastSeen: now.Add(-45 * time.Second),
			LastError: "dial tcp 127.0.0.1:8008: connect: connection refused", Probing: true,
			Pools: []UpstreamPool{
				{Name: "default", Balance: "round_robin", Members: []UpstreamMember{
					{URL: "http://127.0.0.1:8008", State: "down", LastSeen: now.Add(-45 * time.Second), DownUntil: now.Add(20 * time.Second),
						LastError: "probe: not sent: dial tcp 127.0.0.1:8008: connect: connection refused", Requests: 1200, Errors: 3},
				}},
				{Name: "send", Balance: "origin", Endpoints: []string{"send"}, Members: []UpstreamMember{
					{URL: "http://127.0.0.1:8083", State: "up", LastSeen: now.Add(-time.Second), InFlight: 2, Requests: 50000, Failovers: 0},
					{URL: "http://127.0.0.1:8084", State: "retrying", LastSeen: now.Add(-2 * time.Minute), LastError: "request: no response: EOF", Requests: 48000, Errors: 12, Failovers: 12},
				}},
			}},
		Certificates: &Certificates{Items: []Certificate{
			{Name: "example.org", Source: "acme", Subjects: []string{"example.org"}, Issuer: "R11",
				NotBefore: now.Add(-80 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour)},
			{Name: "matrix.example.org", Source: "acme", Subjects: []string{"matrix.example.org"}, Issuer: "R11",
				NotBefore: now.Add(-20 * 24 * time.Hour), NotAfter: now.Add(70 * 24 * time.Hour)},
		}},
		SigningKeys: &SigningKeys{
			Current:      []SigningKey{{ID: "ed25519:a1", PublicKey: "l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ", SignsRequests: true}},
			Old:          []OldKey{{ID: "ed25519:old", PublicKey: "Q4d1Ixz8pVLc2a6K1bwEJmQnN0A6j7bqXG2xkbgqwO4", ExpiredTS: now.Add(-90 * 24 * time.Hour).UnixMilli()}},
			ValidUntilTS: now.Add(7 * 24 * time.Hour).UnixMilli(),
		},
		Keyring: &Keyring{Servers: 1234, FailingTotal: 1, Failing: []FailingFetch{{
			Server: "down.example", Failures: 3,
			Error:     "Could not get the signing keys of down.example (key server: unreachable): fetching keys of down.example: dial tcp 198.51.100.7:8448: connect: connection refused",
			NextRetry: now.Add(40 * time.Second), LastUsed: now.Add(-5 * time.Second),
		}}},
		Egress: &Egress{BackoffTotal: 2, Backoff: []Backoff{
			{Destination: "slow.example", Kind: "rate_limited", Failures: 0, Until: now.Add(50 * time.Second)},
			{Destination: "gone.example", Kind: "failing", Failures: 6, Until: now.Add(30 * time.Second)},
		}},
		Policy: &Policy{Default: "allow", Allow: 0, Deny: 3, ListFile: &ListFile{
			Path: "/etc/fedgate/lists.json", Version: 42, Modified: now.Add(-3 * time.Hour), Allow: 10, Deny: 250, MaxAgeSeconds: 86400,
		}, Rooms: []PolicyRoom{
			{Room: "#community-bans:example.org", RoomID: "!bans:example.org", State: "syncing", Rules: 1234,
				Ignored: IgnoredRules{Recommendation: 3, TooBroad: 1}, LastSync: now.Add(-4 * time.Second), Changes: 40},
			{Room: "!partner:example.net", RoomID: "!partner:example.net", State: "error", Rules: 17, LastSync: now.Add(-2 * time.Hour),
				MaxAgeSeconds: 86400, DryRun: true, Failures: 9, LastError: "sync: 401 M_UNKNOWN_TOKEN: Invalid access token passed."},
		}},
		Cluster: &Cluster{Redis: "redis://10.0.0.5:6379/0", Node: "gw-1", Prefix: "fedgate:", TimeoutSeconds: 0.05, Up: true,
			Since: now.Add(-26 * time.Hour), Downs: 1,
			Operations: []ClusterOperation{
				{Name: "rate_limit", RoundTrips: 812345, Errors: 2, Fallbacks: 57},
				{Name: "keyring", RoundTrips: 1200},
				{Name: "backoff", RoundTrips: 300},
				{Name: "acme", RoundTrips: 12},
				{Name: "ping", RoundTrips: 18000, Errors: 1},
			},
			RoundTrip: ClusterRoundTrip{Count: 812343, MeanSeconds: 0.00031, P99Seconds: 0.0021}},
	}
}

// multiStatus is fullStatus with servers-1 more hosted servers, each with
// a key rotation behind it, a closed federation under a signed list and
// rooms policy rooms: what a hosting provider's console shows.
func multiStatus(now time.Time, servers, rooms int) *Status {
	st := fullStatus(now)
	for i := 1; i < servers; i++ {
		name := fmt.Sprintf("customer%d.example", i)
		hs := HostedServer{Name: name,
			SigningKeys: &SigningKeys{
				Current:      []SigningKey{{ID: fmt.Sprintf("ed25519:c%d", i), PublicKey: "Vb3Jm6QxkT0mB2x7bq9Ycr1N9wHn7Zy2eT1u4xXQp3c", SignsRequests: true}},
				Old:          []OldKey{{ID: fmt.Sprintf("ed25519:c%d_old", i), PublicKey: "Q4d1Ixz8pVLc2a6K1bwEJmQnN0A6j7bqXG2xkbgqwO4", ExpiredTS: now.Add(-30 * 24 * time.Hour).UnixMilli()}},
				ValidUntilTS: now.Add(7 * 24 * time.Hour).UnixMilli(),
			},
			Policy: &Policy{Default: "deny", Allow: 2,
				FederationList: &FederationList{Location: "https://lists.example/federation.jws", Version: 20300 + int64(i), Allow: 180, Deny: 4,
					Confirmed: now.Add(-10 * time.Minute), MaxAgeSeconds: 86400, Signer: "CN=TI-Messenger Federation List Signer,O=gematik",
					SignerNotAfter: now.Add(time.Duration(9+i) * 24 * time.Hour), Loads: 120}},
		}
		for r := range rooms {
			hs.Policy.Rooms = append(hs.Policy.Rooms, PolicyRoom{Room: fmt.Sprintf("#bans-%d:example.org", r), RoomID: fmt.Sprintf("!r%d:example.org", r),
				State: "syncing", Rules: 100 + r, LastSync: now.Add(-time.Duration(r) * time.Second)})
		}
		st.Servers = append(st.Servers, hs)
	}
	return st
}

// seedTraffic records an hour of varied traffic up to now.
func seedTraffic(rec *Recorder, now time.Time) {
	peer := netip.MustParseAddr("203.0.113.9")
	for m := 59; m >= 0; m-- {
		at := now.Add(-time.Duration(m) * time.Minute)
		for i := range 20 + (60-m)%17 {
			rec.Record(&Request{Time: at, Server: fmt.Sprintf("server%d.example", i%7), Outcome: Forwarded, Status: 200})
		}
		for i := range 5 + m%4 {
			rec.Record(&Request{Time: at, Egress: true, Server: fmt.Sprintf("dest%d.example", i%4), Outcome: Forwarded, Status: 200})
		}
		if m%9 == 0 {
			rec.Record(&Request{Time: at, Egress: true, Server: "gone.example", Outcome: Failed, Status: 502, Reason: "remote_unreachable", Stage: "deliver"})
		}
		if m < 20 {
			for range 3 {
				rec.Record(&Request{Time: at, Server: "evil.example", Outcome: Denied, Status: 403, Reason: "origin_denied",
					Stage: "origin_policy", Rule: `policy.deny[0] "evil.example"`})
			}
		}
		if m < 6 {
			for range 30 {
				rec.Record(&Request{Time: at, Server: "busy.example", Outcome: Denied, Status: 429, Reason: "rate_per_origin",
					Stage: "origin_limits", Limiter: "per_origin"})
			}
			rec.Record(&Request{Time: at, Server: "down.example", Outcome: Denied, Status: 401, Reason: "key_fetch_failed", Stage: "origin_key"})
			rec.Record(&Request{Time: at, Peer: peer, Outcome: Denied, Status: 429, Reason: "rate_per_ip", Stage: "peer", Limiter: "per_ip"})
		}
	}
}

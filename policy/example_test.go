package policy_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/endpoints"
	"github.com/fedgate/fedgate/policy"
)

// The inbound pipeline asks the policy in order, cheapest first, using one
// snapshot for the whole request.
func Example() {
	engine, err := policy.New(policy.Options{
		ServerName: "example.org",
		Policy: config.Policy{
			Default:        config.PolicyAllow,
			Deny:           []string{"evil.example", "*.spam.example"},
			DenyEndpoints:  []string{"public_rooms"},
			LocalityChecks: true,
		},
		RateLimit: config.RateLimit{
			PerIP:               config.Limit{Rate: config.MustRate("100/s"), Burst: 200},
			PerOrigin:           config.Limit{Rate: config.MustRate("50/s"), Burst: 200},
			ConcurrentPerOrigin: 32,
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// In a server: go engine.Run(ctx) for list polling and limiter eviction.

	router := endpoints.NewRouter()
	handle := func(peer netip.Addr, origin, method, path, query string) {
		snap := engine.Snapshot()
		limits := engine.Limiters()
		if d := snap.CheckPeer(peer); !d.Allowed {
			fmt.Println(d.Status(), d.Errcode, d.Msg)
			return
		}
		if r := limits.AllowIP(peer); !r.Allowed {
			fmt.Println(429, r.Msg)
			return
		}
		m, _ := router.Lookup(method, path)
		if d := snap.CheckOrigin(origin); !d.Allowed {
			fmt.Println(d.Status(), d.Errcode, d.Msg)
			return
		}
		if r := limits.AllowOrigin(origin, m.Endpoint); !r.Allowed {
			fmt.Println(429, r.Msg)
			return
		}
		release, r := limits.AcquireOrigin(context.Background(), origin)
		if !r.Allowed {
			fmt.Println(429, r.Msg)
			return
		}
		defer release()
		if d := snap.CheckRequest(origin, &m, query, nil); !d.Allowed {
			fmt.Println(d.Status(), d.Errcode, d.Msg)
			return
		}
		fmt.Println("forward", method, path)
	}

	peer := netip.MustParseAddr("192.0.2.10")
	handle(peer, "matrix.org", "PUT", "/_matrix/federation/v1/send/1", "")
	handle(peer, "evil.example", "PUT", "/_matrix/federation/v1/send/1", "")
	handle(peer, "a.spam.example:8448", "PUT", "/_matrix/federation/v1/send/1", "")
	handle(peer, "matrix.org", "GET", "/_matrix/federation/v1/publicRooms", "")
	handle(peer, "matrix.org", "GET", "/_matrix/federation/v1/query/profile", "user_id=%40alice%3Aother.org")
	// Output:
	// forward PUT /_matrix/federation/v1/send/1
	// 403 M_FORBIDDEN Federation with evil.example is not allowed by this server's policy (origin_denied)
	// 403 M_FORBIDDEN Federation with a.spam.example:8448 is not allowed by this server's policy (origin_denied)
	// 403 M_FORBIDDEN Requests to public_rooms are not allowed by this server's policy (endpoint_denied)
	// 403 M_FORBIDDEN The user @alice:other.org does not belong to example.org, the server asked about them (user_not_local)
}

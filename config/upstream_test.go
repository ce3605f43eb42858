package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestUpstreamPools: routes decode in order with their pool names, the
// default pool's members come from url or urls, health settings take
// their defaults, and a policy room's homeserver defaults to the first
// member.
func TestUpstreamPools(t *testing.T) {
	c, err := Load("testdata/valid/upstream_pools.toml")
	if err != nil {
		t.Fatal(err)
	}
	u := c.Upstream
	if got := u.MemberURLs(); !reflect.DeepEqual(got, []string{"http://127.0.0.1:8008"}) {
		t.Errorf("members %v", got)
	}
	var names []string
	for _, r := range u.Routes {
		names = append(names, r.PoolName())
	}
	if got := strings.Join(names, " "); got != "send media backfill events+join+knock+leave+invite+query+hierarchy+public_rooms+user_devices+version" {
		t.Errorf("pool names %s", got)
	}
	if u.Routes[0].Balance != "origin" || u.Routes[1].Balance != "" || u.Balance != "round_robin" {
		t.Errorf("balances %q %q %q", u.Routes[0].Balance, u.Routes[1].Balance, u.Balance)
	}
	if u.ProbePath != "/_matrix/federation/v1/version" || u.ProbeInterval.D() != 5*time.Second || u.ProbeTimeout.D() != 5*time.Second ||
		u.DownPeriod.D() != 5*time.Second || u.DownPeriodMax.D() != time.Minute {
		t.Errorf("health settings %+v", u)
	}

	c, err = Parse("/x/gateway.toml", []byte(`server_name = "example.org"
[upstream]
urls = ["http://10.0.0.1:8008", "http://10.0.0.2:8008"]
balance = "least_busy"
[keys]
generate = true
[[policy.rooms]]
room = "#bans:example.org"
access_token_file = "/dev/null"
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Upstream.MemberURLs(); len(got) != 2 || got[1] != "http://10.0.0.2:8008" {
		t.Errorf("members %v", got)
	}
	if h := c.Policy.Rooms[0].Homeserver; h != "http://10.0.0.1:8008" {
		t.Errorf("policy room homeserver %q", h)
	}
}

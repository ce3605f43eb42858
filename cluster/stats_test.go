package cluster_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
)

// TestAddressHidesCredentials: the address a status page shows names the
// server and database, never the user name or password, whichever way
// the password was given.
func TestAddressHidesCredentials(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		url, password, want string
	}{
		{"redis://127.0.0.1:6379/0", "", "redis://127.0.0.1:6379/0"},
		{"redis://fedgate:hunter2-url@10.0.0.5:6380/3", "", "redis://10.0.0.5:6380/3"},
		{"redis://:hunter2-url@10.0.0.5:6380", "hunter2-file", "redis://10.0.0.5:6380/0"},
		{"rediss://u:hunter2-url@redis.internal:6379/1", "", "rediss://redis.internal:6379/1"},
	} {
		c, err := cluster.New(cluster.Options{URL: tt.url, Password: tt.password})
		if err != nil {
			t.Fatalf("%s: %v", tt.url, err)
		}
		if got := c.Address(); got != tt.want || strings.Contains(got, "hunter2") {
			t.Errorf("%s: address %q, want %q", tt.url, got, tt.want)
		}
		c.Close()
	}
}

// TestStatsTellWhenAndHowFast: Stats says since when Redis is up or down
// and summarises the rate-limit round trips.
func TestStatsTellWhenAndHowFast(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	before := time.Now()
	c := newClient(t, r, "a")
	l := c.Limiter("ns")
	b := []policy.SharedBucket{{Limiter: "per_origin", Key: "o.example", Rate: 100, Burst: 100}}
	for range 20 {
		if _, _, err := l.Take(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	st := c.Stats()
	if !st.Up || st.Since.Before(before) || st.Since.After(time.Now()) {
		t.Fatalf("up %v since %v", st.Up, st.Since)
	}
	if rt := st.RoundTrip; rt.Count != 20 || rt.Mean <= 0 || rt.P99 < rt.Mean/2 || rt.P99 > 250*time.Millisecond {
		t.Fatalf("round trips %+v", rt)
	}
	if st.Calls["rate_limit"] != 20 {
		t.Fatalf("calls %v", st.Calls)
	}
	if ops := cluster.Operations(); len(ops) != 5 || ops[0] != "rate_limit" {
		t.Fatalf("operations %v", ops)
	}

	r.Kill()
	killed := time.Now()
	if _, _, err := l.Take(context.Background(), b); err == nil {
		t.Fatal("take succeeded with Redis killed")
	}
	st = c.Stats()
	if st.Up || st.Since.Before(killed) {
		t.Fatalf("after the kill: up %v since %v (killed %v)", st.Up, st.Since, killed)
	}
	r.Start()
	restarted := time.Now()
	waitFor(t, "redis up again", 10*time.Second, c.Up)
	if st = c.Stats(); !st.Up || st.Since.Before(restarted) {
		t.Fatalf("after the restart: up %v since %v", st.Up, st.Since)
	}
}

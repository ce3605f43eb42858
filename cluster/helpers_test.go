package cluster_test

import (
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// newClient starts a client on r and its health loop, until the test ends.
func newClient(t testing.TB, r *fedtest.Redis, node string) *cluster.Client {
	t.Helper()
	return startClient(t, cluster.Options{URL: r.URL, Node: node, Prefix: "test:", Timeout: 200 * time.Millisecond, Logger: zaptest.NewLogger(t)})
}

// startClient is newClient for a test that needs its own options.
func startClient(t testing.TB, o cluster.Options) *cluster.Client {
	t.Helper()
	c, err := cluster.New(o)
	if err != nil {
		t.Fatal(err)
	}
	fedtest.RunUntilCleanup(t, c.Run, c.Close)
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

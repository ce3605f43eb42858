package cluster_test

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
)

// startTLSRedis runs the real redis-server with TLS only (no plain port)
// on a free loopback port, its certificate for 127.0.0.1 issued by ca, and
// a password. It returns the address; the server is killed when the test
// ends.
func startTLSRedis(t *testing.T, ca *fedtest.CA, password string) string {
	t.Helper()
	bin := fedtest.RedisBinary(t)
	dir := t.TempDir()
	certFile, keyFile := ca.WriteLeafFiles(t, dir, "127.0.0.1")
	addr := fedtest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin,
		"--port", "0", "--tls-port", port, "--bind", "127.0.0.1",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", ca.WriteCertFile(t, dir), "--tls-auth-clients", "no",
		"--requirepass", password, "--dir", dir, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--loglevel", "warning")
	out, exited := fedtest.StartProcess(t, "redis-server with TLS", cmd)
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			// Debian's redis-server is built with TLS; a build without it
			// cannot run this test and says so.
			t.Fatalf("redis-server with --tls-port exited:\n%s", out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not listen on %s within 15s:\n%s", addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runClient runs c's health loop until the test ends.
func runClient(t *testing.T, c *cluster.Client) *cluster.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		c.Close()
	})
	return c
}

// TestRedissSharedLimits: cluster.redis = "rediss://..." with ca_file and
// a password (issue 15) reaches a real redis-server over TLS on loopback:
// two clients share one bucket through it, the status address keeps the
// scheme and drops the password, and a client that does not trust the
// server's certificate marks Redis down on its first probe and answers
// from local state instead of talking to an unverified server.
func TestRedissSharedLimits(t *testing.T) {
	t.Parallel()
	ca := fedtest.NewCA(t)
	const password = "tls-redis-pa55"
	addr := startTLSRedis(t, ca, password)
	caFile := ca.WriteCertFile(t, t.TempDir())
	url := "rediss://" + addr + "/0"
	connect := func(node, caFile string) *cluster.Client {
		c, err := cluster.New(cluster.Options{URL: url, Password: password, CAFile: caFile, Node: node,
			Prefix: "tls:", Timeout: time.Second, Logger: zaptest.NewLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return runClient(t, c)
	}
	// A client counts Redis as up until a round trip fails, so Up says
	// nothing yet: the takes below are the round trips over TLS.
	a, b := connect("a", caFile), connect("b", caFile)
	if got := a.Address(); got != url || strings.Contains(got, password) {
		t.Fatalf("address %q, want %q without the password", got, url)
	}

	ctx := context.Background()
	bucket := []policy.SharedBucket{{Limiter: "per_origin", Key: "remote.example", Rate: 0.001, Burst: 2}}
	for i, l := range []*cluster.Limiter{a.Limiter("example.org"), b.Limiter("example.org")} {
		if denied, _, err := l.Take(ctx, bucket); err != nil || denied != -1 {
			t.Fatalf("take %d within the burst over TLS: denied %d, %v", i, denied, err)
		}
	}
	denied, retry, err := a.Limiter("example.org").Take(ctx, bucket)
	if err != nil || denied != 0 || retry <= 0 {
		t.Fatalf("take past the shared burst over TLS: denied %d, retry %v, %v", denied, retry, err)
	}
	for i, c := range []*cluster.Client{a, b} {
		st := c.Stats()
		if st.Fallbacks["rate_limit"] != 0 || st.Errors["rate_limit"] != 0 || st.Calls["rate_limit"] == 0 || !st.Up {
			t.Fatalf("client %d: %+v: the buckets were not kept in the TLS Redis", i, st)
		}
	}

	// A certificate from another CA is refused: probes fail and the
	// client stays down.
	untrusting := connect("c", fedtest.NewCA(t).WriteCertFile(t, t.TempDir()))
	waitFor(t, "a failed probe of the untrusted server", 15*time.Second, func() bool {
		return untrusting.Stats().Errors["ping"] > 0
	})
	if untrusting.Up() {
		t.Fatal("a client that does not trust the server's certificate still counts Redis as up after a failed probe")
	}
	if _, _, err := untrusting.Limiter("example.org").Take(ctx, bucket); err == nil {
		t.Fatal("a take through an untrusted TLS connection succeeded")
	}
}

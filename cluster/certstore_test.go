package cluster_test

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/internal/fedtest"
)

func TestCertStorageSemantics(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	s := newClient(t, r, "a").CertStorage(cluster.CertStorageOptions{})
	ctx := context.Background()
	if _, err := s.Load(ctx, "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v, want fs.ErrNotExist", err)
	}
	if _, err := s.Stat(ctx, "nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of a missing key: %v", err)
	}
	if _, err := s.List(ctx, "nope", true); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("List of a missing path: %v", err)
	}
	if err := s.Delete(ctx, "nope"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	files := map[string]string{
		"certificates/ca/example.org/example.org.crt":  "crt",
		"certificates/ca/example.org/example.org.key":  "key",
		"certificates/ca/example.org/example.org.json": "{}",
		"certificates/ca/other.org/other.org.crt":      "crt2",
		"certificates/ca2/x.org/x.org.crt":             "x",
		"users/default/acct.json":                      "acct",
		"certificatesX/not-under":                      "no",
	}
	for k, v := range files {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range files {
		got, err := s.Load(ctx, k)
		if err != nil || string(got) != v {
			t.Fatalf("Load %s = %q, %v", k, got, err)
		}
	}
	if err := s.Store(ctx, "users/default/acct.json", []byte("acct2")); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Load(ctx, "users/default/acct.json"); string(got) != "acct2" {
		t.Fatalf("overwrite: %q", got)
	}
	info, err := s.Stat(ctx, "certificates/ca/example.org/example.org.crt")
	if err != nil || !info.IsTerminal || info.Size != 3 || time.Since(info.Modified) > time.Minute {
		t.Fatalf("Stat file: %+v %v", info, err)
	}
	info, err = s.Stat(ctx, "certificates/ca")
	if err != nil || info.IsTerminal {
		t.Fatalf("Stat directory: %+v %v", info, err)
	}
	if !s.Exists(ctx, "certificates") || !s.Exists(ctx, "users/default/acct.json") || s.Exists(ctx, "certificates/c") {
		t.Fatal("Exists: files and directories exist, partial components do not")
	}
	got, err := s.List(ctx, "certificates", false)
	slices.Sort(got)
	if err != nil || strings.Join(got, ",") != "certificates/ca,certificates/ca2" {
		t.Fatalf("List non-recursive: %v %v", got, err)
	}
	got, err = s.List(ctx, "certificates/ca", true)
	slices.Sort(got)
	want := "certificates/ca/example.org,certificates/ca/example.org/example.org.crt,certificates/ca/example.org/example.org.json," +
		"certificates/ca/example.org/example.org.key,certificates/ca/other.org,certificates/ca/other.org/other.org.crt"
	if err != nil || strings.Join(got, ",") != want {
		t.Fatalf("List recursive:\n got %v\nwant %v", got, want)
	}
	if err := s.Delete(ctx, "certificates/ca"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/example.org/example.org.crt") || s.Exists(ctx, "certificates/ca") {
		t.Fatal("Delete of a directory left keys under it")
	}
	if !s.Exists(ctx, "certificates/ca2/x.org/x.org.crt") || !s.Exists(ctx, "certificatesX/not-under") {
		t.Fatal("Delete removed keys outside the directory")
	}
}

func TestCertStorageLocks(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	a := newClient(t, r, "a").CertStorage(cluster.CertStorageOptions{LockTTL: 1500 * time.Millisecond})
	b := newClient(t, r, "b").CertStorage(cluster.CertStorageOptions{LockTTL: 1500 * time.Millisecond})
	ctx := context.Background()
	if err := a.Lock(ctx, "issue_cert_example.org"); err != nil {
		t.Fatal(err)
	}
	// Held and kept alive past its TTL: b cannot take it.
	if ok, err := b.TryLock(ctx, "issue_cert_example.org"); err != nil || ok {
		t.Fatalf("TryLock while held: %v %v", ok, err)
	}
	tctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	err := b.Lock(tctx, "issue_cert_example.org")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while held for 2.5s (TTL 1.5s): %v, want the context's deadline", err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_example.org") }()
	time.Sleep(50 * time.Millisecond)
	if err := a.Unlock(ctx, "issue_cert_example.org"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Lock did not return after Unlock")
	}
	if err := a.Unlock(ctx, "issue_cert_example.org"); err == nil {
		t.Fatal("Unlock of a lock not held succeeded")
	}
	if err := b.Unlock(ctx, "issue_cert_example.org"); err != nil {
		t.Fatal(err)
	}
}

// TestCertStorageStalledHolder: a holder that freezes past the lock's
// expiry loses it; the next holder gets a higher fencing token, and the
// stale holder can neither overwrite what the new one wrote nor release
// its lock.
func TestCertStorageStalledHolder(t *testing.T) {
	t.Parallel()
	r := fedtest.StartRedis(t)
	a := newClient(t, r, "a").CertStorage(cluster.CertStorageOptions{LockTTL: 300 * time.Millisecond})
	b := newClient(t, r, "b").CertStorage(cluster.CertStorageOptions{LockTTL: 300 * time.Millisecond})
	ctx := context.Background()
	const lock, crt = "issue_cert_example.org", "certificates/ca/example.org/example.org.crt"
	if err := a.Lock(ctx, lock); err != nil {
		t.Fatal(err)
	}
	if err := a.Store(ctx, crt, []byte("from a, in time")); err != nil {
		t.Fatal(err)
	}
	a.StallForTest(lock)
	time.Sleep(400 * time.Millisecond) // a's lease lapses
	if err := b.Lock(ctx, lock); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(ctx, crt, []byte("from b")); err != nil {
		t.Fatal(err)
	}
	// a wakes up and carries on as if it still held the lock.
	if err := a.Store(ctx, crt, []byte("from a, stale")); err == nil {
		t.Fatal("a stale holder overwrote the new holder's certificate")
	}
	if v, _ := b.Load(ctx, crt); string(v) != "from b" {
		t.Fatalf("certificate is %q", v)
	}
	if err := a.Unlock(ctx, lock); err == nil {
		t.Fatal("a stale holder released the new holder's lock")
	}
	if ok, _ := a.TryLock(ctx, lock); ok {
		t.Fatal("the lock was free while b holds it")
	}
	// Unfenced writes (account, OCSP) and other names are not affected.
	if err := a.Store(ctx, "users/acct.json", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := b.Unlock(ctx, lock); err != nil {
		t.Fatal(err)
	}
}

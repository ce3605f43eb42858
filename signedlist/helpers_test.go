package signedlist_test

import (
	"context"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/signedlist"
)

// pki is a root with an intermediate and signers, plus a root nobody
// trusts.
type pki struct {
	root, inter, other *fedtest.CA
	es, ed             *fedtest.ListSigner // valid, from the intermediate
	verifier           *signedlist.Verifier
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{root: fedtest.NewCA(t), other: fedtest.NewCA(t)}
	p.inter = p.root.Intermediate(t, "list CA")
	now := time.Now()
	p.es = p.inter.Signer(t, now.Add(-time.Hour), now.Add(12*time.Hour), false)
	p.ed = p.inter.Signer(t, now.Add(-time.Hour), now.Add(12*time.Hour), true)
	v, err := signedlist.NewVerifier(p.root.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	p.verifier = v
	return p
}

// engine is a policy engine to receive lists.
func engine(t testing.TB, clock *fedtest.Clock) *policy.Engine {
	t.Helper()
	e, err := policy.New(policy.Options{ServerName: "example.org", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func logger(t testing.TB) (*slog.Logger, *fedtest.SyncBuffer) {
	b := &fedtest.SyncBuffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

func writeFile(t testing.TB, path, content string, mtime time.Time) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func tempPath(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }

func background(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

func chainB64(s *fedtest.ListSigner) []string {
	out := make([]string, len(s.Chain))
	for i, c := range s.Chain {
		out[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	return out
}

func fedtestB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

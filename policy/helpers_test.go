package policy_test

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/endpoints"
	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
)

// baseConfig is the smallest valid configuration; tests append sections.
const baseConfig = `server_name = "example.org"
[upstream]
url = "http://127.0.0.1:8008"
[keys]
generate = true
`

// loadConfig parses baseConfig plus extra through config.Parse, as the
// gateway would load it, in a temporary folder (list files live there too).
func loadConfig(t testing.TB, dir, extra string) *config.Config {
	t.Helper()
	file := filepath.Join(dir, "gateway.toml")
	c, err := config.Parse(file, []byte(baseConfig+extra))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", extra, err)
	}
	return c
}

func newClock() *fedtest.Clock {
	return fedtest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

// env is an engine under test with its clock, log and folder.
type env struct {
	t      testing.TB
	dir    string
	clock  *fedtest.Clock
	log    *fedtest.SyncBuffer
	engine *policy.Engine
}

// optionsFor maps a configuration onto Options as the gateway does.
func (e *env) optionsFor(c *config.Config) policy.Options {
	return policy.Options{
		ServerName: c.ServerName,
		Policy:     c.Policy,
		RateLimit:  c.RateLimit,
		Now:        e.clock.Now,
		Logger:     slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// newEnv builds an engine from extra configuration text. setup runs first,
// in the folder, to write list files.
func newEnv(t testing.TB, extra string, setup ...func(dir string)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: newClock(), log: &fedtest.SyncBuffer{}}
	for _, f := range setup {
		f(e.dir)
	}
	eng, err := policy.New(e.optionsFor(loadConfig(t, e.dir, extra)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.engine = eng
	return e
}

// update reloads the engine with new configuration text.
func (e *env) update(extra string) error {
	e.t.Helper()
	return e.engine.Update(e.optionsFor(loadConfig(e.t, e.dir, extra)))
}

func (e *env) snap() *policy.Snapshot { return e.engine.Snapshot() }

// writeFile writes name in dir with the given modification time.
func writeFile(t testing.TB, dir, name, content string, mtime time.Time) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return p
}

var router = endpoints.NewRouter()

// match routes method and target ("path?query") and returns the match and
// the raw query.
func match(t testing.TB, method, target string) (*endpoints.Match, string) {
	t.Helper()
	path, query, _ := strings.Cut(target, "?")
	m, res := router.Lookup(method, path)
	if res != endpoints.Found {
		t.Fatalf("no route for %s %s", method, path)
	}
	return &m, query
}

// wantDecision checks a decision against the expected reason ("" for an
// allow) and, under dry run, the dry-run marking.
func wantDecision(t testing.TB, what string, d policy.Decision, reason string, dryRun bool) {
	t.Helper()
	if d.Reason != reason {
		t.Errorf("%s: reason %q, want %q (decision %+v)", what, d.Reason, reason, d)
		return
	}
	switch {
	case reason == "":
		if !d.Allowed || d.DryRun || d.Msg != "" || d.Rule != "" || d.Errcode != "" {
			t.Errorf("%s: allow decision carries denial fields: %+v", what, d)
		}
	case dryRun:
		if !d.Allowed || !d.DryRun {
			t.Errorf("%s: dry run should allow and mark: %+v", what, d)
		}
	default:
		if d.Allowed || d.DryRun {
			t.Errorf("%s: should deny: %+v", what, d)
		}
	}
	if reason != "" {
		if !strings.Contains(d.Msg, "("+reason+")") {
			t.Errorf("%s: message %q does not name the reason", what, d.Msg)
		}
		if d.Errcode == "" {
			t.Errorf("%s: no errcode", what)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// contextWithCleanup returns a context cancelled when the test ends.
func contextWithCleanup(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx, cancel
}

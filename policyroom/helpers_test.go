package policyroom_test

import (
	"context"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/policyroom"
)

const (
	bot      = "@fedgate-bot:hs.test"
	botToken = "syt_bot_token"
	room1    = "!bans:hs.test"
)

// env is a client-server API, an engine and a folder for a source.
type env struct {
	t      *testing.T
	hs     *fedtest.CSServer
	engine *policy.Engine
	dir    string
	log    *fedtest.SyncBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	hs := fedtest.StartCSServer(t)
	hs.AddUser(bot, botToken)
	e := &env{t: t, hs: hs, dir: t.TempDir(), log: &fedtest.SyncBuffer{}}
	e.engine = newEngine(t, time.Now)
	if err := os.WriteFile(filepath.Join(e.dir, "token"), []byte(botToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func newEngine(t *testing.T, now func() time.Time) *policy.Engine {
	t.Helper()
	eng, err := policy.New(policy.Options{ServerName: "example.org", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// options are the source options for room in this env.
func (e *env) options(room string) policyroom.Options {
	u, err := url.Parse(e.hs.URL)
	if err != nil {
		e.t.Fatal(err)
	}
	return policyroom.Options{
		Room:            room,
		Homeserver:      u,
		AccessTokenFile: filepath.Join(e.dir, "token"),
		StateFile:       filepath.Join(e.dir, "room.json"),
		Sink:            e.engine,
		Name:            "room:" + room,
		SyncTimeout:     2 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// run builds a source and runs it until the test ends (or stop is
// called).
func (e *env) run(o policyroom.Options) (*policyroom.Source, func()) {
	e.t.Helper()
	s, err := policyroom.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	s.Publish()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	e.t.Cleanup(stop)
	return s, stop
}

// eventually waits up to 10 s for cond, which is polled: the source works
// in its own goroutine and a change in the room reaches the engine
// without a signal the test could wait on.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, what, 10*time.Second, cond)
}

func eventuallyWithin(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reason is the decision's reason for origin.
func (e *env) reason(origin string) string { return e.engine.Snapshot().CheckOrigin(origin).Reason }

func (e *env) waitReason(origin, reason string) {
	e.t.Helper()
	eventually(e.t, origin+" -> "+reason, func() bool { return e.reason(origin) == reason })
}

func ban(entity, reason string) string {
	return `{"entity":"` + entity + `","recommendation":"m.ban","reason":"` + reason + `"}`
}

package gateway

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/internal/fedtest"
	"github.com/fedgate/fedgate/policyroom"
)

// chromium returns the browser to drive: $FEDGATE_CHROMIUM, or Debian's
// chromium (or another Chromium or Chrome) on the PATH. Without one the
// test skips, unless FEDGATE_REQUIRE_CHROMIUM=1 (CI), where it fails.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FEDGATE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("FEDGATE_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("FEDGATE_REQUIRE_CHROMIUM=1 but no Chromium is installed (apt-get install chromium) and FEDGATE_CHROMIUM is not set")
	}
	t.Skip("the console's browser test needs Chromium: apt-get install chromium, or set FEDGATE_CHROMIUM to a Chrome binary; FEDGATE_REQUIRE_CHROMIUM=1 makes its absence a failure")
	return ""
}

// browse starts a headless Chromium of its own (fresh profile, nothing
// that reaches out to the network) and returns a tab's context, with every
// console error, uncaught exception and browser log error (a resource that
// failed to load, a Content-Security-Policy violation) collected in
// problems.
func browse(t *testing.T) (ctx context.Context, problems func() []string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)

	var mu sync.Mutex
	var seen []string
	// Listen calls back from the tab's reading loop, in order: an event
	// that arrives before a command's reply is seen before it returns.
	err := chromedp.Listen(ctx, func(ev any) {
		var p string
		switch ev := ev.(type) {
		case *cdpruntime.EventConsoleAPICalled:
			if ev.Type == cdpruntime.ConsoleAPICalledTypeError || ev.Type == cdpruntime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				p = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
			}
		case *cdpruntime.EventExceptionThrown:
			p = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				p += " " + ev.ExceptionDetails.Exception.Description
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				p = fmt.Sprintf("log (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		}
		if p != "" {
			mu.Lock()
			seen = append(seen, p)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	// The first call started the browser; limit what follows.
	ctx, cancelTime := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelTime)
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// TestConsoleInBrowser loads the console in headless Chromium after
// traffic from an allowed, a denied and a rate-limited origin, one whose
// key server is down, one a policy room bans, and an egress destination
// that asks us to wait, with a second hosted server and, when redis-server
// is installed (always in CI, FEDGATE_REQUIRE_REDIS=1), cluster mode. It
// checks what a person would see: those servers, the reasons, the failing
// key fetch, the certificate's expiry in its warning colour, both hosted
// servers' keys and policy, the policy room with its ban (after opening
// its folded block, as a person would), Redis's state, the charts, and no
// JavaScript or loading errors. It saves a screenshot as a test artifact
// (kept with go test -artifacts; the path is logged).
func TestConsoleInBrowser(t *testing.T) {
	ctx, problems := browse(t)
	setup := consoleSetup{token: consoleTokenValue, second: true, room: true}
	if fedtest.RedisAvailable() {
		setup.redisURL = fedtest.StartRedis(t).URL
	} else {
		t.Log("redis-server is not installed: the cluster section is not checked (FEDGATE_REQUIRE_REDIS=1 requires it)")
	}
	env := startConsole(t, setup)
	env.seed()
	waitFor(t, "the homeserver probe", func() bool { return homeserverReached(env.gw) })
	waitFor(t, "the policy room synced", func() bool {
		rooms, _ := env.gw.rt.Load().primary().state.sources.Status()
		return rooms[0].State == policyroom.StateSyncing && rooms[0].Ignored[policyroom.IgnoredRecommendation] == 1
	})

	// A person opening the console in a browser logs in with the token as
	// password; Basic credentials in the URL do that.
	err := chromedp.Do(ctx,
		chromedp.Navigate("http://console:"+consoleTokenValue+"@"+env.admin+"/"),
		chromedp.WaitVisible("#denials"),
	)
	if err != nil {
		t.Fatalf("loading the console: %v", err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	eval := func(js string) any {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](js))
		if err != nil {
			t.Fatalf("evaluating %s: %v", js, err)
		}
		return v
	}
	page, denials, tops, keyring := text("body"), text("#denials"), text("#top-origins"), text("#keyring")
	egress, certs, cards, keys := text("#egress"), text("#certificates"), text(".cards"), text("#signing-keys")
	readiness, policyFolded := text("#readiness"), text("#policy")
	certColour := eval(`getComputedStyle(document.querySelector("#certificates tbody tr td")).backgroundColor`)
	cardColour := eval(`getComputedStyle(document.querySelector('.card[href="#certificates"]')).backgroundColor`)
	inboundBars := eval(`document.querySelectorAll("#chart-requests rect.inbound").length`)
	deniedBars := eval(`document.querySelectorAll("#chart-denials rect.denied").length`)
	overflow := eval(`document.documentElement.scrollWidth > window.innerWidth`)
	folded := eval(`[...document.querySelectorAll("#policy details")].map(d => d.open).join()`)

	// gw.test's policy sources are in sync, so its block is folded: open
	// it as a person would, by clicking its summary.
	if err := chromedp.Do(ctx, chromedp.Click("#policy details:first-of-type > summary"), chromedp.WaitVisible("#policy table.rooms")); err != nil {
		t.Fatalf("opening gw.test's policy sources: %v", err)
	}
	policy := text("#policy")
	cluster := ""
	if setup.redisURL != "" {
		cluster = text("#cluster")
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.ArtifactDir(), "console.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the console: %s", path)

	row := func(section, text string, want ...string) {
		t.Helper()
		for _, line := range strings.Split(text, "\n") {
			all := true
			for _, w := range want {
				all = all && strings.Contains(line, w)
			}
			if all {
				return
			}
		}
		t.Errorf("%s has no line with %q:\n%s", section, want, text)
	}
	row("recent denials", denials, "evil.test", "origin_denied", "policy.deny[0]", "403")
	row("recent denials", denials, "busy.test", "rate_per_origin", "limiter per_origin", "429", "×2")
	row("recent denials", denials, "down.test", "key_fetch_failed", "401")
	row("recent denials", denials, "banned.test", "origin_banned", consoleRoomAlias, "403")
	row("top origins", tops, "good.test", "3")
	row("top origins", tops, "busy.test", "4", "2")
	row("keyring", keyring, "down.test", "connection refused")
	row("keyring", keyring, "in ") // the next retry
	row("egress backoff", egress, "slow.test", "429")
	row("certificates", certs, "gw.test", "10 days left")
	row("readiness", readiness, "policy_room "+consoleRoomAlias, "ok", "1 ban rules in force")
	row("signing keys", keys, "gw.test", "key document valid until")
	row("signing keys", keys, "gw2.test", "key document valid until")
	row("signing keys", keys, "ed25519:gw2_1", auth.EncodeBase64(env.second.Public()), "signs requests")
	row("policy sources, folded", policyFolded, "gw.test", "in sync", "default allow", "1 policy room, 1 ban in force")
	row("policy sources, folded", policyFolded, "gw2.test", "default deny", "1 allow, 0 deny entries")
	row("policy sources", policy, consoleRoomAlias, consoleRoomID, "syncing", "1", "1 not a ban", "none")
	if strings.Contains(policyFolded, consoleRoomID) {
		t.Error("gw.test's policy sources are in sync, yet its block is open")
	}
	if folded != "false" { // gw2.test has no source to fold
		t.Errorf("policy blocks open: %v, want gw.test's folded", folded)
	}
	for _, want := range []string{"Readiness", "ready", "Homeservers", "2 of 2 reachable", "ed25519:gw_1", "Requests per minute"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	if !strings.Contains(cards, "10 days left") || !strings.Contains(cards, "KEY FETCHES FAILING") || !strings.Contains(cards, "POLICY SOURCES") {
		t.Errorf("summary cards:\n%s", cards)
	}
	if setup.redisURL != "" {
		row("cluster", cluster, "Redis up", "gw-console", "fgconsole:")
		row("cluster", cluster, "rate_limit")
		row("cluster", cluster, "mean", "99% within")
		if !strings.Contains(cards, "Redis up") {
			t.Errorf("no cluster card:\n%s", cards)
		}
	} else if strings.Contains(page, "Cluster") {
		t.Error("a cluster section without [cluster]")
	}
	// The warning colour (--warn-bg) on the certificate's row and card.
	if certColour != "rgb(255, 244, 214)" || cardColour != "rgb(255, 244, 214)" {
		t.Errorf("certificate expiring in 10 days drawn in %s (row) and %s (card), want the warning colour", certColour, cardColour)
	}
	if inboundBars == 0.0 || deniedBars == 0.0 {
		t.Errorf("charts draw %d inbound and %d denial bars", inboundBars, deniedBars)
	}
	if overflow != false {
		t.Error("the page is wider than a 1400 px window")
	}
	if p := problems(); len(p) > 0 {
		t.Errorf("the browser reported errors:\n%s", strings.Join(p, "\n"))
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// TestAccessLogNeverSampled: the access log keeps its promise of one line
// per request under a flood, at any log.level, while other repeated
// messages are sampled.
func TestAccessLogNeverSampled(t *testing.T) {
	var buf bytes.Buffer
	log, _, err := newLogger(config.Log{Level: "warn", Format: "json"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	access := log.Named("access")
	gw := log.Named("gateway")
	for range 500 {
		access.Info("request")
		gw.Warn("noise")
		gw.Info("hidden at warn")
	}
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		counts[m["msg"].(string)]++
		if _, ok := m["ts"]; !ok {
			t.Fatalf("no ts: %q", line)
		}
	}
	if counts["request"] != 500 {
		t.Errorf("%d access lines, want 500", counts["request"])
	}
	if n := counts["noise"]; n < 100 || n >= 500 {
		t.Errorf("%d noise lines: not sampled", n)
	}
	if counts["hidden at warn"] != 0 {
		t.Errorf("info lines written at level warn")
	}
	if _, _, err := newLogger(config.Log{Level: "loud"}, &buf); err == nil {
		t.Error("bad level accepted")
	}
}

func TestConsoleFormat(t *testing.T) {
	var buf bytes.Buffer
	log, _, _ := newLogger(config.Log{Level: "info", Format: "console"}, &buf)
	log.With().Named("access").Info("request")
	if !strings.Contains(buf.String(), "INFO\taccess\trequest") {
		t.Fatalf("console line %q", buf.String())
	}
}

// TestAccessLogBuffered: with log.access_buffer the access lines wait in
// memory while other lines are written at once; they come out whole,
// within about a second, and all of them by the time the logger stops.
func TestAccessLogBuffered(t *testing.T) {
	var out fedtest.SyncBuffer
	log, stop, err := newLogger(config.Log{Level: "info", Format: "json", AccessBuffer: 64 << 10}, &out)
	if err != nil {
		t.Fatal(err)
	}
	access := log.Named("access")
	for range 100 {
		access.Info("request")
	}
	log.Named("gateway").Warn("at once")
	if got := out.Lines(); len(got) != 1 || !strings.Contains(got[0], `"at once"`) {
		t.Fatalf("before the flush the log holds %q, want only the warning", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(out.Lines()) < 101 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(out.Lines()); n != 101 {
		t.Fatalf("%d lines after the flush interval, want 101", n)
	}
	for range 10 {
		access.Info("request")
	}
	stop()
	lines := out.Lines()
	if len(lines) != 111 {
		t.Fatalf("%d lines after stop, want 111", len(lines))
	}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a whole JSON line: %q", line)
		}
	}
}

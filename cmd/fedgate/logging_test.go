package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/fedgate/fedgate/config"
)

// TestAccessLogNeverSampled: the access log keeps its promise of one line
// per request under a flood, at any log.level, while other repeated
// messages are sampled.
func TestAccessLogNeverSampled(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(config.Log{Level: "warn", Format: "json"}, &buf)
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
	if _, err := newLogger(config.Log{Level: "loud"}, &buf); err == nil {
		t.Error("bad level accepted")
	}
}

func TestConsoleFormat(t *testing.T) {
	var buf bytes.Buffer
	log, _ := newLogger(config.Log{Level: "info", Format: "console"}, &buf)
	log.With().Named("access").Info("request")
	if !strings.Contains(buf.String(), "INFO\taccess\trequest") {
		t.Fatalf("console line %q", buf.String())
	}
}

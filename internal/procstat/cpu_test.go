package procstat

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       time.Duration
		ok         bool
	}{
		{"plain", "42 (redis-server) S 1 42 42 0 -1 4194560 500 0 0 0 120 30 0 0 20 0 4 0 100 0 0", 150 * ClockTick, true},
		{"name with spaces and parentheses", "7 (a b) c)) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0", 11 * ClockTick, true},
		{"no name", "42 S 1 42", 0, false},
		{"short", "42 (x) S 1 2 3", 0, false},
		{"not a number", "42 (x) S 1 42 42 0 -1 0 0 0 0 0 a 30", 0, false},
		{"negative", "42 (x) S 1 42 42 0 -1 0 0 0 0 0 -5 30", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.line))
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("parseStat(%q) = %v, %v; want %v, ok %v", tc.line, got, err, tc.want, tc.ok)
			}
		})
	}
}

// TestCPUOfThisProcess reads the test binary's own line: a real /proc.
func TestCPUOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	d, err := CPU(os.Getpid())
	if err != nil || d <= 0 {
		t.Fatalf("CPU = %v, %v; want some CPU time after 200ms of spinning", d, err)
	}
	if _, err := CPU(-1); err == nil {
		t.Fatal("CPU(-1) succeeded")
	}
}

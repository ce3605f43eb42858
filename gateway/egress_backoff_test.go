package gateway

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestBackoffDoublesAndResets(t *testing.T) {
	t.Parallel()
	bt := newBackoffTable(100)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	for i, w := range want {
		if got := bt.failed("Remote.Test", now, now); got != w*time.Second {
			t.Fatalf("failure %d: window %s, want %s", i+1, got, w*time.Second)
		}
		wait, kind, n := bt.check("remote.test", now)
		if wait != w*time.Second || kind != backoffFailing || n != i+1 {
			t.Fatalf("failure %d: check %s %v %d", i+1, wait, kind, n)
		}
		now = now.Add(w * time.Second) // the window passes, the next try fails
		if wait, _, _ := bt.check("remote.test", now); wait != 0 {
			t.Fatalf("failure %d: still backing off after the window", i+1)
		}
	}
	bt.succeeded("REMOTE.TEST")
	if bt.len() != 0 {
		t.Fatal("success did not reset")
	}
}

// TestBackoffConcurrentFailuresCountOnce: requests that were already in
// flight when a failure opened the window do not double it again.
func TestBackoffConcurrentFailuresCountOnce(t *testing.T) {
	t.Parallel()
	bt := newBackoffTable(100)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	bt.failed("r", t0, t0.Add(10*time.Millisecond))
	for i := 0; i < 20; i++ {
		bt.failed("r", t0, t0.Add(20*time.Millisecond)) // started before the first failure was recorded
	}
	if _, _, n := bt.check("r", t0.Add(30*time.Millisecond)); n != 1 {
		t.Fatalf("%d failures counted, want 1", n)
	}
}

func TestBackoffRateLimited(t *testing.T) {
	t.Parallel()
	bt := newBackoffTable(100)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct{ asked, got time.Duration }{
		{30 * time.Second, 30 * time.Second},
		{0, defaultRetryAfter},
		{-time.Second, defaultRetryAfter},
		{24 * time.Hour, backoffMaxRateLimited},
	}
	for _, tt := range tests {
		key := fmt.Sprint("r", tt.asked)
		if got := bt.rateLimited(key, now, tt.asked); got != tt.got {
			t.Errorf("rateLimited(%s) = %s, want %s", tt.asked, got, tt.got)
		}
		if wait, kind, _ := bt.check(key, now); wait != tt.got || kind != backoffRateLimited {
			t.Errorf("check after %s: %s %v", tt.asked, wait, kind)
		}
	}
	// A failure does not shorten a longer rate-limit wait.
	bt.rateLimited("x", now, time.Minute)
	bt.failed("x", now, now)
	if wait, kind, _ := bt.check("x", now); wait != time.Minute || kind != backoffRateLimited {
		t.Fatalf("check %s %v", wait, kind)
	}
}

func TestBackoffBounded(t *testing.T) {
	t.Parallel()
	bt := newBackoffTable(50)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 1000; i++ {
		bt.failed(fmt.Sprintf("s%d.test", i), now, now)
		if bt.len() > 50 {
			t.Fatalf("table grew to %d entries", bt.len())
		}
	}
	// Expired entries go before live ones.
	later := now.Add(time.Hour)
	bt.failed("fresh.test", later, later)
	for i := 0; i < 60; i++ {
		bt.failed(fmt.Sprintf("t%d.test", i), later, later)
	}
	if bt.len() > 50 {
		t.Fatalf("table grew to %d entries", bt.len())
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		header string
		body   string
		want   time.Duration
	}{
		{"30", "", 30 * time.Second},
		{" 5 ", "", 5 * time.Second},
		{"-3", "", 0},
		{"99999999999", "", backoffMaxRateLimited},
		{now.Add(90 * time.Second).Format(http.TimeFormat), "", 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), "", 0},
		{"", `{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":1500}`, 1500 * time.Millisecond},
		{"", `{"retry_after_ms":-1}`, 0},
		{"", `{"retry_after_ms":1e99}`, 0},
		{"", `not json`, 0},
		{"soon", `{"retry_after_ms":2000}`, 2 * time.Second},
		{"", "", 0},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.header != "" {
			h.Set("Retry-After", tt.header)
		}
		if got := retryAfter(h, []byte(tt.body), now); got != tt.want {
			t.Errorf("retryAfter(%q, %q) = %s, want %s", tt.header, tt.body, got, tt.want)
		}
	}
}

func BenchmarkBackoffCheck(b *testing.B) {
	bt := newBackoffTable(defaultBackoffEntries)
	now := time.Now()
	for i := 0; i < 1000; i++ {
		bt.failed(fmt.Sprintf("s%d.example.org", i), now, now)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bt.check("matrix.example.org", now)
		}
	})
}

// TestBackoffActive: active counts the destinations backed off now and
// lists those with the longest wait first, leaving out expired entries.
func TestBackoffActive(t *testing.T) {
	t.Parallel()
	bt := newBackoffTable(100)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	bt.failed("short.test", now, now)                // 1 s
	bt.rateLimited("limited.test", now, time.Minute) // 60 s
	for range 3 {
		bt.failed("down.test", now, now) // 1, 2, then 4 s
		now = now.Add(time.Millisecond)
	}
	bt.failed("gone.test", now.Add(-time.Hour), now.Add(-time.Hour)) // expired long ago
	total, list := bt.active(now, 2)
	if total != 3 || len(list) != 2 {
		t.Fatalf("total %d, listed %v", total, list)
	}
	if list[0].destination != "limited.test" || list[0].kind.String() != "rate_limited" {
		t.Errorf("first %+v", list[0])
	}
	if list[1].destination != "down.test" || list[1].kind.String() != "failing" || list[1].failures != 3 {
		t.Errorf("second %+v", list[1])
	}
	if failing, limited := bt.countActive(now); failing != 2 || limited != 1 {
		t.Errorf("countActive: %d failing, %d rate limited", failing, limited)
	}
}

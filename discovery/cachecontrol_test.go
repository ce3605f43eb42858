package discovery

import (
	"net/http"
	"testing"
	"time"
)

func TestCacheLifetime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	date := now.Add(-time.Hour).Format(http.TimeFormat) // a server clock an hour behind
	tests := []struct {
		name   string
		header http.Header
		ttl    time.Duration
		ok     bool
	}{
		{"none", http.Header{}, 0, false},
		{"max-age", http.Header{"Cache-Control": {"max-age=3600"}}, time.Hour, true},
		{"max-age among others", http.Header{"Cache-Control": {"public, Max-Age=60 , must-revalidate"}}, time.Minute, true},
		{"quoted max-age", http.Header{"Cache-Control": {`max-age="120"`}}, 2 * time.Minute, true},
		{"first max-age wins", http.Header{"Cache-Control": {"max-age=10", "max-age=20"}}, 10 * time.Second, true},
		{"invalid max-age is stale", http.Header{"Cache-Control": {"max-age=soon"}}, 0, true},
		{"negative max-age is stale", http.Header{"Cache-Control": {"max-age=-5"}}, 0, true},
		{"huge max-age saturates", http.Header{"Cache-Control": {"max-age=99999999999999999999999"}}, maxHeaderSeconds * time.Second, true},
		{"no-store", http.Header{"Cache-Control": {"no-store, max-age=600"}}, 0, true},
		{"no-cache", http.Header{"Cache-Control": {"no-cache"}}, 0, true},
		{"s-maxage alone is ignored", http.Header{"Cache-Control": {"s-maxage=600"}}, 0, false},
		{"max-age beats Expires", http.Header{"Cache-Control": {"max-age=5"}, "Expires": {now.Add(time.Hour).Format(http.TimeFormat)}}, 5 * time.Second, true},
		{"Expires from now", http.Header{"Expires": {now.Add(90 * time.Minute).Format(http.TimeFormat)}}, 90 * time.Minute, true},
		{"Expires from Date", http.Header{"Date": {date}, "Expires": {now.Format(http.TimeFormat)}}, time.Hour, true},
		{"Expires in the past", http.Header{"Expires": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0, true},
		{"invalid Expires", http.Header{"Expires": {"0"}}, 0, true},
	}
	for _, tt := range tests {
		ttl, ok := cacheLifetime(tt.header, now)
		if ttl != tt.ttl || ok != tt.ok {
			t.Errorf("%s: %v %v, want %v %v", tt.name, ttl, ok, tt.ttl, tt.ok)
		}
	}
}

package discovery

import (
	"net/http"
	"strings"
	"time"
)

// maxHeaderSeconds bounds parsed lifetimes; callers clamp far lower.
const maxHeaderSeconds = 10 * 365 * 24 * 3600

// cacheLifetime reads how long a response may be cached from its headers
// (RFC 9111): Cache-Control no-store or no-cache mean zero; max-age gives
// seconds; otherwise Expires minus Date (or minus now without a valid Date).
// An invalid max-age or Expires means zero, as RFC 9111 says. ok is false
// when the headers do not say, so the caller's default applies.
func cacheLifetime(h http.Header, now time.Time) (ttl time.Duration, ok bool) {
	maxAge, hasMaxAge, noStore := -1, false, false
	for _, line := range h.Values("Cache-Control") {
		for _, d := range strings.Split(line, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				noStore = true
			case "max-age":
				if !hasMaxAge {
					hasMaxAge = true
					maxAge = parseSeconds(strings.Trim(strings.TrimSpace(value), `"`))
				}
			}
		}
	}
	switch {
	case noStore:
		return 0, true
	case hasMaxAge:
		return time.Duration(max(maxAge, 0)) * time.Second, true
	}
	exp := h.Get("Expires")
	if exp == "" {
		return 0, false
	}
	expires, err := http.ParseTime(exp)
	if err != nil {
		return 0, true
	}
	base := now
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		base = date
	}
	d := expires.Sub(base)
	if d <= 0 {
		return 0, true
	}
	return min(d, maxHeaderSeconds*time.Second), true
}

// parseSeconds parses a delta-seconds value; it returns -1 when s is not
// one and saturates large values at maxHeaderSeconds.
func parseSeconds(s string) int {
	if s == "" {
		return -1
	}
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return -1
		}
		if v < maxHeaderSeconds {
			v = v*10 + int(c-'0')
		}
	}
	return min(v, maxHeaderSeconds)
}

package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("90s",
// "24h", "1h30m"). The empty string means zero.
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q (write it like \"30s\", \"5m\" or \"24h\")", s)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText renders the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ByteSize is a size in bytes, written as an integer or a string with a unit:
// "64KiB", "8MiB", "1GiB" (powers of 1024) or "500KB", "8MB" (powers of 1000).
type ByteSize int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"B", 1},
}

// UnmarshalText parses a size with an optional unit.
func (s *ByteSize) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	mult := int64(1)
	num := text
	for _, u := range sizeUnits {
		if strings.HasSuffix(text, u.suffix) {
			mult, num = u.mult, strings.TrimSpace(strings.TrimSuffix(text, u.suffix))
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 {
		return fmt.Errorf("bad size %q (write it like 65536, \"64KiB\" or \"8MiB\")", text)
	}
	if v > math.MaxInt64/mult {
		return fmt.Errorf("size %q is too large", text)
	}
	*s = ByteSize(v * mult)
	return nil
}

// MarshalText renders the size with the largest binary unit that divides it.
func (s ByteSize) MarshalText() ([]byte, error) {
	v := int64(s)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.mult == 0 {
			return []byte(strconv.FormatInt(v/u.mult, 10) + u.suffix), nil
		}
	}
	return []byte(strconv.FormatInt(v, 10)), nil
}

// Rate is an event rate written "N/s", "N/m" or "N/h" (N may be fractional).
// "" and "0" mean unlimited. PerSecond gives the rate in events per second.
type Rate struct {
	PerSecond float64
	text      string
}

// Unlimited reports whether the rate is off.
func (r Rate) Unlimited() bool { return r.PerSecond == 0 }

// UnmarshalText parses "N/unit".
func (r *Rate) UnmarshalText(b []byte) error {
	text := strings.TrimSpace(string(b))
	if text == "" || text == "0" {
		*r = Rate{}
		return nil
	}
	num, unit, ok := strings.Cut(text, "/")
	if !ok {
		return fmt.Errorf("bad rate %q (write it like \"10/s\", \"600/m\" or \"1000/h\")", text)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return fmt.Errorf("bad rate %q: %q is not a non-negative number", text, num)
	}
	switch strings.TrimSpace(unit) {
	case "s":
	case "m":
		v /= 60
	case "h":
		v /= 3600
	default:
		return fmt.Errorf("bad rate %q: unit must be s, m or h", text)
	}
	*r = Rate{PerSecond: v, text: text}
	return nil
}

// MarshalText renders the rate as it was written, or "N/s".
func (r Rate) MarshalText() ([]byte, error) {
	if r.text != "" {
		return []byte(r.text), nil
	}
	if r.PerSecond == 0 {
		return []byte("0"), nil
	}
	return []byte(strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + "/s"), nil
}

// MustRate parses a rate known to be valid (for defaults and tests).
func MustRate(s string) Rate {
	var r Rate
	if err := r.UnmarshalText([]byte(s)); err != nil {
		panic(err)
	}
	return r
}

// Limit is a token bucket: Rate tokens per second, Burst tokens at most.
type Limit struct {
	Rate  Rate `toml:"rate"`
	Burst int  `toml:"burst"`
}

// Enabled reports whether the limit is on.
func (l Limit) Enabled() bool { return !l.Rate.Unlimited() }

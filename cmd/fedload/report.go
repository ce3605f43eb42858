package main

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/fedgate/fedgate/auth"
)

// fedgateBin is one fedgate binary under test, with the label its targets
// are named by.
type fedgateBin struct{ label, path string }

// fedgateBinaries resolves the -fedgate flag: "none", one path (or "" to
// look beside fedload and in PATH), or "label=path,label=path" to measure
// several builds side by side in the same rounds.
func fedgateBinaries(v string) ([]fedgateBin, error) {
	if v == "none" {
		return nil, nil
	}
	if !strings.Contains(v, "=") {
		if p := findBinary(v, "fedgate"); p != "" {
			return []fedgateBin{{label: "fedgate", path: p}}, nil
		}
		return nil, nil
	}
	var out []fedgateBin
	for _, f := range splitList(v) {
		label, path, ok := strings.Cut(f, "=")
		if !ok || path == "" || !validLabel(label) {
			return nil, fmt.Errorf("-fedgate: %q is not label=path (labels: letters, digits, '-', '_', '.')", f)
		}
		if label == "direct" || label == "caddy" || label == "nginx" || slices.ContainsFunc(out, func(b fedgateBin) bool { return b.label == label }) {
			return nil, fmt.Errorf("-fedgate: label %q is taken", label)
		}
		out = append(out, fedgateBin{label: label, path: findBinary(path, "fedgate")})
	}
	return out, nil
}

func validLabel(s string) bool {
	if s == "" || strings.HasSuffix(s, "+log") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// logMode is how a fedgate target writes its access log.
type logMode string

const (
	logOff      logMode = "off"      // log.access = false
	logOn       logMode = "on"       // one write per line
	logBuffered logMode = "buffered" // log.access_buffer = "64KiB"
)

// suffix is what the mode adds to a target's name.
func (m logMode) suffix() string {
	switch m {
	case logOn:
		return "+log"
	case logBuffered:
		return "+buflog"
	}
	return ""
}

// accessBuffer is the log.access_buffer the mode runs fedgate with.
func (m logMode) accessBuffer() string {
	if m == logBuffered {
		return "64KiB"
	}
	return "0"
}

// accessLogModes turns -access-log into the settings to run fedgate with:
// "both" is off and on, "all" adds buffered, and a comma-separated list
// names modes one by one. A mode named twice runs once: each mode's target
// has a name, configuration file and data folder of its own.
func accessLogModes(v string) ([]logMode, error) {
	switch v {
	case "both":
		return []logMode{logOff, logOn}, nil
	case "all":
		return []logMode{logOff, logOn, logBuffered}, nil
	}
	var modes []logMode
	for _, part := range strings.Split(v, ",") {
		var mode logMode
		switch m := strings.TrimSpace(part); m {
		case "off", "false":
			mode = logOff
		case "on", "true":
			mode = logOn
		case "buffered":
			mode = logBuffered
		default:
			return nil, fmt.Errorf("-access-log: %q is not off, on, buffered, both or all", m)
		}
		if !slices.Contains(modes, mode) {
			modes = append(modes, mode)
		}
	}
	return modes, nil
}

// Issue 14's targets, per request in the same run.
const (
	ownWorkVsCaddy = 0.5 // fedgate's own work at most half of Caddy's CPU
	ownWorkVsNginx = 2.0 // moonshot: at most twice nginx's
)

// printOwnWork prints issue 14's comparison: for every fedgate target and
// verified scenario, fedgate's own work (CPU per request minus one ed25519
// verification of the request's signed bytes, timed here with
// crypto/ed25519) against Caddy's and nginx's CPU per request.
func printOwnWork(out io.Writer, targets []*target, scenarios []scenario, med map[string]*result, timings map[string][]verifyTiming) {
	var verified []scenario
	for _, s := range scenarios {
		if !s.local {
			verified = append(verified, s)
		}
	}
	if len(verified) == 0 {
		return
	}
	costs := map[string]verifyTiming{}
	fmt.Fprintf(out, "\nOne signature check, timed in this process after each round's measurements of the scenario (CPU time of one thread; median over rounds of the median of 9 passes over 256 of the scenario's requests):\n\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsigned bytes\tcrypto/ed25519.Verify\tas fedgate checks it\t")
	for _, s := range verified {
		c := medianTiming(timings[s.name])
		costs[s.name] = c
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t\n", s.name, c.msgLen, fmtMicros(c.reference), fmtMicros(c.fedgate))
	}
	tw.Flush()

	fmt.Fprintf(out, "\nOwn work = CPU/req - crypto/ed25519.Verify above. Target: own/caddy <= %.1f; moonshot: own/nginx <= %.0f.\n\n", ownWorkVsCaddy, ownWorkVsNginx)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttarget\taccess log\tCPU/req\tverify\town work\tcaddy\town/caddy\ttarget met\tnginx\town/nginx\tmoonshot met\t")
	for _, s := range verified {
		c, n := med[s.name+"/caddy"], med[s.name+"/nginx"]
		for _, t := range targets {
			f := med[s.name+"/"+t.name]
			if !t.fedgate || f == nil {
				continue
			}
			verify := costs[s.name].reference
			own := f.cpuPerReq() - verify
			ratio := func(b *result, limit float64) (string, string) {
				if b == nil || b.cpuPerReq() == 0 {
					return "-", "-"
				}
				r := float64(own) / float64(b.cpuPerReq())
				met := "no"
				if r <= limit {
					met = "yes"
				}
				return fmt.Sprintf("%.2f", r), met
			}
			rc, mc := ratio(c, ownWorkVsCaddy)
			rn, mn := ratio(n, ownWorkVsNginx)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.name, t.name, t.logMode,
				fmtMicros(f.cpuPerReq()), fmtMicros(verify), fmtMicros(own), fmtMicros(cpuOf(c)), rc, mc, fmtMicros(cpuOf(n)), rn, mn)
		}
	}
	tw.Flush()
}

func cpuOf(r *result) time.Duration {
	if r == nil {
		return 0
	}
	return r.cpuPerReq()
}

// fmtMicros prints a duration in microseconds with one decimal, the
// resolution CPU-per-request comparisons need.
func fmtMicros(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}

// verifyTiming is the cost of one signature check of a scenario's request.
type verifyTiming struct {
	msgLen    int           // bytes the signature covers
	reference time.Duration // crypto/ed25519.Verify over those bytes
	fedgate   time.Duration // auth.VerifyRequestWith with the keyring's prepared key, as fedgate checks a header
}

// timeVerify times both ways of checking the scenario's signatures on up
// to 256 of its requests (several origins' keys), in thread CPU time so
// that other processes on the machine do not count.
func timeVerify(e *env, s scenario) verifyTiming {
	type check struct {
		x       auth.XMatrix
		method  string
		uri     string
		content []byte
		pub     ed25519.PublicKey
		key     *auth.Verifier
		msg     []byte
	}
	prepared := map[string]*auth.Verifier{} // per origin, as the keyring keeps them
	var checks []check
	for i := range min(len(s.reqs), 256) {
		r := s.reqs[i]
		xs, err := auth.ParseAuthorization([]string{r.auth})
		if err != nil {
			continue
		}
		c := check{x: xs[0], method: r.method, uri: r.path}
		if r.query != "" {
			c.uri += "?" + r.query
		}
		for _, o := range e.origins {
			if o.name == c.x.Origin {
				c.pub = o.key.Public()
			}
		}
		if c.key = prepared[c.x.Origin]; c.key == nil {
			if c.key, err = auth.NewPrecomputedVerifier(c.pub); err != nil {
				continue
			}
			prepared[c.x.Origin] = c.key
		}
		if len(r.body) > 0 {
			if c.content, err = auth.ContentOf(r.body); err != nil {
				continue
			}
		}
		if c.msg, err = auth.AppendRequestMessage(nil, c.method, c.uri, c.x.Origin, serverName, c.content); err != nil {
			continue
		}
		if !ed25519.Verify(c.pub, c.msg, c.x.Sig) {
			continue // not a request fedgate would accept either
		}
		checks = append(checks, c)
	}
	if len(checks) == 0 {
		return verifyTiming{}
	}
	t := verifyTiming{msgLen: len(checks[0].msg)}
	t.reference = medianCPU(len(checks), func() {
		for _, c := range checks {
			ed25519.Verify(c.pub, c.msg, c.x.Sig)
		}
	})
	t.fedgate = medianCPU(len(checks), func() {
		for _, c := range checks {
			auth.VerifyRequestWith(c.x, c.method, c.uri, serverName, c.content, c.key)
		}
	})
	return t
}

// medianTiming picks the median of each figure over the rounds.
func medianTiming(ts []verifyTiming) verifyTiming {
	if len(ts) == 0 {
		return verifyTiming{}
	}
	pick := func(f func(verifyTiming) time.Duration) time.Duration {
		v := make([]time.Duration, len(ts))
		for i, t := range ts {
			v[i] = f(t)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return verifyTiming{
		msgLen:    ts[0].msgLen,
		reference: pick(func(t verifyTiming) time.Duration { return t.reference }),
		fedgate:   pick(func(t verifyTiming) time.Duration { return t.fedgate }),
	}
}

// medianCPU runs pass 9 times (after one warm-up) on a locked thread and
// returns the median thread CPU time of one pass divided by n.
func medianCPU(n int, pass func()) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pass()
	var d []time.Duration
	for range 9 {
		before := threadCPU()
		pass()
		d = append(d, threadCPU()-before)
	}
	slices.Sort(d)
	return d[len(d)/2] / time.Duration(n)
}

// rusageThread is Linux's RUSAGE_THREAD: the calling thread's usage.
const rusageThread = 1

// threadCPU returns the calling thread's CPU time (user + system); the
// caller must hold its OS thread.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

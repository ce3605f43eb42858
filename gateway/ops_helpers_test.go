package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fedgate/fedgate/internal/fedtest"
)

// opsGateway is a running Gateway with an admin listener and every log
// line it wrote (debug and up) kept for inspection.
type opsGateway struct {
	*testGateway
	admin   string
	logs    *observer.ObservedLogs
	origins []*testOrigin
	path    string // the configuration file
}

// opsConfig is the configuration of opsGateway: the verbs are the data
// folder, the upstream URL, the signing key file and extra TOML appended
// inside [log] (so it may start with log keys; further sections follow in
// their own [section]).
const opsConfig = `
server_name = "gw.test"
data_dir = %q
[upstream]
url = %q
timeout = "5s"
[listen]
federation = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
[keys]
signing_key = %q
[log]
access = true
%s
`

// opsSetup describes an opsGateway.
type opsSetup struct {
	extra   string         // TOML appended inside [log]
	origins []string       // remote servers with key servers fedgate can reach
	options func(*Options) // adjusts the gateway options before New
	hs      *fedtest.Homeserver
}

// startOps starts a gateway in front of a recording homeserver with an
// admin listener on loopback.
func startOps(t *testing.T, s opsSetup) *opsGateway {
	t.Helper()
	hs := s.hs
	if hs == nil {
		hs = fedtest.StartHomeserver(t)
	}
	ca := fedtest.NewCA(t)
	origins := make([]*testOrigin, len(s.origins))
	for i, n := range s.origins {
		origins[i] = newOrigin(t, ca, n)
	}
	extra := s.extra
	if len(origins) > 0 {
		extra += "\n" + outboundTOML(t, ca, origins...)
	}
	core, logs := observer.New(zap.DebugLevel)
	tg := launchGateway(t, gatewaySetup{
		hs:       hs,
		upstream: hs.URL,
		config: func(dataDir, upstream, keyFile string) string {
			return fmt.Sprintf(opsConfig, dataDir, upstream, keyFile, extra)
		},
		logger:  zap.New(core),
		options: s.options,
	})
	gw, path := tg.gw, filepath.Join(tg.dir, "gateway.toml")
	return &opsGateway{testGateway: tg, admin: gw.Addrs(ListenerAdmin)[0].String(), logs: logs, origins: origins, path: path}
}

// get fetches path from the admin listener.
func (og *opsGateway) get(path string) (int, string) {
	og.t.Helper()
	resp, err := http.Get("http://" + og.admin + path)
	if err != nil {
		og.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// sample is one line of the Prometheus text exposition.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape reads /metrics and parses the text exposition.
func (og *opsGateway) scrape() []sample {
	og.t.Helper()
	status, body := og.get("/metrics")
	if status != 200 {
		og.t.Fatalf("/metrics: %d %s", status, body)
	}
	return parseExposition(og.t, body)
}

// parseExposition parses the Prometheus text format (enough of it for
// client_golang's output: no escaped quotes inside label values beyond \"
// and \\, no timestamps).
func parseExposition(t *testing.T, text string) []sample {
	t.Helper()
	var out []sample
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.name = line[:i]
			rest = line[i+1:]
			for {
				eq := strings.IndexByte(rest, '=')
				if eq < 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
					t.Fatalf("bad label in %q", line)
				}
				key := rest[:eq]
				rest = rest[eq+2:]
				var val strings.Builder
				for len(rest) > 0 && rest[0] != '"' {
					if rest[0] == '\\' && len(rest) > 1 {
						switch rest[1] {
						case 'n':
							val.WriteByte('\n')
						default:
							val.WriteByte(rest[1])
						}
						rest = rest[2:]
						continue
					}
					val.WriteByte(rest[0])
					rest = rest[1:]
				}
				s.labels[key] = val.String()
				rest = rest[1:]
				rest = strings.TrimPrefix(rest, ",")
				if strings.HasPrefix(rest, "}") {
					rest = strings.TrimSpace(rest[1:])
					break
				}
			}
		} else {
			name, v, _ := strings.Cut(line, " ")
			s.name, rest = name, v
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			t.Fatalf("bad value in %q: %v", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

// value returns the sum of the samples named name whose labels include
// every "key=value" given, and whether any matched.
func value(samples []sample, name string, labels ...string) (float64, bool) {
	sum, found := 0.0, false
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if s.labels[k] != v {
				continue next
			}
		}
		sum += s.value
		found = true
	}
	return sum, found
}

// wantValue asserts the value of a series.
func wantValue(t *testing.T, samples []sample, want float64, name string, labels ...string) {
	t.Helper()
	got, found := value(samples, name, labels...)
	if !found {
		t.Errorf("%s%v: no such series", name, labels)
		return
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// labelValues lists the distinct values of label across the samples named
// name.
func labelValues(samples []sample, name, label string) []string {
	seen := map[string]bool{}
	for _, s := range samples {
		if s.name == name {
			seen[s.labels[label]] = true
		}
	}
	var out []string
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// settle waits until n inbound requests have finished (metrics and logs
// are written after the response went out) and returns a scrape.
func (og *opsGateway) settle(n float64) []sample {
	og.t.Helper()
	var m []sample
	waitFor(og.t, fmt.Sprintf("%v finished requests", n), func() bool {
		m = og.scrape()
		got, _ := value(m, "fedgate_gateway_requests_total", "direction=inbound")
		return got >= n
	})
	return m
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

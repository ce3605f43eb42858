package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf16"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// preReq is one request signed before the measurement starts.
type preReq struct {
	method, path, query string
	auth                string
	body                []byte
}

// scenario is a kind of request, with many distinct pre-signed instances.
type scenario struct {
	name  string
	local bool // fedgate answers it itself
	reqs  []preReq
}

// scenarioNames lists what -scenarios accepts, in table order.
var scenarioNames = []string{"get-profile", "put-send-2k", "put-send-16k", "put-send-16k-nc", "get-media", "key-document", "well-known"}

// buildScenarios signs distinct requests for each named scenario, spread
// over the origins, with distinct user ids, transaction ids and media ids.
func buildScenarios(names []string, origins []*origin, distinct int) ([]scenario, error) {
	var out []scenario
	for _, name := range names {
		s := scenario{name: name}
		var err error
		switch name {
		case "get-profile":
			s.reqs, err = signMany(origins, distinct, "GET", func(i int) (string, string) {
				return "/_matrix/federation/v1/query/profile", fmt.Sprintf("user_id=%%40user%d%%3A%s&field=displayname", i, serverName)
			}, nil)
		case "put-send-2k", "put-send-16k", "put-send-16k-nc":
			size := 2 << 10
			if name != "put-send-2k" {
				size = 16 << 10
			}
			body := func(o *origin, i int) []byte { return transaction(o.name, i, size) }
			if name == "put-send-16k-nc" {
				// Not canonical: fedgate must canonicalise it to check
				// the signature, as for senders other than Synapse.
				body = func(o *origin, i int) []byte { return nonCanonical(transaction(o.name, i, size)) }
			}
			s.reqs, err = signMany(origins, distinct, "PUT", func(i int) (string, string) {
				return fmt.Sprintf("/_matrix/federation/v1/send/%d", 1700000000000+i), ""
			}, body)
		case "get-media":
			s.reqs, err = signMany(origins, distinct, "GET", func(i int) (string, string) {
				return fmt.Sprintf("/_matrix/federation/v1/media/download/media%d", i), ""
			}, nil)
		case "key-document":
			s.local, s.reqs = true, []preReq{{method: "GET", path: "/_matrix/key/v2/server"}}
		case "well-known":
			s.local, s.reqs = true, []preReq{{method: "GET", path: "/.well-known/matrix/server"}}
		default:
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", name, strings.Join(scenarioNames, ", "))
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func signMany(origins []*origin, n int, method string, target func(int) (string, string), body func(*origin, int) []byte) ([]preReq, error) {
	out := make([]preReq, n)
	for i := range out {
		o := origins[i%len(origins)]
		path, query := target(i)
		uri := path
		if query != "" {
			uri += "?" + query
		}
		var b []byte
		if body != nil {
			b = body(o, i)
		}
		x, err := auth.SignRequest(o.key, method, uri, o.name, serverName, b)
		if err != nil {
			return nil, fmt.Errorf("signing: %w", err)
		}
		out[i] = preReq{method: method, path: path, query: query, auth: x.String(), body: b}
	}
	return out, nil
}

// transaction builds a canonical /send body of about size bytes, as
// Synapse sends it: PDUs with text, hashes and signatures.
func transaction(origin string, txn, size int) []byte {
	var pdus []any
	for i := 0; ; i++ {
		pdus = append(pdus, map[string]any{
			"auth_events":      []any{fmt.Sprintf("$auth%d-%d", txn, i), "$c2Vjb25kLWV2ZW50LWlkLWhhc2gtYmFzZTY0"},
			"content":          map[string]any{"body": fmt.Sprintf("Grüße %d — message %d <b>bold</b>", txn, i), "msgtype": "m.text"},
			"depth":            1000 + i,
			"hashes":           map[string]any{"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
			"origin_server_ts": 1700000000000 + txn,
			"prev_events":      []any{fmt.Sprintf("$prev%d-%d", txn, i)},
			"room_id":          "!OGEhHVWSdvArJzumhm:" + serverName,
			"sender":           "@alice:" + origin,
			"type":             "m.room.message",
			"signatures":       map[string]any{origin: map[string]any{"ed25519:load": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},
		})
		b, err := auth.Marshal(map[string]any{"origin": origin, "origin_server_ts": 1700000000000 + txn, "pdus": pdus, "edus": []any{}})
		if err != nil || len(b) >= size {
			return b
		}
	}
}

// nonCanonical re-encodes canonical JSON the way Python's json.dumps does
// by default (and as other encoders may): members in another order (here
// reversed), ", " and ": " separators, and non-ASCII characters escaped as
// \uXXXX. The content, and so the signature, stays the same.
func nonCanonical(canon []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(canon))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		panic(fmt.Sprintf("fedload: re-encoding a transaction: %v", err))
	}
	return appendPython(nil, v)
}

func appendPython(dst []byte, v any) []byte {
	switch v := v.(type) {
	case map[string]any:
		keys := slices.Sorted(maps.Keys(v))
		slices.Reverse(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = appendASCIIString(dst, k)
			dst = append(dst, ": "...)
			dst = appendPython(dst, v[k])
		}
		return append(dst, '}')
	case []any:
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = appendPython(dst, e)
		}
		return append(dst, ']')
	case string:
		return appendASCIIString(dst, v)
	case json.Number:
		return append(dst, v...)
	case bool:
		return strconv.AppendBool(dst, v)
	case nil:
		return append(dst, "null"...)
	}
	panic(fmt.Sprintf("fedload: unexpected JSON value %T", v))
}

// appendASCIIString writes s as a JSON string with every non-ASCII
// character as \uXXXX (surrogate pairs beyond the BMP).
func appendASCIIString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r < 0x20 || r >= 0x7f:
			if r > 0xffff {
				r1, r2 := utf16.EncodeRune(r)
				dst = fmt.Appendf(dst, "\\u%04x\\u%04x", r1, r2)
			} else {
				dst = fmt.Appendf(dst, "\\u%04x", r)
			}
		default:
			dst = append(dst, byte(r))
		}
	}
	return append(dst, '"')
}

// newClient is the load generator's HTTP/1.1 keep-alive client, with at
// most conns connections to a target.
func newClient(ca *fedtest.CA, conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: ca.Pool(), ServerName: serverName, NextProtos: []string{"http/1.1"}},
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			DisableCompression:  true,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			TLSHandshakeTimeout: 5 * time.Second,
		},
	}
}

// loadSpec bounds one measurement.
type loadSpec struct {
	requests int           // stop after this many
	duration time.Duration // or after this long
	conns    int           // concurrent connections (closed loop)
	rate     float64       // requests per second; 0: as fast as possible
}

// result is one measurement of one scenario against one target.
type result struct {
	target, scenario string
	n, errors        int
	firstError       string
	elapsed          time.Duration
	cpu              time.Duration // the target's CPU time; 0 when unknown
	sideCPU          time.Duration // its side processes' CPU time (redis-server)
	lat              []time.Duration
}

func (r *result) rps() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (r *result) cpuPerReq() time.Duration {
	if r.n == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.n)
}

func (r *result) sideCPUPerReq() time.Duration {
	if r.n == 0 {
		return 0
	}
	return r.sideCPU / time.Duration(r.n)
}

// sideCPU sums the CPU time of the target's side processes.
func sideCPU(t *target) time.Duration {
	var d time.Duration
	for _, pid := range t.side {
		if c, err := procCPU(pid); err == nil {
			d += c
		}
	}
	return d
}

func (r *result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(float64(len(r.lat))*p))]
}

// run drives s against t and measures it. Requests cycle through the
// scenario's pre-signed instances. With a rate, latency is counted from
// when each request was due, so a stalled target cannot hide its queue.
func run(ctx context.Context, client *http.Client, t *target, s scenario, spec loadSpec) (*result, error) {
	res := &result{target: t.name, scenario: s.name}
	lat := make([]time.Duration, spec.requests)
	var next, errs atomic.Int64
	var errOnce sync.Once
	ctx, cancel := context.WithTimeout(ctx, spec.duration)
	defer cancel()
	cpu0, cpuErr := time.Duration(0), error(nil)
	if t.pid != 0 {
		cpu0, cpuErr = procCPU(t.pid)
		if cpuErr != nil {
			return nil, cpuErr
		}
	}
	side0 := sideCPU(t)
	start := time.Now()
	due := func(i int64) time.Time {
		if spec.rate <= 0 {
			return time.Time{}
		}
		return start.Add(time.Duration(float64(i) / spec.rate * float64(time.Second)))
	}
	var wg sync.WaitGroup
	for range spec.conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(spec.requests) {
					return
				}
				from := time.Now()
				if d := due(i); !d.IsZero() {
					if wait := time.Until(d); wait > 0 {
						select {
						case <-time.After(wait):
						case <-ctx.Done():
							return
						}
					}
					from = d
				}
				r := &s.reqs[int(i)%len(s.reqs)]
				status, body, err := do(ctx, client, t.base, r)
				if err != nil && ctx.Err() != nil {
					lat[i] = -1 // cut off by the end of the measurement, not an error
					return
				}
				lat[i] = time.Since(from)
				if err != nil || status/100 != 2 {
					errs.Add(1)
					errOnce.Do(func() {
						if err != nil {
							res.firstError = err.Error()
						} else {
							res.firstError = fmt.Sprintf("%d %s", status, tail(body, 200))
						}
					})
				}
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if t.pid != 0 {
		cpu1, err := procCPU(t.pid)
		if err != nil {
			return nil, err
		}
		res.cpu = cpu1 - cpu0
	}
	res.sideCPU = sideCPU(t) - side0
	n := min(int(next.Load()), spec.requests)
	res.lat = slices.DeleteFunc(slices.Clone(lat[:n]), func(d time.Duration) bool { return d < 0 })
	res.n, res.errors = len(res.lat), int(errs.Load())
	slices.Sort(res.lat)
	return res, nil
}

// do sends one pre-signed request with its exact request-target.
func do(ctx context.Context, client *http.Client, base string, r *preReq) (int, []byte, error) {
	var body io.Reader = http.NoBody
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, base+"/", body)
	if err != nil {
		return 0, nil, err
	}
	req.URL.Opaque = r.path
	req.URL.RawQuery = r.query
	req.Host = serverName
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return resp.StatusCode, b, nil
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil, err
}

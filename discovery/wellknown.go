package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fedgate/fedgate/internal/servername"
)

// Well-known limits and cache periods (spec: default 24 h, at most 48 h,
// errors at most 1 h with exponential backoff).
const (
	maxWellKnownBody    = 64 << 10
	maxWellKnownHeaders = 64 << 10
	maxRedirects        = 5
	wellKnownDefaultTTL = 24 * time.Hour
	wellKnownMaxTTL     = 48 * time.Hour
	// wellKnownMinTTL keeps "no-store" or "max-age=0" from making every
	// request to a server refetch its well-known document.
	wellKnownMinTTL = 5 * time.Minute
	// The n-th failure in a row is cached for wellKnownErrorBase * 2^(n-1),
	// at most wellKnownErrorMax.
	wellKnownErrorBase = 2 * time.Minute
	wellKnownErrorMax  = time.Hour
)

// wkEntry is the cached outcome of a well-known fetch.
type wkEntry struct {
	delegated string    // the m.server value; "" when there is no delegation
	err       error     // why the last fetch failed; nil after a success
	fetched   time.Time // when delegated was fetched
	expires   time.Time // when to fetch again
	failures  int       // failed fetches in a row
	stale     bool      // delegated was kept from an earlier fetch after err
}

func (e *wkEntry) droppable(now time.Time) bool {
	return !now.Before(e.expires) && (e.delegated == "" || now.Sub(e.fetched) >= wellKnownMaxTTL)
}

// wkFetch is the outcome of one fetch, before caching decisions.
type wkFetch struct {
	delegated string
	ttl       time.Duration
	hasTTL    bool // the response's headers gave ttl
	err       error
	transient bool // the server may well answer next time (network, 5xx, 429)
}

// nextWellKnown turns a fetch into the entry to cache, given the previous
// entry (nil if none). After a transient failure a delegation fetched less
// than 48 hours ago is kept (marked stale): a server that is briefly down
// should not be contacted at a worse address meanwhile.
func nextWellKnown(prev *wkEntry, f wkFetch, now time.Time) *wkEntry {
	if f.err == nil {
		ttl := wellKnownDefaultTTL
		if f.hasTTL {
			ttl = min(max(f.ttl, wellKnownMinTTL), wellKnownMaxTTL)
		}
		return &wkEntry{delegated: f.delegated, fetched: now, expires: now.Add(ttl)}
	}
	failures := 1
	if prev != nil {
		failures = prev.failures + 1
	}
	backoff := wellKnownErrorMax
	if failures <= 16 {
		backoff = min(wellKnownErrorBase<<(failures-1), wellKnownErrorMax)
	}
	e := &wkEntry{err: f.err, failures: failures, expires: now.Add(backoff)}
	if f.transient && prev != nil && prev.delegated != "" && now.Sub(prev.fetched) < wellKnownMaxTTL {
		e.delegated, e.fetched, e.stale = prev.delegated, prev.fetched, true
		if limit := prev.fetched.Add(wellKnownMaxTTL); limit.Before(e.expires) {
			e.expires = limit
		}
	}
	return e
}

// wellKnown returns the well-known entry for host, from the cache or by
// fetching it (one fetch per host at a time). The error is ctx's only.
func (r *Resolver) wellKnown(ctx context.Context, host string) (e *wkEntry, cached bool, err error) {
	key := strings.ToLower(host)
	if e, ok := r.wk.get(key); ok && r.now().Before(e.expires) {
		return e, true, nil
	}
	detached := context.WithoutCancel(ctx)
	f := r.wkFlights.start(key, func() (*wkEntry, error) {
		ctx, cancel := context.WithTimeout(detached, r.opts.WellKnownTimeout)
		defer cancel()
		res := r.fetchWellKnown(ctx, host)
		prev, _ := r.wk.get(key)
		now := r.now()
		e := nextWellKnown(prev, res, now)
		r.wk.put(key, e, now)
		if res.err != nil {
			r.log.Debug("well-known fetch failed", "host", host, "error", res.err, "failures", e.failures, "retry_at", e.expires, "stale", e.stale)
		} else {
			r.log.Debug("well-known fetched", "host", host, "m.server", e.delegated, "until", e.expires)
		}
		return e, nil
	})
	e, err = f.wait(ctx)
	return e, false, err
}

// errRedirect marks redirect-policy refusals: definitive, not transient.
type errRedirect struct{ msg string }

func (e *errRedirect) Error() string { return e.msg }

// checkRedirect follows at most maxRedirects https redirects and refuses a
// URL already visited.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return &errRedirect{fmt.Sprintf("more than %d redirects", maxRedirects)}
	}
	if req.URL.Scheme != "https" {
		return &errRedirect{fmt.Sprintf("redirect to non-https URL %s", clip(req.URL.String()))}
	}
	next := req.URL.String()
	for _, v := range via {
		if v.URL.String() == next {
			return &errRedirect{"redirect loop at " + clip(next)}
		}
	}
	return nil
}

// wellKnownURL is the document's address for a host (a DNS name: IP
// literal server names never fetch it).
func wellKnownURL(host string) string {
	return "https://" + host + "/.well-known/matrix/server"
}

// fetchWellKnown GETs https://host/.well-known/matrix/server.
func (r *Resolver) fetchWellKnown(ctx context.Context, host string) wkFetch {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnownURL(host), nil)
	if err != nil {
		return wkFetch{err: err}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", r.opts.UserAgent)
	resp, err := r.wkHTTP.Do(req)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err // the step already shows the URL
		}
		var re *errRedirect
		return wkFetch{err: err, transient: !errors.As(err, &re)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return wkFetch{
			err:       &StatusError{StatusCode: resp.StatusCode},
			transient: resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests,
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxWellKnownBody+1))
	if err != nil {
		return wkFetch{err: fmt.Errorf("reading body: %w", err), transient: true}
	}
	if len(body) > maxWellKnownBody {
		return wkFetch{err: fmt.Errorf("body larger than %d bytes", maxWellKnownBody)}
	}
	delegated, err := parseWellKnown(body)
	if err != nil {
		return wkFetch{err: err}
	}
	ttl, ok := cacheLifetime(resp.Header, r.now())
	return wkFetch{delegated: delegated, ttl: ttl, hasTTL: ok}
}

var utf8BOM = []byte("\xef\xbb\xbf")

// parseWellKnown returns the m.server value of a well-known document,
// whatever Content-Type it came with. The value must be a valid server name.
func parseWellKnown(body []byte) (string, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimPrefix(body, utf8BOM), &doc); err != nil {
		return "", fmt.Errorf("not a JSON object: %w", err)
	}
	raw, ok := doc["m.server"]
	if !ok {
		return "", errors.New(`no "m.server" property`)
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", errors.New(`"m.server" is not a string`)
	}
	if _, err := servername.Parse(s); err != nil {
		return "", fmt.Errorf(`"m.server" %q is not a server name: %w`, clip(s), err)
	}
	return s, nil
}

// newWellKnownClient builds the HTTP client for well-known fetches: TLS
// dialled through the resolver (our DNS, the SSRF guard on every hop), no
// keep-alive (fetches are rare), no proxy from the environment.
func (r *Resolver) newWellKnownClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialTLSContext: r.dialWellKnown,
			DialContext: func(context.Context, string, string) (net.Conn, error) {
				return nil, errors.New("plain HTTP is not used for well-known")
			},
			DisableKeepAlives:      true,
			ResponseHeaderTimeout:  r.opts.ResponseHeaderTimeout,
			MaxResponseHeaderBytes: maxWellKnownHeaders,
		},
		CheckRedirect: checkRedirect,
	}
}

// dialWellKnown connects to addr ("host:port" from the URL) for the
// well-known client: host resolved with A/AAAA (CNAMEs followed), every
// address checked by the guard, tried in order.
func (r *Resolver) dialWellKnown(ctx context.Context, _, addr string) (net.Conn, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("bad port in %q", addr)
	}
	ips, err := r.hostAddrs(ctx, host)
	if err != nil {
		return nil, err
	}
	k := dialKey{tlsName: host, insecure: r.insecureFor(host), guarded: true}
	if ip, err := netip.ParseAddr(host); err == nil {
		k.tlsName = ip.Unmap().String()
	}
	return dialEach(ctx, ips, uint16(port), func(ap netip.AddrPort) (net.Conn, error) {
		k.addr = ap
		return r.dialTLS(ctx, k)
	})
}

// clip shortens remote-supplied text for error messages.
func clip(s string) string {
	const n = 100
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

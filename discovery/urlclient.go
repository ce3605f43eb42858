package discovery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
)

// maxURLRedirects bounds the redirects [URLClient.Get] follows.
const maxURLRedirects = 5

// URLClient fetches plain https URLs for fedgate's own needs (a signed
// federation list), not Matrix server names: the URL's host is resolved
// with the resolver's DNS (A/AAAA, no Matrix discovery), every address
// passes the SSRF guard before and while connecting, and TLS 1.2+ is
// verified against the host with the resolver's roots (Options.RootCAs,
// that is outbound.ca_file). Redirects are followed to https URLs only,
// through the same checks. Connections are not pooled: such fetches are
// minutes apart.
//
// Build it with [NewURLClient]; it is safe for concurrent use.
type URLClient struct {
	r *Resolver
	c *http.Client
}

// NewURLClient returns a URLClient over r. Nothing is contacted.
func NewURLClient(r *Resolver) *URLClient {
	u := &URLClient{r: r}
	tr := &http.Transport{
		DialTLSContext: u.dialTLS,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("only https URLs are fetched")
		},
		DisableKeepAlives:      true,
		ResponseHeaderTimeout:  r.opts.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: maxResponseHeaders,
		ForceAttemptHTTP2:      false,
	}
	u.c = &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxURLRedirects {
				return fmt.Errorf("more than %d redirects", maxURLRedirects)
			}
			if req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to %s refused: https only", req.URL.Redacted())
			}
			return nil
		},
	}
	return u
}

// Get sends GET rawURL with header and returns the status, the response
// headers and the body, which must be at most maxBytes long. Any status is
// returned as it is; errors are transport failures (guard, DNS, dial,
// TLS, a body over maxBytes). ctx bounds the whole exchange.
func (u *URLClient) Get(ctx context.Context, rawURL string, header http.Header, maxBytes int64) (int, http.Header, []byte, error) {
	parsed, err := url.Parse(rawURL)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("bad URL: %w", err)
	}
	if parsed.Scheme != "https" || parsed.Host == "" {
		return 0, nil, nil, fmt.Errorf("%s: only https URLs are fetched", parsed.Redacted())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", u.r.opts.UserAgent)
	}
	resp, err := u.c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("reading %s: %w", parsed.Redacted(), err)
	}
	if int64(len(body)) > maxBytes {
		return 0, nil, nil, fmt.Errorf("%s: response larger than %d bytes", parsed.Redacted(), maxBytes)
	}
	return resp.StatusCode, resp.Header, body, nil
}

// dialTLS resolves and connects addr ("host:port" of an https URL)
// through the guard, then completes a TLS handshake verified for host.
func (u *URLClient) dialTLS(ctx context.Context, _, addr string) (net.Conn, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("bad port in %q", addr)
	}
	raw, err := u.r.DialTCP(ctx, host, uint16(port))
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		ServerName: host,
		RootCAs:    u.r.opts.RootCAs,
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		cfg.ServerName = ip.String() // verified against the IP SANs; no SNI is sent
	}
	conn := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, u.r.opts.TLSTimeout)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, &Error{ServerName: addr, Phase: PhaseTLS, Target: raw.RemoteAddr().String(), Err: err}
	}
	return conn, nil
}

package upstream

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a [Member]; they mirror one [upstream] section. Zero
// durations take the defaults given per field.
type Options struct {
	// URL is the homeserver's base URL, "http://host:port" or
	// "https://host:port": scheme and host only (required).
	URL string
	// HeaderTimeout bounds an exchange from the first byte of the request
	// written until the complete response head arrived. Default 60s.
	HeaderTimeout time.Duration
	// BodyTimeout is the longest pause allowed while reading a response
	// body; past it the body fails with [BodyBroken]. Default 60s.
	BodyTimeout time.Duration
	// DialTimeout bounds connecting: TCP, and the TLS handshake for https.
	// Default 5s.
	DialTimeout time.Duration
	// MaxIdleConns is how many idle keep-alive connections are kept for
	// reuse; more are closed when their exchange ends. 0 keeps none: every
	// request connects anew.
	MaxIdleConns int
	// IdleTimeout closes connections idle for this long. Default 90s.
	IdleTimeout time.Duration
	// CAFile is a PEM bundle trusted, besides the system's roots, for an
	// https URL. Empty: the system's roots only.
	CAFile string
	// RootCAs, when set, are the only roots trusted for an https URL
	// (tests); CAFile is then ignored.
	RootCAs *x509.CertPool
}

// Defaults for [Options].
const (
	DefaultHeaderTimeout = 60 * time.Second
	DefaultBodyTimeout   = 60 * time.Second
	DefaultDialTimeout   = 5 * time.Second
	DefaultIdleTimeout   = 90 * time.Second
)

// MaxHeaderBytes bounds a response head (status line and header fields,
// interim 1xx responses included), as net/http's Transport does.
const MaxHeaderBytes = 1 << 20

// Buffer sizes of a connection. A response head and a small body arrive
// in one read; a larger body streams through the caller's copy buffer.
const (
	readBufferSize = 16 << 10
	copyBufferSize = 32 << 10
	// maxKeptWriteBuffer is the largest request buffer a connection keeps
	// between requests; a larger /send body's buffer is dropped.
	maxKeptWriteBuffer = 64 << 10
)

// Member is one homeserver address with its own connection pool. Create
// it with [New]; it is safe for concurrent use and must not be copied.
type Member struct {
	url      *url.URL
	redacted string
	addr     string      // host:port dialled
	host     string      // Host header when the request has none
	tls      *tls.Config // nil for http
	opts     Options
	dialer   net.Dialer
	copyBufs sync.Pool // *[]byte of copyBufferSize

	mu     sync.Mutex
	idle   []*conn // most recently used last
	closed bool
	sweep  *time.Timer // armed while idle is not empty

	dials, reuses, retries atomic.Uint64
}

// New checks opts and builds a Member. It connects to nothing yet.
func New(opts Options) (*Member, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, &OptionError{Option: "URL", Err: err}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, &OptionError{Option: "URL", Err: fmt.Errorf("%s: scheme must be http or https", u.Redacted())}
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, &OptionError{Option: "URL", Err: fmt.Errorf("%s: must be scheme://host[:port] only", u.Redacted())}
	}
	if opts.MaxIdleConns < 0 {
		return nil, &OptionError{Option: "MaxIdleConns", Err: errors.New("must not be negative")}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.HeaderTimeout, DefaultHeaderTimeout)
	def(&opts.BodyTimeout, DefaultBodyTimeout)
	def(&opts.DialTimeout, DefaultDialTimeout)
	def(&opts.IdleTimeout, DefaultIdleTimeout)
	m := &Member{
		url:      u,
		redacted: u.Redacted(),
		host:     u.Host,
		opts:     opts,
		dialer:   net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second},
	}
	m.copyBufs.New = func() any { b := make([]byte, copyBufferSize); return &b }
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	m.addr = net.JoinHostPort(u.Hostname(), port)
	if u.Scheme == "https" {
		roots := opts.RootCAs
		if roots == nil && opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, &OptionError{Option: "CAFile", Err: err}
			}
			if roots, err = x509.SystemCertPool(); err != nil {
				roots = x509.NewCertPool()
			}
			if !roots.AppendCertsFromPEM(pem) {
				return nil, &OptionError{Option: "CAFile", Err: fmt.Errorf("no certificates in %s", opts.CAFile)}
			}
		}
		m.tls = &tls.Config{
			MinVersion: tls.VersionTLS12,
			ServerName: u.Hostname(),
			RootCAs:    roots,
			// HTTP/1.1 only: requests are written as received, one at a
			// time per connection.
			NextProtos:         []string{"http/1.1"},
			ClientSessionCache: tls.NewLRUClientSessionCache(64),
		}
	}
	return m, nil
}

// URL returns a copy of the member's base URL.
func (m *Member) URL() *url.URL {
	u := *m.url
	return &u
}

// String returns the base URL without credentials, for logs.
func (m *Member) String() string { return m.redacted }

// Stats are counters of a Member since it was built.
type Stats struct {
	Idle    int    // connections idle in the pool now
	Dials   uint64 // connections opened (successful or not)
	Reuses  uint64 // exchanges on a pooled connection
	Retries uint64 // exchanges repeated on a new connection after a pooled one broke
}

// Stats returns the member's counters.
func (m *Member) Stats() Stats {
	m.mu.Lock()
	idle := len(m.idle)
	m.mu.Unlock()
	return Stats{Idle: idle, Dials: m.dials.Load(), Reuses: m.reuses.Load(), Retries: m.retries.Load()}
}

// Close retires the member: idle connections are closed now, busy ones
// when their exchange ends, and none is kept afterwards. Requests may
// still be sent (each on a new connection), so a request that started
// before a reload can finish. Calling Close again is harmless.
func (m *Member) Close() {
	m.mu.Lock()
	m.closed = true
	idle := m.idle
	m.idle = nil
	if m.sweep != nil {
		m.sweep.Stop()
		m.sweep = nil
	}
	m.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// CloseIdle closes the connections idle right now, like
// http.Transport.CloseIdleConnections; the member keeps pooling.
func (m *Member) CloseIdle() {
	m.mu.Lock()
	idle := m.idle
	m.idle = nil
	m.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// getIdle returns a pooled connection that is still open, or nil.
func (m *Member) getIdle(now time.Time) *conn {
	for {
		m.mu.Lock()
		n := len(m.idle)
		if n == 0 {
			m.mu.Unlock()
			return nil
		}
		c := m.idle[n-1]
		m.idle[n-1] = nil
		m.idle = m.idle[:n-1]
		m.mu.Unlock()
		if now.Sub(c.idleSince) < m.opts.IdleTimeout && c.idleAlive() {
			return c
		}
		c.close()
	}
}

// put returns a connection whose exchange ended cleanly to the pool.
func (m *Member) put(c *conn, now time.Time) {
	// No deadline may outlive the exchange: the idle check and the next
	// exchange set their own.
	if c.nc.SetDeadline(time.Time{}) != nil {
		c.close()
		return
	}
	c.idleSince = now
	m.mu.Lock()
	if m.closed || len(m.idle) >= m.opts.MaxIdleConns {
		m.mu.Unlock()
		c.close()
		return
	}
	m.idle = append(m.idle, c)
	if m.sweep == nil {
		m.sweep = time.AfterFunc(m.opts.IdleTimeout, m.sweepIdle)
	}
	m.mu.Unlock()
}

// sweepIdle closes connections idle for IdleTimeout and re-arms itself
// while any are left.
func (m *Member) sweepIdle() {
	now := time.Now()
	var old []*conn
	m.mu.Lock()
	keep := m.idle[:0]
	for _, c := range m.idle { // oldest first
		if now.Sub(c.idleSince) >= m.opts.IdleTimeout {
			old = append(old, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(m.idle[len(keep):])
	m.idle = keep
	m.sweep = nil
	if len(keep) > 0 && !m.closed {
		wait := m.opts.IdleTimeout - now.Sub(keep[0].idleSince)
		m.sweep = time.AfterFunc(wait, m.sweepIdle)
	}
	m.mu.Unlock()
	for _, c := range old {
		c.close()
	}
}

// getCopyBuffer lends a buffer for relaying a body.
func (m *Member) getCopyBuffer() *[]byte      { return m.copyBufs.Get().(*[]byte) }
func (m *Member) putCopyBuffer(b *[]byte)     { m.copyBufs.Put(b) }
func (m *Member) hostFor(req *Request) string { return cmp.Or(req.Host, m.host) }

// methodHasBody reports whether requests with method carry a body, so
// that an empty one still gets "Content-Length: 0".
func methodHasBody(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}

package discovery

import (
	"crypto/x509"
	"log/slog"
	"net/netip"
	"time"
)

// Defaults for zero [Options] fields.
const (
	DefaultDNSTimeout            = 5 * time.Second
	DefaultDialTimeout           = 10 * time.Second
	DefaultTLSTimeout            = 10 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultReadIdleTimeout       = 60 * time.Second
	DefaultWellKnownTimeout      = 15 * time.Second
	DefaultIdleConnTimeout       = 90 * time.Second
	DefaultMaxIdlePerHost        = 8
	DefaultMaxIdleConns          = 1024
	DefaultMaxCacheEntries       = 10000
	DefaultResolvConf            = "/etc/resolv.conf"
	DefaultUserAgent             = "fedgate"
)

// Options configure a [Resolver] and the [Client] built over it. The zero
// value is usable: system resolvers, system roots, every special-purpose
// network refused, default timeouts. Options are copied by [NewResolver];
// changing them afterwards has no effect.
type Options struct {
	// Resolvers are the DNS servers asked, as "IP" or "IP:port" (port 53
	// when omitted), tried in order until one answers. Empty means the
	// nameservers listed in ResolvConf.
	Resolvers []string
	// ResolvConf is the resolv.conf file read when Resolvers is empty; ""
	// means /etc/resolv.conf. Only its nameserver lines are used: names are
	// always looked up as fully qualified, never with search domains.
	ResolvConf string

	// HostsFile is a hosts(5) file consulted before DNS for every address
	// lookup (server names with a port, delegated hosts, SRV targets,
	// well-known hosts, override hosts, CONNECT tunnels), as glibc's
	// "hosts: files dns" does: a name the file lists gets exactly the
	// file's addresses, and DNS is not asked. SRV records still come from
	// DNS. Its addresses pass the SSRF guard like DNS answers. The file is
	// checked for changes at most once a second and re-read when its
	// identity, size or modification time changed; it may not exist (then
	// DNS answers everything), and may be at most [MaxHostsFileSize] bytes.
	// "" means no hosts file; [DefaultHostsFile] is the host's.
	HostsFile string

	// DNSTimeout bounds one DNS exchange with one server (zero: 5 s). A
	// lookup may make several exchanges (UDP then TCP, next server).
	DNSTimeout time.Duration
	// DialTimeout bounds one TCP connect to one address (zero: 10 s).
	DialTimeout time.Duration
	// TLSTimeout bounds one TLS handshake (zero: 10 s).
	TLSTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a response's headers once
	// the request is written (zero: 60 s).
	ResponseHeaderTimeout time.Duration
	// ReadIdleTimeout bounds the wait for the next byte of a response body,
	// and how long an idle pooled connection is kept open (zero: 60 s). A
	// body that keeps flowing is never cut; the caller's context bounds the
	// whole exchange.
	ReadIdleTimeout time.Duration
	// WellKnownTimeout bounds a whole /.well-known/matrix/server fetch,
	// redirects included (zero: 15 s).
	WellKnownTimeout time.Duration

	// RootCAs verifies remote certificates; nil means the system roots.
	// Self-signed certificates are never accepted unless a root in this
	// pool signed them.
	RootCAs *x509.CertPool
	// InsecureSkipVerify lists server-name globs (internal/glob syntax,
	// case-insensitive) whose certificates are not verified. A glob matches
	// the server name as asked or its host without the port. For tests and
	// private test federations only.
	InsecureSkipVerify []string

	// AllowNetworks lists networks the SSRF guard lets through although
	// they are special-purpose (loopback, private, link-local, ...; see
	// [Resolver.CheckAddr]). IPv4-mapped IPv6 prefixes are treated as the
	// IPv4 prefix they map.
	AllowNetworks []netip.Prefix
	// Overrides maps a server name to a fixed "host:port" (host being an IP
	// literal or a DNS name resolved with A/AAAA), skipping discovery: for
	// split-horizon setups. Keys match server names ignoring ASCII case.
	// Override targets are operator-configured and exempt from the SSRF
	// guard; the certificate is still checked against the server name's host
	// and the Host header is the server name.
	Overrides map[string]string

	// MaxIdlePerHost is the number of idle keep-alive connections kept per
	// (TLS name, address) pair (zero: 8; negative: none, every request gets
	// a new connection).
	MaxIdlePerHost int
	// MaxIdleConns caps idle connections over all destinations (zero: 1024).
	MaxIdleConns int
	// MaxCacheEntries caps each cache (DNS answers, well-known results) so
	// that a flood of distinct server names cannot grow memory without bound
	// (zero: 10000). When full, expired entries go first, then arbitrary ones.
	MaxCacheEntries int

	// PortMap rewrites destination ports at dial time, after resolution and
	// after the SSRF guard: {443: 8443} sends well-known fetches meant for
	// port 443 to port 8443. Results and Host headers keep the port discovery
	// chose. Meant for tests, which cannot bind 443 or 8448; in production,
	// leave it empty.
	PortMap map[uint16]uint16

	// UserAgent is sent with well-known fetches (zero: "fedgate").
	// Federation requests carry the caller's own headers.
	UserAgent string

	// Now is the clock for cache expiry; nil means time.Now.
	Now func() time.Time
	// Logger receives debug records about lookups and fetches; nil discards
	// them. Failures are returned, never only logged.
	Logger *slog.Logger
}

// withDefaults returns o with zero fields filled in.
func (o Options) withDefaults() Options {
	setDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setDur(&o.DNSTimeout, DefaultDNSTimeout)
	setDur(&o.DialTimeout, DefaultDialTimeout)
	setDur(&o.TLSTimeout, DefaultTLSTimeout)
	setDur(&o.ResponseHeaderTimeout, DefaultResponseHeaderTimeout)
	setDur(&o.ReadIdleTimeout, DefaultReadIdleTimeout)
	setDur(&o.WellKnownTimeout, DefaultWellKnownTimeout)
	if o.ResolvConf == "" {
		o.ResolvConf = DefaultResolvConf
	}
	if o.MaxIdlePerHost == 0 {
		o.MaxIdlePerHost = DefaultMaxIdlePerHost
	}
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = DefaultMaxIdleConns
	}
	if o.MaxCacheEntries <= 0 {
		o.MaxCacheEntries = DefaultMaxCacheEntries
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

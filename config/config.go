package config

// Config is the whole configuration. A *Config returned by [Load] or [Parse]
// has defaults applied, relative paths made absolute and every value
// validated; it must not be modified.
type Config struct {
	// ServerName is the Matrix server name fronted, e.g. "example.org"
	// (required). It is the X-Matrix destination remote servers sign for and
	// the origin fedgate signs outbound requests with.
	ServerName string `toml:"server_name"`
	// DataDir holds state fedgate creates: generated keys, the keyring
	// cache, self-signed certificates, ACME storage, the egress CA.
	DataDir string `toml:"data_dir"`

	Upstream  Upstream  `toml:"upstream"`
	Listen    Listen    `toml:"listen"`
	Server    Server    `toml:"server"`
	Inbound   Inbound   `toml:"inbound"`
	WellKnown WellKnown `toml:"well_known"`
	Keys      Keys      `toml:"keys"`
	TLS       TLS       `toml:"tls"`
	Outbound  Outbound  `toml:"outbound"`
	Egress    Egress    `toml:"egress"`
	Policy    Policy    `toml:"policy"`
	RateLimit RateLimit `toml:"rate_limit"`
	Log       Log       `toml:"log"`
	Admin     Admin     `toml:"admin"`
	Cluster   Cluster   `toml:"cluster"`

	// File is the absolute path of the file the configuration came from.
	File string `toml:"-"`
	src  *source
}

// Upstream is the internal homeserver fedgate forwards inbound traffic to.
type Upstream struct {
	// URL is the homeserver's federation listener, "http://127.0.0.1:8008"
	// (required; scheme and host only, no path).
	URL string `toml:"url"`
	// Timeout is how long the homeserver may take to send response headers;
	// past it the remote server gets 504.
	Timeout Duration `toml:"timeout"`
	// DialTimeout bounds connecting to the homeserver.
	DialTimeout Duration `toml:"dial_timeout"`
	// MaxIdleConns is the size of the idle keep-alive pool to the homeserver.
	MaxIdleConns int `toml:"max_idle_conns"`
	// CAFile is a PEM bundle to trust when URL is https.
	CAFile string `toml:"ca_file"`
}

// Listen lists the addresses fedgate binds. Empty strings and lists mean
// "do not listen".
type Listen struct {
	// Federation are TLS listeners for federation traffic, e.g. "[::]:8448".
	Federation []string `toml:"federation"`
	// HTTPS are further TLS listeners serving the same handler, e.g. "[::]:443"
	// for well-known delegation.
	HTTPS []string `toml:"https"`
	// HTTP is a plain listener that answers ACME HTTP-01 challenges and
	// redirects everything else to https.
	HTTP string `toml:"http"`
	// Egress is the internal listener the homeserver sends its outbound
	// federation to. Never expose it to the internet.
	Egress string `toml:"egress"`
	// Admin serves /metrics, /healthz, /readyz and /debug/pprof/. Internal.
	Admin string `toml:"admin"`
}

// Server holds HTTP server settings shared by every listener.
type Server struct {
	// ReadHeaderTimeout bounds reading a request's headers (slowloris).
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout Duration `toml:"read_timeout"`
	// WriteTimeout bounds writing a response, measured from the end of the
	// request headers. It must exceed upstream.timeout.
	WriteTimeout Duration `toml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle for this long.
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxHeaderBytes limits the request line plus headers.
	MaxHeaderBytes ByteSize `toml:"max_header_bytes"`
	// ShutdownGrace is how long in-flight requests may run after SIGTERM.
	ShutdownGrace Duration `toml:"shutdown_grace"`
}

// Inbound configures the inbound pipeline.
type Inbound struct {
	// MaxBody limits request bodies (413 M_TOO_LARGE beyond it).
	MaxBody ByteSize `toml:"max_body"`
	// MaxBodySend limits /send transaction bodies (50 PDUs of 64 KiB and 100
	// EDUs need about 3.5 MB).
	MaxBodySend ByteSize `toml:"max_body_send"`
	// Passthrough lists path prefixes outside the endpoint table (such as
	// "/_matrix/federation/unstable/") that are forwarded anyway, after
	// X-Matrix verification. Default: none.
	Passthrough []string `toml:"passthrough"`
}

// WellKnown configures /.well-known/matrix/server.
type WellKnown struct {
	// Server is the m.server value, e.g. "matrix.example.org:443". Empty
	// means fedgate does not serve the well-known document.
	Server string `toml:"server"`
}

// Keys configures the server's signing keys and the keyring of remote keys.
type Keys struct {
	// SigningKey is the key file (Synapse or Dendrite format, detected).
	// Every key in it is current: published in verify_keys and signing the
	// key document. Default: data_dir/signing.key.
	SigningKey string `toml:"signing_key"`
	// Generate creates SigningKey if it does not exist.
	Generate bool `toml:"generate"`
	// ValidFor sets our key document's valid_until_ts = now + ValidFor.
	ValidFor Duration `toml:"valid_for"`
	// RequestKey is the key id used to sign outbound requests. Default: the
	// first key in SigningKey.
	RequestKey string `toml:"request_key"`
	// Old are retired keys, published in old_verify_keys.
	Old []OldKey `toml:"old"`
	// TrustedKeyServers are notaries asked when a direct key fetch fails.
	TrustedKeyServers []TrustedKeyServer `toml:"trusted_key_servers"`
	// Pinned keys are used as they are and never fetched (private
	// federations). A server with any pinned key is never fetched for.
	Pinned []PinnedKey `toml:"pinned"`
	// CacheFile persists fetched remote keys across restarts. Default:
	// data_dir/keyring.json.
	CacheFile string `toml:"cache_file"`
	// FetchTimeout bounds one key fetch (direct or via a notary).
	FetchTimeout Duration `toml:"fetch_timeout"`
	// Notary enables answering /_matrix/key/v2/query for other servers
	// from the keyring. Queries about our own server are always answered.
	Notary bool `toml:"notary"`
}

// OldKey is a retired signing key.
type OldKey struct {
	// KeyID is "ed25519:<version>".
	KeyID string `toml:"key_id"`
	// PublicKey is the unpadded-base64 public key.
	PublicKey string `toml:"public_key"`
	// ExpiredTS is when the key stopped being used, in milliseconds since
	// the Unix epoch.
	ExpiredTS int64 `toml:"expired_ts"`
}

// TrustedKeyServer is a notary with its pinned verify keys.
type TrustedKeyServer struct {
	ServerName string `toml:"server_name"`
	// VerifyKeys maps key ids to unpadded-base64 public keys.
	VerifyKeys map[string]string `toml:"verify_keys"`
}

// PinnedKey is a remote server's key configured by hand.
type PinnedKey struct {
	ServerName string `toml:"server_name"`
	KeyID      string `toml:"key_id"`
	PublicKey  string `toml:"public_key"`
}

// TLS modes.
const (
	TLSModeACME       = "acme"
	TLSModeFiles      = "files"
	TLSModeSelfSigned = "self_signed"
)

// TLS configures certificates for the TLS listeners.
type TLS struct {
	// Mode is "acme", "files" or "self_signed".
	Mode string `toml:"mode"`
	// Names are the certificate's names. acme default: the server name's
	// host (and the well-known delegated host). self_signed default:
	// localhost, 127.0.0.1, ::1.
	Names []string `toml:"names"`
	// Email is the ACME account contact.
	Email string `toml:"email"`
	// CA is the ACME directory: "letsencrypt" (default), "letsencrypt-staging"
	// or a directory URL.
	CA string `toml:"ca"`
	// CARoot is a PEM file of roots to trust for the ACME CA itself
	// (step-ca, Pebble).
	CARoot string `toml:"ca_root"`
	// Storage is certmagic's storage folder. Default: data_dir/acme.
	Storage string `toml:"storage"`
	// CertFile and KeyFile are PEM files for mode "files" (chain included).
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// Outbound configures how fedgate reaches remote servers (key fetches and
// egress).
type Outbound struct {
	// CAFile adds PEM roots to the system pool.
	CAFile string `toml:"ca_file"`
	// InsecureSkipVerify lists server-name globs whose certificates are not
	// checked. For tests only.
	InsecureSkipVerify []string `toml:"insecure_skip_verify"`
	// AllowNetworks lists CIDRs the SSRF guard lets through (private,
	// loopback and other special ranges are refused otherwise).
	AllowNetworks []string `toml:"allow_networks"`
	// Resolvers are DNS servers "IP" or "IP:port". Default: /etc/resolv.conf.
	Resolvers []string `toml:"resolvers"`
	// Overrides maps a server name to a fixed "host:port", skipping
	// discovery (split horizon).
	Overrides map[string]string `toml:"overrides"`
	// DNSTimeout bounds one DNS exchange.
	DNSTimeout Duration `toml:"dns_timeout"`
	// DialTimeout bounds a TCP connect.
	DialTimeout Duration `toml:"dial_timeout"`
	// TLSTimeout bounds a TLS handshake.
	TLSTimeout Duration `toml:"tls_timeout"`
	// ResponseHeaderTimeout bounds waiting for a remote's response headers.
	ResponseHeaderTimeout Duration `toml:"response_header_timeout"`
	// MaxIdlePerHost is the idle keep-alive pool size per destination.
	MaxIdlePerHost int `toml:"max_idle_per_host"`
}

// Egress CONNECT modes.
const (
	ConnectIntercept   = "intercept"
	ConnectPassthrough = "passthrough"
	ConnectOff         = "off"
)

// Egress configures the capture of the homeserver's outbound federation.
type Egress struct {
	// Secret authenticates the homeserver: the Bearer token of Synapse's
	// worker proxy protocol and the Basic password for CONNECT.
	Secret string `toml:"secret"`
	// SecretFile reads Secret from a file instead (trailing newline ignored).
	SecretFile string `toml:"secret_file"`
	// WorkerProxy enables Synapse's matrix-federation:// proxy protocol.
	WorkerProxy bool `toml:"worker_proxy"`
	// Connect is the CONNECT mode: "intercept" (TLS interception with the
	// egress CA), "passthrough" (host-level policy only) or "off".
	Connect string `toml:"connect"`
	// CADir holds the egress CA. Default: data_dir/egress-ca.
	CADir string `toml:"ca_dir"`
	// Timeout bounds one outbound request end to end.
	Timeout Duration `toml:"timeout"`
	// RequireSignature refuses intercepted or proxied requests that are not
	// signed by one of our own keys (origin = server_name).
	RequireSignature bool `toml:"require_signature"`
}

// Policy defaults.
const (
	PolicyAllow = "allow"
	PolicyDeny  = "deny"
)

// Policy configures who may federate with us and what they may do.
type Policy struct {
	// Default is "allow" (open federation with a deny list) or "deny"
	// (closed federation: only Allow entries).
	Default string `toml:"default"`
	// Allow and Deny are server names, globs ("*.example.org") or regular
	// expressions written "re:...". Deny wins over Allow.
	Allow []string `toml:"allow"`
	Deny  []string `toml:"deny"`
	// AllowNetworks and DenyNetworks are CIDRs matched against the inbound
	// peer's address.
	AllowNetworks []string `toml:"allow_networks"`
	DenyNetworks  []string `toml:"deny_networks"`
	// ListFile is an external JSON list {"version":N,"allow":[...],"deny":[...]}
	// reloaded when it changes.
	ListFile string `toml:"list_file"`
	// ListMaxAge fails closed when ListFile has not been refreshed for this
	// long. Zero disables the check.
	ListMaxAge Duration `toml:"list_max_age"`
	// DenyEndpoints are endpoint classes or operation names refused for
	// every origin.
	DenyEndpoints []string `toml:"deny_endpoints"`
	// DenyRooms are room IDs, or globs on the room ID such as "*:evil.example",
	// refused on every endpoint whose path names a room.
	DenyRooms []string `toml:"deny_rooms"`
	// LocalityChecks enforces the spec's rules on whose users a request may
	// name (query/profile, user/devices, user/keys ask about our users;
	// make_join/make_leave/make_knock name the origin's users).
	LocalityChecks bool `toml:"locality_checks"`
	// DryRun evaluates everything and logs what would be denied, denying
	// nothing.
	DryRun bool `toml:"dry_run"`
	// Origins overrides endpoint rules per origin; keys are server names or
	// globs.
	Origins map[string]OriginRule `toml:"origins"`
}

// OriginRule overrides endpoint rules for matching origins.
type OriginRule struct {
	// DenyEndpoints are refused for this origin in addition to the global list.
	DenyEndpoints []string `toml:"deny_endpoints"`
	// AllowEndpoints are exempt from the global DenyEndpoints for this origin.
	AllowEndpoints []string `toml:"allow_endpoints"`
}

// RateLimit configures rate and concurrency limits.
type RateLimit struct {
	// PerIP limits requests per peer address, before authentication.
	PerIP Limit `toml:"per_ip"`
	// PerOrigin limits requests per authenticated origin.
	PerOrigin Limit `toml:"per_origin"`
	// ConcurrentPerOrigin caps in-flight requests per origin; 0 is unlimited.
	ConcurrentPerOrigin int `toml:"concurrent_per_origin"`
	// ConcurrentWait is how long a request over the cap may queue before 429.
	ConcurrentWait Duration `toml:"concurrent_wait"`
	// Classes are per-origin limits for endpoint classes or operation names
	// (e.g. media, send), applied in addition to PerOrigin.
	Classes map[string]Limit `toml:"classes"`
	// PerDestination limits egress requests per destination server.
	PerDestination Limit `toml:"per_destination"`
	// IdleEviction forgets a limiter unused for this long, so memory stays
	// bounded under a flood of distinct addresses or origins.
	IdleEviction Duration `toml:"idle_eviction"`
	// Exempt are server names or globs no per-origin limit applies to.
	Exempt []string `toml:"exempt"`
}

// Log configures logging.
type Log struct {
	// Level is "debug", "info", "warn" or "error".
	Level string `toml:"level"`
	// Format is "json" or "console".
	Format string `toml:"format"`
	// Access logs one line per request.
	Access bool `toml:"access"`
	// Decisions is where a log of denials only goes: "" (off), "stderr",
	// "stdout" or a file path.
	Decisions string `toml:"decisions"`
	// HashServerNames replaces server names in logs with keyed hashes.
	HashServerNames bool `toml:"hash_server_names"`
	// HashKeyFile holds the hashing key; default data_dir/log-hash.key,
	// created when missing.
	HashKeyFile string `toml:"hash_key_file"`
}

// Admin configures the admin listener.
type Admin struct {
	// Pprof serves /debug/pprof/.
	Pprof bool `toml:"pprof"`
	// Peers are server names that get their own metric label; every other
	// server is counted as "other".
	Peers []string `toml:"peers"`
	// ReadyWindow: /readyz fails if the homeserver has not been reachable
	// within this long.
	ReadyWindow Duration `toml:"ready_window"`
}

// Cluster makes several fedgate instances share their state in Redis (or
// Valkey): rate limits, the keyring of remote keys with its fetch locks and
// failure backoff, the egress backoff, and ACME storage. Without a
// [cluster] section (Redis empty) everything stays in the process. Every
// key of [cluster] needs a restart: a reload keeps the running settings
// and logs a warning. A reload changes only the instance that reloads. When Redis is unreachable or slower than
// Timeout, no request fails because of it: each instance falls back to its
// own state until Redis answers again (docs/cluster.md).
type Cluster struct {
	// Redis is the server's URL: "redis://[user:password@]host:port/db" or
	// "rediss://..." for TLS, e.g. "redis://127.0.0.1:6379/0". Empty (the
	// default) disables cluster mode. Needs a restart.
	Redis string `toml:"redis"`
	// PasswordFile reads the Redis password from a file (trailing newline
	// ignored) instead of the URL. Default: none. Needs a restart.
	PasswordFile string `toml:"password_file"`
	// CAFile is a PEM bundle trusted for a rediss:// server instead of the
	// system roots. Default: the system roots. Needs a restart.
	CAFile string `toml:"ca_file"`
	// Prefix starts every key fedgate writes, so that several deployments
	// can share one Redis. Every instance of one cluster must use the same
	// prefix. Default "fedgate:". Needs a restart.
	Prefix string `toml:"prefix"`
	// Node is this instance's name in logs, metrics and lock owners.
	// Default: the host name. Needs a restart.
	Node string `toml:"node"`
	// Timeout bounds one Redis round trip (and connecting); past it the
	// request uses this instance's own state instead. Default "50ms".
	// Needs a restart.
	Timeout Duration `toml:"timeout"`
}

// Enabled reports whether cluster mode is on.
func (c Cluster) Enabled() bool { return c.Redis != "" }

package config

import "strings"

// Config is the whole configuration. A *Config returned by [Load] or [Parse]
// has defaults applied, relative paths made absolute and every value
// validated; it must not be modified.
type Config struct {
	// ServerName is the Matrix server name fronted, e.g. "example.org"
	// (required). It is the X-Matrix destination remote servers sign for and
	// the origin fedgate signs outbound requests with.
	ServerName string `toml:"server_name"`
	// DataDir holds state fedgate creates: generated keys, the keyring
	// cache, self-signed certificates, ACME storage, the egress CA. Paths
	// whose default lies under it follow it. Changing it needs a restart.
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

	// Servers are further server names hosted behind the same listeners
	// ([[servers]] tables; default: none). The top-level settings are the
	// first hosted server; each entry adds one with its own keys,
	// upstream, delegation, certificate names, policy, rate limits and
	// egress secret. Sections an entry omits are inherited from the top
	// level where that makes sense (policy, rate_limit, the tls account
	// settings), never keys, upstream or well_known: see [HostedServer] and
	// docs/multiple-servers.md. A reload adds and removes servers without
	// a restart; requests in flight for the others are not disturbed.
	Servers []HostedServer `toml:"servers"`

	// File is the absolute path of the file the configuration came from.
	File string `toml:"-"`
	src  *source
	// scope is set on the configuration of a [[servers]] entry returned
	// by [Config.Hosted]; nil on the top-level configuration.
	scope *serverScope
}

// Upstream is the internal homeserver fedgate forwards inbound traffic to:
// one process (url), or a pool of equivalent processes (urls) with routes
// that send some endpoints to pools of their own, such as homeserver
// workers (docs/upstream-pools.md). Every setting applies on reload;
// requests under way finish on the members they started with.
type Upstream struct {
	// URL is the homeserver's federation listener, "http://127.0.0.1:8008"
	// (required unless urls is set; scheme and host only, no path).
	URL string `toml:"url"`
	// URLs are several equivalent homeserver processes for the default
	// pool, which takes every endpoint no [[upstream.route]] takes, e.g.
	// ["http://127.0.0.1:8008", "http://127.0.0.1:8009"]; instead of url.
	URLs []string `toml:"urls"`
	// Balance is how the default pool spreads requests over urls:
	// "round_robin" (default), "origin" (every request of one verified
	// origin server goes to the same member, by a consistent hash: adding
	// or removing a member moves only that member's share) or
	// "least_busy" (the member with the fewest requests under way).
	// Requests without X-Matrix authentication are taken in turn in an
	// "origin" pool.
	Balance string `toml:"balance"`
	// Timeout is how long the homeserver may take to send response headers,
	// counted from the first byte of the request sent; past it the remote
	// server gets 504. Default 60s. Applies to requests started after a
	// reload.
	Timeout Duration `toml:"timeout"`
	// BodyTimeout is the longest the homeserver may pause while sending a
	// response body. Past it a /send answer (read in full before relaying)
	// becomes 504, and any other response, already being relayed, is cut
	// off (the remote server sees its connection close, never a short body
	// taken for whole). Default 60s. Applies to requests started after a
	// reload.
	BodyTimeout Duration `toml:"body_timeout"`
	// DialTimeout bounds connecting to the homeserver.
	DialTimeout Duration `toml:"dial_timeout"`
	// MaxIdleConns is the size of the idle keep-alive pool to the homeserver
	// (HTTP/1.1 connections, each carrying one request at a time; idle ones
	// close after 90s), per member. 0 keeps none: every request connects
	// anew. Default 256.
	MaxIdleConns int `toml:"max_idle_conns"`
	// CAFile is a PEM bundle to trust when URL is https.
	CAFile string `toml:"ca_file"`
	// ProbePath is the request-target fedgate GETs from every member to
	// check that it is up, and from the homeserver for /readyz. Any answer
	// below 500 counts as up (a media worker's 404 too). Default
	// "/_matrix/federation/v1/version".
	ProbePath string `toml:"probe_path"`
	// ProbeInterval is how often every member is probed. Default (unset): a
	// third of admin.ready_window, between 200ms and 10s (10s with the
	// default window). Probes run when there is an admin listener or some
	// pool has more than one member.
	ProbeInterval Duration `toml:"probe_interval"`
	// ProbeTimeout bounds one probe. Default 5s.
	ProbeTimeout Duration `toml:"probe_timeout"`
	// DownPeriod is how long a member is skipped after it refused a
	// connection, broke one before answering, sent no response headers
	// within timeout, or failed a probe; each further failure in a row
	// doubles it, up to down_period_max. A member that answers (a request
	// or a probe) is used again at once. Its requests go to the other
	// members of its pool meanwhile; when every member is down they are
	// still tried. Default 5s.
	DownPeriod Duration `toml:"down_period"`
	// DownPeriodMax caps the doubling of down_period. Default 1m.
	DownPeriodMax Duration `toml:"down_period_max"`
	// Routes send some endpoints to pools of their own: the first route
	// that names an endpoint takes it; the default pool takes the rest.
	Routes []UpstreamRoute `toml:"route"`
}

// UpstreamRoute is one [[upstream.route]]: a pool of members and the
// endpoints it takes, e.g. /send to federation reader workers balanced by
// origin, or media to a media repository worker. Routes apply on reload.
type UpstreamRoute struct {
	// Name names the route's pool in /readyz, metrics (label pool), the
	// console and logs: lower-case letters, digits, '_' and '-', at most 32,
	// not "default". Default: its endpoints joined by "+", e.g. "send" or
	// "events+query".
	Name string `toml:"name"`
	// Endpoints are the endpoint classes or operation names the route
	// takes, the same names as policy.deny_endpoints (e.g. "send",
	// "media", "events", "backfill") (required). Endpoints fedgate serves
	// itself (keys, notary, well_known) cannot be routed. An endpoint an
	// earlier route already takes is an error; a class after a route that
	// took one of its operations takes the rest of the class.
	Endpoints []string `toml:"endpoints"`
	// URLs are the route's members, as upstream.urls (required).
	URLs []string `toml:"urls"`
	// Balance is how the route spreads requests over urls, as
	// upstream.balance. Default "round_robin"; use "origin" for "send".
	Balance string `toml:"balance"`
}

// PoolName is the name of the route's pool: Name, or its endpoints joined
// by "+".
func (r UpstreamRoute) PoolName() string {
	if r.Name != "" {
		return r.Name
	}
	return strings.Join(r.Endpoints, "+")
}

// MemberURLs are the default pool's members: url, or urls.
func (u Upstream) MemberURLs() []string {
	if u.URL != "" {
		return []string{u.URL}
	}
	return u.URLs
}

// Listen lists the addresses fedgate binds. Empty strings and lists mean
// "do not listen". Listeners are bound once: changing any of them needs a
// restart.
type Listen struct {
	// Federation are TLS listeners for federation traffic, e.g. "[::]:8448".
	// Changing it needs a restart.
	Federation []string `toml:"federation"`
	// HTTPS are further TLS listeners serving the same handler, e.g. "[::]:443"
	// for well-known delegation. Changing it needs a restart.
	HTTPS []string `toml:"https"`
	// HTTP is a plain listener that answers ACME HTTP-01 challenges and
	// redirects everything else to https. Changing it needs a restart.
	HTTP string `toml:"http"`
	// Egress is the internal listener the homeserver sends its outbound
	// federation to. Never expose it to the internet. Changing it needs a
	// restart.
	Egress string `toml:"egress"`
	// Admin serves the console (/ and /status.json), /metrics, /healthz,
	// /readyz and /debug/pprof/. Internal. Changing it needs a restart.
	Admin string `toml:"admin"`
}

// Server holds HTTP server settings shared by every listener. They are
// fixed when the listeners start: changing them needs a restart.
type Server struct {
	// ReadHeaderTimeout bounds reading a request's headers (slowloris).
	// Changing it needs a restart.
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included. Changing
	// it needs a restart.
	ReadTimeout Duration `toml:"read_timeout"`
	// WriteTimeout bounds writing a response, measured from the end of the
	// request headers. It must exceed upstream.timeout. Changing it needs a
	// restart.
	WriteTimeout Duration `toml:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle for this long.
	// Changing it needs a restart.
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxHeaderBytes limits the request line plus headers. Changing it
	// needs a restart.
	MaxHeaderBytes ByteSize `toml:"max_header_bytes"`
	// ShutdownGrace is how long in-flight requests may run after SIGTERM.
	// The value at start applies: changing it needs a restart.
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
	// Generate creates SigningKey when fedgate starts and it does not
	// exist. A reload never creates a key: this needs a restart.
	Generate bool `toml:"generate"`
	// ValidFor sets our key document's valid_until_ts = now + ValidFor.
	ValidFor Duration `toml:"valid_for"`
	// RequestKey is the key id used to sign outbound requests. Default: the
	// first key in SigningKey.
	RequestKey string `toml:"request_key"`
	// Old are retired keys, published in old_verify_keys.
	Old []OldKey `toml:"old"`
	// TrustedKeyServers are notaries asked when a direct key fetch fails.
	// The keyring is built once: changing them needs a restart.
	TrustedKeyServers []TrustedKeyServer `toml:"trusted_key_servers"`
	// Pinned keys are used as they are and never fetched (private
	// federations). A server with any pinned key is never fetched for.
	// Changing them needs a restart.
	Pinned []PinnedKey `toml:"pinned"`
	// CacheFile persists fetched remote keys across restarts. Default:
	// data_dir/keyring.json. Changing it needs a restart.
	CacheFile string `toml:"cache_file"`
	// FetchTimeout bounds one key fetch (direct or via a notary). Changing
	// it needs a restart.
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
	// ServerName is the notary's server name (required), e.g. "matrix.org".
	ServerName string `toml:"server_name"`
	// VerifyKeys maps key ids to unpadded-base64 public keys.
	VerifyKeys map[string]string `toml:"verify_keys"`
}

// PinnedKey is a remote server's key configured by hand.
type PinnedKey struct {
	// ServerName is the server whose key this is (required).
	ServerName string `toml:"server_name"`
	// KeyID is the key's id, "ed25519:<version>" (required).
	KeyID string `toml:"key_id"`
	// PublicKey is the unpadded-base64 public key (required).
	PublicKey string `toml:"public_key"`
}

// TLS modes.
const (
	TLSModeACME       = "acme"
	TLSModeFiles      = "files"
	TLSModeSelfSigned = "self_signed"
)

// TLS configures certificates for the TLS listeners. The certificate
// manager is built once: changing any of these needs a restart (the
// certificate files of mode "files" are re-read by themselves and on
// SIGHUP).
type TLS struct {
	// Mode is "acme", "files" or "self_signed". Changing it needs a restart.
	Mode string `toml:"mode"`
	// Names are the certificate's names. acme default: the server name's
	// host (and the well-known delegated host). self_signed default:
	// localhost, 127.0.0.1, ::1. Changing them needs a restart.
	Names []string `toml:"names"`
	// Email is the ACME account contact. Changing it needs a restart.
	Email string `toml:"email"`
	// CA is the ACME directory: "letsencrypt" (default), "letsencrypt-staging"
	// or a directory URL. Changing it needs a restart.
	CA string `toml:"ca"`
	// CARoot is a PEM file of roots to trust for the ACME CA itself
	// (step-ca, Pebble). Changing it needs a restart.
	CARoot string `toml:"ca_root"`
	// Storage is certmagic's storage folder. Default: data_dir/acme.
	// Changing it needs a restart.
	Storage string `toml:"storage"`
	// CertFile is the PEM certificate chain for mode "files" (leaf first).
	// Its content is re-read when it changes; naming another file needs a
	// restart.
	CertFile string `toml:"cert_file"`
	// KeyFile is the PEM private key for mode "files" (PKCS#8, PKCS#1 or
	// EC). Its content is re-read when it changes; naming another file
	// needs a restart.
	KeyFile string `toml:"key_file"`
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
	// HostsFile is a hosts(5) file consulted before DNS for every address
	// lookup of discovery (as glibc's "hosts: files dns" does): a name it
	// lists gets exactly its addresses. SRV records still come from DNS,
	// and its addresses obey the SSRF guard (allow_networks) like DNS
	// answers. It is re-read when it changes, without a restart; a missing
	// file means DNS only; at most 8 MiB. "" turns it off. Default:
	// /etc/hosts.
	HostsFile string `toml:"hosts_file"`
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
	// SecretFile reads the secret from a file instead (trailing newline
	// ignored).
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
	// Allow lists server names, globs ("*.example.org") or regular
	// expressions written "re:..." that may federate; it matters with
	// Default "deny". Deny wins over Allow.
	Allow []string `toml:"allow"`
	// Deny lists server names, globs or "re:" regular expressions refused
	// in both directions. Deny wins over Allow.
	Deny []string `toml:"deny"`
	// AllowNetworks are CIDRs (or addresses) of inbound peers: when set, a
	// peer outside them is refused.
	AllowNetworks []string `toml:"allow_networks"`
	// DenyNetworks are CIDRs (or addresses) of inbound peers that are
	// refused, before anything else is read.
	DenyNetworks []string `toml:"deny_networks"`
	// ListFile is an external JSON list {"version":N,"allow":[...],"deny":[...]}
	// reloaded when it changes. With ListSignature = "jws" the file holds
	// that list signed as a compact JWS instead. Set ListFile or ListURL,
	// not both.
	ListFile string `toml:"list_file"`
	// ListURL is an https URL the federation list is fetched from, as a
	// compact JWS (it requires ListSignature = "jws" and ListTrust): every
	// ListRefresh, with If-None-Match, over the [outbound] TLS settings
	// (outbound.ca_file) and SSRF guard (outbound.allow_networks). The
	// last good list is kept in data_dir/federation-list-<hash>.jws, so a
	// restart while the URL cannot be reached keeps enforcing it. Default:
	// none. A reload applies a change.
	ListURL string `toml:"list_url"`
	// ListSignature is "" (the list is plain JSON; list_file only) or
	// "jws": the list must be a compact JWS (RFC 7515, ES256 or EdDSA)
	// whose protected header carries the signer's certificate chain (x5c)
	// reaching a root in ListTrust, valid at the time of use. A list with a
	// bad signature, an untrusted or expired chain, another algorithm or a
	// lower version than the last good one is refused and the last good
	// list stays. Default: "". A reload applies a change.
	ListSignature string `toml:"list_signature"`
	// ListTrust is a PEM file of the root certificates a signed list's x5c
	// chain must reach (required with ListSignature = "jws"). It is read
	// again on every reload.
	ListTrust string `toml:"list_trust"`
	// ListRefresh is how often ListURL is fetched. Default: "5m". It must
	// be shorter than ListMaxAge when that is set. A reload applies a
	// change.
	ListRefresh Duration `toml:"list_refresh"`
	// ListMaxAge fails closed (list_stale) when the list has not been
	// confirmed for this long: ListFile not rewritten, or ListURL not
	// fetched and verified successfully. Zero disables the check: a list
	// that cannot be refreshed keeps its last good state.
	ListMaxAge Duration `toml:"list_max_age"`
	// Rooms are moderation policy rooms ([[policy.rooms]]) whose m.ban
	// server rules become deny entries. See [PolicyRoom]. Default: none.
	// A reload applies a change: rooms added, removed or changed are
	// (re)started, the others keep syncing.
	Rooms []PolicyRoom `toml:"rooms"`
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

// Policy room apply modes.
const (
	ApplyDeny   = "deny"
	ApplyDryRun = "dry_run"
)

// DefaultPolicyRoomMaxRules is the default of [PolicyRoom.MaxRules].
const DefaultPolicyRoomMaxRules = 50000

// PolicyRoom is one moderation policy room ("ban list") fedgate subscribes
// to through the client-server API of a homeserver, with a bot account
// that can join it. Its m.policy.rule.server rules (and the legacy
// m.room.rule.server and org.matrix.mjolnir.rule.server) with the
// recommendation m.ban (or org.matrix.mjolnir.ban) deny the servers their
// entity glob matches, for every room at once; other recommendations are
// ignored, and user and room rules are out of scope. Changes apply within
// seconds; the last good rule set is kept in data_dir/policy-rooms/.
type PolicyRoom struct {
	// Room is the room ID ("!abc:example.org") or alias
	// ("#community-bans:example.org") of the policy room (required).
	// Aliases are resolved through Homeserver; room upgrades
	// (m.room.tombstone) are followed.
	Room string `toml:"room"`
	// Homeserver is the client-server API base URL of a homeserver the bot
	// account lives on, "http://127.0.0.1:8008". Default: upstream.url (or
	// the first of upstream.urls; with Synapse workers, the main process);
	// in a [servers.policy] table, that hosted server's own. An https URL
	// is verified with upstream.ca_file added to the system roots.
	Homeserver string `toml:"homeserver"`
	// AccessTokenFile holds the bot account's access token (required; one
	// line, read again when the homeserver refuses the token). Keep it
	// readable by fedgate only.
	AccessTokenFile string `toml:"access_token_file"`
	// Apply is "deny" (default: ban rules deny, reason codes origin_banned
	// and destination_banned) or "dry_run" (matches are logged and counted
	// as dry-run denials; nothing is denied because of this room).
	Apply string `toml:"apply"`
	// MaxAge, when set, fails closed (ban_list_stale: every origin and
	// destination is denied) once the room has not been read successfully
	// for this long, like list_max_age. Default: 0, off: a room that cannot
	// be read keeps its last rule set. At least "1m" (a healthy sync
	// answers every 30 s).
	MaxAge Duration `toml:"max_age"`
	// MaxRules bounds the rules taken from the room (default 50000). A
	// room with more is truncated with an error in the log and in /readyz:
	// a hostile or broken room cannot make fedgate's memory grow without
	// bound.
	MaxRules int `toml:"max_rules"`
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
	// Level is "debug", "info", "warn" or "error". The logger is built at
	// start: changing it needs a restart.
	Level string `toml:"level"`
	// Format is "json" or "console". Changing it needs a restart.
	Format string `toml:"format"`
	// Access logs one line per request.
	Access bool `toml:"access"`
	// AccessBuffer collects access log lines in memory, up to this size,
	// and writes them together at least once a second, instead of one
	// write system call per request; 0 (the default) writes each line as
	// its request ends. "64KiB" saves that write system call, about half
	// of what the access log costs per request (docs/performance.md). The
	// price: lines reach the log up to a second late (their ts field still
	// says when the request ended), possibly after error lines written
	// meanwhile, and the lines of the last second are lost if fedgate is
	// killed or crashes. At most 16MiB. The logger is built at start:
	// changing it needs a restart.
	AccessBuffer ByteSize `toml:"access_buffer"`
	// Decisions is where a log of denials only goes: "" (off), "stderr",
	// "stdout" or a file path.
	Decisions string `toml:"decisions"`
	// HashServerNames replaces server names in logs with keyed hashes.
	HashServerNames bool `toml:"hash_server_names"`
	// HashKeyFile holds the hashing key; default data_dir/log-hash.key,
	// created when missing.
	HashKeyFile string `toml:"hash_key_file"`
}

// HostedServer is one [[servers]] entry: a further server name fedgate hosts
// behind the same listeners. Each field is the section of the same name,
// scoped to this server; the doc comments of the top-level sections
// describe their keys. What a missing section or key means:
//
//   - server_name and upstream.url (or upstream.urls) are required.
//   - upstream, keys and well_known are this server's own and are never
//     inherited: a missing key takes its default. keys.signing_key
//     defaults to data_dir/servers/<server_name>/signing.key.
//   - policy and rate_limit are inherited whole from the top level when
//     the entry has no such table; a table written here replaces the
//     top-level one entirely (keys it leaves out take their defaults).
//   - tls: names are this server's own (default as at the top level,
//     derived from this server's name and well_known); mode, email, ca,
//     ca_root, storage, cert_file and key_file are inherited key by key.
//   - egress: only secret and secret_file may be set (this server's
//     homeserver's credentials, never inherited); the rest of [egress] is
//     the listener's and applies to every server.
//   - keys.trusted_key_servers, keys.pinned, keys.cache_file and
//     keys.fetch_timeout configure the shared keyring: top level only.
type HostedServer struct {
	// ServerName is this server's Matrix server name (required), e.g.
	// "b.example". It must differ from every other hosted name.
	ServerName string `toml:"server_name"`
	// Upstream is this server's homeserver ([servers.upstream], required:
	// url or urls), with every key of [upstream]: its own pools
	// ([[servers.upstream.route]]), balance and health settings. Never
	// inherited; keys it leaves out take their defaults. Its members'
	// health is kept apart from every other hosted server's, even for the
	// same URL. Applied on reload.
	Upstream Upstream `toml:"upstream"`
	// WellKnown is this server's delegation ([servers.well_known]).
	// Default: not served. Never inherited.
	WellKnown WellKnown `toml:"well_known"`
	// Keys are this server's signing keys ([servers.keys]): signing_key
	// (default data_dir/servers/<server_name>/signing.key), generate,
	// valid_for, request_key, notary and [[servers.keys.old]]. Never
	// inherited. The keyring's keys (trusted_key_servers, pinned,
	// cache_file, fetch_timeout) are refused here.
	Keys Keys `toml:"keys"`
	// TLS are this server's certificate settings ([servers.tls]): names
	// are its own (default derived from server_name and well_known as at
	// the top level); mode, email, ca, ca_root, storage, cert_file and
	// key_file are inherited key by key from [tls].
	TLS TLS `toml:"tls"`
	// Policy is this server's federation policy ([servers.policy]).
	// Default: the top-level [policy], whole; a table here replaces it
	// entirely. Applied on reload.
	Policy Policy `toml:"policy"`
	// RateLimit are this server's limits ([servers.rate_limit]). Default:
	// the top-level [rate_limit], whole (its settings; the buckets are
	// this server's own). Applied on reload.
	RateLimit RateLimit `toml:"rate_limit"`
	// Egress holds this server's homeserver's egress credentials
	// ([servers.egress]): secret or secret_file only, unique among the
	// hosted servers, never inherited. Without one, this homeserver cannot
	// use the worker proxy protocol. The other [egress] keys configure the
	// listener and are refused here.
	Egress Egress `toml:"egress"`
}

// Admin configures the admin listener.
type Admin struct {
	// Pprof serves /debug/pprof/.
	Pprof bool `toml:"pprof"`
	// Peers are server names that get their own metric label; every other
	// server is counted as "other".
	Peers []string `toml:"peers"`
	// ReadyWindow is how long the homeserver may go unreachable before
	// /readyz fails.
	ReadyWindow Duration `toml:"ready_window"`
	// TokenFile is a file holding the admin token (a string): when set,
	// the console (GET /) and /status.json on the admin listener answer
	// only requests with "Authorization: Bearer <token>" (or HTTP Basic
	// with the token as password, so a browser can ask for it); /metrics,
	// /healthz, /readyz and /debug/pprof/ stay as they are. The token must
	// have at least 16 characters and no whitespace; surrounding
	// whitespace and the final newline are ignored. Default "" (no
	// token). The file is read again on every reload (SIGHUP), so a new
	// token applies without a restart. Relative paths are taken from the
	// configuration file's folder.
	TokenFile string `toml:"token_file"`
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
	// default) disables cluster mode. A change needs a restart.
	Redis string `toml:"redis"`
	// PasswordFile reads the Redis password from a file (trailing newline
	// ignored) instead of the URL. Default: none. A change needs a restart.
	PasswordFile string `toml:"password_file"`
	// CAFile is a PEM bundle trusted for a rediss:// server instead of the
	// system roots. Default: the system roots. A change needs a restart.
	CAFile string `toml:"ca_file"`
	// Prefix starts every key fedgate writes, so that several deployments
	// can share one Redis. Every instance of one cluster must use the same
	// prefix. Default "fedgate:". A change needs a restart.
	Prefix string `toml:"prefix"`
	// Node is this instance's name in logs, metrics and lock owners.
	// Default: the host name. A change needs a restart.
	Node string `toml:"node"`
	// Timeout bounds one Redis round trip (and connecting); past it the
	// request uses this instance's own state instead. Default "50ms".
	// A change needs a restart.
	Timeout Duration `toml:"timeout"`
}

// Enabled reports whether cluster mode is on.
func (c Cluster) Enabled() bool { return c.Redis != "" }

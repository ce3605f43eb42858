package console

import "time"

// SchemaVersion is status.json's "schema": it goes up when a field changes
// meaning or goes away; new fields and sections do not change it.
const SchemaVersion = 1

// CertificateWarning is how close to expiry a certificate is shown as a
// warning (and FedgateCertificateExpiresSoon fires).
const CertificateWarning = 14 * 24 * time.Hour

// Status is everything the console shows, as of Generated: the page
// renders it and /status.json is its JSON encoding. Each section is a
// pointer: nil means the section does not apply (the feature is off) and
// it is left out of both. The gateway builds a fresh Status per request;
// nothing here is shared or modified afterwards.
//
// No field may hold a secret: private keys, the egress secret, the admin
// token, the log hashing key, credentials in URLs.
type Status struct {
	// Schema is [SchemaVersion].
	Schema int `json:"schema"`
	// Generated is when the status was taken.
	Generated time.Time `json:"generated"`

	Server       *Server       `json:"server,omitempty"`
	Readiness    *Readiness    `json:"readiness,omitempty"`
	Traffic      *Traffic      `json:"traffic,omitempty"`
	Upstream     *Upstream     `json:"upstream,omitempty"`
	Certificates *Certificates `json:"certificates,omitempty"`
	SigningKeys  *SigningKeys  `json:"signing_keys,omitempty"`
	Keyring      *Keyring      `json:"keyring,omitempty"`
	Egress       *Egress       `json:"egress,omitempty"`
	Policy       *Policy       `json:"policy,omitempty"`
	// Servers are the other hosted servers, the [[servers]] entries in
	// configuration order, each with its own keys and policy; nil (left
	// out) with one hosted server. SigningKeys and Policy above are the
	// top-level server's (Server.Name).
	Servers []HostedServer `json:"servers,omitempty"`
	Cluster *Cluster       `json:"cluster,omitempty"`
}

// HostedServer is one [[servers]] entry: its name (ours: never hashed),
// its signing keys and its policy, in the form of the top-level ones.
type HostedServer struct {
	Name        string       `json:"name"`
	SigningKeys *SigningKeys `json:"signing_keys"`
	Policy      *Policy      `json:"policy"`
}

// Server identifies this fedgate.
type Server struct {
	// Name is the server name fronted (ours: never hashed).
	Name string `json:"name"`
	// Version is fedgate's version.
	Version string `json:"version"`
	// Started is when the process started serving.
	Started time.Time `json:"started"`
	// NamesHashed is true when log.hash_server_names is on: remote server
	// names and peer addresses are shown as their "h:..." hashes.
	NamesHashed bool `json:"names_hashed"`
}

// Readiness is what /readyz says.
type Readiness struct {
	// Ready is true when /readyz answers 200.
	Ready bool `json:"ready"`
	// Checks are the readiness checks in /readyz's order.
	Checks []Check `json:"checks"`
}

// Check is one readiness check.
type Check struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Advisory is true for a check that is reported but does not decide
	// readiness on its own (with several hosted servers, each server's
	// homeserver pools); left out otherwise.
	Advisory bool   `json:"advisory,omitempty"`
	Detail   string `json:"detail"`
}

// Traffic is the recent traffic, from the [Recorder].
type Traffic struct {
	// Minutes are the last 60 minutes, oldest first; the last one is the
	// minute in progress.
	Minutes []Minute `json:"minutes"`
	// Hour adds up Minutes.
	Hour Counts `json:"hour"`
	// TopOrigins and TopDestinations are the servers with the most
	// inbound and egress requests over the last hour, most first.
	TopOrigins      []TopServer `json:"top_origins"`
	TopDestinations []TopServer `json:"top_destinations"`
	// RecentDenials are the latest denials, most recent first.
	RecentDenials []Denial `json:"recent_denials"`
}

// Counts are request counts over some time.
type Counts struct {
	// Inbound and Egress count requests by direction.
	Inbound uint64 `json:"inbound"`
	Egress  uint64 `json:"egress"`
	// Denied counts refused requests, Errors failed ones and 5xx answers
	// from the homeserver or remote servers, both directions.
	Denied uint64 `json:"denied"`
	Errors uint64 `json:"errors"`
}

// Minute is one minute of traffic.
type Minute struct {
	// Start is the minute's first second.
	Start time.Time `json:"start"`
	Counts
}

// TopServer is one row of a top table.
type TopServer struct {
	// Server is the remote server's name (hashed when names are).
	Server string `json:"server"`
	// Requests over the last hour; Denied and Failed are among them.
	Requests uint64 `json:"requests"`
	Denied   uint64 `json:"denied"`
	Failed   uint64 `json:"failed"`
}

// Denial is one recent denial, or several identical ones in a row.
type Denial struct {
	// Time is the latest, First the earliest of the Count denials.
	Time  time.Time `json:"time"`
	First time.Time `json:"first"`
	Count uint64    `json:"count"`
	// Direction is "inbound" or "egress".
	Direction string `json:"direction"`
	// Server is the origin or destination, hashed when names are; empty
	// when the request named none.
	Server string `json:"server"`
	// Peer is the TCP peer's address (hashed when names are), given only
	// when Server is empty.
	Peer string `json:"peer,omitempty"`
	// Reason is the reason code, Stage the check that refused it; Rule the
	// policy entry and Limiter the rate or concurrency limiter that did
	// (empty when there is none).
	Reason  string `json:"reason"`
	Stage   string `json:"stage"`
	Rule    string `json:"rule"`
	Limiter string `json:"limiter"`
	// Status is the HTTP status sent.
	Status int `json:"status"`
}

// Upstream is the homeserver fedgate forwards to: its pools of members
// (one pool of one member when only upstream.url is set). With several
// hosted servers, it is every hosted server's homeserver: Pools holds
// each server's pools in turn, each naming its server.
type Upstream struct {
	// URL is upstream.url (or the first of upstream.urls) without
	// credentials: the top-level server's homeserver.
	URL string `json:"url"`
	// Up is true when every pool (of every hosted server) has a member
	// whose last request or probe got an answer.
	Up bool `json:"up"`
	// Hosted is the number of hosted servers whose pools are listed;
	// zero (left out) with one hosted server.
	Hosted int `json:"hosted,omitempty"`
	// HostedUp is how many of them have every pool with a member up;
	// left out with one hosted server, or when none has.
	HostedUp int `json:"hosted_up,omitempty"`
	// LastSeen is when the homeserver last answered (probe or forwarded
	// request, any member); zero (left out) when it never did.
	LastSeen time.Time `json:"last_seen,omitzero"`
	// LastError is why a member of a pool without any member up last
	// failed (after its hosted server's name and ": " when there are
	// several); empty while Up.
	LastError string `json:"last_error,omitempty"`
	// Probing is false when nothing probes the homeserver (no admin
	// listener and no pool of several members): only forwarded requests
	// show it reachable then.
	Probing bool `json:"probing"`
	// Pools are the default pool, then each [[upstream.route]]'s; with
	// several hosted servers, those of each server in hosting order.
	Pools []UpstreamPool `json:"pools"`
}

// UpstreamPool is one pool of homeserver processes.
type UpstreamPool struct {
	// Server is the hosted server whose pool this is (the metrics label
	// server); empty (left out) with one hosted server.
	Server string `json:"server,omitempty"`
	// Name is "default" or the route's name (its metrics label pool).
	Name string `json:"name"`
	// Balance is "round_robin", "origin" or "least_busy".
	Balance string `json:"balance"`
	// Endpoints are the route's endpoint classes and operations; empty
	// for the default pool, which takes the rest.
	Endpoints []string `json:"endpoints,omitempty"`
	// Members are the pool's members in configuration order (the metrics
	// label member is the index).
	Members []UpstreamMember `json:"members"`
}

// UpstreamMember is one homeserver process of a pool.
type UpstreamMember struct {
	// URL is the member's URL without credentials.
	URL string `json:"url"`
	// State is "up" (answered last), "down" (failed; skipped until
	// DownUntil), "retrying" (its down period is over, not answered yet)
	// or "unknown" (never tried).
	State string `json:"state"`
	// LastSeen is when it last answered; zero (left out) when never.
	LastSeen time.Time `json:"last_seen,omitzero"`
	// DownUntil is when a member that is down is tried again; zero (left
	// out) otherwise.
	DownUntil time.Time `json:"down_until,omitzero"`
	// LastError is why it last failed; empty while it is up.
	LastError string `json:"last_error,omitempty"`
	// InFlight counts requests of the pool under way on it.
	InFlight int64 `json:"in_flight"`
	// Requests counts requests it answered since it was first listed.
	Requests uint64 `json:"requests"`
	// Errors counts requests it did not answer.
	Errors uint64 `json:"errors"`
	// Failovers counts requests sent to another member after it could
	// not take them.
	Failovers uint64 `json:"failovers"`
}

// Certificates are the certificates the TLS listeners serve.
type Certificates struct {
	// Items lists them; empty when the embedding program provides
	// certificates fedgate cannot see.
	Items []Certificate `json:"items"`
}

// Certificate is one served certificate.
type Certificate struct {
	// Name is the name it is managed under; Source is "acme", "files" or
	// "self_signed".
	Name   string `json:"name"`
	Source string `json:"source"`
	// Subjects are the DNS names and addresses it covers.
	Subjects []string `json:"subjects"`
	// Issuer is the issuing CA's common name.
	Issuer string `json:"issuer"`
	// NotBefore and NotAfter bound its validity; zero (left out) while
	// none exists.
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// Pending is true while no certificate exists yet (ACME).
	Pending bool `json:"pending"`
	// LastError is the latest failure (an ACME order, a refused file).
	LastError string `json:"last_error,omitempty"`
}

// SigningKeys are our own keys, as our key document publishes them.
type SigningKeys struct {
	// Current are the keys in verify_keys.
	Current []SigningKey `json:"current"`
	// Old are the retired keys in old_verify_keys.
	Old []OldKey `json:"old"`
	// ValidUntilTS is the key document's valid_until_ts (milliseconds
	// since the Unix epoch); 0 when it cannot be signed.
	ValidUntilTS int64 `json:"valid_until_ts"`
}

// SigningKey is one current key: public parts only.
type SigningKey struct {
	ID string `json:"id"`
	// PublicKey is the unpadded-base64 ed25519 public key.
	PublicKey string `json:"public_key"`
	// SignsRequests is true for the key that signs outbound requests.
	SignsRequests bool `json:"signs_requests"`
}

// OldKey is a retired key.
type OldKey struct {
	ID        string `json:"id"`
	PublicKey string `json:"public_key"`
	// ExpiredTS is when it stopped being used, in milliseconds.
	ExpiredTS int64 `json:"expired_ts"`
}

// Keyring is the cache of remote servers' keys.
type Keyring struct {
	// Servers is how many servers it holds an entry for.
	Servers int `json:"servers"`
	// FailingTotal counts servers whose last key fetch failed; Failing
	// lists the most recently used of them.
	FailingTotal int            `json:"failing_total"`
	Failing      []FailingFetch `json:"failing"`
}

// FailingFetch is a server whose keys could not be fetched.
type FailingFetch struct {
	// Server is hashed when names are.
	Server string `json:"server"`
	// Failures counts consecutive failed fetches.
	Failures int `json:"failures"`
	// Error says why the last one failed.
	Error string `json:"error"`
	// NextRetry is when the keyring will fetch again (no sooner, however
	// many requests arrive).
	NextRetry time.Time `json:"next_retry"`
	// LastUsed is when a request last needed its keys.
	LastUsed time.Time `json:"last_used,omitzero"`
	// HasKeys is true when an older document is still held.
	HasKeys bool `json:"has_keys"`
}

// Egress is the capture of the homeserver's outbound federation.
type Egress struct {
	// BackoffTotal counts destinations in backoff now; Backoff lists the
	// ones with the longest wait left.
	BackoffTotal int       `json:"backoff_total"`
	Backoff      []Backoff `json:"backoff"`
}

// Backoff is one destination egress answers for at once.
type Backoff struct {
	// Destination is hashed when names are.
	Destination string `json:"destination"`
	// Kind is "failing" (connection failures, 5xx) or "rate_limited"
	// (the destination answered 429).
	Kind string `json:"kind"`
	// Failures counts consecutive failures.
	Failures int `json:"failures"`
	// Until is when requests go out again.
	Until time.Time `json:"until"`
}

// Policy describes where policy comes from.
type Policy struct {
	// Default is "allow" or "deny"; DryRun is policy.dry_run.
	Default string `json:"default"`
	DryRun  bool   `json:"dry_run"`
	// Allow and Deny count the entries of the configuration's lists.
	Allow int `json:"allow"`
	Deny  int `json:"deny"`
	// ListFile is policy.list_file read as a plain list; nil when there
	// is none (or when it is a signed list: see FederationList).
	ListFile *ListFile `json:"list_file,omitempty"`
	// FederationList is the signed federation list (policy.list_signature
	// = "jws"); nil without one.
	FederationList *FederationList `json:"federation_list,omitempty"`
	// Rooms are the [[policy.rooms]] in configuration order; nil (left
	// out) without any.
	Rooms []PolicyRoom `json:"rooms,omitempty"`
}

// FederationList is a signed federation list (policy.list_url or
// policy.list_file with policy.list_signature = "jws").
type FederationList struct {
	// Location is the list's URL or file.
	Location string `json:"location"`
	// Version is the version of the list in force; -1 while no list was
	// ever accepted.
	Version int64 `json:"version"`
	// Allow and Deny count the entries in force.
	Allow int `json:"allow"`
	Deny  int `json:"deny"`
	// Confirmed is when the list in force was last fetched or read and
	// found current; its age is how old the list is. Zero (left out)
	// without a list.
	Confirmed time.Time `json:"confirmed,omitzero"`
	// MaxAgeSeconds is policy.list_max_age; 0 when unchecked.
	MaxAgeSeconds float64 `json:"max_age_seconds"`
	// Stale is true past list_max_age (or with no list at all while it is
	// set): federation fails closed.
	Stale bool `json:"stale"`
	// Signer is the subject of the certificate that signed the list in
	// force; SignerNotAfter is when its chain stops verifying (zero, left
	// out, without a list).
	Signer         string    `json:"signer,omitempty"`
	SignerNotAfter time.Time `json:"signer_not_after,omitzero"`
	// Loads counts lists accepted (and confirmations of the same list);
	// Failures counts refusals and failed fetches.
	Loads    uint64 `json:"loads"`
	Failures uint64 `json:"failures"`
	// LastError says why the last fetch or read failed or was refused;
	// empty after a success.
	LastError string `json:"last_error,omitempty"`
}

// PolicyRoom is one moderation policy room ([[policy.rooms]]).
type PolicyRoom struct {
	// Room is the room as configured (an ID or an alias); RoomID the room
	// read, after alias resolution and room upgrades (empty before the
	// homeserver first answered).
	Room   string `json:"room"`
	RoomID string `json:"room_id,omitempty"`
	// State is "starting" (no answer, no saved rules yet), "restored"
	// (enforcing the rules saved in data_dir; no answer yet), "syncing"
	// (the last sync succeeded) or "error" (the last attempt failed; the
	// last good rules stay in force).
	State string `json:"state"`
	// Rules counts the ban rules in force.
	Rules int `json:"rules"`
	// Ignored counts server rules not in force, by why.
	Ignored IgnoredRules `json:"ignored"`
	// LastSync is when the homeserver last answered a sync; zero (left
	// out) when never.
	LastSync time.Time `json:"last_sync,omitzero"`
	// MaxAgeSeconds is the room's max_age; 0 when its rules never go
	// stale.
	MaxAgeSeconds float64 `json:"max_age_seconds"`
	// Stale is true past max_age without a sync: federation fails
	// closed.
	Stale bool `json:"stale"`
	// DryRun is apply = "dry_run": its bans are logged, not enforced.
	DryRun bool `json:"dry_run"`
	// Failures counts failed attempts to read the room, Changes the rule
	// changes applied.
	Failures uint64 `json:"failures"`
	Changes  uint64 `json:"changes"`
	// LastError says why the last attempt failed; empty after a success.
	LastError string `json:"last_error,omitempty"`
	// Upgrade names a replacement room (m.room.tombstone) that could not
	// be followed yet; empty otherwise.
	Upgrade string `json:"upgrade,omitempty"`
}

// IgnoredRules counts a policy room's server rules that are not in force.
type IgnoredRules struct {
	// Recommendation counts rules whose recommendation is not a ban.
	Recommendation int `json:"recommendation"`
	// Invalid counts rules whose content or entity does not parse.
	Invalid int `json:"invalid"`
	// TooBroad counts rules whose glob matches every server.
	TooBroad int `json:"too_broad"`
	// OverLimit counts rules refused past the room's max_rules.
	OverLimit int `json:"over_limit"`
}

// Cluster is cluster mode ([cluster]): the Redis the instances share.
type Cluster struct {
	// Redis is the server's address without user name or password
	// ("redis://10.0.0.5:6379/0").
	Redis string `json:"redis"`
	// Node is this instance's name; Prefix starts every key it writes.
	Node   string `json:"node"`
	Prefix string `json:"prefix"`
	// TimeoutSeconds is cluster.timeout: one round trip's bound on the
	// request path.
	TimeoutSeconds float64 `json:"timeout_seconds"`
	// Up is true while Redis answers within the timeout. While it is
	// false, each instance enforces the rate limits alone and fetches
	// keys itself.
	Up bool `json:"up"`
	// Since is when Redis was last marked down or up again (when fedgate
	// started, if neither happened since).
	Since time.Time `json:"since"`
	// Downs counts the times Redis was marked down.
	Downs uint64 `json:"downs"`
	// Operations count round trips, errors and fallbacks by operation,
	// in a fixed order.
	Operations []ClusterOperation `json:"operations"`
	// RoundTrip summarises the request path's rate-limit round trips.
	RoundTrip ClusterRoundTrip `json:"rate_limit_round_trip"`
}

// ClusterOperation is one kind of Redis work.
type ClusterOperation struct {
	// Name is "rate_limit", "keyring", "backoff", "acme" or "ping" (the
	// metrics label op).
	Name string `json:"name"`
	// RoundTrips counts round trips, Errors failed ones, Fallbacks the
	// operations answered from this instance's own state instead. For
	// "rate_limit" RoundTrips counts requests (takes), which share round
	// trips in batches: [Cluster.RoundTrip] counts those.
	RoundTrips uint64 `json:"round_trips"`
	Errors     uint64 `json:"errors"`
	Fallbacks  uint64 `json:"fallbacks"`
}

// ClusterRoundTrip summarises round trip times since fedgate started.
type ClusterRoundTrip struct {
	// Count is how many were measured.
	Count uint64 `json:"count"`
	// MeanSeconds is their average; P99Seconds the time 99% stayed
	// within, estimated from the histogram's buckets. Both 0 without
	// round trips.
	MeanSeconds float64 `json:"mean_seconds"`
	P99Seconds  float64 `json:"p99_seconds"`
}

// ListFile is the external list in use.
type ListFile struct {
	Path    string `json:"path"`
	Version int64  `json:"version"`
	// Modified is the modification time of the file the list was read
	// from; its age is how old the list is.
	Modified time.Time `json:"modified,omitzero"`
	// Allow and Deny count its entries.
	Allow int `json:"allow"`
	Deny  int `json:"deny"`
	// Stale is true past policy.list_max_age: federation fails closed.
	Stale bool `json:"stale"`
	// MaxAgeSeconds is policy.list_max_age; 0 when unchecked.
	MaxAgeSeconds float64 `json:"max_age_seconds"`
	// LastError says why the file on disk was refused; empty when the
	// list in use is the file on disk.
	LastError string `json:"last_error,omitempty"`
}

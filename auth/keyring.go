package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/fedgate/fedgate/internal/servername"
)

// Fetcher gets raw key documents from the network; auth itself does no
// networking. The gateway implements it over its federation HTTP client
// (discovery, TLS checks, outbound policy, a body size limit).
//
// Implementations must honour ctx (the keyring sets a deadline of
// KeyringOptions.FetchTimeout on every call) and be safe for concurrent
// use. Returning an error means "could not get it now"; its text is logged
// and passed to OnEvent, never sent to remote servers. A returned body is
// checked by the keyring, so the Fetcher need not parse it.
type Fetcher interface {
	// FetchServerKeys returns the body of GET /_matrix/key/v2/server from
	// server.
	FetchServerKeys(ctx context.Context, server string) ([]byte, error)
	// QueryNotary returns the body of POST /_matrix/key/v2/query on notary
	// asking for all of server's keys, with minimum_valid_until_ts set to
	// minValidUntil.
	QueryNotary(ctx context.Context, notary, server string, minValidUntil time.Time) ([]byte, error)
}

// Notary is a trusted key server (keys.trusted_key_servers) with the keys
// its answers must be signed with.
type Notary struct {
	ServerName string
	Keys       map[KeyID]ed25519.PublicKey
}

// KeyringOptions configures a [Keyring]. Zero values take the defaults
// given per field.
type KeyringOptions struct {
	// Fetcher gets key documents. Nil means no fetching at all: only
	// pinned keys and the cache file are used.
	Fetcher Fetcher
	// Notaries are asked, in order, when a server's own key server fails.
	Notaries []Notary
	// Pinned maps server names to keys configured by hand. A pinned server
	// is never fetched for: its keys are exactly these, valid forever.
	Pinned map[string]map[KeyID]ed25519.PublicKey
	// CacheFile persists fetched documents across restarts (JSON, written
	// atomically with mode 0600). Empty means no persistence.
	CacheFile string
	// FetchTimeout bounds one fetch attempt: the direct fetch and each
	// notary query get this long each. Default 15s.
	FetchTimeout time.Duration
	// MaxServers caps the servers held in memory and in the cache file;
	// the least recently used are evicted. Default 100000.
	MaxServers int
	// BackoffMin and BackoffMax bound the wait after failed fetches: the
	// first failure waits BackoffMin, each further one doubles it up to
	// BackoffMax; a success resets it. Defaults 10s and 10m.
	BackoffMin, BackoffMax time.Duration
	// MinRefetchInterval is how old a valid document must be before a
	// request signed with a key id it lacks makes the keyring fetch again
	// (the origin may have rotated its keys). It stops unauthenticated
	// requests with made-up key ids from making us hammer an origin.
	// Default 1m.
	MinRefetchInterval time.Duration
	// RefreshInterval is how often Run looks for documents past half their
	// lifetime. Default 1m.
	RefreshInterval time.Duration
	// RecentUse is how recently a server must have been asked about for
	// Run to refresh its keys in the background. Default 24h.
	RecentUse time.Duration
	// SaveDelay is how long Run waits after a change before writing the
	// cache file, so a burst of fetches is saved once. Default 10s.
	SaveDelay time.Duration
	// Shared, when set, is consulted after a miss in memory: a document
	// another instance fetched is used instead of fetching again, a fetch
	// another instance has in progress is waited for, and failure backoff
	// is shared (see [SharedKeyStore]). Nil keeps everything in process.
	Shared SharedKeyStore
	// SharedSealer seals documents before they go to Shared and checks
	// the seal of documents read from it (see [SharedSealer]). Required
	// with Shared.
	SharedSealer SharedSealer
	// MaxPrecomputed caps the keys that get a table of multiples for fast
	// verification (about 7.5 KiB each, see [Verifier]); keys beyond it
	// are decoded only and verify at crypto/ed25519's speed. A table is
	// built for a key when it first verifies a request and freed when its
	// server is evicted or the key leaves its document. Default 4096;
	// negative: none.
	MaxPrecomputed int
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Logger receives the keyring's logs. Nil discards them.
	Logger *slog.Logger
	// OnEvent, if set, is called synchronously for every KeyringEvent, from
	// the goroutine that caused it. It must be fast, safe for concurrent
	// use and must not call the Keyring.
	OnEvent func(KeyringEvent)
}

// Defaults for KeyringOptions.
const (
	DefaultFetchTimeout       = 15 * time.Second
	DefaultMaxServers         = 100_000
	DefaultBackoffMin         = 10 * time.Second
	DefaultBackoffMax         = 10 * time.Minute
	DefaultMinRefetchInterval = time.Minute
	DefaultRefreshInterval    = time.Minute
	DefaultRecentUse          = 24 * time.Hour
	DefaultSaveDelay          = 10 * time.Second
	DefaultMaxPrecomputed     = 4096
)

// maxConcurrentRefreshes bounds the background fetches Run has in flight.
const maxConcurrentRefreshes = 4

// Keyring holds remote servers' signing keys for request verification and
// for answering notary queries. It fetches keys on demand (one fetch per
// server at a time, however many callers wait), falls back to trusted
// notaries, backs off from servers that fail, refreshes used keys at half
// their lifetime (Run) and persists documents across restarts.
//
// All methods are safe for concurrent use. Create it with [NewKeyring];
// call Run in a goroutine for background refresh and saving, and Close at
// shutdown.
type Keyring struct {
	opts KeyringOptions
	log  *slog.Logger

	ctx    context.Context // parent of every fetch; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // fetch goroutines
	sem    chan struct{}  // background refresh slots
	dirtyc chan struct{}  // signals Run that there is something to save
	saveMu sync.Mutex     // one cache file write at a time

	pinned map[string]map[KeyID]*Verifier // prepared once, from opts.Pinned

	mu          sync.Mutex
	servers     map[string]*entry
	lru         entry // sentinel of the recency ring: lru.next is the most recent
	closed      bool
	precomputed int // verifiers with a table held in entries
}

// entry is what the keyring knows about one server. Fields are guarded by
// Keyring.mu.
type entry struct {
	name       string
	keys       *ServerKeys // newest document held; may be expired
	validUntil time.Time   // keys' effective validity
	lastUsed   time.Time
	failures   int       // consecutive failed fetches
	retryAt    time.Time // no fetch before this after a failure
	lastErr    *Error    // why the last fetch failed
	call       *fetchCall
	prev, next *entry
	// verifiers are the keys of keys prepared for verification, built on
	// first use; one whose bytes differ from the document's is stale.
	verifiers map[KeyID]*Verifier
}

// fetchCall is one fetch in flight; callers for the same server wait on
// done. err is set before done is closed.
type fetchCall struct {
	done chan struct{}
	err  *Error
}

// NewKeyring checks opts, applies defaults and loads the cache file (a
// missing or corrupt file is logged and ignored, never fatal).
func NewKeyring(opts KeyringOptions) (*Keyring, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	k := &Keyring{
		opts:    opts,
		log:     opts.Logger,
		sem:     make(chan struct{}, maxConcurrentRefreshes),
		dirtyc:  make(chan struct{}, 1),
		servers: map[string]*entry{},
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	k.pinned = make(map[string]map[KeyID]*Verifier, len(opts.Pinned))
	for server, keys := range opts.Pinned {
		k.pinned[server] = make(map[KeyID]*Verifier, len(keys))
		for id, pub := range keys {
			v, err := NewPrecomputedVerifier(pub)
			if err != nil {
				return nil, fmt.Errorf("pinned keys for %s: %w", server, err)
			}
			k.pinned[server][id] = v
		}
	}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	k.lru.next, k.lru.prev = &k.lru, &k.lru
	k.load()
	return k, nil
}

func (o *KeyringOptions) check() error {
	if o.Shared != nil && o.SharedSealer == nil {
		return errors.New("a shared key store needs a SharedSealer")
	}
	for i, n := range o.Notaries {
		if !servername.Valid(n.ServerName) {
			return fmt.Errorf("notary %d: %q is not a valid server name", i, n.ServerName)
		}
		if len(n.Keys) == 0 {
			return fmt.Errorf("notary %s: no keys to check its answers with", n.ServerName)
		}
		for id, pub := range n.Keys {
			if err := checkPublicKey(id, pub); err != nil {
				return fmt.Errorf("notary %s: %w", n.ServerName, err)
			}
		}
	}
	for server, keys := range o.Pinned {
		if !servername.Valid(server) {
			return fmt.Errorf("pinned keys: %q is not a valid server name", server)
		}
		if len(keys) == 0 {
			return fmt.Errorf("pinned keys for %s: none given", server)
		}
		for id, pub := range keys {
			if err := checkPublicKey(id, pub); err != nil {
				return fmt.Errorf("pinned keys for %s: %w", server, err)
			}
		}
	}
	return nil
}

func checkPublicKey(id KeyID, pub ed25519.PublicKey) error {
	if _, err := ParseKeyID(string(id)); err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("key %s is %d bytes, want %d", id, len(pub), ed25519.PublicKeySize)
	}
	return nil
}

func (o *KeyringOptions) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.FetchTimeout, DefaultFetchTimeout)
	def(&o.BackoffMin, DefaultBackoffMin)
	def(&o.BackoffMax, DefaultBackoffMax)
	def(&o.MinRefetchInterval, DefaultMinRefetchInterval)
	def(&o.RefreshInterval, DefaultRefreshInterval)
	def(&o.RecentUse, DefaultRecentUse)
	def(&o.SaveDelay, DefaultSaveDelay)
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	if o.MaxServers <= 0 {
		o.MaxServers = DefaultMaxServers
	}
	if o.MaxPrecomputed == 0 {
		o.MaxPrecomputed = DefaultMaxPrecomputed
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	// Own copies: the caller may reuse its maps.
	o.Notaries = append([]Notary(nil), o.Notaries...)
	for i := range o.Notaries {
		o.Notaries[i].Keys = maps.Clone(o.Notaries[i].Keys)
	}
	pinned := make(map[string]map[KeyID]ed25519.PublicKey, len(o.Pinned))
	for s, keys := range o.Pinned {
		pinned[s] = maps.Clone(keys)
	}
	o.Pinned = pinned
}

// VerifyKey returns the public key id of server for verifying a request
// now; see [Keyring.Verifier], which it calls.
func (k *Keyring) VerifyKey(ctx context.Context, server string, id KeyID) (ed25519.PublicKey, error) {
	v, err := k.Verifier(ctx, server, id)
	if err != nil {
		return nil, err
	}
	return v.PublicKey(), nil
}

// Verifier returns the public key id of server, prepared for verifying
// (see [Verifier]), for checking a request now. It answers from pinned
// keys or from a cached document that lists id in verify_keys and has not
// passed its effective validity. Otherwise it fetches (joining a fetch
// already in flight), first from the server, then from each notary, and
// waits for the result or ctx. The prepared key is kept with the server's
// entry, so its table is built once (within MaxPrecomputed).
//
// Errors are *[Error]: KindUnknownKey when the server's current document
// does not list id (a document fetched less than MinRefetchInterval ago is
// not fetched again for this), KindKeyFetchFailed when no valid document
// can be had (in backoff the error comes at once and says when the next
// attempt will be).
func (k *Keyring) Verifier(ctx context.Context, server string, id KeyID) (*Verifier, error) {
	if pinned, ok := k.pinned[server]; ok {
		v, ok := pinned[id]
		if !ok {
			return nil, newError(KindUnknownKey, nil, "%s does not have key %s", quoteShort(server), id)
		}
		k.emit(KeyringEvent{Kind: EventCacheHit, Server: server})
		return v, nil
	}
	k.mu.Lock()
	now := k.opts.Now()
	e := k.touchLocked(server, now)
	var call *fetchCall
	for {
		if e.keys != nil {
			if pub, err := e.keys.RequestKey(id, now); err == nil {
				v := e.verifier(id, pub)
				if v == nil {
					v = k.prepareLocked(e, id, pub) // unlocks while building
				}
				k.mu.Unlock()
				if v == nil {
					return nil, newError(KindUnknownKey, nil, "%s publishes an unusable key %s", quoteShort(server), id)
				}
				if call == nil {
					k.emit(KeyringEvent{Kind: EventCacheHit, Server: server})
				}
				return v, nil
			}
		}
		if call != nil { // we waited for a fetch and still have no key
			expired := e.keys == nil || now.After(e.validUntil)
			k.mu.Unlock()
			if call.err != nil && expired {
				return nil, call.err
			}
			return nil, newError(KindUnknownKey, nil, "%s does not publish key %s", quoteShort(server), id)
		}
		valid := e.keys != nil && !now.After(e.validUntil)
		if valid && now.Sub(e.keys.Checked) < k.opts.MinRefetchInterval {
			k.mu.Unlock()
			return nil, newError(KindUnknownKey, nil, "%s does not publish key %s", quoteShort(server), id)
		}
		var err *Error
		if call, err = k.fetchLocked(e, now, false); err != nil {
			k.mu.Unlock()
			if valid {
				return nil, newError(KindUnknownKey, nil, "%s does not publish key %s", quoteShort(server), id)
			}
			return nil, err
		}
		k.mu.Unlock()
		select {
		case <-call.done:
		case <-ctx.Done():
			return nil, newError(KindKeyFetchFailed, ctx.Err(), "Timed out waiting for the signing keys of %s", quoteShort(server))
		}
		k.mu.Lock()
		now = k.opts.Now()
	}
}

// ServerKeysFor returns what the keyring holds for server, for answering
// notary queries (POST/GET /_matrix/key/v2/query). A document whose
// effective validity ends before minValidUntil (zero: now) is fetched
// again first; when that fails the stale document is returned anyway, so
// that an offline origin keeps its last answer (spec: notaries keep serving
// it for old events). The slice has at most one document; it is empty for
// pinned servers, which have no signed document. With nothing to return the
// error is an *[Error] of kind KindKeyFetchFailed.
func (k *Keyring) ServerKeysFor(ctx context.Context, server string, minValidUntil time.Time) ([]*ServerKeys, error) {
	if _, ok := k.opts.Pinned[server]; ok {
		return nil, nil
	}
	k.mu.Lock()
	now := k.opts.Now()
	if minValidUntil.IsZero() || minValidUntil.Before(now) {
		minValidUntil = now
	}
	e := k.touchLocked(server, now)
	fresh := e.keys != nil && !e.validUntil.Before(minValidUntil)
	recent := e.keys != nil && now.Sub(e.keys.Checked) < k.opts.MinRefetchInterval
	if fresh || (recent && e.call == nil) {
		keys := e.keys
		k.mu.Unlock()
		k.emit(KeyringEvent{Kind: EventCacheHit, Server: server})
		return []*ServerKeys{keys}, nil
	}
	call, err := k.fetchLocked(e, now, false)
	if err != nil { // in backoff
		keys := e.keys
		k.mu.Unlock()
		return k.staleOr(server, keys, err)
	}
	k.mu.Unlock()
	select {
	case <-call.done:
	case <-ctx.Done():
		k.mu.Lock()
		keys := e.keys
		k.mu.Unlock()
		return k.staleOr(server, keys, newError(KindKeyFetchFailed, ctx.Err(), "Timed out waiting for the signing keys of %s", quoteShort(server)))
	}
	k.mu.Lock()
	keys := e.keys
	fresh = keys != nil && !e.validUntil.Before(minValidUntil)
	k.mu.Unlock()
	if fresh || (call.err == nil && keys != nil) {
		return []*ServerKeys{keys}, nil
	}
	if call.err != nil {
		err = call.err
	}
	return k.staleOr(server, keys, err)
}

func (k *Keyring) staleOr(server string, keys *ServerKeys, err *Error) ([]*ServerKeys, error) {
	if keys == nil {
		return nil, err
	}
	k.emit(KeyringEvent{Kind: EventStale, Server: server, Err: err})
	return []*ServerKeys{keys}, nil
}

// Len returns the number of servers the keyring holds an entry for.
func (k *Keyring) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.servers)
}

// Close stops in-flight fetches, waits for them and writes the cache file.
// The keyring still answers from its cache afterwards but fetches nothing.
// Calling Close more than once is harmless.
func (k *Keyring) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	k.mu.Unlock()
	k.cancel()
	k.wg.Wait()
	return k.Save()
}

// touchLocked returns server's entry, creating it, and marks it used now.
func (k *Keyring) touchLocked(server string, now time.Time) *entry {
	e := k.servers[server]
	if e == nil {
		e = &entry{name: server}
		k.servers[server] = e
		k.evictLocked()
	} else {
		e.unlink()
	}
	k.pushFrontLocked(e)
	if now.After(e.lastUsed) {
		e.lastUsed = now
	}
	return e
}

func (k *Keyring) pushFrontLocked(e *entry) {
	e.prev, e.next = &k.lru, k.lru.next
	k.lru.next.prev = e
	k.lru.next = e
}

func (e *entry) unlink() {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// evictLocked drops least recently used servers beyond MaxServers, sparing
// those with a fetch in flight.
func (k *Keyring) evictLocked() {
	for e := k.lru.prev; len(k.servers) > k.opts.MaxServers && e != &k.lru; {
		prev := e.prev
		if e.call == nil {
			e.unlink()
			delete(k.servers, e.name)
			k.dropVerifiersLocked(e)
			k.emit(KeyringEvent{Kind: EventEvicted, Server: e.name})
		}
		e = prev
	}
}

// errClosed is the cause given when the keyring no longer fetches.
var errClosed = errors.New("keyring closed")

// verifier returns e's prepared key id if it is the key pub, else nil.
// k.mu must be held.
func (e *entry) verifier(id KeyID, pub ed25519.PublicKey) *Verifier {
	if v := e.verifiers[id]; v != nil && bytes.Equal(v.pub, pub) {
		return v
	}
	return nil
}

// prepareLocked builds the verifier for e's key id (pub), with a table
// while the MaxPrecomputed budget allows, and keeps it in e. k.mu must be
// held; it is released while the table is built (about one and a half
// verifications) and held again on return. It returns nil only for a key
// that cannot be used at all (wrong length).
func (k *Keyring) prepareLocked(e *entry, id KeyID, pub ed25519.PublicKey) *Verifier {
	table := k.precomputed < k.opts.MaxPrecomputed
	if table {
		k.precomputed++ // reserved
	}
	k.mu.Unlock()
	v, err := newVerifier(pub, table)
	k.mu.Lock()
	if err != nil {
		if table {
			k.precomputed--
		}
		return nil
	}
	if have := e.verifier(id, pub); have != nil {
		// Another request prepared it meanwhile.
		if table {
			k.precomputed--
		}
		return have
	}
	current := e.keys != nil && bytes.Equal(e.keys.VerifyKeys[id], pub)
	if k.servers[e.name] != e || !current {
		// Evicted, or the document changed while we built: use it for
		// this request only.
		if table {
			k.precomputed--
		}
		return v
	}
	if e.verifiers == nil {
		e.verifiers = make(map[KeyID]*Verifier, 1)
	}
	// Drop prepared keys the document no longer lists as they are.
	for kid, old := range e.verifiers {
		if !bytes.Equal(e.keys.VerifyKeys[kid], old.pub) {
			k.releaseLocked(old)
			delete(e.verifiers, kid)
		}
	}
	if old := e.verifiers[id]; old != nil {
		k.releaseLocked(old)
	}
	e.verifiers[id] = v
	return v
}

// dropVerifiersLocked frees e's prepared keys (e is being evicted).
func (k *Keyring) dropVerifiersLocked(e *entry) {
	for _, v := range e.verifiers {
		k.releaseLocked(v)
	}
	e.verifiers = nil
}

// releaseLocked returns v's table to the MaxPrecomputed budget.
func (k *Keyring) releaseLocked(v *Verifier) {
	if v.Precomputed() {
		k.precomputed--
	}
}

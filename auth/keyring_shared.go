package auth

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"
)

// SharedKeyStore lets the keyrings of several fedgate instances share what
// they fetch (cluster mode: package cluster implements it over Redis), so
// that N instances fetch an origin's keys once, not N times, and back off
// from a failing origin together. The keyring consults it only on the
// fetch path, after a miss in its own memory, which stays in front.
//
// Everything a store returns is untrusted input: the keyring checks a
// stored document's self-signatures again ([ParseServerKeys]), refuses one
// checked in the future, bounds the failure count, the retry time and the
// reason text, and falls back to fetching itself when anything is off.
//
// Methods take ctx first and must return within the store's own short
// deadline; an error means "the store cannot help now", and the keyring
// fetches directly. Implementations must be safe for concurrent use.
type SharedKeyStore interface {
	// Lookup returns what the store holds for server; a zero SharedKeys
	// when it holds nothing.
	Lookup(ctx context.Context, server string) (SharedKeys, error)
	// LockFetch tries to become the one instance fetching server's keys.
	// ok false (and a nil done) means another instance holds the lock.
	// While the lock is held the store keeps it alive; if its holder
	// vanishes it lapses within seconds. When ok, call done exactly once,
	// with the fetch's outcome: it stores the outcome and releases the
	// lock.
	LockFetch(ctx context.Context, server string) (done func(context.Context, SharedKeys) error, ok bool, err error)
	// Publish stores the outcome of a fetch made without the lock (the
	// store could not be reached when it began).
	Publish(ctx context.Context, server string, keys SharedKeys) error
}

// SharedSealer vouches for the documents in a [SharedKeyStore]. A
// self-signature only shows that a document is consistent, not that it came
// from its server: anyone who can write to the store could plant a
// document with keys of their own. So the instance that stores a document
// seals it first (the gateway signs it with the server's own signing key,
// as a notary signs what it relays; every instance of a cluster holds that
// key), and a document read back is used only if Open accepts its seal.
// The seal never leaves the keyring: Open returns the document without it,
// so what the keyring keeps, caches and relays as a notary is what the
// server (and any notary before us) signed. Both must be safe for
// concurrent use.
type SharedSealer interface {
	// Seal returns doc with the seal added.
	Seal(doc []byte) ([]byte, error)
	// Open checks doc's seal and returns doc without it.
	Open(doc []byte) ([]byte, error)
}

// SharedKeys is what a [SharedKeyStore] holds for one server.
type SharedKeys struct {
	// Document is the server's own signed key document, as fetched from it
	// or taken out of a notary's answer ([ServerKeys.Raw]); nil when there
	// is none. Publishing a failure leaves a stored document in place.
	Document []byte
	// Checked is when Document was fetched and checked.
	Checked time.Time
	// Failures counts consecutive failed fetches; zero after a success.
	Failures int
	// RetryAt is when the next fetch may start after a failure.
	RetryAt time.Time
	// Reason says why the last fetch failed, in words fit for remote
	// servers.
	Reason string
	// Fetching reports that an instance holds the fetch lock (Lookup
	// only).
	Fetching bool
}

// Bounds on what the keyring accepts from a [SharedKeyStore].
const (
	// maxSharedReason bounds a stored failure reason (it is sent on to
	// remote servers in error messages).
	maxSharedReason = 512
	// maxSharedFailures bounds a stored failure count.
	maxSharedFailures = 64
	// sharedClockSkew is how far in the future a stored check time may be
	// (instances' clocks differ a little) before the document is refused.
	sharedClockSkew = time.Minute
	// sharedWaitMin and sharedWaitMax bound the polling interval while
	// another instance fetches.
	sharedWaitMin = 20 * time.Millisecond
	sharedWaitMax = 250 * time.Millisecond
)

// fetchOutcome is the result of one fetch for an entry, however it was
// obtained.
type fetchOutcome struct {
	keys   *ServerKeys
	direct bool
	err    *Error
	// adopted marks a failure backoff taken over from the shared store:
	// failures and retryAt replace the entry's instead of counting one
	// more failure here.
	adopted  bool
	failures int
	retryAt  time.Time
	// fromShared marks a document taken from the shared store: nothing to
	// publish.
	fromShared bool
	// done publishes the outcome and releases the shared fetch lock; nil
	// without one.
	done func(context.Context, SharedKeys) error
	// publish asks for the outcome to be stored without a lock.
	publish bool
}

// obtain gets a document for server: from the shared store when another
// instance fetched one, else from the network ([Keyring.fetchKeys]) under
// the shared fetch lock. have is the check time of the document held
// (zero: none) and haveValid whether it is still valid.
func (k *Keyring) obtain(server string, have time.Time, haveValid, background bool) fetchOutcome {
	store := k.opts.Shared
	if store == nil {
		keys, direct, err := k.fetchKeys(server, background)
		return fetchOutcome{keys: keys, direct: direct, err: err}
	}
	// A live holder fetches for at most this long (every source once).
	giveUp := time.Now().Add(k.opts.FetchTimeout * time.Duration(2+len(k.opts.Notaries)))
	wait := sharedWaitMin
	waited := false
	for k.ctx.Err() == nil {
		st, err := store.Lookup(k.ctx, server)
		if err != nil {
			break
		}
		if keys := k.adoptable(st, server, have, haveValid, background); keys != nil {
			k.emit(KeyringEvent{Kind: EventSharedHit, Server: server, Background: background})
			return fetchOutcome{keys: keys, direct: true, fromShared: true}
		}
		if out, ok := k.sharedBackoff(st, server); ok {
			return out
		}
		if !st.Fetching {
			done, ok, err := store.LockFetch(k.ctx, server)
			if err != nil {
				break
			}
			if ok {
				keys, direct, ferr := k.fetchKeys(server, background)
				return fetchOutcome{keys: keys, direct: direct, err: ferr, done: done}
			}
		}
		// Another instance is fetching: wait for its result.
		if !waited {
			waited = true
			k.emit(KeyringEvent{Kind: EventSharedWait, Server: server, Background: background})
		}
		if time.Now().After(giveUp) {
			break
		}
		select {
		case <-k.ctx.Done():
		case <-time.After(wait):
		}
		wait = min(wait*2, sharedWaitMax)
	}
	keys, direct, ferr := k.fetchKeys(server, background)
	return fetchOutcome{keys: keys, direct: direct, err: ferr, publish: true}
}

// adoptable returns the stored document when it is better than what the
// keyring holds: it verifies (self-signatures, server name, size), was
// checked after have and not in the future, and is valid now. While the
// keyring holds a valid document (a caller asked for a key id it lacks:
// the origin may have rotated), only a document checked within
// MinRefetchInterval counts, so a rotation is fetched, not answered from
// an old copy.
func (k *Keyring) adoptable(st SharedKeys, server string, have time.Time, haveValid, background bool) *ServerKeys {
	if len(st.Document) == 0 || len(st.Document) > MaxKeyDocumentSize || !st.Checked.After(have) {
		return nil
	}
	now := k.opts.Now()
	if st.Checked.After(now.Add(sharedClockSkew)) {
		return nil
	}
	if haveValid && !background && now.Sub(st.Checked) >= k.opts.MinRefetchInterval {
		return nil
	}
	doc, err := k.opts.SharedSealer.Open(st.Document)
	if err != nil {
		k.log.Warn("ignoring a shared key document without a valid seal", "server", server, "error", err)
		return nil
	}
	keys, err := ParseServerKeys(doc, server, st.Checked)
	if err != nil {
		k.log.Warn("ignoring a shared key document that fails its checks", "server", server, "error", err)
		return nil
	}
	if !k.validNow(keys) {
		return nil
	}
	return keys
}

// sharedBackoff takes over another instance's failure backoff for server,
// when the store says the next fetch is not due yet.
func (k *Keyring) sharedBackoff(st SharedKeys, server string) (fetchOutcome, bool) {
	now := k.opts.Now()
	if st.Failures <= 0 || !st.RetryAt.After(now) {
		return fetchOutcome{}, false
	}
	retryAt := st.RetryAt
	if limit := now.Add(k.opts.BackoffMax); retryAt.After(limit) {
		retryAt = limit
	}
	reason := cleanReason(st.Reason)
	if reason == "" {
		reason = "Could not get the signing keys of " + quoteShort(server)
	}
	return fetchOutcome{
		err:      newError(KindKeyFetchFailed, nil, "%s", reason),
		adopted:  true,
		failures: min(st.Failures, maxSharedFailures),
		retryAt:  retryAt,
	}, true
}

// cleanReason bounds a reason from the shared store and keeps it to
// printable text.
func cleanReason(s string) string {
	if len(s) > maxSharedReason {
		s = s[:maxSharedReason]
	}
	s = strings.ToValidUTF8(s, "")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
}

// share stores a fetch's outcome in the shared store (releasing the fetch
// lock if one is held). It runs in the fetch goroutine, after the waiters
// have their answer.
func (k *Keyring) share(server string, out fetchOutcome, keys *ServerKeys, failures int, retryAt time.Time, reason string) {
	if out.fromShared || out.adopted || (out.done == nil && !out.publish) {
		return
	}
	sk := SharedKeys{Failures: failures, RetryAt: retryAt}
	if out.err != nil {
		sk.Reason = reason
	}
	if keys != nil && out.err == nil {
		doc, err := k.opts.SharedSealer.Seal(keys.Raw)
		if err != nil {
			k.log.Warn("sealing a key document for the shared store failed", "server", server, "error", err)
		} else {
			sk.Document, sk.Checked = doc, keys.Checked
		}
	}
	ctx := context.WithoutCancel(k.ctx) // a shutdown still releases the lock
	var err error
	if out.done != nil {
		err = out.done(ctx, sk)
	} else {
		err = k.opts.Shared.Publish(ctx, server, sk)
	}
	if err != nil {
		k.log.Debug("sharing a key fetch outcome failed", "server", server, "error", err)
	}
}

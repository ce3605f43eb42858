package auth

import (
	"strconv"
	"time"
)

// EventKind says what a [KeyringEvent] reports. Its String form is stable
// and suitable as a metric label.
type EventKind uint8

// The keyring's events.
const (
	// EventCacheHit: VerifyKey answered from cached or pinned keys.
	EventCacheHit EventKind = iota + 1
	// EventCoalesced: a caller joined a fetch already in flight for the
	// same server instead of starting another.
	EventCoalesced
	// EventFetched: the server's own key server gave a valid document.
	EventFetched
	// EventFetchFailed: the direct fetch failed (Err says why).
	EventFetchFailed
	// EventNotaryFetched: a notary (Notary) gave a valid document after
	// the direct fetch failed.
	EventNotaryFetched
	// EventNotaryFailed: a notary could not help (Err says why).
	EventNotaryFailed
	// EventBackoff: a caller was refused without a fetch because the
	// server's last fetch failed and its retry time has not come.
	EventBackoff
	// EventStale: ServerKeysFor returned a document that could not be
	// refreshed (the origin is offline).
	EventStale
	// EventEvicted: a server was dropped to keep the cache under
	// KeyringOptions.MaxServers.
	EventEvicted
	// EventCacheLoaded: the cache file was read at start (Count servers).
	EventCacheLoaded
	// EventCacheSaved: the cache file was written (Count servers).
	EventCacheSaved
	// EventCacheError: the cache file could not be read or written (Err).
	EventCacheError
	// EventSharedHit: a document another instance fetched was taken from
	// the shared store (KeyringOptions.Shared) instead of fetching.
	EventSharedHit
	// EventSharedWait: another instance was fetching the server's keys,
	// so this one waited for its result.
	EventSharedWait

	// LastEvent is the highest EventKind, for tables indexed by kind.
	LastEvent = EventSharedWait
)

var eventNames = [...]string{
	EventCacheHit:      "cache_hit",
	EventCoalesced:     "coalesced",
	EventFetched:       "fetched",
	EventFetchFailed:   "fetch_failed",
	EventNotaryFetched: "notary_fetched",
	EventNotaryFailed:  "notary_failed",
	EventBackoff:       "backoff",
	EventStale:         "stale",
	EventEvicted:       "evicted",
	EventCacheLoaded:   "cache_loaded",
	EventCacheSaved:    "cache_saved",
	EventCacheError:    "cache_error",
	EventSharedHit:     "shared_hit",
	EventSharedWait:    "shared_wait",
}

// String returns the kind's snake_case name, e.g. "cache_hit".
func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// KeyringEvent is reported through KeyringOptions.OnEvent so the gateway
// can count cache hits, fetches, failures and notary use without auth
// knowing about metrics. Server and Notary are remote-controlled names: use
// Kind (and Background) as metric labels, never the names.
type KeyringEvent struct {
	Kind EventKind
	// Server is the server whose keys the event is about, if any.
	Server string
	// Notary is the notary involved (EventNotaryFetched, EventNotaryFailed).
	Notary string
	// Background is true for fetches made by the half-life refresh in Run
	// rather than for a caller.
	Background bool
	// Duration is how long a fetch took (fetch and notary events).
	Duration time.Duration
	// Count is the number of servers (cache file events).
	Count int
	// Err is the failure, for *Failed and EventCacheError events.
	Err error
}

func (k *Keyring) emit(ev KeyringEvent) {
	if k.opts.OnEvent != nil {
		k.opts.OnEvent(ev)
	}
}

package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/fedgate/fedgate/internal/fsutil"
)

// The cache file holds the newest checked document of each server, with
// when it was checked and last used:
//
//	{"version":1,"servers":[{"server_name":"…","checked_ts":…,"last_used_ts":…,"document":{…}}]}
//
// Documents are checked again when loaded (signatures, server name), with
// their original check time, so the 7-day cap still counts from the fetch.

const cacheVersion = 1

// maxCacheFileSize bounds what load reads: MaxServers documents of a
// typical size, far below the per-document limit times MaxServers.
const maxCacheFileSize = 512 << 20

type cacheFile struct {
	Version int           `json:"version"`
	Servers []cacheServer `json:"servers"`
}

type cacheServer struct {
	ServerName string          `json:"server_name"`
	CheckedTS  int64           `json:"checked_ts"`
	LastUsedTS int64           `json:"last_used_ts"`
	Document   json.RawMessage `json:"document"`
}

// load reads the cache file into the (empty) keyring. Problems are logged
// and reported as EventCacheError; they never stop the keyring.
func (k *Keyring) load() {
	if k.opts.CacheFile == "" {
		return
	}
	data, err := fsutil.ReadFileLimited(k.opts.CacheFile, maxCacheFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil {
		var c cacheFile
		if err = json.Unmarshal(data, &c); err == nil && c.Version != cacheVersion {
			err = fmt.Errorf("unknown cache version %d", c.Version)
		}
		if err == nil {
			k.loadServers(c.Servers)
			return
		}
	}
	k.log.Warn("ignoring the keyring cache file", "file", k.opts.CacheFile, "error", err)
	k.emit(KeyringEvent{Kind: EventCacheError, Err: err})
}

func (k *Keyring) loadServers(servers []cacheServer) {
	// Most recently used first, so the cap keeps the ones that matter.
	slices.SortStableFunc(servers, func(a, b cacheServer) int {
		switch {
		case a.LastUsedTS > b.LastUsedTS:
			return -1
		case a.LastUsedTS < b.LastUsedTS:
			return 1
		}
		return 0
	})
	k.mu.Lock()
	defer k.mu.Unlock()
	skipped := 0
	for _, s := range servers {
		if len(k.servers) >= k.opts.MaxServers {
			break
		}
		if _, pinned := k.opts.Pinned[s.ServerName]; pinned || k.servers[s.ServerName] != nil {
			continue
		}
		keys, err := ParseServerKeys(s.Document, s.ServerName, time.UnixMilli(s.CheckedTS))
		if err != nil {
			skipped++
			k.log.Debug("dropping a cached key document", "server", s.ServerName, "error", err)
			continue
		}
		e := &entry{name: s.ServerName, keys: keys, validUntil: keys.EffectiveValidUntil(keys.Checked), lastUsed: time.UnixMilli(s.LastUsedTS)}
		k.servers[e.name] = e
		e.prev, e.next = k.lru.prev, &k.lru // append: servers are in recency order
		k.lru.prev.next = e
		k.lru.prev = e
	}
	if skipped > 0 {
		k.log.Warn("dropped cached key documents that failed their checks", "file", k.opts.CacheFile, "count", skipped)
	}
	k.log.Info("loaded the keyring cache", "file", k.opts.CacheFile, "servers", len(k.servers))
	k.emit(KeyringEvent{Kind: EventCacheLoaded, Count: len(k.servers)})
}

// Save writes the cache file now (atomically: a temporary file in the same
// directory, synced, then renamed over the old one; mode 0600). It does
// nothing without a CacheFile. Run and Close call it; calling it directly
// is safe at any time.
func (k *Keyring) Save() error {
	if k.opts.CacheFile == "" {
		return nil
	}
	k.saveMu.Lock()
	defer k.saveMu.Unlock()
	c := cacheFile{Version: cacheVersion, Servers: []cacheServer{}}
	k.mu.Lock()
	for e := k.lru.next; e != &k.lru; e = e.next {
		if e.keys != nil {
			c.Servers = append(c.Servers, cacheServer{
				ServerName: e.name,
				CheckedTS:  e.keys.Checked.UnixMilli(),
				LastUsedTS: e.lastUsed.UnixMilli(),
				Document:   e.keys.Raw,
			})
		}
	}
	k.mu.Unlock()
	data, err := json.Marshal(c)
	if err == nil {
		err = fsutil.WriteFileAtomic(k.opts.CacheFile, data, 0o600)
	}
	if err != nil {
		err = fmt.Errorf("saving keyring cache: %w", err)
		k.emit(KeyringEvent{Kind: EventCacheError, Err: err})
		return err
	}
	k.emit(KeyringEvent{Kind: EventCacheSaved, Count: len(c.Servers)})
	return nil
}

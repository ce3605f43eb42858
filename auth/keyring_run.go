package auth

import (
	"context"
	"time"
)

// Run refreshes, in the background, the keys of servers asked about within
// RecentUse once their documents pass half their effective lifetime (the
// spec's advice to notaries), and writes the cache file SaveDelay after
// changes. While a refresh fails, the cached keys keep being served until
// they expire. Run returns when ctx is done; call it once, in its own
// goroutine. Without Run nothing is refreshed ahead of time and the cache
// file is written only by Close and Save.
func (k *Keyring) Run(ctx context.Context) {
	tick := time.NewTicker(k.opts.RefreshInterval)
	defer tick.Stop()
	var save <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			k.refreshDue()
		case <-k.dirtyc:
			if save == nil {
				save = time.After(k.opts.SaveDelay)
			}
		case <-save:
			save = nil
			if err := k.Save(); err != nil {
				k.log.Error("saving the keyring cache failed", "file", k.opts.CacheFile, "error", err)
			}
		}
	}
}

// refreshDue starts background fetches for recently used servers whose
// documents are past half their lifetime, as many as free refresh slots
// allow; the rest wait for the next tick. It returns how many it started.
func (k *Keyring) refreshDue() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.opts.Now()
	started := 0
	// The ring is in order of use, so stop at the first server not used
	// recently: all after it are older.
	for e := k.lru.next; e != &k.lru && now.Sub(e.lastUsed) <= k.opts.RecentUse; e = e.next {
		if e.keys == nil || e.call != nil || now.Before(e.retryAt) {
			continue
		}
		checked := e.keys.Checked
		if halfLife := checked.Add(e.validUntil.Sub(checked) / 2); now.Before(halfLife) {
			continue
		}
		select {
		case k.sem <- struct{}{}:
		default:
			return started // all refresh slots busy
		}
		if _, err := k.fetchLocked(e, now, true); err != nil {
			<-k.sem
			continue
		}
		started++
	}
	return started
}

// markDirtyLocked notes that the cache file is out of date and wakes Run.
func (k *Keyring) markDirtyLocked() {
	select {
	case k.dirtyc <- struct{}{}:
	default:
	}
}

package policy

// QueuedForTest returns how many requests of origin wait for a
// concurrency slot.
func QueuedForTest(l *Limiters, origin string) int {
	key := lowerInto(nil, origin)
	sh := &l.slots.shards[hashKey(l.slots.seed, key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[string(key)]; e != nil {
		return len(e.waiters)
	}
	return 0
}

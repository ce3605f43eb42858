package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// ACME storage in Redis, for certmagic:
//
//	<prefix>acme:item:K   hash: value, modified (ms), fence (token of the
//	                      lock its last fenced writer held)
//	<prefix>acme:index    sorted set of every K (score 0: ordered by name),
//	                      for List, Exists and Delete of "directories"
//	<prefix>acme:lock:N   lock N: "<token>:<owner>", expiring after the
//	                      lock TTL unless its holder keeps it alive
//	<prefix>acme:fence    the fencing token counter (INCR)
//
// Keys are certmagic's: slash-separated paths such as
// "certificates/acme-v02.api.letsencrypt.org-directory/example.org/example.org.crt".

// Defaults for [CertStorageOptions].
const (
	DefaultLockTTL  = 30 * time.Second
	lockPollMin     = 100 * time.Millisecond
	lockPollMax     = 2 * time.Second
	maxACMEValue    = 1 << 20 // certificates, keys and metadata are a few KiB
	maxACMEKeyBytes = 1024
)

var (
	acmeStoreScript = redis.NewScript(`
local fence = tonumber(ARGV[4])
local cur = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0') or 0
if fence > 0 and cur > fence then return 0 end
redis.call('HSET', KEYS[1], 'value', ARGV[2], 'modified', ARGV[3], 'fence', math.max(fence, cur))
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
`)
	// acmeDeleteScript deletes key ARGV[2] and everything under
	// "ARGV[2]/" ('0' is the byte after '/').
	acmeDeleteScript = redis.NewScript(`
redis.call('DEL', ARGV[1] .. ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[2])
local under = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[2] .. '/', '(' .. ARGV[2] .. '0')
for _, m in ipairs(under) do
  redis.call('DEL', ARGV[1] .. m)
  redis.call('ZREM', KEYS[1], m)
end
return #under
`)
	acmeLockScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local tok = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], tok .. ':' .. ARGV[1], 'PX', ARGV[2])
return tok
`)
)

// CertStorageOptions configure [Client.CertStorage].
type CertStorageOptions struct {
	// LockTTL is how long a lock outlives its holder's last renewal; the
	// holder renews it every third of that. Zero means [DefaultLockTTL].
	LockTTL time.Duration
}

// CertStorage is a certmagic.Storage (with TryLocker and
// LockLeaseRenewer) in Redis, so that the instances of a cluster share
// one ACME account and one certificate per name: one of them obtains or
// renews it under a lock, and all of them serve it.
//
// Locks carry fencing tokens. A holder that stalls past the lock's expiry
// (a long GC pause, a frozen VM) loses the lock to another instance, which
// gets a higher token; when the stalled one wakes, its renewals and its
// Unlock fail instead of touching the new holder's lock, and its writes to
// the certificate files of the name the lock guards are refused, because
// the newer holder's writes carry the higher token.
type CertStorage struct {
	c     *Client
	ttl   time.Duration
	owner string

	mu    sync.Mutex
	locks map[string]*heldLock // by lock name
}

type heldLock struct {
	value string // "<token>:<owner>" as stored
	token int64
	stop  chan struct{}
	halt  sync.Once
	lost  bool
}

// stopKeeping ends the lock's renewals (once).
func (h *heldLock) stopKeeping() { h.halt.Do(func() { close(h.stop) }) }

// CertStorage returns the ACME storage of the cluster.
func (c *Client) CertStorage(o CertStorageOptions) *CertStorage {
	if o.LockTTL <= 0 {
		o.LockTTL = DefaultLockTTL
	}
	return &CertStorage{c: c, ttl: o.LockTTL, owner: newToken(c.opts.Node), locks: map[string]*heldLock{}}
}

// String names the storage in certmagic's logs.
func (s *CertStorage) String() string { return "redis:" + s.c.key("acme") }

func (s *CertStorage) itemPrefix() string      { return s.c.key("acme", "item") + ":" }
func (s *CertStorage) indexKey() string        { return s.c.key("acme", "index") }
func (s *CertStorage) lockKey(n string) string { return s.c.key("acme", "lock", n) }

func (s *CertStorage) fail(err error) error {
	s.c.failed(opACME, err)
	return err
}

func checkKey(key string) error {
	if key == "" || len(key) > maxACMEKeyBytes || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("bad storage key %q", key)
	}
	return nil
}

// Store implements certmagic.Storage. A write to the certificate files of
// a name whose issue lock this instance holds carries the lock's fencing
// token, and is refused if a newer lock holder has written the key.
func (s *CertStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(value) > maxACMEValue {
		return fmt.Errorf("storing %s: %d bytes is more than %d", key, len(value), maxACMEValue)
	}
	fence, lost := s.fenceFor(key)
	if lost {
		return fmt.Errorf("storing %s: the lock guarding it was lost to another instance", key)
	}
	s.c.stats.calls[opACME].Add(1)
	ok, err := acmeStoreScript.Run(ctx, s.c.bulk, []string{s.itemPrefix() + key, s.indexKey()},
		key, value, time.Now().UnixMilli(), fence).Int()
	if err != nil {
		return fmt.Errorf("storing %s: %w", key, s.fail(err))
	}
	if ok == 0 {
		return fmt.Errorf("storing %s: refused, a newer lock holder wrote it (fencing token %d is stale)", key, fence)
	}
	return nil
}

// Load implements certmagic.Storage; fs.ErrNotExist when key is absent.
func (s *CertStorage) Load(ctx context.Context, key string) ([]byte, error) {
	s.c.stats.calls[opACME].Add(1)
	v, err := s.c.bulk.HGet(ctx, s.itemPrefix()+key, "value").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", key, s.fail(err))
	}
	return v, nil
}

// Delete implements certmagic.Storage: key and everything under "key/";
// a missing key is not an error.
func (s *CertStorage) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.c.stats.calls[opACME].Add(1)
	if err := acmeDeleteScript.Run(ctx, s.c.bulk, []string{s.indexKey()}, s.itemPrefix(), key).Err(); err != nil {
		return fmt.Errorf("deleting %s: %w", key, s.fail(err))
	}
	return nil
}

// Exists implements certmagic.Storage: key is a file or a directory.
func (s *CertStorage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// List implements certmagic.Storage: the keys under path ("" is the
// root), as full keys; without recursive only path's direct children
// (files and directories). fs.ErrNotExist when nothing is under path.
func (s *CertStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	path = strings.Trim(path, "/")
	min, max := "-", "+"
	if path != "" {
		min, max = "["+path+"/", "("+path+"0"
	}
	s.c.stats.calls[opACME].Add(1)
	members, err := s.c.bulk.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.indexKey(), Start: min, Stop: max, ByLex: true}).Result()
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", path, s.fail(err))
	}
	if len(members) == 0 {
		return nil, fs.ErrNotExist
	}
	base := ""
	if path != "" {
		base = path + "/"
	}
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, m := range members {
		rest := strings.TrimPrefix(m, base)
		if !recursive {
			first, _, _ := strings.Cut(rest, "/")
			add(base + first)
			continue
		}
		// Every directory on the way, then the file, as a walk lists them.
		for i := 0; i < len(rest); i++ {
			if rest[i] == '/' {
				add(base + rest[:i])
			}
		}
		add(m)
	}
	return out, nil
}

// Stat implements certmagic.Storage.
func (s *CertStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	s.c.stats.calls[opACME].Add(1)
	pipe := s.c.bulk.Pipeline()
	size := pipe.HStrLen(ctx, s.itemPrefix()+key, "value")
	mod := pipe.HGet(ctx, s.itemPrefix()+key, "modified")
	under := pipe.ZRangeByLex(ctx, s.indexKey(), &redis.ZRangeBy{Min: "[" + key + "/", Max: "(" + key + "0", Count: 1})
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return certmagic.KeyInfo{}, fmt.Errorf("stat %s: %w", key, s.fail(err))
	}
	if n := size.Val(); n > 0 || mod.Val() != "" {
		ms, _ := strconv.ParseInt(mod.Val(), 10, 64)
		return certmagic.KeyInfo{Key: key, Modified: time.UnixMilli(ms), Size: n, IsTerminal: true}, nil
	}
	if len(under.Val()) > 0 {
		return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
	}
	return certmagic.KeyInfo{}, fs.ErrNotExist
}

// Lock implements certmagic.Locker: it waits (polling, honouring ctx)
// until name is free, takes it with a new fencing token and keeps it alive
// until Unlock.
func (s *CertStorage) Lock(ctx context.Context, name string) error {
	wait := lockPollMin
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, lockPollMax)
	}
}

// TryLock implements certmagic.TryLocker.
func (s *CertStorage) TryLock(ctx context.Context, name string) (bool, error) {
	s.c.stats.calls[opACME].Add(1)
	tok, err := acmeLockScript.Run(ctx, s.c.bulk, []string{s.lockKey(name), s.c.key("acme", "fence")}, s.owner, s.ttl.Milliseconds()).Int64()
	if err != nil {
		return false, fmt.Errorf("locking %s: %w", name, s.fail(err))
	}
	if tok == 0 {
		return false, nil
	}
	h := &heldLock{value: strconv.FormatInt(tok, 10) + ":" + s.owner, token: tok, stop: make(chan struct{})}
	s.mu.Lock()
	if old := s.locks[name]; old != nil {
		old.stopKeeping() // a stale record of a lock that lapsed: forget it
	}
	s.locks[name] = h
	s.mu.Unlock()
	go s.keepAlive(name, h)
	return true, nil
}

// keepAlive renews a held lock every third of its TTL until it is
// released or lost.
func (s *CertStorage) keepAlive(name string, h *heldLock) {
	t := time.NewTicker(s.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-s.c.stopped:
			return
		case <-t.C:
		}
		if err := s.renew(context.Background(), name, h, s.ttl); err != nil {
			if errors.Is(err, errLockLost) {
				return
			}
			s.c.log.Warn("renewing an ACME lock failed; retrying", zap.String("lock", name), zap.Error(err))
		}
	}
}

var errLockLost = errors.New("lock lost: it expired and another instance took it")

func (s *CertStorage) renew(ctx context.Context, name string, h *heldLock, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bulkTimeout)
	defer cancel()
	s.c.stats.calls[opACME].Add(1)
	n, err := renewLockScript.Run(ctx, s.c.bulk, []string{s.lockKey(name)}, h.value, ttl.Milliseconds()).Int64()
	if err != nil {
		return s.fail(err)
	}
	if n == 0 {
		s.mu.Lock()
		h.lost = true
		s.mu.Unlock()
		s.c.log.Error("an ACME lock expired while held and was taken by another instance; this instance's writes under it are refused",
			zap.String("lock", name), zap.Int64("token", h.token))
		return errLockLost
	}
	return nil
}

// RenewLockLease implements certmagic.LockLeaseRenewer.
func (s *CertStorage) RenewLockLease(ctx context.Context, name string, lease time.Duration) error {
	s.mu.Lock()
	h := s.locks[name]
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("renewing lock %s: not held by this instance", name)
	}
	return s.renew(ctx, name, h, max(lease, s.ttl))
}

// Unlock implements certmagic.Locker. It deletes the lock only if this
// instance still holds it; a lock lost while held is an error.
func (s *CertStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.locks[name]
	delete(s.locks, name)
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("unlocking %s: not held by this instance", name)
	}
	h.stopKeeping()
	s.c.stats.calls[opACME].Add(1)
	n, err := unlockScript.Run(ctx, s.c.bulk, []string{s.lockKey(name)}, h.value).Int64()
	if err != nil {
		return fmt.Errorf("unlocking %s: %w", name, s.fail(err))
	}
	if n == 0 {
		return fmt.Errorf("unlocking %s: %w", name, errLockLost)
	}
	return nil
}

// fenceFor returns the fencing token a write of key carries: that of the
// held "issue_cert_<name>" lock whose name's certificate files key is
// (certificates/<issuer>/<name>/...), else 0 (unfenced). lost reports
// that the guarding lock was lost.
func (s *CertStorage) fenceFor(key string) (token int64, lost bool) {
	parts := strings.SplitN(key, "/", 4)
	if len(parts) < 4 || parts[0] != "certificates" {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, h := range s.locks {
		domain, ok := strings.CutPrefix(name, "issue_cert_")
		if ok && (certmagic.KeyBuilder{}).Safe(domain) == parts[2] {
			return h.token, h.lost
		}
	}
	return 0, false
}

var (
	_ certmagic.Storage          = (*CertStorage)(nil)
	_ certmagic.TryLocker        = (*CertStorage)(nil)
	_ certmagic.LockLeaseRenewer = (*CertStorage)(nil)
)

package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/fedgate/fedgate/auth"
)

// Keyring sharing in Redis, per remote server S:
//
//	<prefix>keys:S       hash: "doc"  = "<checked_ms>\n<S's signed key document>"
//	                           "fail" = "<failures>\n<retry_at_ms>\n<reason>"
//	<prefix>keys:S:lock  the fetch lock: a random token, expiring after
//	                     fetchLockTTL unless its holder keeps it alive
//
// The hash expires keyTTL after its last write (documents are trusted for
// at most 7 days after their fetch anyway).
const (
	keyTTL          = 8 * 24 * time.Hour
	fetchLockTTL    = 3 * time.Second
	fetchLockRenew  = time.Second
	maxReasonStored = 512
	// maxDocField bounds the "doc" field: a key document plus its header.
	maxDocField = auth.MaxKeyDocumentSize + 32
	// maxFailField bounds the "fail" field.
	maxFailField = maxReasonStored + 64
)

// publishKeysScript stores a fetch outcome and releases the fetch lock.
// KEYS: the hash, the lock. ARGV: lock token ("" for none), doc field (""
// to leave the stored one), its check time in ms, fail field ("" to clear
// it), hash TTL in ms. A document older than the stored one is not
// written (a slow fetch must not replace a newer one).
var publishKeysScript = redis.NewScript(`
if ARGV[2] ~= '' then
  local newer = true
  local cur = redis.call('HGET', KEYS[1], 'doc')
  if cur then
    local c = tonumber(string.match(cur, '^(%d+)\n'))
    if c and c > tonumber(ARGV[3]) then newer = false end
  end
  if newer then redis.call('HSET', KEYS[1], 'doc', ARGV[2]) end
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'fail', ARGV[4])
else
  redis.call('HDEL', KEYS[1], 'fail')
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
`)

// renewLockScript extends a lock still held with the token in ARGV[1] to
// ARGV[2] ms; it returns 0 when the lock is gone or someone else's.
var renewLockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// unlockScript deletes a lock only if it is still held with ARGV[1].
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// keyringTimeout bounds a keyring round trip. The keyring goes to Redis
// only on a miss, from its fetch goroutine, where a key fetch may take
// seconds anyway; a longer bound than the request path's keeps a busy
// Redis from being taken for a dead one.
func (c *Client) keyringTimeout() time.Duration {
	return min(max(10*c.opts.Timeout, 500*time.Millisecond), bulkTimeout)
}

// Keys is an [auth.SharedKeyStore] over Redis.
type Keys struct {
	c  *Client
	wg sync.WaitGroup // lock keepers
}

// Keys returns the shared store for the keyring. Remote servers' keys are
// the same for every server name an instance fronts, so there is one store
// per prefix.
func (c *Client) Keys() *Keys { return &Keys{c: c} }

func (k *Keys) hashKey(server string) string { return k.c.key("keys", server) }
func (k *Keys) lockKey(server string) string { return k.c.key("keys", server, "lock") }

// Lookup implements [auth.SharedKeyStore]: one round trip (HMGET and
// EXISTS pipelined), bounded by cluster.timeout.
func (k *Keys) Lookup(ctx context.Context, server string) (auth.SharedKeys, error) {
	c := k.c
	if !c.up.Load() {
		c.stats.fallbacks[opKeyring].Add(1)
		return auth.SharedKeys{}, errDown
	}
	c.stats.calls[opKeyring].Add(1)
	ctx, cancel := context.WithTimeout(ctx, c.keyringTimeout())
	defer cancel()
	pipe := c.bulk.Pipeline()
	fields := pipe.HMGet(ctx, k.hashKey(server), "doc", "fail")
	lock := pipe.Exists(ctx, k.lockKey(server))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		c.failed(opKeyring, err)
		c.stats.fallbacks[opKeyring].Add(1)
		return auth.SharedKeys{}, err
	}
	vals := fields.Val()
	var docField, failField string
	if len(vals) == 2 {
		docField, _ = vals[0].(string)
		failField, _ = vals[1].(string)
	}
	sk, err := DecodeKeyRecord([]byte(docField), []byte(failField))
	if err != nil {
		// Garbage under our key: ignore it (the next publish replaces it).
		c.stats.errors[opKeyring].Add(1)
		c.log.Debug("ignoring a malformed keyring record", zap.String("server", server), zap.Error(err))
		sk = auth.SharedKeys{}
	}
	sk.Fetching = lock.Val() > 0
	return sk, nil
}

// LockFetch implements [auth.SharedKeyStore]: SET NX with a random token
// and a short expiry, kept alive by a goroutine until done is called.
func (k *Keys) LockFetch(ctx context.Context, server string) (func(context.Context, auth.SharedKeys) error, bool, error) {
	c := k.c
	if !c.up.Load() {
		return nil, false, errDown
	}
	token := newToken(c.opts.Node)
	c.stats.calls[opKeyring].Add(1)
	ctx, cancel := context.WithTimeout(ctx, c.keyringTimeout())
	defer cancel()
	ok, err := c.bulk.SetNX(ctx, k.lockKey(server), token, fetchLockTTL).Result()
	if err != nil {
		c.failed(opKeyring, err)
		return nil, false, err
	}
	if !ok {
		return nil, false, nil
	}
	stop := make(chan struct{})
	k.wg.Add(1)
	go k.keepLock(k.lockKey(server), token, stop)
	var once sync.Once
	done := func(ctx context.Context, sk auth.SharedKeys) error {
		err := errors.New("fetch lock released twice")
		once.Do(func() {
			close(stop)
			err = k.publish(ctx, server, token, sk)
		})
		return err
	}
	return done, true, nil
}

// keepLock renews a fetch lock until stop closes or the lock is lost.
func (k *Keys) keepLock(key, token string, stop <-chan struct{}) {
	defer k.wg.Done()
	t := time.NewTicker(fetchLockRenew)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-k.c.stopped:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), fetchLockRenew)
		n, err := renewLockScript.Run(ctx, k.c.bulk, []string{key}, token, fetchLockTTL.Milliseconds()).Int64()
		cancel()
		if err == nil && n == 0 {
			return // lost: another instance may fetch too, which is harmless
		}
		// An error is retried on the next tick: the lock has two more.
	}
}

// Publish implements [auth.SharedKeyStore] for a fetch made without the
// lock.
func (k *Keys) Publish(ctx context.Context, server string, sk auth.SharedKeys) error {
	return k.publish(ctx, server, "", sk)
}

func (k *Keys) publish(ctx context.Context, server, token string, sk auth.SharedKeys) error {
	c := k.c
	var doc, fail string
	if len(sk.Document) > 0 {
		if len(sk.Document) > auth.MaxKeyDocumentSize {
			return fmt.Errorf("key document of %d bytes is too large to share", len(sk.Document))
		}
		doc = string(EncodeKeyDocument(sk.Document, sk.Checked))
	}
	if sk.Failures > 0 {
		fail = string(EncodeKeyFailure(sk.Failures, sk.RetryAt, sk.Reason))
	}
	c.stats.calls[opKeyring].Add(1)
	ctx, cancel := context.WithTimeout(ctx, bulkTimeout)
	defer cancel()
	err := publishKeysScript.Run(ctx, c.bulk, []string{k.hashKey(server), k.lockKey(server)},
		token, doc, sk.Checked.UnixMilli(), fail, keyTTL.Milliseconds()).Err()
	if err != nil {
		c.failed(opKeyring, err)
		return fmt.Errorf("publishing keys of %s: %w", server, err)
	}
	return nil
}

// EncodeKeyDocument renders the "doc" field: the check time in
// milliseconds, a newline, the document.
func EncodeKeyDocument(doc []byte, checked time.Time) []byte {
	b := strconv.AppendInt(nil, checked.UnixMilli(), 10)
	b = append(b, '\n')
	return append(b, doc...)
}

// EncodeKeyFailure renders the "fail" field: failures, retry time in
// milliseconds and the reason, one per line (the reason cut to 512 bytes).
func EncodeKeyFailure(failures int, retryAt time.Time, reason string) []byte {
	if len(reason) > maxReasonStored {
		reason = reason[:maxReasonStored]
	}
	b := strconv.AppendInt(nil, int64(failures), 10)
	b = append(b, '\n')
	b = strconv.AppendInt(b, retryAt.UnixMilli(), 10)
	b = append(b, '\n')
	return append(b, reason...)
}

// DecodeKeyRecord parses the two fields of a keyring record as Redis
// returned them (either may be empty). It checks the framing and bounds
// only; the keyring verifies the document itself. Both fields come from
// Redis and are treated as untrusted.
func DecodeKeyRecord(docField, failField []byte) (auth.SharedKeys, error) {
	var sk auth.SharedKeys
	if len(docField) > 0 {
		if len(docField) > maxDocField {
			return auth.SharedKeys{}, fmt.Errorf("doc field of %d bytes is too large", len(docField))
		}
		head, doc, ok := bytes.Cut(docField, []byte{'\n'})
		if !ok || len(doc) == 0 {
			return auth.SharedKeys{}, errors.New("doc field has no document")
		}
		ms, err := parseMillis(head)
		if err != nil {
			return auth.SharedKeys{}, fmt.Errorf("doc field: %w", err)
		}
		sk.Document, sk.Checked = doc, time.UnixMilli(ms)
	}
	if len(failField) > 0 {
		if len(failField) > maxFailField {
			return auth.SharedKeys{}, fmt.Errorf("fail field of %d bytes is too large", len(failField))
		}
		n, rest, ok1 := bytes.Cut(failField, []byte{'\n'})
		at, reason, ok2 := bytes.Cut(rest, []byte{'\n'})
		if !ok1 || !ok2 {
			return auth.SharedKeys{}, errors.New("fail field is not three lines")
		}
		failures, err := strconv.Atoi(string(n))
		if err != nil || failures < 0 || failures > 1<<20 {
			return auth.SharedKeys{}, fmt.Errorf("fail field: bad failure count %q", n)
		}
		ms, err := parseMillis(at)
		if err != nil {
			return auth.SharedKeys{}, fmt.Errorf("fail field: %w", err)
		}
		sk.Failures, sk.RetryAt, sk.Reason = failures, time.UnixMilli(ms), string(reason)
	}
	return sk, nil
}

// parseMillis parses a non-negative millisecond timestamp before the year
// 9999.
func parseMillis(b []byte) (int64, error) {
	ms, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || ms < 0 || ms > 253402300799999 {
		return 0, fmt.Errorf("bad timestamp %q", truncate(b, 32))
	}
	return ms, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// newToken is a lock owner's token: the node name and 128 random bits.
func newToken(node string) string {
	var r [16]byte
	rand.Read(r[:])
	return node + ":" + hex.EncodeToString(r[:])
}

var _ auth.SharedKeyStore = (*Keys)(nil)

package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"
)

// Defaults for [Options].
const (
	DefaultPrefix  = "fedgate:"
	DefaultTimeout = 50 * time.Millisecond
	// bulkTimeout bounds one round trip of work off the request path: ACME
	// storage, backoff publishing, the health probe.
	bulkTimeout = 5 * time.Second
	// probeMin and probeMax bound the wait between reconnection attempts
	// while Redis is down; probeEvery is how often a healthy Redis is
	// pinged, so that the gauge is right on an idle instance too.
	probeMin   = 100 * time.Millisecond
	probeMax   = 5 * time.Second
	probeEvery = 5 * time.Second
)

// quietRedisLog silences go-redis's process-wide logger, once.
var quietRedisLog sync.Once

type discardLog struct{}

func (discardLog) Printf(context.Context, string, ...any) {}

// errDown is returned, without a round trip, while Redis is marked down.
var errDown = errors.New("redis is down; using local state")

// Options configure a [Client].
type Options struct {
	// URL is "redis://[user:password@]host:port/db" or "rediss://..." (TLS).
	// Required.
	URL string
	// Password, when not empty, replaces the URL's password (from
	// cluster.password_file).
	Password string
	// CAFile is a PEM bundle trusted for a rediss:// server instead of the
	// system roots; empty means the system roots.
	CAFile string
	// Prefix starts every key; empty means [DefaultPrefix].
	Prefix string
	// Node names this instance in logs, metrics and lock owners; empty
	// means the host name.
	Node string
	// Timeout bounds one round trip on the request path (and dialling);
	// past it the caller uses its local state. Zero means [DefaultTimeout].
	Timeout time.Duration
	// Logger receives state changes (Redis down, back up); nil discards
	// them.
	Logger *zap.Logger
}

// Client is fedgate's connection to Redis and the owner of the state
// several instances share. Create it with [New], run [Client.Run] in a
// goroutine, hand the seams ([Client.Limiter], [Client.Keys],
// [Client.Backoff], [Client.CertStorage]) to the packages that use them,
// and [Client.Close] it at shutdown. Safe for concurrent use.
type Client struct {
	opts   Options
	log    *zap.Logger
	prefix string
	// fast serves the request path (rate-limit batches, flushed by the
	// callers themselves, and the probe): every round trip bounded by
	// Timeout, no retries. bulk serves work off the request path
	// (keyring, ACME storage, publishing) with longer timeouts.
	fast, bulk *redis.Client
	stats      *stats

	up   atomic.Bool
	wake chan struct{} // a failure asks Run to probe now

	mu sync.Mutex // guards changedAt
	// changedAt is when Redis was last marked down or up again; when New
	// ran until the first change. While Redis is down it is when it was
	// marked down.
	changedAt time.Time
	addr      string // the server's address without credentials, see Address
	closed    atomic.Bool
	backoffs  *Backoff // made by New; Run and the gateway share it

	// takes queues rate-limit calls; slots holds takeFlushers buffers, and
	// a caller that receives one flushes the queue in batches with it (see
	// await); stopped is closed by Close.
	takes   chan *takeReq
	slots   chan *takeBuf
	stopped chan struct{}
	args    sync.Map // bucketKey -> *[2]any, see bucketArgs
	argsN   atomic.Int64
}

// New checks opts and builds a Client. It does not wait for Redis: an
// unreachable server is logged, counted and retried by [Client.Run], and
// until it answers every seam falls back to local state.
func New(opts Options) (*Client, error) {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Node == "" {
		if h, err := os.Hostname(); err == nil {
			opts.Node = h
		} else {
			opts.Node = "fedgate"
		}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	base, err := redis.ParseURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("cluster: redis URL: %v", redactURLError(err, opts.URL))
	}
	if opts.Password != "" {
		base.Password = opts.Password
	}
	if base.TLSConfig != nil && opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: reading ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cluster: ca_file %s holds no PEM certificate", opts.CAFile)
		}
		base.TLSConfig = base.TLSConfig.Clone()
		base.TLSConfig.RootCAs = roots
	}
	if base.TLSConfig != nil && base.TLSConfig.MinVersion < tls.VersionTLS12 {
		base.TLSConfig.MinVersion = tls.VersionTLS12
	}
	c := &Client{
		opts:    opts,
		log:     opts.Logger.Named("cluster").With(zap.String("node", opts.Node)),
		prefix:  opts.Prefix,
		stats:   newStats(),
		wake:    make(chan struct{}, 1),
		takes:   make(chan *takeReq, takeQueue),
		slots:   make(chan *takeBuf, takeFlushers),
		stopped: make(chan struct{}),
	}
	for range takeFlushers {
		c.slots <- newTakeBuf()
	}
	quietRedisLog.Do(func() {
		// go-redis logs every failed dial through its own global logger;
		// fedgate logs the state change once instead.
		redis.SetLogger(discardLog{})
	})
	c.fast = redis.NewClient(clientOptions(base, opts.Node, opts.Timeout, opts.Timeout, takeFlushers+2, -1))
	c.bulk = redis.NewClient(clientOptions(base, opts.Node, max(opts.Timeout, time.Second), bulkTimeout, 8, 2))
	c.backoffs = &Backoff{c: c, channel: c.key("backoff"), queue: make(chan backoffMsg, publishQueue), resyncs: make(chan struct{}, 1)}
	c.up.Store(true) // optimistic: the first failure marks it down and logs once
	c.changedAt = time.Now()
	c.addr = address(base)
	return c, nil
}

// clientOptions derives one go-redis client's options from the parsed URL.
func clientOptions(base *redis.Options, node string, dial, rw time.Duration, pool, retries int) *redis.Options {
	o := *base
	o.ClientName = "fedgate-" + node
	o.DialTimeout = dial
	o.ReadTimeout = rw
	o.WriteTimeout = rw
	o.PoolTimeout = rw
	o.ContextTimeoutEnabled = true
	o.MaxRetries = retries
	o.DialerRetries = 1
	o.PoolSize = pool
	o.MinIdleConns = 0
	o.ConnMaxIdleTime = 5 * time.Minute
	o.DisableIdentity = true
	o.Protocol = 2
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return &o
}

// redactURLError keeps a password in the URL out of error messages.
func redactURLError(err error, raw string) error {
	msg := err.Error()
	if i := strings.Index(raw, "@"); i > 0 {
		msg = strings.ReplaceAll(msg, raw[:i], "redis://***")
	}
	return errors.New(msg)
}

// markedDown records when Redis was marked down.
func (c *Client) markedDown() {
	c.mu.Lock()
	c.changedAt = time.Now()
	c.mu.Unlock()
}

// address names the server of parsed options without credentials:
// "redis://host:port/db" (or "rediss://" for TLS, "unix://path").
func address(o *redis.Options) string {
	scheme := "redis"
	switch {
	case o.Network == "unix":
		return "unix://" + o.Addr
	case o.TLSConfig != nil:
		scheme = "rediss"
	}
	return fmt.Sprintf("%s://%s/%d", scheme, o.Addr, o.DB)
}

// Address returns the Redis server's address without user name or
// password ("redis://127.0.0.1:6379/0"), for status pages.
func (c *Client) Address() string { return c.addr }

// Node returns this instance's name.
func (c *Client) Node() string { return c.opts.Node }

// Prefix returns the prefix every key starts with.
func (c *Client) Prefix() string { return c.prefix }

// Timeout returns the bound on one round trip on the request path.
func (c *Client) Timeout() time.Duration { return c.opts.Timeout }

// Up reports whether Redis answered the last round trip (or probe).
func (c *Client) Up() bool { return c.up.Load() }

// key builds a key under the prefix.
func (c *Client) key(parts ...string) string {
	n := len(c.prefix)
	for _, p := range parts {
		n += len(p) + 1
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(c.prefix)
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(p)
	}
	return b.String()
}

// failed counts a failed round trip of op and, when it says Redis is
// unreachable or overloaded (rather than refusing one command), marks it
// down: from then on the request path skips Redis until Run's probe
// succeeds. The change is logged once.
func (c *Client) failed(op int, err error) {
	c.stats.errors[op].Add(1)
	if !unavailable(err) {
		c.log.Debug("redis refused a command", zap.String("op", opNames[op]), zap.Error(err))
		return
	}
	if c.up.CompareAndSwap(true, false) {
		c.markedDown()
		c.stats.downs.Add(1)
		c.log.Warn("redis unreachable or slower than cluster.timeout: every instance uses its own limits and key cache until it answers again",
			zap.String("op", opNames[op]), zap.Duration("timeout", c.opts.Timeout), zap.Error(err))
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// unavailable tells an unreachable, slow or unready Redis from one that
// answered with an error about the command itself.
func unavailable(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "NOAUTH", "WRONGPASS", "NOPERM"} {
			if redis.HasErrorPrefix(err, p) {
				return true
			}
		}
		return false
	}
	return true
}

// Run keeps the health state: while Redis is down it probes with PING at
// growing intervals and marks it up again on the first answer (logged
// once); while up it pings every few seconds, so that the gauge is right
// on an idle instance too. Run returns when ctx ends; call it once, in its
// own goroutine.
func (c *Client) Run(ctx context.Context) {
	c.probeLoop(ctx)
}

func (c *Client) probeLoop(ctx context.Context) {
	wait := probeMin
	c.probe(ctx) // know at once whether Redis is there
	for {
		next := probeEvery
		if !c.up.Load() {
			next = wait
			wait = min(wait*2, probeMax)
		} else {
			wait = probeMin
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.wake:
			t.Stop()
			wait = probeMin
			continue // the failure was just seen: give Redis a moment first
		case <-t.C:
		}
		c.probe(ctx)
	}
}

// probe pings Redis once and updates the state.
func (c *Client) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, max(c.opts.Timeout, time.Second))
	err := c.fast.Ping(pctx).Err()
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		c.failed(opPing, err)
		if !unavailable(err) && c.up.CompareAndSwap(true, false) {
			// PING refused (NOAUTH and the like are handled above): treat
			// as down too, the server cannot serve us.
			c.markedDown()
			c.log.Warn("redis refuses PING; using local state", zap.Error(err))
		}
		return
	}
	if c.up.CompareAndSwap(false, true) {
		c.mu.Lock()
		down := time.Since(c.changedAt)
		c.changedAt = time.Now()
		c.mu.Unlock()
		c.log.Info("redis reachable again: shared limits, keys and backoff resume", zap.Duration("down_for", down.Round(time.Millisecond)))
		c.backoffs.resync()
	}
}

// Close closes the connections. Seams used afterwards fall back to local
// state.
func (c *Client) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.up.Store(false)
	close(c.stopped)
	return errors.Join(c.fast.Close(), c.bulk.Close())
}

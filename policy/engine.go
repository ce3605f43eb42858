package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedgate/fedgate/config"
)

// DefaultListPollInterval is how often [Engine.Run] looks at list_file
// when [Options.ListPollInterval] is zero.
const DefaultListPollInterval = 5 * time.Second

// Options configure an [Engine]. Policy and RateLimit are the
// configuration's sections as config.Load returns them (validated, defaults
// applied); a policy built by hand gets the same checks at compile time, as
// errors.
type Options struct {
	// ServerName is our server name (required), for the locality checks.
	ServerName string
	// Policy is the [policy] section.
	Policy config.Policy
	// RateLimit is the [rate_limit] section.
	RateLimit config.RateLimit
	// Now is the clock for rate limits and list_max_age; nil means
	// time.Now. Only the value given to [New] is used.
	Now func() time.Time
	// Logger receives list reloads, stale-list alarms and configuration
	// warnings; nil discards them. Decisions are not logged here: the
	// caller logs each denial once, with the request. Only the value given
	// to [New] is used.
	Logger *slog.Logger
	// ListPollInterval is how often Run checks list_file for changes; zero
	// means [DefaultListPollInterval].
	ListPollInterval time.Duration
	// MaxLimiterKeys bounds the keys each limiter remembers; zero means
	// [DefaultMaxLimiterKeys]. Only the value given to [New] is used.
	MaxLimiterKeys int
	// Shared, when set, keeps the rate limits in a store several
	// instances share (cluster mode): see [SharedLimiter],
	// [Limiters.AllowVerified] and [Limiters.AllowEgress]. Nil keeps every
	// bucket in this process. Concurrency caps are always per instance.
	// Only the value given to [New] is used.
	Shared SharedLimiter
}

// Engine owns the current [Snapshot], the external list and the
// [Limiters]. It is long-lived: build it once with [New], publish new
// configurations with [Engine.Update], and run [Engine.Run] for list-file
// polling and limiter eviction. Snapshot and Limiters are safe for
// concurrent use and lock-free; Update and the list reloads Run performs
// are serialised with each other. An Engine must not be copied.
type Engine struct {
	log      *slog.Logger
	now      func() time.Time
	counters *counters
	limiters *Limiters
	snap     atomic.Pointer[Snapshot]

	mu       sync.Mutex // guards everything below; writers only
	opts     Options
	list     listState
	external map[string]*compiledExternal // [Engine.SetExternal]
}

// listState is the external list as the engine tracks it.
type listState struct {
	path     string
	list     *externalList // last good list; nil when path is ""
	info     listInfo
	stamp    fileStamp // the file state last looked at, good or bad
	statErr  string    // last stat error logged, so it is logged once
	lastErr  string    // why the last file looked at was refused
	loads    uint64
	failures uint64
	stale    bool // a stale alarm has been logged
}

// New compiles opts and starts an engine with it. A list_file that cannot
// be read or parsed is an error here (there is no last good list to keep).
func New(opts Options) (*Engine, error) {
	o, err := opts.normalise()
	if err != nil {
		return nil, err
	}
	e := &Engine{log: o.Logger, now: o.Now, counters: &counters{}}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	o.Now = e.now
	e.limiters = newLimiters(e.now, o.MaxLimiterKeys, e.counters, o.Shared)
	var list listState
	if path := plainListFile(&o); path != "" {
		if list, err = loadList(path); err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
	}
	snap, lc, err := e.build(&o, &list)
	if err != nil {
		return nil, err
	}
	e.opts, e.list = o, list
	e.publish(snap, lc, &o)
	if list.list != nil {
		e.log.Info("policy list file loaded", "file", list.path, "version", list.info.version,
			"allow", list.info.allow, "deny", list.info.deny)
	}
	return e, nil
}

// Update compiles opts and publishes the result; on error nothing changes
// and the previous policy keeps serving. Requests in flight keep the
// snapshot they loaded. Limiter state is kept: buckets adopt new rates.
//
// The list file is re-read too. If list_file names a new path, that file
// must be good, or Update fails. If the path is the same and the file has
// become bad (or older), the last good list is kept and the problem
// logged: that is the list file's own failure mode, not the
// configuration's. Now, Logger and MaxLimiterKeys keep their values from
// [New].
func (e *Engine) Update(opts Options) error {
	o, err := opts.normalise()
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	o.Now, o.Logger, o.MaxLimiterKeys, o.Shared = e.now, e.log, e.opts.MaxLimiterKeys, e.opts.Shared
	list := e.list
	switch path := plainListFile(&o); {
	case path == "":
		list = listState{}
	case path != list.path:
		if list, err = loadList(path); err != nil {
			return fmt.Errorf("policy: %w", err)
		}
	default:
		e.refreshList(&list, true)
	}
	snap, lc, err := e.build(&o, &list)
	if err != nil {
		return err
	}
	e.opts, e.list = o, list
	e.publish(snap, lc, &o)
	return nil
}

// build compiles a snapshot and a limiter configuration without publishing
// either.
func (e *Engine) build(o *Options, list *listState) (*Snapshot, *limitConfig, error) {
	snap, err := compileSnapshot(o, list.list, list.info, e.counters)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w", err)
	}
	snap.external = e.externalList()
	lc, err := e.limiters.compile(o.RateLimit, o.Policy.DryRun)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w", err)
	}
	return snap, lc, nil
}

func (e *Engine) publish(snap *Snapshot, lc *limitConfig, o *Options) {
	e.limiters.publish(lc)
	e.snap.Store(snap)
	for _, w := range snap.warnings(o) {
		e.log.Warn(w)
	}
}

// Snapshot returns the current policy: one atomic load, never nil. Safe for
// concurrent use.
func (e *Engine) Snapshot() *Snapshot { return e.snap.Load() }

// Limiters returns the engine's limiters; the same value for the engine's
// whole life.
func (e *Engine) Limiters() *Limiters { return e.limiters }

// Run polls list_file every ListPollInterval (reloading it when it
// changes, alarming when it goes stale) and evicts idle limiter state,
// until ctx ends. Call it once, in its own goroutine.
func (e *Engine) Run(ctx context.Context) {
	poll := e.pollInterval()
	sweep := e.sweepInterval()
	pollT := time.NewTicker(poll)
	defer pollT.Stop()
	sweepT := time.NewTicker(sweep)
	defer sweepT.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pollT.C:
			e.PollList()
			if p := e.pollInterval(); p != poll {
				poll = p
				pollT.Reset(p)
			}
		case <-sweepT.C:
			if n := e.limiters.Sweep(); n > 0 {
				e.log.Debug("policy limiters swept", "forgotten", n)
			}
			if s := e.sweepInterval(); s != sweep {
				sweep = s
				sweepT.Reset(s)
			}
		}
	}
}

func (e *Engine) pollInterval() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.opts.ListPollInterval
}

// sweepInterval is a quarter of idle_eviction, between 1 s and 1 min.
func (e *Engine) sweepInterval() time.Duration {
	e.mu.Lock()
	idle := e.opts.RateLimit.IdleEviction.D()
	e.mu.Unlock()
	return min(max(idle/4, time.Second), time.Minute)
}

// PollList looks at list_file once: a rewritten file is reloaded (a bad or
// older one refused, keeping the last good list), and the stale state is
// logged when it changes. [Engine.Run] calls it; tests and a file-watching
// caller may call it directly. Safe for concurrent use.
func (e *Engine) PollList() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.list.path == "" {
		return
	}
	list := e.list
	if e.refreshList(&list, false) {
		cur := e.snap.Load()
		var snap *Snapshot
		if list.list == e.list.list {
			// Same content rewritten: only the freshness changed.
			s := *cur
			s.list = list.info
			if age := e.opts.Policy.ListMaxAge.D(); age > 0 {
				s.listDeadline = list.info.modified.Add(age)
			}
			snap = &s
		} else {
			var err error
			if snap, err = compileSnapshot(&e.opts, list.list, list.info, e.counters); err != nil {
				// The list compiled on its own, so this cannot happen
				// with a configuration that compiled before; keep serving.
				e.log.Error("policy list file not applied", "file", list.path, "error", err)
				return
			}
			snap.external = cur.external
		}
		e.snap.Store(snap)
	}
	e.list = list
	stale := e.snap.Load().Stale()
	switch {
	case stale && !e.list.stale:
		e.log.Error("policy list file is stale: federation fails closed (list_stale) until it is refreshed",
			"file", e.list.path, "modified", e.list.info.modified, "max_age", e.opts.Policy.ListMaxAge.D())
	case !stale && e.list.stale:
		e.log.Info("policy list file is fresh again", "file", e.list.path, "modified", e.list.info.modified)
	}
	e.list.stale = stale
}

// plainListFile is the list file the engine reads itself: list_file when
// it holds plain JSON. A signed list (list_signature = "jws", list_file or
// list_url) is verified by a source outside policy (package signedlist)
// and arrives through [Engine.SetExternal].
func plainListFile(o *Options) string {
	if o.Policy.ListSignature != "" {
		return ""
	}
	return o.Policy.ListFile
}

// loadList reads the list file for a new path.
func loadList(path string) (listState, error) {
	info, l, err := readList(path)
	if err != nil {
		return listState{}, err
	}
	return listState{
		path:  path,
		list:  l,
		info:  listInfoOf(path, info, l),
		stamp: fileStamp{info: info},
		loads: 1,
	}, nil
}

func listInfoOf(path string, info os.FileInfo, l *externalList) listInfo {
	return listInfo{file: path, version: l.version, modified: info.ModTime(), allow: len(l.allow), deny: len(l.deny)}
}

// refreshList re-reads the list file if it changed since last looked at,
// or with force (a reload) in any case. A file whose content is bad, or
// has a lower version, is refused and logged once; the last good list
// stays. A file that cannot be opened or read is retried on every call and
// logged once per distinct error. It reports whether ls now holds a
// different list or freshness. Called with e.mu held.
func (e *Engine) refreshList(ls *listState, force bool) bool {
	st, err := os.Stat(ls.path)
	if err == nil && !force && ls.stamp.same(st) {
		ls.statErr = ""
		return false
	}
	var info os.FileInfo
	var l *externalList
	if err == nil {
		info, l, err = readList(ls.path)
	}
	if l == nil && (info == nil || errors.Is(err, errListRead)) {
		// Could not read it: nothing is known about the content, so try
		// again next time, but say so only once.
		if msg := err.Error(); msg != ls.statErr {
			ls.statErr = msg
			e.log.Warn("policy list file unreadable, keeping the last good list",
				"file", ls.path, "version", ls.info.version, "error", err)
		}
		return false
	}
	ls.statErr = ""
	ls.stamp = fileStamp{info: info}
	if err == nil && ls.list != nil && l.version < ls.list.version {
		err = fmt.Errorf("list file %s has version %d, older than the loaded version %d (rollback refused)",
			ls.path, l.version, ls.list.version)
	}
	if err != nil {
		ls.failures++
		ls.lastErr = err.Error()
		e.log.Error("policy list file refused, keeping the last good list",
			"file", ls.path, "version", ls.info.version, "error", err)
		return false
	}
	ls.lastErr = ""
	ls.loads++
	if ls.list != nil && l.sum == ls.list.sum {
		if info.ModTime().Equal(ls.info.modified) {
			return false
		}
		ls.info.modified = info.ModTime()
		return true
	}
	if ls.list != nil && l.version == ls.list.version {
		e.log.Warn("policy list file changed without a new version", "file", ls.path, "version", l.version)
	}
	ls.list = l
	ls.info = listInfoOf(ls.path, info, l)
	e.log.Info("policy list file loaded", "file", ls.path, "version", l.version, "allow", len(l.allow), "deny", len(l.deny))
	return true
}

// Stats is a point-in-time view of the engine for metrics.
type Stats struct {
	// Denied counts enforced denials by reason code (every code present).
	Denied map[string]uint64
	// DryRun counts denials dry_run let through, by reason code.
	DryRun map[string]uint64
	// LimiterKeys is how many keys each limiter remembers.
	LimiterKeys map[string]int
	// List describes the external list; zero when there is none.
	List ListStatus
}

// ListStatus describes the external list in use.
type ListStatus struct {
	File     string    // list_file, absolute
	Version  int64     // version of the list in use
	Allow    int       // entries in the file's allow list
	Deny     int       // entries in the file's deny list
	Modified time.Time // mtime of the file the list was read from
	Stale    bool      // past list_max_age: checks fail closed
	Loads    uint64    // good reads, the first included
	Failures uint64    // files refused for bad content or an older version
	// LastError says why the file currently on disk was refused; "" when
	// the list in use is the file on disk.
	LastError string
}

// Stats returns counters and gauges for metrics. It takes locks; call it
// from a metrics scrape, not per request.
func (e *Engine) Stats() Stats {
	st := Stats{
		Denied:      make(map[string]uint64, numReasons),
		DryRun:      make(map[string]uint64, numReasons),
		LimiterKeys: e.limiters.Keys(),
	}
	for i, r := range Reasons() {
		st.Denied[r] = e.counters.denied[i].Load()
		st.DryRun[r] = e.counters.dryRun[i].Load()
	}
	e.mu.Lock()
	ls := e.list
	e.mu.Unlock()
	if ls.path != "" {
		st.List = ListStatus{
			File: ls.path, Version: ls.info.version, Allow: ls.info.allow, Deny: ls.info.deny,
			Modified: ls.info.modified, Stale: e.Snapshot().Stale(),
			Loads: ls.loads, Failures: ls.failures, LastError: ls.lastErr,
		}
	}
	return st
}

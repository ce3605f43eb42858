package policyroom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fedgate/fedgate/policy"
)

// Defaults for zero [Options] fields.
const (
	DefaultSyncTimeout = 30 * time.Second
	DefaultMaxRules    = 50000
	// requestTimeout bounds every call but the long-poll, which gets its
	// wait plus this much.
	requestTimeout = 30 * time.Second
	// timelineLimit is the filter's timeline limit: more rule changes
	// between two syncs make the answer "limited", and the room is read
	// again in full.
	timelineLimit = 100
	// persistEvery is how often the sync time is written to the state file
	// when no rule changes (max_age counts from it after a restart).
	persistEvery = 5 * time.Minute
	// maxBackoff is the longest wait between attempts after failures.
	maxBackoff = time.Minute
	// followRetry is how long to wait before trying again to join a
	// replacement room that could not be joined.
	followRetry = time.Minute
	// maxLoggedChanges bounds the per-rule log lines of one sync answer.
	maxLoggedChanges = 20
)

// Sync states, as [Status.State] reports them.
const (
	StateStarting = "starting" // no answer from the homeserver yet, no saved rules
	StateRestored = "restored" // enforcing the rules saved in data_dir; the homeserver has not answered yet
	StateSyncing  = "syncing"  // the last sync succeeded
	StateError    = "error"    // the last attempt failed; the last good rules stay
)

// Sink receives the rules; *policy.Engine is one.
type Sink interface {
	SetExternal(name string, x *policy.External) policy.ExternalResult
	SetExternalStaleAt(name string, staleAt time.Time) bool
}

// Options configure a [Source].
type Options struct {
	// Room is the room ID or alias, as configured (required).
	Room string
	// Homeserver is the client-server API base URL (required).
	Homeserver *url.URL
	// HTTP sends the requests; nil means a client with default settings.
	// It must not set a Timeout shorter than SyncTimeout plus 30 s: every
	// call carries its own deadline.
	HTTP *http.Client
	// AccessTokenFile holds the bot's access token (required).
	AccessTokenFile string
	// DryRun publishes the rules as dry-run: matches are logged, not
	// denied.
	DryRun bool
	// MaxAge, when positive, makes the rules fail closed (ban_list_stale)
	// once the room has not been read for this long.
	MaxAge time.Duration
	// MaxRules bounds the rules kept; zero means [DefaultMaxRules].
	MaxRules int
	// StateFile keeps the last good rules and the room they came from
	// (data_dir/policy-rooms/...); "" keeps nothing.
	StateFile string
	// Sink receives the rules under Name; nil only checks the options.
	Sink Sink
	// Name is the engine's name for the set (required with Sink).
	Name string
	// SyncTimeout is the long-poll wait; zero means [DefaultSyncTimeout].
	SyncTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives rule changes, failures and recoveries; nil discards.
	Logger *slog.Logger
}

// Status is a point-in-time view of a [Source], for /readyz and metrics.
type Status struct {
	// Room is the room as configured; RoomID the room read, after alias
	// resolution and room upgrades ("" before the first answer).
	Room, RoomID string
	// State is StateStarting, StateRestored, StateSyncing or StateError.
	State string
	// Rules counts the ban rules in force.
	Rules int
	// Ignored counts rules not in force, by why: IgnoredRecommendation,
	// IgnoredInvalid, IgnoredTooBroad (rules in the room now), and
	// IgnoredOverLimit (rules refused past max_rules since the room was
	// last read in full).
	Ignored map[string]int
	// LastSync is when the homeserver last answered a sync (or, after a
	// restart before any answer, when the saved rules were last synced);
	// zero when never.
	LastSync time.Time
	// Stale reports that max_age has passed since LastSync: every origin
	// and destination fails closed.
	Stale bool
	// DryRun reports apply = "dry_run".
	DryRun bool
	// MaxAge is Options.MaxAge: how long the rules stay in force without
	// a sync before the room fails closed; zero when never.
	MaxAge time.Duration
	// LastError says why the last attempt failed; "" after a success.
	LastError string
	// Syncs counts successful sync answers, Failures failed attempts,
	// Changes rule changes applied.
	Syncs, Failures, Changes uint64
	// Upgrade names a replacement room (m.room.tombstone) that could not
	// be followed yet; "" otherwise.
	Upgrade string
}

// Source follows one policy room and keeps its ban rules in a [Sink].
// Build it with [New], run [Source.Run] in a goroutine. Status is safe for
// concurrent use; Run must be called once.
type Source struct {
	o      Options
	log    *slog.Logger
	now    func() time.Time
	client *client

	// Owned by Run (and New before it).
	state       *ruleState
	roomID      string   // room being read
	via         []string // servers to join through
	followed    map[string]bool
	followAfter time.Time
	persisted   time.Time // LastSync as last written
	published   bool      // Publish was called: changes reach the sink
	restored    []Rule    // rules from the state file, until Publish
	restoredAt  time.Time

	mu     sync.Mutex // guards st
	st     Status
	closed bool
}

// New checks o and loads the rules saved in StateFile; [Source.Publish]
// hands them to the sink, so that a restart while the homeserver is down
// keeps enforcing them. New contacts nothing and changes nothing.
func New(o Options) (*Source, error) {
	switch {
	case o.Room == "" || (o.Room[0] != '!' && o.Room[0] != '#'):
		return nil, fmt.Errorf("policy room %q: not a room ID or alias", o.Room)
	case o.Homeserver == nil:
		return nil, fmt.Errorf("policy room %s: no homeserver URL", o.Room)
	case o.AccessTokenFile == "":
		return nil, fmt.Errorf("policy room %s: no access token file", o.Room)
	case o.Sink != nil && o.Name == "":
		return nil, fmt.Errorf("policy room %s: no name for the rule set", o.Room)
	}
	if o.MaxRules <= 0 {
		o.MaxRules = DefaultMaxRules
	}
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = DefaultSyncTimeout
	}
	hc := o.HTTP
	if hc == nil {
		hc = &http.Client{}
	}
	s := &Source{
		o:        o,
		log:      o.Logger,
		now:      o.Now,
		client:   newClient(o.Homeserver, hc, o.AccessTokenFile),
		state:    newRuleState(o.MaxRules),
		followed: map[string]bool{},
		st:       Status{Room: o.Room, State: StateStarting, DryRun: o.DryRun},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("room", o.Room)
	if s.now == nil {
		s.now = time.Now
	}
	if o.Room[0] == '!' {
		s.roomID = o.Room
	}
	if _, err := s.client.readToken(); err != nil {
		return nil, fmt.Errorf("policy room %s: %w", o.Room, err)
	}
	s.restore()
	return s, nil
}

// Publish hands the rules known now (those saved in data_dir, if any) to
// the sink; from then on every change reaches it. Call it once, before
// Run, when the source is put in service: a source built only to check a
// configuration, or for a reload that fails, never publishes.
func (s *Source) Publish() {
	s.published = true
	if s.restored != nil || s.o.MaxAge > 0 {
		s.publish(s.restored, s.restoredAt)
	}
	s.restored = nil
}

// Name returns the engine's name for the set.
func (s *Source) Name() string { return s.o.Name }

// Status returns the source's state.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Ignored = make(map[string]int, len(s.st.Ignored))
	for k, v := range s.st.Ignored {
		st.Ignored[k] = v
	}
	st.MaxAge = s.o.MaxAge
	st.Stale = s.o.MaxAge > 0 && (st.LastSync.IsZero() || !s.now().Before(st.LastSync.Add(s.o.MaxAge)))
	return st
}

// errResync ends a sync session so that the room is read again in full:
// the timeline had a gap, or the room was upgraded.
var errResync = errors.New("resync")

// Run follows the room until ctx ends: an initial sync reads the whole
// state, then long-polls apply changes as they happen. Failures are
// retried with a backoff up to a minute; the last good rules stay in force
// meanwhile. Call it once, in its own goroutine.
func (s *Source) Run(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		progressed, err := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errResync) {
			continue
		}
		if progressed {
			backoff = time.Second
		}
		s.failed(err)
		wait := backoff
		var me *matrixError
		if errors.As(err, &me) && me.Status == http.StatusTooManyRequests && me.RetryAfterMS > 0 {
			// Rate limited: wait as asked, within reason.
			wait = max(wait, min(time.Duration(me.RetryAfterMS)*time.Millisecond, 5*time.Minute))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// session reads the room in full, then applies incremental syncs until
// something fails or a full read is needed. progressed reports whether
// any sync succeeded.
func (s *Source) session(ctx context.Context) (progressed bool, err error) {
	if s.roomID == "" {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		id, servers, err := s.client.resolveAlias(rctx, s.o.Room)
		cancel()
		if err != nil {
			return false, err
		}
		s.roomID, s.via = id, servers
		s.log.Info("policy room alias resolved", "room_id", id)
	}
	since, err := s.initialSync(ctx)
	if err != nil {
		return false, err
	}
	for {
		if err := s.maybeFollow(ctx); err != nil {
			return true, err
		}
		sctx, cancel := context.WithTimeout(ctx, s.o.SyncTimeout+requestTimeout)
		resp, err := s.client.sync(sctx, since, s.filter(), s.o.SyncTimeout)
		cancel()
		if err != nil {
			return true, err
		}
		since = resp.NextBatch
		if _, left := resp.Rooms.Leave[s.roomID]; left {
			return true, fmt.Errorf("the bot account is no longer in %s (left, kicked or banned); keeping the last rules", s.roomID)
		}
		changed := 0
		if jr, ok := resp.Rooms.Join[s.roomID]; ok {
			if jr.Timeline.Limited {
				s.log.Debug("policy room timeline has a gap; reading the room again")
				s.synced(false)
				return true, errResync
			}
			changed = s.applyEvents(jr.State.Events, true) + s.applyEvents(jr.Timeline.Events, true)
		}
		s.synced(changed > 0)
	}
}

// initialSync reads the room's whole rule state, joining the room first
// if the bot is not in it, and publishes it. It returns the sync token to
// continue from.
func (s *Source) initialSync(ctx context.Context) (string, error) {
	resp, jr, err := s.fullSync(ctx)
	if err != nil {
		return "", err
	}
	if jr == nil {
		via := s.via
		if len(via) == 0 {
			via = serverOf(s.roomID)
		}
		jctx, cancel := context.WithTimeout(ctx, requestTimeout)
		room := s.roomID
		if s.o.Room[0] == '#' && len(s.followed) == 0 {
			room = s.o.Room // joining by alias lets the homeserver find the servers
		}
		_, err := s.client.join(jctx, room, via)
		cancel()
		if err != nil {
			return "", fmt.Errorf("the bot account is not in %s and could not join it: %w", s.roomID, err)
		}
		s.log.Info("policy room joined", "room_id", s.roomID)
		if resp, jr, err = s.fullSync(ctx); err != nil {
			return "", err
		}
		if jr == nil {
			return "", fmt.Errorf("the bot account joined %s but the homeserver does not sync it", s.roomID)
		}
	}
	fresh := newRuleState(s.o.MaxRules)
	for i := range jr.State.Events {
		fresh.apply(&jr.State.Events[i])
	}
	for i := range jr.Timeline.Events {
		fresh.apply(&jr.Timeline.Events[i])
	}
	changed := !sameRules(s.state, fresh)
	s.state = fresh
	if fresh.over > 0 {
		s.log.Error("policy room has more rules than max_rules; the rest are ignored",
			"room_id", s.roomID, "max_rules", s.o.MaxRules, "ignored", fresh.over)
		fresh.over = 0
	}
	s.log.Info("policy room read", "room_id", s.roomID, "rules", len(fresh.rules), "ignored", len(fresh.ignored))
	s.synced(true)
	if changed {
		s.addChanges(1)
	}
	return resp.NextBatch, nil
}

// fullSync runs an initial sync (no since token, no wait) and returns the
// room's part, nil when the bot is not in the room.
func (s *Source) fullSync(ctx context.Context) (*syncResponse, *joinedRoom, error) {
	sctx, cancel := context.WithTimeout(ctx, requestTimeout+s.o.SyncTimeout)
	defer cancel()
	resp, err := s.client.sync(sctx, "", s.filter(), 0)
	if err != nil {
		return nil, nil, err
	}
	jr, ok := resp.Rooms.Join[s.roomID]
	if !ok {
		return resp, nil, nil
	}
	return resp, &jr, nil
}

// applyEvents applies events in order and logs rule changes (up to a
// bound). It returns how many changed the rules in force.
func (s *Source) applyEvents(evs []event, logChanges bool) int {
	n := 0
	for i := range evs {
		ev := &evs[i]
		if !s.state.apply(ev) {
			continue
		}
		n++
		if !logChanges {
			continue
		}
		if n <= maxLoggedChanges {
			k := ""
			if ev.StateKey != nil {
				k = truncate(*ev.StateKey, maxStateKeyShown)
			}
			if r, ok := s.state.rules[keyOf(ev.Type, derefOr(ev.StateKey))]; ok {
				s.log.Info("policy room rule in force", "type", r.Type, "state_key", r.StateKey, "entity", r.Entity, "reason", r.Reason)
			} else {
				s.log.Info("policy room rule lifted", "type", ev.Type, "state_key", k, "event_id", truncate(ev.EventID, maxEventID))
			}
		}
	}
	if n > maxLoggedChanges {
		s.log.Info("policy room rules changed", "changes", n, "logged", maxLoggedChanges)
	}
	if s.state.over > 0 {
		s.log.Error("policy room has more rules than max_rules; the rest are ignored",
			"room_id", s.roomID, "max_rules", s.o.MaxRules, "ignored", s.state.over)
		s.state.over = 0
	}
	if n > 0 {
		s.addChanges(uint64(n))
	}
	return n
}

// synced records a successful sync answer: status, freshness, and (when
// the rules changed) publishing and saving them.
func (s *Source) synced(changed bool) {
	now := s.now()
	// Publish first: whoever sees the status "syncing" sees the rules.
	switch {
	case changed:
		s.publish(s.state.list(), now)
		s.persist(now)
	case s.o.MaxAge > 0 && s.o.Sink != nil && s.published:
		s.o.Sink.SetExternalStaleAt(s.o.Name, now.Add(s.o.MaxAge))
		fallthrough
	default:
		if now.Sub(s.persisted) >= persistEvery {
			s.persist(now)
		}
	}
	s.mu.Lock()
	wasErr := s.st.State == StateError
	s.st.State = StateSyncing
	s.st.RoomID = s.roomID
	s.st.LastSync = now
	s.st.LastError = ""
	s.st.Syncs++
	s.st.Rules = len(s.state.rules)
	s.st.Ignored = s.state.ignoredCounts()
	if s.st.Upgrade == s.roomID {
		s.st.Upgrade = ""
	}
	s.mu.Unlock()
	if wasErr {
		s.log.Info("policy room syncing again", "room_id", s.roomID)
	}
}

func (s *Source) addChanges(n uint64) {
	s.mu.Lock()
	s.st.Changes += n
	s.mu.Unlock()
}

// failed records a failed attempt; the rules in force stay.
func (s *Source) failed(err error) {
	msg := err.Error()
	s.mu.Lock()
	repeat := s.st.LastError == msg
	s.st.State = StateError
	s.st.LastError = msg
	s.st.Failures++
	s.mu.Unlock()
	if repeat {
		s.log.Debug("policy room sync failed again", "error", err)
		return
	}
	s.log.Warn("policy room cannot be read; its last rules stay in force", "room_id", s.roomID, "error", err)
}

// maybeFollow follows a room upgrade named by m.room.tombstone: the bot
// joins the replacement room and the session ends, so that the next one
// reads the new room in full (the old room's rules stay in force until
// then). A replacement that cannot be joined is retried later while the
// old room is still read.
func (s *Source) maybeFollow(ctx context.Context) error {
	next := s.state.tombstone
	if next == "" || next == s.roomID || s.now().Before(s.followAfter) {
		return nil
	}
	if s.followed[next] {
		if s.followAfter.IsZero() {
			s.log.Error("policy room upgrades loop back to a room already read; staying in this room", "room_id", s.roomID, "replacement", next)
		}
		s.followAfter = s.now().Add(24 * time.Hour)
		return nil
	}
	via := append(serverOf(s.state.tombstoneSender), serverOf(next)...)
	jctx, cancel := context.WithTimeout(ctx, requestTimeout)
	_, err := s.client.join(jctx, next, via)
	cancel()
	if err != nil {
		s.followAfter = s.now().Add(followRetry)
		s.mu.Lock()
		s.st.Upgrade = next
		s.st.LastError = fmt.Sprintf("room upgraded to %s, which the bot account could not join (retrying): %v", next, err)
		s.mu.Unlock()
		s.log.Error("policy room was upgraded but the replacement room cannot be joined; still reading the old room",
			"room_id", s.roomID, "replacement", next, "error", err)
		return nil
	}
	s.log.Info("policy room upgraded; following the replacement room", "room_id", s.roomID, "replacement", next)
	s.followed[s.roomID] = true
	s.roomID, s.via, s.followAfter = next, via, time.Time{}
	s.mu.Lock()
	s.st.Upgrade = ""
	s.mu.Unlock()
	return errResync
}

// filter is the inline sync filter: only this room, only rule types,
// tombstones and redactions, nothing else (presence, account data,
// receipts, typing).
func (s *Source) filter() string {
	none := map[string]any{"not_types": []string{"*"}}
	state := append(append([]string{}, ruleTypes...), typeTombstone)
	timeline := append(append([]string{}, state...), typeRedaction)
	f := map[string]any{
		"presence":     none,
		"account_data": none,
		"room": map[string]any{
			"rooms":        []string{s.roomID},
			"account_data": none,
			"ephemeral":    none,
			"state":        map[string]any{"types": state, "lazy_load_members": false},
			"timeline":     map[string]any{"types": timeline, "limit": timelineLimit},
		},
	}
	b, _ := json.Marshal(f)
	return string(b)
}

// publish hands rules to the sink. Called by Run and New.
func (s *Source) publish(rules []Rule, lastSync time.Time) {
	if s.o.Sink == nil || !s.published {
		return
	}
	label := "policy room " + s.o.Room
	if s.roomID != "" && s.roomID != s.o.Room {
		label += " (" + s.roomID + ")"
	}
	x := &policy.External{Kind: policy.KindBanList, Source: label, DryRun: s.o.DryRun, Deny: make([]policy.ExternalEntry, len(rules))}
	for i := range rules {
		x.Deny[i] = policy.ExternalEntry{Entity: rules[i].Entity, From: rules[i].from()}
	}
	if s.o.MaxAge > 0 {
		x.StaleAt = lastSync.Add(s.o.MaxAge) // a zero lastSync is long past: fail closed
	}
	res := s.o.Sink.SetExternal(s.o.Name, x)
	for _, err := range res.Errors {
		s.log.Warn("policy room rule not applied", "error", err)
	}
}

// Close removes the rules from the sink. Call it after Run has returned,
// when the room is dropped for good (a reload that removes it).
func (s *Source) Close() {
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	if !closed && s.o.Sink != nil {
		s.o.Sink.SetExternal(s.o.Name, nil)
	}
}

// sameRules reports whether two states hold the same rules in force.
func sameRules(a, b *ruleState) bool {
	if len(a.rules) != len(b.rules) {
		return false
	}
	for k, r := range a.rules {
		if o, ok := b.rules[k]; !ok || *o != *r {
			return false
		}
	}
	return true
}

// serverOf returns the server part of a user or room ID ("@a:b" -> b),
// as a list for via.
func serverOf(id string) []string {
	if _, server, ok := strings.Cut(id, ":"); ok && server != "" {
		return []string{server}
	}
	return nil
}

func derefOr(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

package policy

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/fedgate/fedgate/internal/servername"
)

// ExternalKind says what an [External] rule set is, and so which reason
// codes its matches carry.
type ExternalKind uint8

const (
	// KindList is a federation list (a signed list_url or list_file):
	// allow and deny entries in the syntax of policy.allow and policy.deny.
	// Its deny entries give origin_denied and destination_denied, its allow
	// entries count for default = "deny", and past its StaleAt every
	// origin and destination check fails with list_stale.
	KindList ExternalKind = iota
	// KindBanList is the ban rules of a moderation policy room: deny
	// entries only, each a server name or a glob in the spec's syntax ('*'
	// and '?'; never a regular expression). Matches give origin_banned and
	// destination_banned; past StaleAt every check fails with
	// ban_list_stale.
	KindBanList
)

// MaxExternalEntries bounds one external rule set. A source with more
// entries must truncate (and say so) before handing them over; entries
// past the bound are dropped by [Engine.SetExternal].
const MaxExternalEntries = 1 << 20

// ExternalEntry is one server-name entry of an external rule set.
type ExternalEntry struct {
	// Entity is the server name, glob (or, for [KindList] only,
	// "re:<regexp>") to match.
	Entity string
	// From says where the entry came from, for [Decision.Rule] and so the
	// operator's log, e.g. `m.policy.rule.server state_key "rule:1"
	// reason "spam"`. Empty means the entry is named by its position and
	// text, as list_file entries are.
	From string
}

// External is a set of server rules from a source outside the
// configuration: a moderation policy room, a signed federation list. The
// [Engine] keeps each set under a name, across configuration reloads,
// until the source replaces or removes it. Sources build a new External
// for every change; the engine never keeps a reference to the slices.
type External struct {
	// Kind selects the syntax of the entries and the reason codes.
	Kind ExternalKind
	// Source names the set in [Decision.Rule], e.g.
	// "policy room #bans:example.org (!abc:example.org)" or
	// "list_url https://lists.example/federation.jws".
	Source string
	// Allow entries count as allow entries for default = "deny" (KindList
	// only; ignored for ban lists).
	Allow []ExternalEntry
	// Deny entries deny an origin or destination that matches.
	Deny []ExternalEntry
	// DryRun reports this set's denials as dry-run decisions (allowed,
	// DryRun set) instead of enforcing them, whatever policy.dry_run says.
	// Other rules still deny.
	DryRun bool
	// StaleAt is the instant from which the set is out of date, so that
	// every origin and destination check fails closed; zero means never.
	StaleAt time.Time
}

// compiledExternal is an External ready for matching. Immutable.
type compiledExternal struct {
	name    string
	kind    ExternalKind
	allow   nameSet
	deny    nameSet
	dryRun  bool
	staleAt time.Time
	source  string
}

// denyReason is the reason code of a deny match, for origins (inbound) or
// destinations (egress).
func (x *compiledExternal) denyReason(inbound bool) string {
	switch {
	case x.kind == KindBanList && inbound:
		return ReasonOriginBanned
	case x.kind == KindBanList:
		return ReasonDestinationBanned
	case inbound:
		return ReasonOriginDenied
	default:
		return ReasonDestinationDenied
	}
}

func (x *compiledExternal) staleReason() string {
	if x.kind == KindBanList {
		return ReasonBanListStale
	}
	return ReasonListStale
}

// ExternalResult reports how [Engine.SetExternal] compiled a set.
type ExternalResult struct {
	// Allow and Deny count the entries in force.
	Allow, Deny int
	// Skipped counts entries that were refused (bad syntax, too long, over
	// [MaxExternalEntries]); Errors describes the first few.
	Skipped int
	Errors  []error
}

// maxReportedErrors bounds ExternalResult.Errors.
const maxReportedErrors = 10

// CompileBanEntity checks a ban rule's entity the way a [KindBanList] set
// compiles it: a server name, or a glob of '*' and '?' over the characters
// of server names, at most [MaxBanEntityLength] bytes, that does not match
// every server. It never panics; sources use it to count bad rules.
func CompileBanEntity(entity string) error {
	_, err := compileBanPattern(entity)
	return err
}

// MaxBanEntityLength bounds a ban rule's entity: a server name is at most
// servername.MaxLength bytes, and a glob matching server names needs no
// more.
const MaxBanEntityLength = servername.MaxLength

// ErrTooBroad is returned for ban entities that would match every server
// ("*", "*.*", "?*:*"): a ban list that says so is broken or hostile, and
// obeying it would cut the whole federation.
var ErrTooBroad = errors.New("the glob matches every server name")

func compileBanPattern(s string) (pattern, error) {
	if len(s) > MaxBanEntityLength {
		return pattern{}, fmt.Errorf("entity is %d bytes long, more than %d", len(s), MaxBanEntityLength)
	}
	return compileNamePattern(s, true)
}

// compileExternal compiles x under name. Bad entries are skipped and
// reported, never fatal: one broken rule in a room must not discard the
// others.
func compileExternal(name string, x *External) (*compiledExternal, ExternalResult) {
	c := &compiledExternal{name: name, kind: x.Kind, dryRun: x.DryRun, staleAt: x.StaleAt, source: x.Source}
	if c.source == "" {
		c.source = name
	}
	var res ExternalResult
	add := func(ns *nameSet, what string, entries []ExternalEntry) {
		for i, e := range entries {
			if ns.len() >= MaxExternalEntries {
				res.Skipped += len(entries) - i
				if len(res.Errors) < maxReportedErrors {
					res.Errors = append(res.Errors, fmt.Errorf("%s: more than %d %s entries; the rest are ignored", c.source, MaxExternalEntries, what))
				}
				return
			}
			var p pattern
			var err error
			if x.Kind == KindBanList {
				p, err = compileBanPattern(e.Entity)
			} else {
				p, err = compilePattern(e.Entity)
			}
			if err != nil {
				res.Skipped++
				if len(res.Errors) < maxReportedErrors {
					res.Errors = append(res.Errors, fmt.Errorf("%s %s %q: %w", c.source, what, truncateText(e.Entity, 80), err))
				}
				continue
			}
			r := rule{source: c.source + " " + what, index: i, text: e.Entity}
			if e.From != "" {
				r = rule{source: c.source, index: -1, text: e.From}
			}
			ns.addPattern(p, r)
		}
	}
	if x.Kind == KindList {
		add(&c.allow, "allow", x.Allow)
	}
	add(&c.deny, "deny", x.Deny)
	res.Allow, res.Deny = c.allow.len(), c.deny.len()
	return c, res
}

// truncateText shortens s to at most n bytes for messages, marking the cut.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// SetExternal compiles x and publishes it under name, replacing the set
// of that name; x nil removes it. The new snapshot is published at once,
// with one atomic store, as a reload would; requests in flight keep the
// snapshot they loaded. Entries that do not compile are skipped and
// counted in the result (the others apply). Sets survive [Engine.Update].
// Safe for concurrent use.
func (e *Engine) SetExternal(name string, x *External) ExternalResult {
	var c *compiledExternal
	var res ExternalResult
	if x != nil {
		c, res = compileExternal(name, x)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c == nil {
		if _, ok := e.external[name]; !ok {
			return res
		}
		delete(e.external, name)
	} else {
		if e.external == nil {
			e.external = make(map[string]*compiledExternal)
		}
		e.external[name] = c
	}
	s := *e.snap.Load()
	s.external = e.externalList()
	e.snap.Store(&s)
	return res
}

// ExternalNames returns the names of the sets in force, sorted.
func (e *Engine) ExternalNames() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	names := make([]string, 0, len(e.external))
	for n := range e.external {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// externalList returns the sets in a fixed order (by name), so decisions
// do not depend on map iteration. Called with e.mu held.
func (e *Engine) externalList() []*compiledExternal {
	if len(e.external) == 0 {
		return nil
	}
	out := make([]*compiledExternal, 0, len(e.external))
	for _, c := range e.external {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// SetExternalStaleAt moves the stale deadline of the set called name
// without compiling it again (a source confirmed it is current) and
// publishes the result. It reports whether the set exists. Safe for
// concurrent use.
func (e *Engine) SetExternalStaleAt(name string, staleAt time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	old, ok := e.external[name]
	if !ok {
		return false
	}
	if old.staleAt.Equal(staleAt) {
		return true
	}
	c := *old
	c.staleAt = staleAt
	e.external[name] = &c
	s := *e.snap.Load()
	s.external = e.externalList()
	e.snap.Store(&s)
	return true
}

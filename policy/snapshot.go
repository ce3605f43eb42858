package policy

import (
	"net/netip"
	"time"
)

// Snapshot is one compiled policy: the server lists (configuration plus the
// external list file), networks, endpoint, room and user rules. It is
// immutable and safe for concurrent use; every method is lock-free and,
// unless it denies, allocation-free. Get the current one from
// [Engine.Snapshot] once per request and use it for the whole request, so a
// reload in the middle cannot mix two policies.
type Snapshot struct {
	serverName  string // ours, for locality checks
	dryRun      bool
	defaultDeny bool
	locality    bool

	allowNames, denyNames nameSet
	allowNets, denyNets   prefixSet
	endpoints             endpointRules
	rooms                 roomSet

	list         listInfo
	listDeadline time.Time           // zero: no list_max_age
	external     []*compiledExternal // sets from policy sources, by name
	now          func() time.Time

	counters *counters
}

// DryRun reports whether the snapshot only reports denials (dry_run).
func (s *Snapshot) DryRun() bool { return s.dryRun }

// ServerName returns our server name, as configured.
func (s *Snapshot) ServerName() string { return s.serverName }

// ListVersion returns the version of the external list in use, or -1 when
// there is none.
func (s *Snapshot) ListVersion() int64 {
	if s.list.file == "" {
		return -1
	}
	return s.list.version
}

// Stale reports whether the external list is past list_max_age, in which
// case [Snapshot.CheckOrigin] and [Snapshot.CheckDestination] deny
// everything with list_stale.
func (s *Snapshot) Stale() bool {
	return !s.listDeadline.IsZero() && s.now().After(s.listDeadline)
}

// deny builds a denial (or, under dry_run, a reported allow) and counts it.
func (s *Snapshot) deny(reason, errcode, msg string, r rule) Decision {
	return s.denyAs(reason, errcode, msg, r, s.dryRun)
}

// denyAs is deny with the dry-run choice made by the caller (an external
// set may be dry-run on its own).
func (s *Snapshot) denyAs(reason, errcode, msg string, r rule, dryRun bool) Decision {
	d := Decision{Reason: reason, Errcode: errcode, Msg: msg}
	if r.source != "" {
		d.Rule = r.String()
	}
	s.counters.count(reason, dryRun)
	if dryRun {
		d.Allowed, d.DryRun = true, true
	}
	return d
}

func notAllowedMsg(server, reason string) string {
	return "Federation with " + quoteID(server) + " is not allowed by this server's policy (" + reason + ")"
}

// CheckPeer applies deny_networks and allow_networks to the address of an
// inbound peer: the first check, before anything is parsed. A peer in
// deny_networks is denied; when allow_networks is non-empty, a peer outside
// it is denied too (peer_denied). IPv4-mapped IPv6 addresses are matched as
// IPv4. The zero Addr matches no network.
func (s *Snapshot) CheckPeer(addr netip.Addr) Decision {
	if s.denyNets.empty() && s.allowNets.empty() {
		return allow
	}
	const msg = "Requests from your network address are not allowed by this server's policy (" + ReasonPeerDenied + ")"
	if r, ok := s.denyNets.match(addr); ok {
		return s.deny(ReasonPeerDenied, ErrcodeForbidden, msg, r)
	}
	if !s.allowNets.empty() {
		if _, ok := s.allowNets.match(addr); !ok {
			return s.deny(ReasonPeerDenied, ErrcodeForbidden, msg, rule{source: "policy.allow_networks", index: -1, text: "(no entry matches)"})
		}
	}
	return allow
}

// CheckOrigin applies the server lists to the X-Matrix origin of an
// inbound request; call it before fetching the origin's keys. Matching is on
// the name as sent (before any delegation), ignoring ASCII case; a port in
// the name is ignored unless the entry names one. Deny entries win over
// allow entries; with default = "deny" a name must match an allow entry.
// Reasons: list_stale, bad_request (not a server name), origin_denied,
// not_in_allow_list.
func (s *Snapshot) CheckOrigin(origin string) Decision {
	return s.checkServer(origin, ReasonOriginDenied)
}

// CheckDestination is [Snapshot.CheckOrigin] for an egress destination,
// before any DNS lookup. A deny entry gives destination_denied.
func (s *Snapshot) CheckDestination(dest string) Decision {
	return s.checkServer(dest, ReasonDestinationDenied)
}

func (s *Snapshot) checkServer(server, denyReason string) Decision {
	inbound := denyReason == ReasonOriginDenied
	if s.Stale() {
		return s.deny(ReasonListStale, ErrcodeForbidden,
			"Federation with "+quoteID(server)+" is suspended: this server's federation list is out of date ("+ReasonListStale+")",
			rule{source: "policy.list_max_age", index: -1, text: "exceeded by " + s.list.file})
	}
	// A stale dry-run set is remembered and reported only if nothing
	// enforced denies; so is a dry-run ban.
	var dry *compiledExternal
	var dryRule rule
	var dryReason string
	if len(s.external) > 0 {
		now := s.now()
		for _, x := range s.external {
			if x.staleAt.IsZero() || now.Before(x.staleAt) {
				continue
			}
			r := rule{source: x.source, index: -1, text: "out of date since " + x.staleAt.UTC().Format(time.RFC3339)}
			if !x.dryRun && !s.dryRun {
				return s.deny(x.staleReason(), ErrcodeForbidden, staleMsg(server, x), r)
			}
			if dry == nil {
				dry, dryRule, dryReason = x, r, x.staleReason()
			}
		}
	}
	var buf nameBuf
	n, lower, err := parseName(server, &buf)
	if err != nil {
		return s.deny(ReasonBadRequest, ErrcodeInvalidParam,
			"The server name is not valid ("+ReasonBadRequest+")", rule{})
	}
	if r, ok := s.denyNames.match(&n, lower); ok {
		return s.deny(denyReason, ErrcodeForbidden, notAllowedMsg(server, denyReason), r)
	}
	for _, x := range s.external {
		if r, ok := x.deny.match(&n, lower); ok {
			reason := x.denyReason(inbound)
			if !x.dryRun {
				return s.deny(reason, ErrcodeForbidden, notAllowedMsg(server, reason), r)
			}
			if dry == nil {
				dry, dryRule, dryReason = x, r, reason
			}
		}
	}
	if s.defaultDeny && !s.allowed(&n, lower) {
		return s.deny(ReasonNotInAllowList, ErrcodeForbidden, notAllowedMsg(server, ReasonNotInAllowList),
			rule{source: "policy.default", index: -1, text: `= "deny" (no allow entry matches)`})
	}
	if dry != nil {
		msg := notAllowedMsg(server, dryReason)
		if dryReason == dry.staleReason() {
			msg = staleMsg(server, dry)
		}
		return s.denyAs(dryReason, ErrcodeForbidden, msg, dryRule, true)
	}
	return allow
}

// allowed reports whether an allow entry (configuration, list file or an
// external list) matches.
func (s *Snapshot) allowed(n *name, lower []byte) bool {
	if _, ok := s.allowNames.lookup(n, lower); ok {
		return true
	}
	for _, x := range s.external {
		if _, ok := x.allow.lookup(n, lower); ok {
			return true
		}
	}
	return false
}

func staleMsg(server string, x *compiledExternal) string {
	what := "federation list"
	if x.kind == KindBanList {
		what = "ban list"
	}
	reason := x.staleReason()
	return "Federation with " + quoteID(server) + " is suspended: this server's " + what + " is out of date (" + reason + ")"
}

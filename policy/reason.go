package policy

import (
	"net/http"
	"sync/atomic"
)

// Reason codes. Every denial carries exactly one; they are stable strings
// meant for logs, metric labels and the Matrix error text.
const (
	// ReasonPeerDenied: the peer's TCP address is in deny_networks, or not in
	// a non-empty allow_networks.
	ReasonPeerDenied = "peer_denied"
	// ReasonOriginDenied: the origin matches a deny entry.
	ReasonOriginDenied = "origin_denied"
	// ReasonNotInAllowList: default = "deny" and the server matches no allow
	// entry.
	ReasonNotInAllowList = "not_in_allow_list"
	// ReasonListStale: the federation list (list_file or list_url) has not
	// been refreshed within list_max_age, so every origin and destination
	// check fails closed.
	ReasonListStale = "list_stale"
	// ReasonEndpointDenied: the endpoint's class or operation is denied.
	ReasonEndpointDenied = "endpoint_denied"
	// ReasonRoomDenied: the room named by the path is denied.
	ReasonRoomDenied = "room_denied"
	// ReasonUserNotLocal: the request asks about a user that is not ours
	// (query/profile, user/devices, user/keys/*).
	ReasonUserNotLocal = "user_not_local"
	// ReasonUserNotOrigin: make_join/make_leave/make_knock names a user who
	// does not belong to the requesting server.
	ReasonUserNotOrigin = "user_not_origin"
	// ReasonDestinationDenied: an egress destination matches a deny entry.
	ReasonDestinationDenied = "destination_denied"
	// ReasonBadRequest: a server name, room or user the rules need cannot be
	// parsed.
	ReasonBadRequest = "bad_request"
	// ReasonRatePerIP: the per_ip token bucket is empty.
	ReasonRatePerIP = "rate_per_ip"
	// ReasonRatePerOrigin: the per_origin token bucket is empty.
	ReasonRatePerOrigin = "rate_per_origin"
	// ReasonRateClass: a per-class bucket (rate_limit.classes) is empty.
	ReasonRateClass = "rate_class"
	// ReasonConcurrentPerOrigin: the origin has concurrent_per_origin
	// requests in flight and the wait queue is full or timed out.
	ReasonConcurrentPerOrigin = "concurrent_per_origin"
	// ReasonRatePerDestination: the per_destination token bucket is empty.
	ReasonRatePerDestination = "rate_per_destination"
	// ReasonOriginBanned: the origin matches an m.ban server rule of a
	// subscribed moderation policy room ([[policy.rooms]]).
	ReasonOriginBanned = "origin_banned"
	// ReasonDestinationBanned: an egress destination matches an m.ban
	// server rule of a subscribed moderation policy room.
	ReasonDestinationBanned = "destination_banned"
	// ReasonBanListStale: a policy room with max_age has not been read
	// successfully for that long, so every origin and destination check
	// fails closed.
	ReasonBanListStale = "ban_list_stale"
)

// reasonIndex numbers the reason codes for the counters. The order is the
// order of [Reasons].
func reasonIndex(r string) int {
	switch r {
	case ReasonPeerDenied:
		return 0
	case ReasonOriginDenied:
		return 1
	case ReasonNotInAllowList:
		return 2
	case ReasonListStale:
		return 3
	case ReasonEndpointDenied:
		return 4
	case ReasonRoomDenied:
		return 5
	case ReasonUserNotLocal:
		return 6
	case ReasonUserNotOrigin:
		return 7
	case ReasonDestinationDenied:
		return 8
	case ReasonBadRequest:
		return 9
	case ReasonRatePerIP:
		return 10
	case ReasonRatePerOrigin:
		return 11
	case ReasonRateClass:
		return 12
	case ReasonConcurrentPerOrigin:
		return 13
	case ReasonRatePerDestination:
		return 14
	case ReasonOriginBanned:
		return 15
	case ReasonDestinationBanned:
		return 16
	case ReasonBanListStale:
		return 17
	}
	return -1
}

const numReasons = 18

// Reasons returns every reason code, in a fixed order. The result is a new
// slice on every call.
func Reasons() []string {
	return []string{
		ReasonPeerDenied, ReasonOriginDenied, ReasonNotInAllowList, ReasonListStale,
		ReasonEndpointDenied, ReasonRoomDenied, ReasonUserNotLocal, ReasonUserNotOrigin,
		ReasonDestinationDenied, ReasonBadRequest, ReasonRatePerIP, ReasonRatePerOrigin,
		ReasonRateClass, ReasonConcurrentPerOrigin, ReasonRatePerDestination,
		ReasonOriginBanned, ReasonDestinationBanned, ReasonBanListStale,
	}
}

// Matrix error codes a [Decision] may carry.
const (
	ErrcodeForbidden     = "M_FORBIDDEN"
	ErrcodeInvalidParam  = "M_INVALID_PARAM"
	ErrcodeNotJSON       = "M_NOT_JSON"
	ErrcodeBadJSON       = "M_BAD_JSON"
	ErrcodeLimitExceeded = "M_LIMIT_EXCEEDED"
)

// Decision is the outcome of one policy check. The zero value is not a
// valid decision; checks return either an allow (Allowed true, every other
// field empty) or a denial.
//
// A denial has Allowed false, Reason set to one of the Reason constants,
// Errcode and Msg ready for the Matrix error body, and Rule naming the
// configuration entry that matched (for the operator's log, never for the
// remote side). Under dry_run a denial comes back with Allowed true and
// DryRun true, the other fields kept, so the caller can log and count what
// would have been denied.
type Decision struct {
	// Allowed reports whether the request may proceed.
	Allowed bool
	// Reason is the reason code of a denial ("" when nothing denied it).
	Reason string
	// Errcode is the Matrix errcode for the error body: M_FORBIDDEN for
	// policy, M_INVALID_PARAM, M_NOT_JSON or M_BAD_JSON for bad_request.
	Errcode string
	// Msg is safe text for the Matrix error body; it names the reason code.
	// Values quoted from the request are limited in length but not escaped:
	// the body encoder must escape them.
	Msg string
	// Rule names the entry that matched, e.g. `policy.deny[2] "*.evil.example"`
	// or `list_file deny[17] "evil.example"`. For logs only.
	Rule string
	// DryRun marks a denial that dry_run turned into an allow.
	DryRun bool
}

// Denied reports whether the decision is a denial, dry run or not. Callers
// log and count decisions for which Denied is true and reject those for
// which Allowed is false.
func (d Decision) Denied() bool { return d.Reason != "" }

// Status is the HTTP status to answer a denial with: 400 for bad_request,
// 403 for every other reason, 0 when the request is allowed.
func (d Decision) Status() int {
	switch {
	case d.Allowed:
		return 0
	case d.Reason == ReasonBadRequest:
		return http.StatusBadRequest
	default:
		return http.StatusForbidden
	}
}

var allow = Decision{Allowed: true}

// counters counts denials by reason code, split into enforced denials and
// dry-run ones. It is shared by every snapshot and the limiters of one
// [Engine], so counts survive reloads. Safe for concurrent use.
type counters struct {
	denied [numReasons]atomic.Uint64
	dryRun [numReasons]atomic.Uint64
}

// count records a denial; nil counters count nothing.
func (c *counters) count(reason string, dryRun bool) {
	if c == nil {
		return
	}
	i := reasonIndex(reason)
	if i < 0 {
		return
	}
	if dryRun {
		c.dryRun[i].Add(1)
	} else {
		c.denied[i].Add(1)
	}
}

package policy

import (
	"errors"

	"github.com/fedgate/fedgate/internal/endpoints"
)

// CheckRequest applies the endpoint, room and user rules to an inbound
// request, after its X-Matrix signature has been verified. origin is the
// verified origin, or "" for endpoints without X-Matrix authentication
// (legacy media, version, ...), which get the global rules only. m is the
// router's match; a nil m or m.Endpoint (a passthrough path) is allowed.
// rawQuery is the query string as received, without the '?'. body is the
// request body, already read and size-limited; it is only read for
// endpoints whose body names users (user/keys/*), and for those it is
// required: a nil or empty body is bad_request (M_NOT_JSON), so a caller
// that forgets it fails loudly instead of skipping the check.
//
// In order: deny_endpoints with the per-origin overrides (endpoint_denied),
// deny_rooms on the room in the path (room_denied), then, with
// locality_checks, the users the request names: query/profile,
// user/devices and user/keys/* must ask about our users (user_not_local),
// make_join, make_leave and make_knock must name a user of the origin
// (user_not_origin). A room or user that the rules need but that cannot be
// parsed (bad escape, too long, not an ID, body not JSON) is bad_request.
func (s *Snapshot) CheckRequest(origin string, m *endpoints.Match, rawQuery string, body []byte) Decision {
	if m == nil || m.Endpoint == nil {
		return allow
	}
	ep := m.Endpoint
	if d, done := s.checkEndpointAndRoom(origin, m); done {
		return d
	}
	if !s.locality || ep.UserOwner == endpoints.OwnerAny {
		return allow
	}
	// The user must belong to owner: us, or the origin.
	owner, reason := s.serverName, ReasonUserNotLocal
	if ep.UserOwner == endpoints.OwnerOrigin {
		owner, reason = origin, ReasonUserNotOrigin
	}
	return s.checkUsers(m, rawQuery, body, owner, reason, origin)
}

// CheckOutbound applies the endpoint and room rules to an egress request
// for dest, the per-origin overrides being looked up with dest (rules are
// about the remote server in either direction). With locality_checks it
// also holds our homeserver to the spec's rules from the other side:
// query/profile and user/devices must ask about the destination's users
// (user_not_local), make_join, make_leave and make_knock must name one of
// our users (user_not_origin). Request bodies are not inspected.
func (s *Snapshot) CheckOutbound(dest string, m *endpoints.Match, rawQuery string) Decision {
	if m == nil || m.Endpoint == nil {
		return allow
	}
	ep := m.Endpoint
	if d, done := s.checkEndpointAndRoom(dest, m); done {
		return d
	}
	if !s.locality || ep.UserOwner == endpoints.OwnerAny || ep.UserBody {
		return allow
	}
	owner, reason := dest, ReasonUserNotLocal
	if ep.UserOwner == endpoints.OwnerOrigin {
		owner, reason = s.serverName, ReasonUserNotOrigin
	}
	return s.checkUsers(m, rawQuery, nil, owner, reason, s.serverName)
}

// CheckRoom applies deny_rooms to one decoded room ID, for callers that
// filter room-scoped content themselves (the PDUs and EDUs of a /send
// transaction, whose denied parts must be dropped while the transaction
// still gets 200). An empty or over-long ID is bad_request.
func (s *Snapshot) CheckRoom(roomID string) Decision {
	if s.rooms.empty() {
		return allow
	}
	if roomID == "" || len(roomID) > maxIDLength {
		return s.deny(ReasonBadRequest, ErrcodeInvalidParam, "The room ID is not valid ("+ReasonBadRequest+")", rule{})
	}
	if r, ok := s.rooms.match(roomID); ok {
		return s.deny(ReasonRoomDenied, ErrcodeForbidden,
			"The room "+quoteID(roomID)+" is not allowed by this server's policy ("+ReasonRoomDenied+")", r)
	}
	return allow
}

// checkEndpointAndRoom applies deny_endpoints and deny_rooms; done is true
// when they denied (or, under dry_run, would have: the first would-be
// denial is reported).
func (s *Snapshot) checkEndpointAndRoom(peer string, m *endpoints.Match) (Decision, bool) {
	ep := m.Endpoint
	if r, denied := s.endpoints.check(peer, ep.Name); denied {
		return s.deny(ReasonEndpointDenied, ErrcodeForbidden,
			"Requests to "+ep.Name+" are not allowed by this server's policy ("+ReasonEndpointDenied+")", r), true
	}
	if ep.RoomParam == "" || s.rooms.empty() {
		return allow, false
	}
	var buf idBuf
	room, err := unescape(&buf, m.RawParam(ep.RoomParam), false)
	if err != nil || len(room) == 0 || room[0] != '!' {
		return s.deny(ReasonBadRequest, ErrcodeInvalidParam,
			"The room ID in the request path is not valid ("+ReasonBadRequest+")", rule{}), true
	}
	if r, ok := s.rooms.match(view(room)); ok {
		return s.deny(ReasonRoomDenied, ErrcodeForbidden,
			"The room "+quoteID(room)+" is not allowed by this server's policy ("+ReasonRoomDenied+")", r), true
	}
	return allow, false
}

// checkUsers checks that every user the request names belongs to owner.
// origin is used for messages.
func (s *Snapshot) checkUsers(m *endpoints.Match, rawQuery string, body []byte, owner, reason, origin string) Decision {
	var culprit, buf idBuf
	var culpritLen int
	var err error
	ep := m.Endpoint
	switch {
	case ep.UserParam != "":
		var user []byte
		if user, err = unescape(&buf, m.RawParam(ep.UserParam), false); err == nil {
			culpritLen, err = checkOwner(user, owner, &culprit)
		}
	case ep.UserQuery != "":
		q := queryScan{rest: rawQuery, key: ep.UserQuery}
		for err == nil {
			user, ok, qerr := q.next(&buf)
			if !ok || qerr != nil {
				err = qerr
				break
			}
			culpritLen, err = checkOwner(user, owner, &culprit)
		}
	case ep.UserBody:
		var b bodyScan
		if err = b.start(body); err != nil {
			break
		}
		for err == nil {
			user, ok, berr := b.next(&buf)
			if !ok || berr != nil {
				err = berr
				break
			}
			culpritLen, err = checkOwner(user, owner, &culprit)
		}
	}
	user := culprit[:culpritLen]
	switch err {
	case nil:
		return allow
	case errNotUserID:
		return s.deny(ReasonBadRequest, ErrcodeInvalidParam,
			"The request names "+quoteID(user)+", which is not a user ID ("+ReasonBadRequest+")", rule{})
	case errUserNotOwned:
		locality := rule{source: "policy.locality_checks", index: -1, text: "= true"}
		if reason == ReasonUserNotLocal {
			return s.deny(reason, ErrcodeForbidden,
				"The user "+quoteID(user)+" does not belong to "+quoteID(owner)+", the server asked about them ("+reason+")", locality)
		}
		return s.deny(reason, ErrcodeForbidden,
			"The user "+quoteID(user)+" does not belong to the requesting server "+quoteID(origin)+" ("+reason+")", locality)
	default:
		return s.badUsers(err)
	}
}

func (s *Snapshot) badUsers(err error) Decision {
	switch {
	case errors.Is(err, errNotJSON):
		return s.deny(ReasonBadRequest, ErrcodeNotJSON, "The request body is not valid JSON ("+ReasonBadRequest+")", rule{})
	case errors.Is(err, errNotObject):
		return s.deny(ReasonBadRequest, ErrcodeBadJSON, "The request body is not a JSON object ("+ReasonBadRequest+")", rule{})
	default:
		return s.deny(ReasonBadRequest, ErrcodeInvalidParam, "A user ID in the request is not valid ("+ReasonBadRequest+")", rule{})
	}
}

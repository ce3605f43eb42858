package upstream

import (
	"context"
	"errors"
	"net/http"

	"github.com/fedgate/fedgate/internal/endpoints"
)

// Failover: when a member could not take a request, the request is sent
// once more, to another member of the same pool, if that cannot do harm:
//
//   - The member was never reached ([NotSent]: refused, unreachable,
//     dial or TLS failure): nothing of the request arrived anywhere, so
//     any request may go to another member.
//   - The request was sent and the connection broke before any byte of
//     an answer ([NoResponse]): the member may have acted on it, so only
//     requests that are safe to repeat go elsewhere (repeatable below).
//
// Nothing else is tried again: not a response head that came too late
// ([HeaderTimeout]: the member is busy with it, and the remote server
// has waited long enough), not an answer that is not HTTP
// ([BadResponse]), and never anything once a response head arrived,
// so no byte of a response can have reached the remote server before a
// second member is asked. A request whose remote server went away is not
// tried again either.

// repeatableOps are the operations that do no harm when they reach the
// homeserver twice, besides every GET and HEAD (which only read):
//
//   - send (PUT /send/{txnId}): the spec makes transactions idempotent
//     by origin and transaction id; a homeserver answers a repeated one
//     from its record of the first (Synapse's transaction cache).
//   - send_join, send_leave, send_knock, invite (PUT with the event id in
//     the path): they carry one signed event; a homeserver that already
//     has the event answers again with the same result.
//   - get_missing_events, user_keys_query, public_rooms (POST used as a
//     query: the body asks, nothing is stored).
//
// Not repeatable: user_keys_claim (each claim consumes one-time keys),
// exchange_third_party_invite and 3pid_onbind (each builds and sends a
// new event), policy_sign, and anything outside the endpoint table
// (passthrough prefixes) that is not a GET or HEAD.
var repeatableOps = map[string]bool{
	"send":               true,
	"send_join":          true,
	"send_leave":         true,
	"send_knock":         true,
	"invite":             true,
	"get_missing_events": true,
	"user_keys_query":    true,
	"public_rooms":       true,
}

// Repeatable reports whether a request to ep with method may be sent to a
// second member after the first broke the connection without answering.
// ep may be nil (a request outside the endpoint table).
func Repeatable(ep *endpoints.Endpoint, method string) bool {
	if method == http.MethodGet || method == http.MethodHead {
		return true
	}
	return ep != nil && repeatableOps[ep.Name]
}

// failoverAllowed reports whether err, from a member, allows sending the
// request to ep with method to another member.
func failoverAllowed(ctx context.Context, err *Error, ep *endpoints.Endpoint, method string) bool {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return false
	}
	switch err.Kind {
	case NotSent:
		return true
	case NoResponse:
		return Repeatable(ep, method)
	}
	return false
}

// unwell reports whether an error of kind says the member itself is in
// trouble (and should be marked down), as opposed to a response that
// broke off later.
func unwell(kind Kind) bool {
	switch kind {
	case NotSent, NoResponse, HeaderTimeout, BadResponse:
		return true
	}
	return false
}

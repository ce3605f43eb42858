package gateway

import (
	"net/http"
	"slices"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/hosting"
)

// xMatrixHeader is one Authorization: X-Matrix header with the key that
// will verify it.
type xMatrixHeader struct {
	x   auth.XMatrix
	key *auth.Verifier // prepared once per key by the keyring
}

// stageXMatrix parses the Authorization header(s). Several X-Matrix
// headers are allowed (one per signing key); they must all name the same
// origin, and every one of them must verify.
func (g *Gateway) stageXMatrix(in *inbound) error {
	if !in.needsXMatrix() {
		return nil
	}
	xs, err := auth.ParseAuthorization(in.r.Header.Values("Authorization"))
	if err != nil {
		if auth.KindOf(err) == auth.KindMissingHeader {
			return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Msg: "Missing X-Matrix Authorization header", Reason: "missing_header", Err: err}
		}
		return keyError(err)
	}
	in.origin = xs[0].Origin
	in.auth = slices.Grow(in.auth[:0], len(xs))[:len(xs)]
	for i, x := range xs {
		if x.Origin != in.origin {
			return &Error{Status: http.StatusBadRequest, Code: CodeUnauthorized, Msg: "X-Matrix headers name different origins", Reason: "malformed_header"}
		}
		in.auth[i] = xMatrixHeader{x: x}
	}
	if i := in.rt.hosted.Lookup(in.origin); i >= 0 {
		// Servers never send federation requests to themselves; accepting
		// one from the network would mean fetching our own keys from
		// wherever the claimed name resolves to. DNS ignores case, so
		// neither does this check. Another server hosted here may send
		// (its key is known, from memory), but only under its name as
		// configured.
		if dest := in.claimedDestination(xs); i == dest || in.rt.servers[i].name != in.origin {
			return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Msg: "Requests from this server's own name are not accepted", Reason: "origin_is_us"}
		}
		in.originHosted = in.rt.servers[i]
	}
	return nil
}

// claimedDestination is the position of the hosted server the first
// X-Matrix header names as destination; without one (or naming no hosted
// server), the one the request was sent to, else the top-level server.
// stageDestination checks the claim.
func (in *inbound) claimedDestination(xs []auth.XMatrix) int {
	if d := xs[0].Destination; d != "" {
		if i := in.rt.hosted.Lookup(d); i >= 0 {
			return i
		}
	}
	if in.sent >= 0 {
		return in.sent
	}
	return 0
}

// stageDestination settles which hosted server the request is for and
// refuses requests signed for a server not hosted here (spec: 401), or for
// another hosted server than the one Host and SNI name: a request for one
// hosted server is never answered in the name of another. A header without
// destination is accepted, for servers older than v1.3: it is for the
// server the request was sent to, and its signature is checked with that
// name as destination. Once the server is settled, its policy applies,
// network rules and per-IP limit included.
func (g *Gateway) stageDestination(in *inbound) error {
	dest := ""
	for _, h := range in.auth {
		if h.x.Destination == "" {
			continue
		}
		if dest != "" && h.x.Destination != dest {
			return errDestinationMismatch("X-Matrix headers name different destinations")
		}
		dest = h.x.Destination
	}
	i := in.sent
	switch {
	case dest != "":
		if i = in.rt.hostedIndex(dest); i < 0 {
			return errDestinationMismatch("X-Matrix destination does not match")
		}
		if in.hostConflict || (in.sent >= 0 && in.sent != i) {
			return errDestinationMismatch("X-Matrix destination is not the server this request was sent to")
		}
	case !in.needsXMatrix():
		return nil
	case in.hostConflict:
		return errDestinationMismatch("the Host header and the TLS server name are different servers")
	case i == hosting.Ambiguous:
		return errDestinationMismatch("several servers are hosted at this address, and the request has no X-Matrix destination")
	case i < 0:
		i = 0
	}
	return g.settleServer(in, in.rt.servers[i])
}

func errDestinationMismatch(why string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
		Msg: "The request is for another server (" + why + ")", Reason: "destination_mismatch"}
}

// settleServer makes hs the request's server. When that is not the server
// assumed so far (its Host named none), hs's policy takes over and its
// peer checks run now.
func (g *Gateway) settleServer(in *inbound, hs *hostedServer) error {
	if hs == in.hs {
		return nil
	}
	in.hs, in.pol = hs, hs.policy().Snapshot()
	if in.internal {
		return nil
	}
	return g.checkPeerPolicy(in)
}

// stageOriginKey finds the origin's public key for every header, from the
// keyring (cached, pinned, fetched or via notaries), or from memory when
// the origin is another server hosted here.
func (g *Gateway) stageOriginKey(in *inbound) error {
	for i := range in.auth {
		h := &in.auth[i]
		if in.originHosted != nil {
			if h.key = in.originHosted.keys.verifier(h.x.Key); h.key == nil {
				return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Reason: "unknown_key",
					Msg: "Signed with " + quoteShort(string(h.x.Key)) + ", which is not a current key of " + in.origin}
			}
			continue
		}
		key, err := g.keyring.Verifier(in.r.Context(), in.origin, h.x.Key)
		if err != nil {
			return keyError(err)
		}
		h.key = key
	}
	return nil
}

// stageSignature verifies every X-Matrix header over the exact method,
// request-target, destination and content.
func (g *Gateway) stageSignature(in *inbound) error {
	for _, h := range in.auth {
		err := auth.VerifyRequestWith(h.x, in.r.Method, in.r.RequestURI, in.hs.name, in.canon, h.key)
		if err != nil {
			return keyError(err)
		}
	}
	return nil
}

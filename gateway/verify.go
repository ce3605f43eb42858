package gateway

import (
	"net/http"
	"slices"
	"strings"

	"github.com/fedgate/fedgate/auth"
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
	if strings.EqualFold(in.origin, in.rt.cfg.ServerName) {
		// Servers never send federation requests to themselves; accepting
		// one from the network would mean fetching our own keys from
		// wherever the claimed name resolves to. DNS ignores case, so
		// neither does this check.
		return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Msg: "Requests from this server's own name are not accepted", Reason: "origin_is_us"}
	}
	return nil
}

// stageDestination refuses requests signed for another server (spec:
// 401). A header without destination is accepted, for servers older than
// v1.3; its signature is checked with our name as destination.
func (g *Gateway) stageDestination(in *inbound) error {
	for _, h := range in.auth {
		if h.x.Destination != "" && h.x.Destination != in.rt.cfg.ServerName {
			return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized,
				Msg: "The request is for another server (X-Matrix destination does not match)", Reason: "destination_mismatch"}
		}
	}
	return nil
}

// stageOriginKey finds the origin's public key for every header, from the
// keyring (cached, pinned, fetched or via notaries).
func (g *Gateway) stageOriginKey(in *inbound) error {
	for i := range in.auth {
		h := &in.auth[i]
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
		err := auth.VerifyRequestWith(h.x, in.r.Method, in.r.RequestURI, in.rt.cfg.ServerName, in.canon, h.key)
		if err != nil {
			return keyError(err)
		}
	}
	return nil
}

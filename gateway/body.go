package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/fedgate/fedgate/internal/endpoints"
)

// stageBody reads the request body under the endpoint's size limit and
// checks that PUT and POST carry a JSON object. It never reads past the
// limit: an oversized body is refused from Content-Length alone when
// declared, or as soon as the limit is crossed when streamed.
func (g *Gateway) stageBody(in *inbound) error {
	r := in.r
	limit := int64(in.rt.cfg.Inbound.MaxBody)
	if in.match.Endpoint.Body == endpoints.BodyLarge {
		limit = int64(in.rt.cfg.Inbound.MaxBodySend)
	}
	switch r.Method {
	case http.MethodPut, http.MethodPost:
	default:
		// Federation GETs carry no body and sign no content; refuse one
		// rather than forward bytes the signature does not cover.
		if r.ContentLength > 0 || (r.ContentLength < 0 && bodyNotEmpty(r)) {
			return &Error{Status: http.StatusBadRequest, Code: CodeBadJSON, Msg: "This request must not have a body", Reason: "unexpected_body"}
		}
		return nil
	}
	if r.ContentLength > limit {
		in.w.Header().Set("Connection", "close")
		return errTooLarge(limit)
	}
	body, err := readLimited(r.Body, r.ContentLength, limit)
	if err != nil {
		if errors.Is(err, errBodyTooLarge) {
			in.w.Header().Set("Connection", "close")
			return errTooLarge(limit)
		}
		if isTimeout(err) {
			// server.read_timeout cut off a sender too slow to finish its
			// body (or one holding the connection on purpose).
			in.w.Header().Set("Connection", "close")
			return &Error{Status: http.StatusRequestTimeout, Code: CodeUnknown, Msg: "Timed out reading the request body", Reason: "body_timeout", Err: err}
		}
		return &Error{Status: http.StatusBadRequest, Code: CodeNotJSON, Msg: "Could not read the request body", Reason: "body_read", Err: err}
	}
	in.body = body
	return g.checkJSONBody(in)
}

var errBodyTooLarge = errors.New("body larger than the limit")

func errTooLarge(limit int64) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
		Msg: fmt.Sprintf("Request body is larger than %d bytes", limit), Reason: "body_too_large"}
}

// initialBodyBuffer is how much is reserved before a body's bytes arrive.
// The buffer grows with what is actually received, so a client that
// declares a large Content-Length and then trickles bytes pins little
// memory.
const initialBodyBuffer = 64 << 10

// readLimited reads a body of declared length n (-1: unknown) up to limit
// (the caller has already refused n > limit).
func readLimited(body io.Reader, n, limit int64) ([]byte, error) {
	want := limit + 1
	if n >= 0 {
		want = n
	}
	var buf bytes.Buffer
	buf.Grow(int(min(want, initialBodyBuffer)))
	if _, err := buf.ReadFrom(io.LimitReader(body, want)); err != nil {
		return nil, err
	}
	switch {
	case n >= 0 && int64(buf.Len()) < n:
		return nil, fmt.Errorf("body shorter than its Content-Length (%d of %d bytes)", buf.Len(), n)
	case int64(buf.Len()) > limit:
		return nil, errBodyTooLarge
	}
	return buf.Bytes(), nil
}

// bodyNotEmpty peeks at a body of unknown length.
func bodyNotEmpty(r *http.Request) bool {
	var one [1]byte
	n, _ := r.Body.Read(one[:])
	return n > 0
}

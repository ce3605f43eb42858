package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/internal/endpoints"
)

// stageBody reads the request body under the endpoint's size limit and
// turns PUT and POST bodies into the canonical JSON content X-Matrix
// signatures cover, once, before any key is fetched.
func (g *Gateway) stageBody(in *inbound) error {
	body, err := readBody(in.w, in.r, bodyLimit(in.rt, in.match.Endpoint.Body == endpoints.BodyLarge))
	if err != nil || !carriesBody(in.r.Method) {
		return err
	}
	in.body = body
	in.canon, err = jsonContent(body)
	return err
}

// carriesBody reports whether requests with method carry a JSON body in
// federation (PUT and POST always do, possibly {}).
func carriesBody(method string) bool {
	return method == http.MethodPut || method == http.MethodPost
}

// bodyLimit is [inbound] max_body, or max_body_send for transactions.
func bodyLimit(rt *runtime, large bool) int64 {
	if large {
		return int64(rt.cfg.Inbound.MaxBodySend)
	}
	return int64(rt.cfg.Inbound.MaxBody)
}

// readBody reads the body of a request fedgate received, inbound or from
// the homeserver. PUT and POST bodies are read up to limit, never past it:
// an oversized body is refused from Content-Length alone when declared, or
// as soon as the limit is crossed when streamed. Other methods must have
// no body (federation GETs sign no content, so fedgate refuses to forward
// bytes no signature covers). When part of the body is left unread, or
// reading it timed out, the connection is closed after the answer.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if !carriesBody(r.Method) {
		if r.ContentLength > 0 || (r.ContentLength < 0 && bodyNotEmpty(r)) {
			return nil, &Error{Status: http.StatusBadRequest, Code: CodeBadJSON, Msg: "This request must not have a body", Reason: "unexpected_body"}
		}
		return nil, nil
	}
	if r.ContentLength > limit {
		w.Header().Set("Connection", "close")
		return nil, errTooLarge(limit)
	}
	body, err := readLimited(r.Body, r.ContentLength, limit)
	switch {
	case err == nil:
		return body, nil
	case errors.Is(err, errBodyTooLarge):
		w.Header().Set("Connection", "close")
		return nil, errTooLarge(limit)
	case isTimeout(err):
		// server.read_timeout cut off a sender too slow to finish its
		// body (or one holding the connection on purpose).
		w.Header().Set("Connection", "close")
		return nil, &Error{Status: http.StatusRequestTimeout, Code: CodeUnknown, Msg: "Timed out reading the request body", Reason: "body_timeout", Err: err}
	}
	return nil, &Error{Status: http.StatusBadRequest, Code: CodeNotJSON, Msg: "Could not read the request body", Reason: "body_read", Err: err}
}

// jsonContent requires body to be a JSON object and returns the canonical
// content X-Matrix signatures cover: body itself when it is already
// canonical (what Synapse sends), else its canonical form. Refusals are
// M_NOT_JSON for text that is not JSON at all and M_BAD_JSON for JSON that
// canonical JSON forbids (floats, duplicate keys, out-of-range numbers) or
// that is not an object.
func jsonContent(body []byte) ([]byte, error) {
	if len(body) == 0 {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeNotJSON, Msg: "Request body must be a JSON object", Reason: "not_json"}
	}
	canon, err := auth.ContentOf(body)
	if err != nil {
		code, reason := CodeBadJSON, "bad_json"
		if !json.Valid(body) {
			code, reason = CodeNotJSON, "not_json"
		}
		var je *auth.JSONError
		msg := "Request body is not acceptable JSON"
		if errors.As(err, &je) {
			msg += ": " + je.Error()
		}
		return nil, &Error{Status: http.StatusBadRequest, Code: code, Msg: msg, Reason: reason, Err: err}
	}
	if canon[0] != '{' {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeBadJSON, Msg: "Request body must be a JSON object", Reason: "bad_json"}
	}
	return canon, nil
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

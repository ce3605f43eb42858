package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/internal/endpoints"
)

// stageBody reads the request body under the endpoint's size limit and
// turns PUT and POST bodies into the canonical JSON content X-Matrix
// signatures cover, once, before any key is fetched.
// Both go into buffers lent by g.buffers and given back when the request
// ends (forwarding writes the body before it returns).
func (g *Gateway) stageBody(in *inbound) error {
	if !carriesBody(in.r.Method) {
		_, err := readBody(in.w, in.r, 0, nil)
		return err
	}
	in.bodyBuf = g.buffers.get()
	body, err := readBody(in.w, in.r, bodyLimit(in.rt, in.match.Endpoint.Body == endpoints.BodyLarge), *in.bodyBuf)
	if err != nil {
		return err
	}
	*in.bodyBuf = body
	in.body = body
	in.canonBuf = g.buffers.get()
	in.canon, err = jsonContent(body, *in.canonBuf)
	if err == nil && len(in.canon) > 0 && &in.canon[0] != &body[0] {
		*in.canonBuf = in.canon
	}
	return err
}

// releaseBuffers gives the request's body buffers back.
func (g *Gateway) releaseBuffers(in *inbound) {
	g.buffers.put(in.bodyBuf)
	g.buffers.put(in.canonBuf)
	in.bodyBuf, in.canonBuf = nil, nil
}

// maxPooledBody is the largest body buffer kept for reuse; larger /send
// bodies (up to max_body_send) are left to the garbage collector.
const maxPooledBody = 256 << 10

// bodyBuffers lends byte buffers for bodies and their canonical form.
type bodyBuffers struct{ pool sync.Pool }

func (p *bodyBuffers) get() *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

func (p *bodyBuffers) put(b *[]byte) {
	if b == nil || cap(*b) > maxPooledBody {
		return
	}
	*b = (*b)[:0]
	p.pool.Put(b)
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
// the homeserver, into buf (grown as needed; nil allocates). PUT and POST
// bodies are read up to limit, never past it:
// an oversized body is refused from Content-Length alone when declared, or
// as soon as the limit is crossed when streamed. Other methods must have
// no body (federation GETs sign no content, so fedgate refuses to forward
// bytes no signature covers). When part of the body is left unread, or
// reading it timed out, the connection is closed after the answer.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, buf []byte) ([]byte, error) {
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
	body, err := readLimited(r.Body, r.ContentLength, limit, buf)
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
// that is not an object. A body that is not canonical is written out into
// dst (grown as needed; nil allocates).
func jsonContent(body, dst []byte) ([]byte, error) {
	if len(body) == 0 {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeNotJSON, Msg: "Request body must be a JSON object", Reason: "not_json"}
	}
	canon, err := auth.ContentOfInto(dst, body)
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
// (the caller has already refused n > limit) into buf, grown as needed.
func readLimited(body io.Reader, n, limit int64, buf []byte) ([]byte, error) {
	want := limit + 1
	if n >= 0 {
		want = n
	}
	if first := int(min(want, initialBodyBuffer)); cap(buf) < first {
		buf = make([]byte, 0, first)
	}
	buf = buf[:0]
	for int64(len(buf)) < want {
		if len(buf) == cap(buf) {
			// Double, but never past what may still come.
			buf = slices.Grow(buf, int(min(want-int64(len(buf)), int64(cap(buf)))))
		}
		m, err := body.Read(buf[len(buf):int(min(int64(cap(buf)), want))])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	switch {
	case n >= 0 && int64(len(buf)) < n:
		return nil, fmt.Errorf("body shorter than its Content-Length (%d of %d bytes)", len(buf), n)
	case int64(len(buf)) > limit:
		return nil, errBodyTooLarge
	}
	return buf, nil
}

// bodyNotEmpty peeks at a body of unknown length.
func bodyNotEmpty(r *http.Request) bool {
	var one [1]byte
	n, _ := r.Body.Read(one[:])
	return n > 0
}

package gateway

import (
	"errors"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

// Matrix error codes fedgate answers with.
const (
	CodeUnrecognized  = "M_UNRECOGNIZED"
	CodeUnauthorized  = "M_UNAUTHORIZED"
	CodeForbidden     = "M_FORBIDDEN"
	CodeLimitExceeded = "M_LIMIT_EXCEEDED"
	CodeTooLarge      = "M_TOO_LARGE"
	CodeNotJSON       = "M_NOT_JSON"
	CodeBadJSON       = "M_BAD_JSON"
	CodeNotFound      = "M_NOT_FOUND"
	CodeMissingToken  = "M_MISSING_TOKEN"
	CodeInvalidParam  = "M_INVALID_PARAM"
	CodeUnknown       = "M_UNKNOWN"
)

// Error is a request failure on its way to the remote side: Status and Code
// go on the wire with Msg as the human-readable text; Err is the internal
// cause, for our log only. Reason is a stable machine-readable code used in
// logs and metrics (e.g. "origin_denied", "bad_signature").
type Error struct {
	Status int
	Code   string
	Msg    string
	Reason string
	Err    error
	// RetryAfter, when positive, adds a Retry-After header and
	// retry_after_ms (rate limits).
	RetryAfter time.Duration
	// Allow, when set, is sent as the Allow header (405 answers).
	Allow string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Reason + ": " + e.Msg + ": " + e.Err.Error()
	}
	return e.Reason + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// asError converts any error into an *Error, defaulting to 500 M_UNKNOWN
// with a message that reveals nothing internal.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeUnknown, Msg: "Internal error", Reason: "internal", Err: err}
}

// writeError is the one place that renders a Matrix error body:
// {"errcode":"...","error":"..."} with Content-Type application/json. When
// errKey is "err", the message goes under "err" instead (Synapse's worker
// proxy protocol reads that key).
func writeError(w http.ResponseWriter, e *Error) {
	writeErrorKey(w, e, "error")
}

func writeErrorKey(w http.ResponseWriter, e *Error, errKey string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if e.Allow != "" {
		h.Set("Allow", e.Allow)
	}
	buf := make([]byte, 0, 96+len(e.Msg))
	buf = append(buf, `{"errcode":`...)
	buf = appendJSONString(buf, e.Code)
	buf = append(buf, ',', '"')
	buf = append(buf, errKey...)
	buf = append(buf, `":`...)
	buf = appendJSONString(buf, e.Msg)
	if e.RetryAfter > 0 {
		secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
		buf = append(buf, `,"retry_after_ms":`...)
		buf = strconv.AppendInt(buf, e.RetryAfter.Milliseconds(), 10)
	}
	buf = append(buf, '}')
	h.Set("Content-Length", strconv.Itoa(len(buf)))
	w.WriteHeader(e.Status)
	w.Write(buf)
}

// appendJSONString appends s as a JSON string, escaping quotes, backslashes
// and control characters and replacing invalid UTF-8 with U+FFFD, so that
// text quoted from a request can never break the body.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		case c < utf8.RuneSelf:
			dst = append(dst, c)
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, s[i:i+size]...)
			}
			i += size
			continue
		}
		i++
	}
	return append(dst, '"')
}

package auth

import (
	"errors"
	"fmt"
)

// Kind classifies an authentication failure so the gateway can choose the
// HTTP status, the Matrix error code and the metric label without parsing
// messages. The zero Kind is KindNone.
type Kind uint8

// The kinds of [Error]. Their String forms are stable and suitable as metric
// labels.
const (
	// KindNone is the Kind of a nil error.
	KindNone Kind = iota
	// KindOther is the Kind of an error that is not an *Error.
	KindOther
	// KindMissingHeader: the request carries no X-Matrix Authorization
	// header at all.
	KindMissingHeader
	// KindMalformedHeader: an X-Matrix header is present but cannot be
	// parsed, or several headers contradict each other.
	KindMalformedHeader
	// KindDestinationMismatch: the header names a destination that is not
	// this server (the spec's MUST-deny-with-401 case).
	KindDestinationMismatch
	// KindBadBody: the request body is not acceptable JSON, so no signature
	// over it can be checked.
	KindBadBody
	// KindUnknownKey: the origin does not publish the key id the request or
	// document was signed with (or publishes it only as an old key).
	KindUnknownKey
	// KindBadSignature: a signature is missing, not decodable or does not
	// verify.
	KindBadSignature
	// KindKeyFetchFailed: the origin's keys could not be obtained now
	// (origin and notaries unreachable, or in failure backoff).
	KindKeyFetchFailed
	// KindBadKeyDocument: a key document (ours to build, or a remote one)
	// breaks the rules of the key server API.
	KindBadKeyDocument
	// KindBadJSON: a value cannot be written or read as canonical JSON
	// (documents other than request bodies).
	KindBadJSON
)

var kindNames = [...]string{
	KindNone:                "none",
	KindOther:               "other",
	KindMissingHeader:       "missing_header",
	KindMalformedHeader:     "malformed_header",
	KindDestinationMismatch: "destination_mismatch",
	KindBadBody:             "bad_body",
	KindUnknownKey:          "unknown_key",
	KindBadSignature:        "bad_signature",
	KindKeyFetchFailed:      "key_fetch_failed",
	KindBadKeyDocument:      "bad_key_document",
	KindBadJSON:             "bad_json",
}

// String returns the kind's stable snake_case name, e.g. "bad_signature".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Error is the one error type auth returns for authentication and key
// failures. Msg is written for the remote server and never carries internal
// detail (addresses, file names, our configuration); Err, when set, is the
// internal cause, for our logs only. Use errors.As to get at it, or [KindOf].
type Error struct {
	Kind Kind
	// Msg is a human-readable message that is safe to send to the remote
	// server in a Matrix error body.
	Msg string
	// Err is the underlying cause, or nil. Its text may reveal internals.
	Err error
}

// Error returns Msg followed by the cause, if any. Do not send it to remote
// servers: use Msg.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of the first *Error in err's chain, KindNone for a
// nil err and KindOther for errors that carry no *Error.
func KindOf(err error) Kind {
	if err == nil {
		return KindNone
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}

// newError builds an *Error with a formatted remote-safe message.
func newError(kind Kind, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Err: cause}
}

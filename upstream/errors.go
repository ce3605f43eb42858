package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// Kind says how far an exchange with the homeserver got before it failed.
type Kind uint8

const (
	// NotSent: no connection could be made (refused, unreachable, DNS,
	// dial or TLS handshake failed or timed out), or the connection failed
	// before accepting any byte of the request. Nothing of the request
	// reached the homeserver, so trying another member is always safe.
	NotSent Kind = iota + 1
	// NoResponse: the request was sent, perhaps partly, and the connection
	// was closed or reset before any byte of a response arrived. The
	// homeserver may have acted on the request.
	NoResponse
	// HeaderTimeout: the complete response head did not arrive within
	// [Options.HeaderTimeout] of starting to send the request.
	HeaderTimeout
	// BadResponse: bytes arrived that are not an HTTP/1.x response head
	// (garbage, a head larger than [MaxHeaderBytes], a protocol upgrade).
	BadResponse
	// BodyBroken: the response broke off after its head: the connection
	// closed or was reset early, a chunk was malformed, or no byte came for
	// [Options.BodyTimeout] (then [Error.Timeout] is true). Whatever was
	// already relayed of the response has reached the remote server.
	BodyBroken
)

func (k Kind) String() string {
	switch k {
	case NotSent:
		return "not sent"
	case NoResponse:
		return "no response"
	case HeaderTimeout:
		return "header timeout"
	case BadResponse:
		return "bad response"
	case BodyBroken:
		return "body broken"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Error is every error [Member.RoundTrip] and [Body] return for a failed
// exchange. Err is the cause (a net.Error, an io error, a parse error, or
// the context's error when the caller gave up); it unwraps, so
// errors.Is(err, context.Canceled) tells a caller that went away.
type Error struct {
	Kind Kind
	// Member is the member's URL, without credentials.
	Member string
	// Written reports whether any byte of the request was written to a
	// connection (false for NotSent, and for NoResponse when a reused
	// connection failed before accepting anything).
	Written bool
	Err     error
}

func (e *Error) Error() string {
	return fmt.Sprintf("homeserver %s: %s: %v", e.Member, e.Kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the exchange failed because a timeout passed:
// dialling, the response head, or a pause in the body. A caller that went
// away (context canceled) is not a timeout.
func (e *Error) Timeout() bool {
	if errors.Is(e.Err, context.Canceled) {
		return false
	}
	if e.Kind == HeaderTimeout {
		return true
	}
	if errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

// errHeadTooLarge is the cause of a BadResponse whose head exceeded
// MaxHeaderBytes.
var errHeadTooLarge = errors.New("response head larger than the limit")

// errUpgrade is the cause of a BadResponse that switches protocols:
// fedgate never asks for an upgrade.
var errUpgrade = errors.New("unexpected 101 Switching Protocols")

// ErrBodyTooLarge is returned by [Body.ReadAll] for a body larger than the
// limit it was given (the body was not read to its end).
var ErrBodyTooLarge = errors.New("response body larger than the limit")

// OptionError is [New]'s error for an option it cannot use.
type OptionError struct {
	Option string // the Options field, e.g. "URL", "CAFile"
	Err    error
}

func (e *OptionError) Error() string { return e.Option + ": " + e.Err.Error() }

func (e *OptionError) Unwrap() error { return e.Err }

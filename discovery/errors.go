package discovery

import (
	"errors"
	"fmt"
	"strconv"
)

// Phase names the part of reaching a server that failed.
type Phase string

// Phases, in the order a request goes through them.
const (
	// PhaseName: the server name is not valid by the spec's grammar.
	PhaseName Phase = "server name"
	// PhaseWellKnown: the caller's context ended while the well-known
	// document was being fetched. (A failed fetch is not an error:
	// discovery falls through to SRV and A/AAAA.)
	PhaseWellKnown Phase = "well-known"
	// PhaseDNS: a DNS lookup found nothing usable or the resolvers failed.
	PhaseDNS Phase = "dns"
	// PhaseGuard: the SSRF guard refused every address; nothing was dialled.
	PhaseGuard Phase = "ssrf guard"
	// PhaseDial: no TCP connection could be made.
	PhaseDial Phase = "dial"
	// PhaseTLS: the TLS handshake failed, including certificate checks.
	PhaseTLS Phase = "tls"
	// PhaseRequest: the connection was made but sending the request or
	// reading the response failed. The request may have reached the server.
	PhaseRequest Phase = "request"
	// PhaseStatus: the server answered with an unexpected HTTP status
	// ([Client.Get] only; [Client.Do] returns every response).
	PhaseStatus Phase = "status"
)

// rank orders phases by how far a request got, to pick the most telling one
// when several targets failed differently.
func (p Phase) rank() int {
	switch p {
	case PhaseGuard:
		return 1
	case PhaseDial:
		return 2
	case PhaseTLS:
		return 3
	case PhaseRequest:
		return 4
	case PhaseStatus:
		return 5
	}
	return 0
}

// Sentinel causes; test with errors.Is.
var (
	// ErrBlocked: an address is in a special-purpose network the SSRF guard
	// refuses (see [Resolver.CheckAddr]).
	ErrBlocked = errors.New("refused by the SSRF guard")
	// ErrNotFound: DNS says the name has no such records (NXDOMAIN or an
	// empty answer), as opposed to a resolver failure.
	ErrNotFound = errors.New("not found in DNS")
	// ErrHostsFile: [Options.HostsFile] exists but cannot be used (a
	// folder, unreadable, larger than [MaxHostsFileSize]); only
	// [NewResolver] returns it: later, the last good file stays in use.
	ErrHostsFile = errors.New("hosts file unusable")
	// ErrServiceUnavailable: the SRV record's target is ".", the domain's
	// way of saying it offers no Matrix federation.
	ErrServiceUnavailable = errors.New(`SRV target "." says the service is not available`)
)

// Error is a failure to reach a server. Err holds the cause (wrapping
// [ErrBlocked], [ErrNotFound], a [*StatusError], a DNS or TLS error, ...);
// when several targets were tried, Err joins their errors and Phase is the
// furthest any of them got.
type Error struct {
	// ServerName is the server name as asked.
	ServerName string
	// Phase says what failed.
	Phase Phase
	// Target is what the failure concerns, "ip:port" or a DNS name; it may
	// be empty.
	Target string
	// Err is the cause.
	Err error
	// Steps are the steps discovery took before failing (set by
	// [Resolver.Resolve], for "fedgate resolve" and logs).
	Steps []Step
}

// Error renders "server: phase target: cause", leaving out empty parts.
func (e *Error) Error() string {
	s := string(e.Phase)
	if e.ServerName != "" {
		s = e.ServerName + ": " + s
	}
	if e.Target != "" {
		s += " " + e.Target
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// StatusError is an HTTP response with a status the caller did not accept.
type StatusError struct {
	StatusCode int
	// Body is the start of the response body (at most 256 bytes), for logs.
	Body []byte
}

// Error renders the status and the start of the body.
func (e *StatusError) Error() string {
	s := "HTTP " + strconv.Itoa(e.StatusCode)
	if len(e.Body) > 0 {
		s += fmt.Sprintf(": %q", e.Body)
	}
	return s
}

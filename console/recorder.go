package console

import (
	"net/netip"
	"time"
)

// Outcome is how a request ended, as far as the console cares.
type Outcome uint8

// The outcomes.
const (
	// Forwarded: delivered to the homeserver (inbound) or the remote
	// server (egress), or a CONNECT tunnel passed through.
	Forwarded Outcome = iota
	// Local: answered by fedgate itself (well-known, key document, notary).
	Local
	// Denied: refused by a check (policy, authentication, limits, routing).
	Denied
	// Failed: allowed, but not delivered (homeserver or remote server
	// unreachable, an egress destination in backoff, the client gone).
	Failed
)

// Directions, as status.json names them.
const (
	DirectionInbound = "inbound"
	DirectionEgress  = "egress"
)

// Request is what the recorder learns about one finished request. The
// gateway fills one per request from what it already has; the recorder
// copies the strings it keeps, so they may point into the request.
type Request struct {
	// Time is when the request finished.
	Time time.Time
	// Egress is true for the homeserver's outbound requests.
	Egress bool
	// Server is the origin (inbound; as the request claims it when it was
	// refused before its signature was checked) or the destination
	// (egress); "" when there is none, such as a request refused before
	// its X-Matrix header was read.
	Server string
	// Peer is the TCP peer's address. The recent denials show it for
	// denials that name no server (per-IP limits, network policy).
	Peer netip.Addr
	// Outcome is how it ended; Status is the HTTP status sent.
	Outcome Outcome
	Status  int
	// Reason is the reason code of a denial or failure; Stage the check
	// that refused it; Rule the policy entry and Limiter the rate or
	// concurrency limiter that did, if any.
	Reason, Stage, Rule, Limiter string
	// Noise marks denials that are counted but not listed among the
	// recent denials: routing misses (scanners probing paths outside the
	// endpoint table), which the decision log leaves out too.
	Noise bool
}

// error reports whether q counts as an error: not delivered, or answered
// with a 5xx by the homeserver or remote server.
func (q *Request) error() bool {
	return q.Outcome == Failed || (q.Outcome == Forwarded && q.Status >= 500)
}

// RecorderOptions size a [Recorder]. Zero values take the defaults.
type RecorderOptions struct {
	// Denials is how many recent denials are kept. Default 100.
	Denials int
	// TopSlots is how many servers each top table (origins, destinations)
	// tracks to find the busiest ones. Default 1024.
	TopSlots int
}

// Defaults of RecorderOptions.
const (
	DefaultDenials  = 100
	DefaultTopSlots = 1024
)

// Recorder keeps what the console shows of recent traffic: requests,
// denials and errors per minute for the last hour, the busiest origins
// and destinations over the last hour, and the most recent denials. Its
// memory is fixed when it is made and does not grow with traffic.
//
// [Recorder.Record] is on the path of every request: it takes no lock and,
// for servers it already tracks and denials that repeat, allocates
// nothing. All methods are safe for concurrent use.
type Recorder struct {
	series       series
	origins      *topTable
	destinations *topTable
	denials      *denialRing
}

// NewRecorder returns an empty Recorder.
func NewRecorder(opts RecorderOptions) *Recorder {
	if opts.Denials <= 0 {
		opts.Denials = DefaultDenials
	}
	if opts.TopSlots <= 0 {
		opts.TopSlots = DefaultTopSlots
	}
	return &Recorder{
		origins:      newTopTable(opts.TopSlots),
		destinations: newTopTable(opts.TopSlots),
		denials:      newDenialRing(opts.Denials),
	}
}

// Record counts one finished request. A nil Recorder records nothing.
func (r *Recorder) Record(q *Request) {
	if r == nil {
		return
	}
	denied, failed := q.Outcome == Denied, q.error()
	r.series.add(q.Time, q.Egress, denied, failed)
	top := r.origins
	if q.Egress {
		top = r.destinations
	}
	top.add(q.Server, q.Time, denied, failed)
	if denied && !q.Noise {
		r.denials.add(q)
	}
}

// Names says how server names and policy rules appear in what the
// console shows: with log.hash_server_names on, as the logs show them.
// A nil function shows them as they are.
type Names struct {
	// Server maps a server name or peer address.
	Server func(string) string
	// Rule maps a policy rule, which may quote a server name.
	Rule func(string) string
}

func (n Names) server(s string) string {
	if n.Server == nil || s == "" {
		return s
	}
	return n.Server(s)
}

func (n Names) rule(s string) string {
	if n.Rule == nil || s == "" {
		return s
	}
	return n.Rule(s)
}

// Traffic returns the traffic section as of now: the last hour per
// minute, the top n origins and destinations, and the recent denials,
// with names shown as names says. Its cost depends on the Recorder's
// fixed sizes, never on how much traffic there was.
func (r *Recorder) Traffic(now time.Time, n int, names Names) *Traffic {
	t := &Traffic{
		Minutes:         r.series.read(now),
		TopOrigins:      r.origins.top(now, n),
		TopDestinations: r.destinations.top(now, n),
		RecentDenials:   r.denials.read(names),
	}
	for _, m := range t.Minutes {
		t.Hour.Inbound += m.Inbound
		t.Hour.Egress += m.Egress
		t.Hour.Denied += m.Denied
		t.Hour.Errors += m.Errors
	}
	for _, list := range [][]TopServer{t.TopOrigins, t.TopDestinations} {
		for i := range list {
			list[i].Server = names.server(list[i].Server)
		}
	}
	return t
}

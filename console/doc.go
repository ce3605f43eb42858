// Package console owns fedgate's operator console: the status model
// ([Status]), the bounded in-memory record of recent traffic
// ([Recorder]), and the two views of them that the admin listener serves,
// an HTML page ([Console.Page], at GET /) and its JSON twin
// ([Console.JSON], at GET /status.json). docs/console.md describes both
// for operators.
//
// # Who does what
//
// console imports nothing of fedgate's. The gateway, which owns the state,
// does the rest:
//
//   - it calls [Recorder.Record] once per finished request, inbound and
//     egress, from its finish path;
//   - it builds a fresh [Status] per page view from its own state and the
//     packages below it (readiness, certificates, keys, keyring, egress
//     backoff, policy with its policy rooms and signed list, cluster
//     state), with [Recorder.Traffic] as the traffic section; the
//     top-level server's keys and policy in [Status.SigningKeys] and
//     [Status.Policy], every other hosted server's in [Status.Servers];
//   - it maps server names through [Names] when log.hash_server_names is
//     on, so the page shows what the logs show;
//   - it mounts the handlers on the admin listener, guarded by the
//     [Token] of [admin] token_file.
//
// # Cost
//
// The Recorder is on every request's path: no lock, no allocation for a
// server already tracked or a denial that repeats (a compare-and-swap per
// counter, on counters stamped with their minute so that rotation needs no
// reset). Its memory is fixed at creation: 60 minutes of counters, a top
// table of fixed slots per direction, a ring of recent denials. Rendering
// reads those fixed structures and a bounded number of rows from every
// other section, so neither time nor memory grows with traffic.
//
// # Several hosted servers
//
// The page groups per-server sections by server name only when there is
// more than one hosted server (Status.Servers not empty): the keys as
// group rows of one table, the policy sources as one folded block per
// server, opened when a source of that server is degraded or stale. A
// one-server page looks as it did before hosted servers existed. Hosted
// server names are ours and never hashed.
//
// # Adding a section
//
// A feature that wants a place on the page (upstream pools, policy rooms,
// cluster state, hosted server names) adds one struct and one template
// block:
//
//  1. In status.go, a struct for the section with JSON tags and doc
//     comments on every field, and a pointer field on [Status] with
//     `json:"name,omitempty"`. Nil means the feature is off: the section
//     then appears neither on the page nor in status.json. Never put a
//     secret in it.
//  2. templates/<name>.html holding
//     {{define "<name>"}}{{with .<Field>}}<section id="<name>"
//     class="panel">...</section>{{end}}{{end}}, and one line
//     {{template "<name>" .}} in page.html where it belongs. Inside the
//     block, $ is the whole page: {{ago $.Generated .Time}} and the other
//     helpers in render.go need it for relative times. Server names are
//     already hashed by the gateway; html/template escapes everything.
//  3. The gateway fills the field in gateway/console.go.
//  4. docs/console.md documents every field of the section in its
//     status.json table: TestStatusJSONDocumented fails until it does.
//     Optionally, cards in render.go gains a summary tile.
package console

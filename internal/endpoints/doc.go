// Package endpoints owns the federation endpoint table: every method and
// path template fedgate knows, whether it needs X-Matrix authentication, the
// endpoint class policy rules refer to, and which path or query parameters
// name a room or a user. It also owns the router that maps a raw request
// path onto that table.
//
// The table is data in one file (table.go) so that routing (gateway),
// endpoint rules (policy) and configuration checks (config) read the same
// facts; a test compares it with the spec's OpenAPI files in
// testdata/spec/server-server so that it cannot drift from the spec.
//
// Routing works on the raw, still percent-encoded path: static segments must
// match byte for byte and only parameter values are unescaped. An encoded
// static segment ("%73end"), an empty segment ("//") or a dot segment ("/./")
// therefore never matches a route, so encoding tricks cannot reach an
// endpoint under a name that policy does not see. The [Router] is immutable
// after construction and safe for concurrent use; lookups do not allocate.
package endpoints

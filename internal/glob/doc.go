// Package glob owns fedgate's one wildcard syntax: "*" matches any run of
// characters (including none) and "?" matches exactly one, as in Matrix
// server ACLs. Matching is case-insensitive for ASCII letters, as server ACLs
// have been since spec v1.19.
//
// Patterns are compiled once (at config load) and matched many times on the
// request path; [Glob.Match] does not allocate. A compiled [Glob] is
// immutable and safe for concurrent use. Callers that match server names
// decide themselves what to do with ports; this package only matches strings.
package glob

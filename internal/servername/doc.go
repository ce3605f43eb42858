// Package servername owns the Matrix server-name grammar (spec appendix
// "Server Name"): parsing a name into host and port, telling IP literals from
// DNS names, and the comparisons that depend on it.
//
// It is a leaf package with no dependencies beyond the standard library so
// that config (validation with line numbers), discovery (resolution), auth
// (X-Matrix origins) and policy (matching) all apply one grammar. Everything
// here is pure and safe for concurrent use.
package servername

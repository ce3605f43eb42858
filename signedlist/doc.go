// Package signedlist feeds a signed federation list into the policy
// engine: a compact JWS (RFC 7515, ES256 or EdDSA) whose protected header
// carries the signer's certificate chain (x5c), and whose payload is the
// list JSON policy.list_file uses ({"version":N,"allow":[...],
// "deny":[...]}). This is how regulated federations such as TI-Messenger
// distribute the list every edge must enforce.
//
// [Verifier] checks one JWS: the algorithm (ES256 or EdDSA only; "none",
// HMAC and everything else are refused before any key is looked at), the
// x5c chain up to a root of list_trust at the time of use (so an expired
// signer is refused), the signature with the leaf certificate's key (never
// a key the header offers), and the payload as a list. Parsing is
// github.com/go-jose/go-jose/v4's; nothing here reads JOSE by hand.
//
// [Source] keeps one list current: it reads policy.list_file when it
// changes, or fetches policy.list_url every list_refresh with
// If-None-Match, through a [Fetcher] the caller provides (the gateway's
// uses discovery's guarded HTTPS client: outbound.ca_file and the SSRF
// guard apply). A list that does not verify, or whose version is lower
// than the last good one (rollback), is refused and the last good list
// stays. The last good JWS is kept in a cache file in data_dir, so a
// restart while the URL is down, or after someone put an older list in
// place, keeps enforcing the newest good list. Each accepted list is
// handed to the engine with policy.Engine.SetExternal as a KindList set;
// with list_max_age, the set carries the instant it goes stale (the last
// time a list was confirmed plus list_max_age), past which the engine
// fails closed with list_stale.
//
// The package owns no listener and makes no network call of its own; it
// imports policy (for the list format and the engine seam) and the
// standard library. A Source is safe for concurrent use.
package signedlist

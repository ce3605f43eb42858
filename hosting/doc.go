// Package hosting knows which server names one fedgate hosts and tells,
// for a request, which of them it is for.
//
// The configuration's top-level settings are the first hosted server and
// every [[servers]] entry adds one (config.Config.Hosted gives each its
// complete configuration, inheritance applied; docs/multiple-servers.md
// has the inheritance table). A [Table] built from those configurations
// indexes them:
//
//   - by server name ([Table.Lookup]): the X-Matrix destination of an
//     inbound request, the origin of an egress request, a notary query;
//     lower case, so a lookup costs one map access and allocates nothing
//     for names already in lower case;
//   - by the host names requests arrive for ([Table.ForHost] for the Host
//     header, [Table.ForSNI] for the TLS server name): each server's own
//     host, its well-known delegated host and the certificate names it
//     lists. A delegated host several servers share identifies none of
//     them ([Ambiguous]); the X-Matrix destination decides then.
//
// [Table.Sent] combines Host and SNI into the server a request was sent
// to. The gateway refuses a signed request whose destination is not a
// hosted name or disagrees with it, so a request can never be answered by
// one hosted server in the name of another.
//
// A Table is immutable and safe for concurrent use; the gateway builds one
// per configuration (re)load, next to the per-server runtime state it
// indexes by position. Nothing here is linear in the number of hosted
// servers on the request path. The package owns no sockets and imports
// only config and the server-name grammar.
package hosting

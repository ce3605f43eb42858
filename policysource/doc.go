// Package policysource runs the policy sources of one policy engine: the
// moderation policy rooms ([[policy.rooms]], package policyroom) and the
// signed federation list (list_signature = "jws", package signedlist) that
// one [policy] section names.
//
// A [Set] belongs to one policy.Engine. [Set.Prepare] builds the sources a
// configuration asks for, reusing the running ones whose settings did not
// change, and starts nothing; [Set.Apply] puts a prepared [Plan] in service
// after the engine accepted the same configuration: sources no longer
// wanted stop, new ones publish the rules they saved in data_dir (so a
// restart while a homeserver is down keeps enforcing them) and run once
// [Set.Start] was called. A reload therefore restarts only the sources
// whose settings changed, and a refused reload changes nothing. [Check]
// builds every source without publishing or starting any, for
// check-config.
//
// The sources decide nothing themselves: each hands the engine a named
// rule set through policy.Engine.SetExternal. Their last good state lives
// in the configuration's data_dir: one file per hosted server and room
// (policy-rooms/), and one per signed list location.
//
// The gateway keeps one Set per hosted server, reports [Set.Status] in
// /readyz, the metrics and the console, and passes a Fetcher that reaches
// list_url through the outbound settings (DNS, outbound.ca_file, SSRF
// guard). Logs go to the *slog.Logger given to [New]. A Set is safe for
// concurrent use.
package policysource

// Package policyroom subscribes fedgate to Matrix moderation policy rooms
// ("ban lists"): rooms whose state holds m.policy.rule.server events (and
// the older m.room.rule.server and org.matrix.mjolnir.rule.server), as
// moderation teams publish them and bots such as Mjolnir and Draupnir
// consume them. Where those bots write m.room.server_acl into each
// protected room, fedgate applies the bans at the edge, for every room at
// once.
//
// A [Source] follows one room through the client-server API of a
// homeserver, with the access token of a bot account: it resolves an
// alias (GET /directory/room), joins the room if the bot is not in it,
// reads the room's whole rule state with an initial /sync and then
// long-polls /sync (30 s) with a filter that keeps only this room and the
// rule, tombstone and redaction events. Long-polling makes a change take
// effect as soon as the homeserver has it, at the cost of one idle
// request per room; polling /rooms/{id}/state instead would re-read every
// rule on every poll and notice changes only at the next poll. When the
// timeline has a gap ("limited"), the room is read again in full, so
// nothing in the gap (a redaction in particular) is missed. A room
// upgrade (m.room.tombstone) is followed: the bot joins the replacement
// room and reads it; the old room's rules stay until then.
//
// Rules: recommendation m.ban (or org.matrix.mjolnir.ban) makes the
// rule's entity, a server name or a glob of '*' and '?', a deny entry;
// other recommendations are ignored and counted; a rule whose state is
// replaced by empty content, or redacted, is lifted. Entities that are
// not server names or globs, or that match every server ("*"), are
// refused and counted. User and room rules (m.policy.rule.user,
// m.policy.rule.room) are out of scope: fedgate decides per server.
//
// Rules reach the engine through policy.Engine.SetExternal as a
// KindBanList set named after the room: matches deny with origin_banned
// or destination_banned and name the room, the rule's event type, state
// key, entity and reason in Decision.Rule. The last good rules and the
// room they came from are saved in a state file in data_dir, so a restart
// while the homeserver is down enforces them at once. With max_age, the
// set carries a deadline (last successful sync plus max_age) past which
// every origin and destination check fails closed (ban_list_stale).
//
// Bounds: a sync answer is read up to [MaxSyncResponse]; at most
// max_rules rules are kept (more are refused with an error in the log
// and the status); state keys and reasons are kept truncated and rules
// are keyed by a hash, so memory follows the rule count, whatever a
// hostile room writes.
//
// The package owns no listener; it imports policy and the standard
// library. Run owns the room's state; Status is safe for concurrent use.
package policyroom

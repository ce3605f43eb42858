package gateway

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/policyroom"
)

// fetchList fetches the signed list through the current outbound
// settings: the resolver's DNS, outbound.ca_file and the SSRF guard.
func (g *Gateway) fetchList(ctx context.Context, u string, h http.Header, maxBytes int64) (int, http.Header, []byte, error) {
	return discovery.NewURLClient(g.client().Resolver()).Get(ctx, u, h, maxBytes)
}

// Readiness check names of the policy sources: one per room, named after
// the room as configured, and one for the signed list.
const (
	readyPolicyRoomPrefix = "policy_room "
	readyFederationList   = "federation_list"
)

// readyPolicySources reports each source. A source that cannot be read
// degrades fedgate but does not make it unready (its last rules stay in
// force); only one failing closed (max_age, list_max_age passed) does,
// since then every federation request is refused anyway.
func (g *Gateway) readyPolicySources(now time.Time) []ReadyCheck {
	rt := g.rt.Load()
	if rt == nil {
		return nil
	}
	var out []ReadyCheck
	for _, hs := range rt.servers {
		out = append(out, readySources(hs, len(rt.servers) > 1, now)...)
	}
	return out
}

// readySources reports one hosted server's sources; with several hosted
// servers, each check's name says whose source it is.
func readySources(hs *hostedServer, several bool, now time.Time) []ReadyCheck {
	rooms, list := hs.state.sources.Status()
	whose := ""
	if several {
		whose = " (" + hs.name + ")"
	}
	var out []ReadyCheck
	for _, st := range rooms {
		c := ReadyCheck{Name: readyPolicyRoomPrefix + st.Room + whose, OK: !st.Stale}
		age := "never synced"
		if !st.LastSync.IsZero() {
			age = "last synced " + now.Sub(st.LastSync).Round(time.Second).String() + " ago"
		}
		mode := ""
		if st.DryRun {
			mode = ", dry run"
		}
		c.Detail = fmt.Sprintf("%s %s: %d ban rules in force%s, %s", st.State, st.RoomID, st.Rules, mode, age)
		if st.LastError != "" {
			c.Detail += "; " + truncateDetail(st.LastError)
		}
		if st.Stale {
			c.Detail += "; max_age exceeded: federation fails closed (ban_list_stale)"
		}
		out = append(out, c)
	}
	if list != nil {
		c := ReadyCheck{Name: readyFederationList + whose, OK: !list.Stale}
		if list.Version < 0 {
			c.Detail = "no good list yet from " + list.Location
		} else {
			c.Detail = fmt.Sprintf("version %d from %s (%d allow, %d deny), confirmed %s ago, signer valid until %s",
				list.Version, list.Location, list.Allow, list.Deny, now.Sub(list.Confirmed).Round(time.Second),
				list.SignerNotAfter.UTC().Format(time.RFC3339))
		}
		if list.LastError != "" {
			c.Detail += "; " + truncateDetail(list.LastError)
		}
		if list.Stale {
			c.Detail += "; list_max_age exceeded: federation fails closed (list_stale)"
		}
		out = append(out, c)
	}
	return out
}

func truncateDetail(s string) string {
	const max = 300
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// policySourceDescs are the policy sources' metrics.
type policySourceDescs struct {
	roomUp, roomLastSync, roomRules, roomIgnored, roomStale, roomFailures, roomChanges *prometheus.Desc
	listSignerNotAfter                                                                 *prometheus.Desc
}

func newPolicySourceDescs(d func(sub, name, help string, labels ...string) *prometheus.Desc) policySourceDescs {
	return policySourceDescs{
		roomUp:             d("policy_room", "up", "1 when the last sync of the policy room succeeded.", "room", "server"),
		roomLastSync:       d("policy_room", "last_sync_timestamp_seconds", "When the policy room was last synced successfully, as a Unix time.", "room", "server"),
		roomRules:          d("policy_room", "rules", "Ban rules of the policy room in force.", "room", "server"),
		roomIgnored:        d("policy_room", "ignored_rules", "Server rules of the policy room not in force, by why: recommendation (not m.ban), invalid, too_broad, over_limit (max_rules).", "room", "why", "server"),
		roomStale:          d("policy_room", "stale", "1 when the policy room has not been synced within its max_age: federation fails closed.", "room", "server"),
		roomFailures:       d("policy_room", "sync_failures_total", "Failed attempts to read the policy room.", "room", "server"),
		roomChanges:        d("policy_room", "rule_changes_total", "Rule changes applied from the policy room.", "room", "server"),
		listSignerNotAfter: d("policy", "list_signer_not_after_timestamp_seconds", "When the certificate chain that signed the federation list in force expires, as a Unix time.", "server"),
	}
}

func (p *policySourceDescs) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{p.roomUp, p.roomLastSync, p.roomRules, p.roomIgnored, p.roomStale, p.roomFailures, p.roomChanges, p.listSignerNotAfter} {
		ch <- d
	}
}

// collect reports the sources; the signed list also fills the list_*
// metrics the list file uses, so dashboards work for both.
func (p *policySourceDescs) collect(c *stateCollector, g *Gateway, gauge, counter func(*prometheus.Desc, float64, ...string)) {
	rt := g.rt.Load()
	if rt == nil {
		return
	}
	for _, hs := range rt.servers {
		p.collectServer(c, hs, gauge, counter)
	}
}

// collectServer reports one hosted server's sources, labelled with its
// name. The signed list also fills the list_* metrics of that server.
func (p *policySourceDescs) collectServer(c *stateCollector, hs *hostedServer, gauge, counter func(*prometheus.Desc, float64, ...string)) {
	unix := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	rooms, list := hs.state.sources.Status()
	for _, st := range rooms {
		gauge(p.roomUp, b2f(st.State == policyroom.StateSyncing), st.Room, hs.name)
		if !st.LastSync.IsZero() {
			gauge(p.roomLastSync, unix(st.LastSync), st.Room, hs.name)
		}
		gauge(p.roomRules, float64(st.Rules), st.Room, hs.name)
		for why, n := range st.Ignored {
			gauge(p.roomIgnored, float64(n), st.Room, why, hs.name)
		}
		gauge(p.roomStale, b2f(st.Stale), st.Room, hs.name)
		counter(p.roomFailures, float64(st.Failures), st.Room, hs.name)
		counter(p.roomChanges, float64(st.Changes), st.Room, hs.name)
	}
	if list == nil {
		return
	}
	if list.Version >= 0 {
		gauge(c.listVersion, float64(list.Version), hs.name)
		gauge(c.listModified, unix(list.Confirmed), hs.name)
		gauge(c.listEntries, float64(list.Allow), "allow", hs.name)
		gauge(c.listEntries, float64(list.Deny), "deny", hs.name)
		gauge(p.listSignerNotAfter, unix(list.SignerNotAfter), hs.name)
	}
	gauge(c.listStale, b2f(list.Stale), hs.name)
	counter(c.listLoads, float64(list.Loads), hs.name)
	counter(c.listFailures, float64(list.Failures), hs.name)
}

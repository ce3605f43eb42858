package console

import (
	"strconv"
	"strings"
	"time"
)

// What the page derives from the hosted servers' keys and policy sources
// and from the cluster section: the views the templates range over, the
// states that colour rows and pills, and the summary cards.

// hostedViews lists every hosted server's keys and policy, the top-level
// server (named top) first, then the [[servers]] entries; each policy
// with its assessment.
func hostedViews(st *Status, top string) ([]keySet, []policyView) {
	keys := make([]keySet, 0, 1+len(st.Servers))
	policies := make([]policyView, 0, 1+len(st.Servers))
	addPolicy := func(server string, p *Policy) {
		if p != nil {
			v := policyView{Server: server, Policy: p, Now: st.Generated}
			v.assess()
			policies = append(policies, v)
		}
	}
	if st.SigningKeys != nil {
		keys = append(keys, keySet{Server: top, Keys: st.SigningKeys})
	}
	addPolicy(top, st.Policy)
	for i := range st.Servers {
		hs := &st.Servers[i]
		if hs.SigningKeys != nil {
			keys = append(keys, keySet{Server: hs.Name, Keys: hs.SigningKeys})
		}
		addPolicy(hs.Name, hs.Policy)
	}
	return keys, policies
}

// assess fills the view's State, Summary, Stale and Warn from its sources:
// "bad" when one is stale (federation fails closed), "warn" when one
// cannot be read or its signer expires within CertificateWarning, "ok"
// when every source is in sync, "" without any source.
func (v *policyView) assess() {
	p, now := v.Policy, v.Now
	var parts []string
	bans := 0
	for _, r := range p.Rooms {
		v.Sources++
		bans += r.Rules
		switch roomState(r) {
		case "bad":
			v.Stale = append(v.Stale, r.Room)
		case "warn":
			v.Warn = append(v.Warn, r.Room+" "+r.State)
		}
	}
	if n := len(p.Rooms); n > 0 {
		parts = append(parts, plural(n, "policy room")+", "+plural(bans, "ban")+" in force")
	}
	if l := p.FederationList; l != nil {
		v.Sources++
		switch {
		case l.Stale:
			v.Stale = append(v.Stale, "federation list")
		case l.Version < 0:
			v.Warn = append(v.Warn, "no federation list yet")
		case expiryState(now, l.SignerNotAfter) != "ok":
			v.Warn = append(v.Warn, signerExpiry(now, l.SignerNotAfter))
		case l.LastError != "":
			v.Warn = append(v.Warn, "federation list failing")
		}
		if l.Version >= 0 {
			parts = append(parts, "signed list version "+strconv.FormatInt(l.Version, 10))
		} else {
			parts = append(parts, "no signed list yet")
		}
	}
	if f := p.ListFile; f != nil {
		v.Sources++
		switch {
		case f.Stale:
			v.Stale = append(v.Stale, "list file")
		case f.LastError != "":
			v.Warn = append(v.Warn, "list file refused")
		}
		parts = append(parts, "list file version "+strconv.FormatInt(f.Version, 10))
	}
	switch {
	case len(v.Stale) > 0:
		v.State = "bad"
	case len(v.Warn) > 0:
		v.State = "warn"
	case v.Sources > 0:
		v.State = "ok"
	}
	if len(parts) == 0 {
		parts = append(parts, "no list file, signed list or policy room")
	}
	v.Summary = strings.Join(parts, " · ")
}

// expiryState colours a validity end as certificates are coloured: "bad"
// when missing or past, "warn" within CertificateWarning, "ok" otherwise.
func expiryState(now, notAfter time.Time) string {
	switch {
	case notAfter.IsZero() || !now.Before(notAfter):
		return "bad"
	case notAfter.Sub(now) < CertificateWarning:
		return "warn"
	}
	return "ok"
}

// roomState colours a policy room: "bad" once stale (federation fails
// closed), "warn" while its homeserver does not answer (its last rules
// stay in force), "ok" while it syncs.
func roomState(r PolicyRoom) string {
	switch {
	case r.Stale:
		return "bad"
	case r.State == "syncing" && r.LastError == "":
		return "ok"
	}
	return "warn"
}

// ignoredText says why rules are not in force: "3 not bans, 1 invalid".
func ignoredText(i IgnoredRules) string {
	var parts []string
	if n := i.Recommendation; n == 1 {
		parts = append(parts, "1 not a ban")
	} else if n > 1 {
		parts = append(parts, strconv.Itoa(n)+" not bans")
	}
	for _, p := range []struct {
		n    int
		what string
	}{
		{i.Invalid, "invalid"},
		{i.TooBroad, "too broad (matching every server)"},
		{i.OverLimit, "over max_rules"},
	} {
		if p.n > 0 {
			parts = append(parts, strconv.Itoa(p.n)+" "+p.what)
		}
	}
	return strings.Join(parts, ", ")
}

// latency writes a short time for people, to a tenth of a millisecond
// below 10 ms: "0.3 ms", "4.2 ms", "35 ms", "1.2 s".
func latency(seconds float64) string {
	ms := seconds * 1000
	switch {
	case ms <= 0:
		return "—"
	case ms < 0.1:
		return "<0.1 ms"
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 1, 64) + " ms"
	case ms < 1000:
		return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
	}
	return strconv.FormatFloat(seconds, 'f', 1, 64) + " s"
}

// plural writes n and the noun, adding an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return formatCount(uint64(max(n, 0))) + " " + noun + "s"
}

// clusterCard answers "is Redis there": amber while it is not, since
// fedgate then works on, each instance with its own limits.
func clusterCard(now time.Time, c *Cluster) card {
	if c.Up {
		return card{ID: "cluster", Title: "Cluster", Value: "Redis up", State: "ok",
			Detail: "node " + c.Node + " · up " + strings.TrimSuffix(ago(now, c.Since), " ago")}
	}
	return card{ID: "cluster", Title: "Cluster", Value: "Redis DOWN", State: "warn",
		Detail: "limits per instance since " + strings.TrimSuffix(ago(now, c.Since), " ago")}
}

// policyCard sums up every hosted server's policy sources, from their
// assessed views (hostedViews): red when one is stale (federation fails
// closed), amber when one cannot be read or its signer expires soon,
// green otherwise; several names each problem's server. ok is false when
// no server has a list file, signed list or policy room.
func policyCard(views []policyView, several bool) (card, bool) {
	var sources, rooms, lists, files int
	var stale, warn []string
	for _, v := range views {
		sources += v.Sources
		for _, w := range v.Stale {
			stale = append(stale, whose(w, v.Server, several))
		}
		for _, w := range v.Warn {
			warn = append(warn, whose(w, v.Server, several))
		}
		rooms += len(v.Policy.Rooms)
		if v.Policy.FederationList != nil {
			lists++
		}
		if v.Policy.ListFile != nil {
			files++
		}
	}
	if sources == 0 {
		return card{}, false
	}
	c := card{ID: "policy", Title: "Policy sources"}
	switch {
	case len(stale) > 0:
		c.Value, c.State, c.Detail = "FAILS CLOSED", "bad", "stale: "+firstFew(stale)
	case len(warn) > 0:
		c.Value, c.State, c.Detail = strconv.Itoa(len(warn))+" of "+strconv.Itoa(sources)+" degraded", "warn", firstFew(warn)
	default:
		c.Value, c.State = "in sync", "ok"
		var parts []string
		if rooms > 0 {
			parts = append(parts, plural(rooms, "policy room"))
		}
		if lists > 0 {
			parts = append(parts, plural(lists, "signed list"))
		}
		if files > 0 {
			parts = append(parts, plural(files, "list file"))
		}
		c.Detail = strings.Join(parts, ", ")
	}
	return c, true
}

// signerExpiry says when a list signer's certificate expires.
func signerExpiry(now, notAfter time.Time) string {
	if !now.Before(notAfter) {
		return "list signer expired"
	}
	return "list signer expires in " + strings.TrimSuffix(daysLeft(now, notAfter), " left")
}

// whose names the server a problem is about when there are several.
func whose(problem, server string, several bool) string {
	if several {
		return problem + " (" + server + ")"
	}
	return problem
}

// firstFew joins the first three items and says how many more there are,
// so that a card stays a card with many hosted servers.
func firstFew(items []string) string {
	const few = 3
	if len(items) <= few {
		return strings.Join(items, "; ")
	}
	return strings.Join(items[:few], "; ") + "; and " + strconv.Itoa(len(items)-few) + " more"
}

package console

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed assets/console.css
var stylesheet string

// page is what the page template renders: the status plus what only the
// page needs. Section templates get the whole page, so they can reach
// $.Generated for relative times.
type page struct {
	*Status
	Refresh int // seconds; 0 turns self-refresh off
	CSS     template.CSS
	Cards   []card
	Charts  []chart
	// KeySets and Policies are every hosted server's keys and policy,
	// the top-level server first; Several is true with more than one
	// hosted server, when the page names the server of each.
	KeySets  []keySet
	Policies []policyView
	Several  bool
}

// keySet is one hosted server's signing keys.
type keySet struct {
	Server string
	Keys   *SigningKeys
}

// policyView is one hosted server's policy, assessed (see assess).
type policyView struct {
	Server string
	Policy *Policy
	Now    time.Time // the page's Generated, for relative times
	// State is "ok", "warn", "bad" or "" (no source); Summary says in a
	// line what the sources hold; Sources counts them; Stale and Warn
	// name the problems.
	State, Summary string
	Sources        int
	Stale, Warn    []string
}

// card is one tile of the summary row at the top of the page.
type card struct {
	ID     string
	Title  string
	Value  string
	Detail string
	State  string // "ok", "warn", "bad" or "" (neutral)
}

// topView is one top table as its template block needs it.
type topView struct {
	ID, Title, What string
	Rows            []TopServer
}

// renderer executes the page template. Immutable after newRenderer.
type renderer struct {
	tmpl *template.Template
	// styleHash is the CSP source of the inline stylesheet.
	styleHash string
}

func newRenderer() (*renderer, error) {
	funcs := template.FuncMap{
		"ago":       ago,
		"until":     until,
		"utc":       utc,
		"count":     func(n uint64) string { return formatCount(n) },
		"num":       func(n int) string { return formatCount(uint64(max(n, 0))) },
		"perMin":    perMinute,
		"certState": certState,
		"daysLeft":  daysLeft,
		"msTime":    func(ms int64) time.Time { return time.UnixMilli(ms).UTC() },
		"age":       func(now, t time.Time) string { return humanDuration(now.Sub(t)) },
		"seconds":   func(s float64) string { return humanDuration(time.Duration(s * float64(time.Second))) },
		"topTable": func(id, title, what string, rows []TopServer) topView {
			return topView{ID: id, Title: title, What: what, Rows: rows}
		},
		"expiryState": expiryState,
		"roomState":   roomState,
		"ignored":     ignoredText,
		"latency":     latency,
		"plural":      plural,
		"join":        func(items []string) string { return strings.Join(items, "; ") },
	}
	tmpl, err := template.New("page").Funcs(funcs).ParseFS(templateFiles, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("parsing the console templates: %w", err)
	}
	sum := sha256.Sum256([]byte(stylesheet))
	return &renderer{tmpl: tmpl, styleHash: "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"}, nil
}

// render writes the page for st; refresh is the self-refresh interval in
// seconds (0: none).
func (r *renderer) render(w io.Writer, st *Status, refresh int) error {
	if st.Server == nil {
		st.Server = &Server{}
	}
	keys, policies := hostedViews(st, st.Server.Name)
	p := &page{Status: st, Refresh: refresh, CSS: template.CSS(stylesheet), Cards: cards(st, policies), Charts: charts(st.Traffic),
		KeySets: keys, Policies: policies, Several: len(st.Servers) > 0}
	return r.tmpl.ExecuteTemplate(w, "page.html", p)
}

// cards builds the summary row: the answers to "is anything wrong" at a
// glance, each linking to its section; policies are st's assessed
// policies (hostedViews).
func cards(st *Status, policies []policyView) []card {
	now := st.Generated
	var out []card
	if r := st.Readiness; r != nil {
		c := card{ID: "readiness", Title: "Readiness", Value: "ready", State: "ok", Detail: "all checks pass"}
		var failing, warning []string
		for _, ck := range r.Checks {
			switch {
			case ck.OK:
			case ck.Advisory:
				warning = append(warning, ck.Name)
			default:
				failing = append(failing, ck.Name)
			}
		}
		switch {
		case !r.Ready:
			c.Value, c.State, c.Detail = "NOT READY", "bad", "failing: "+strings.Join(failing, "; ")
		case len(warning) > 0:
			c.State, c.Detail = "warn", "ready; warn: "+strings.Join(warning, "; ")
		}
		out = append(out, c)
	}
	if t := st.Traffic; t != nil {
		out = append(out,
			card{ID: "traffic", Title: "Requests, last hour", Value: formatCount(t.Hour.Inbound + t.Hour.Egress),
				Detail: formatCount(t.Hour.Inbound) + " inbound, " + formatCount(t.Hour.Egress) + " egress"},
			card{ID: "denials", Title: "Denied, last hour", Value: formatCount(t.Hour.Denied),
				Detail: share(t.Hour.Denied, t.Hour.Inbound+t.Hour.Egress) + " of requests"},
			card{ID: "traffic", Title: "Errors, last hour", Value: formatCount(t.Hour.Errors), State: stateIf(t.Hour.Errors > 0, "warn"),
				Detail: share(t.Hour.Errors, t.Hour.Inbound+t.Hour.Egress) + " of requests"},
		)
	}
	if u := st.Upstream; u != nil {
		c := card{ID: "upstream", Title: "Homeserver", Value: "reachable", State: "ok"}
		switch {
		case u.Hosted > 0 && !u.Up:
			c.Title, c.Value, c.State = "Homeservers", strconv.Itoa(u.HostedUp)+" of "+strconv.Itoa(u.Hosted)+" reachable", "bad"
			if u.HostedUp > 0 {
				c.State = "warn"
			}
			c.Detail = "last answered " + ago(now, u.LastSeen)
		case u.Hosted > 0:
			c.Title, c.Value = "Homeservers", "all "+strconv.Itoa(u.Hosted)+" reachable"
			c.Detail = "answered " + ago(now, u.LastSeen)
		case !u.Up && u.LastSeen.IsZero():
			c.Value, c.State, c.Detail = "not reached", "bad", "never answered"
		case !u.Up:
			c.Value, c.State, c.Detail = "DOWN", "bad", "last answered "+ago(now, u.LastSeen)
		default:
			c.Detail = "answered " + ago(now, u.LastSeen)
		}
		out = append(out, c)
	}
	if cs := st.Certificates; cs != nil && len(cs.Items) > 0 {
		c := card{ID: "certificates", Title: "Certificates", State: "ok"}
		var soonest *Certificate
		for i := range cs.Items {
			it := &cs.Items[i]
			if it.Pending || it.NotAfter.IsZero() {
				c.Value, c.State, c.Detail = "missing", "bad", it.Name+": no certificate yet"
				soonest = nil
				break
			}
			if soonest == nil || it.NotAfter.Before(soonest.NotAfter) {
				soonest = it
			}
		}
		if soonest != nil {
			c.State = certState(now, *soonest)
			c.Value = daysLeft(now, soonest.NotAfter)
			c.Detail = soonest.Name + " expires " + utc(soonest.NotAfter)
		}
		out = append(out, c)
	}
	if k := st.Keyring; k != nil {
		c := card{ID: "keyring", Title: "Key fetches failing", Value: strconv.Itoa(k.FailingTotal), State: stateIf(k.FailingTotal > 0, "warn"),
			Detail: formatCount(uint64(k.Servers)) + " servers cached"}
		if c.State == "" {
			c.State = "ok"
		}
		out = append(out, c)
	}
	if e := st.Egress; e != nil {
		c := card{ID: "egress", Title: "Egress backoff", Value: strconv.Itoa(e.BackoffTotal), State: stateIf(e.BackoffTotal > 0, "warn"),
			Detail: "destinations answered at once"}
		if c.State == "" {
			c.State = "ok"
		}
		out = append(out, c)
	}
	if c := st.Cluster; c != nil {
		out = append(out, clusterCard(now, c))
	}
	if c, ok := policyCard(policies, len(st.Servers) > 0); ok {
		out = append(out, c)
	}
	return out
}

func stateIf(cond bool, state string) string {
	if cond {
		return state
	}
	return ""
}

// share writes part/whole as a percentage.
func share(part, whole uint64) string {
	if whole == 0 {
		return "0%"
	}
	p := float64(part) * 100 / float64(whole)
	if p > 0 && p < 1 {
		return "<1%"
	}
	return strconv.FormatFloat(p, 'f', 0, 64) + "%"
}

// certState is "bad" for a missing or expired certificate, "warn" within
// CertificateWarning of expiry, "ok" otherwise.
func certState(now time.Time, c Certificate) string {
	switch {
	case c.Pending || c.NotAfter.IsZero() || !now.Before(c.NotAfter) || now.Before(c.NotBefore):
		return "bad"
	case c.NotAfter.Sub(now) < CertificateWarning:
		return "warn"
	}
	return "ok"
}

// daysLeft says how long until t, in days ("expired" once past).
func daysLeft(now, t time.Time) string {
	d := t.Sub(now)
	switch {
	case d <= 0:
		return "expired"
	case d < 48*time.Hour:
		return humanDuration(d) + " left"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + " days left"
}

// utc formats t for people: "2026-03-01 14:05:09 UTC".
func utc(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// ago says how long before now t was: "12 s ago".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "just now"
	}
	return humanDuration(d) + " ago"
}

// until says how long after now t is: "in 3 min".
func until(now, t time.Time) string {
	d := t.Sub(now)
	if d <= 0 {
		return "now"
	}
	return "in " + humanDuration(d)
}

// humanDuration rounds d to one unit: "850 ms", "12 s", "3 min", "5 h", "9 d".
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < time.Minute:
		return strconv.FormatInt(int64(d/time.Second), 10) + " s"
	case d < time.Hour:
		return strconv.FormatInt(int64(d/time.Minute), 10) + " min"
	case d < 48*time.Hour:
		return strconv.FormatInt(int64(d/time.Hour), 10) + " h"
	}
	return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + " d"
}

package console

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// FuzzConsole feeds the console what the network controls: server names
// and rules recorded from requests (origins come from X-Matrix headers)
// and the Authorization header presented to the admin listener. Nothing
// may panic, names are kept cut to a server name's length, the page never
// carries the input as markup, and only the token opens the console.
func FuzzConsole(f *testing.F) {
	f.Add("evil.example", `policy.deny[0] "evil.example"`, "Bearer s3cret-admin-token-1234")
	f.Add("<script>alert(1)</script>", "</title><svg onload=x>", "Basic OnMzY3JldC1hZG1pbi10b2tlbi0xMjM0")
	f.Add(strings.Repeat("a", 300), "\x00\xff\xfe", "bearer  s3cret-admin-token-1234 ")
	f.Add("", "", "")
	tok, err := NewToken("s3cret-admin-token-1234")
	if err != nil {
		f.Fatal(err)
	}
	r, err := newRenderer()
	if err != nil {
		f.Fatal(err)
	}
	base := fullStatus(fixtureNow)
	f.Fuzz(func(t *testing.T, server, rule, authorization string) {
		rec := NewRecorder(RecorderOptions{Denials: 4, TopSlots: 16})
		rec.Record(&Request{Time: fixtureNow, Server: server, Outcome: Denied, Status: 403, Reason: "origin_denied", Rule: rule})
		rec.Record(&Request{Time: fixtureNow, Egress: true, Server: server, Outcome: Failed, Status: 502})
		st := *base
		st.Traffic = rec.Traffic(fixtureNow, 10, Names{})
		for _, d := range st.Traffic.RecentDenials {
			if len(d.Server) > maxNameLen || len(d.Rule) > maxRuleLen {
				t.Fatalf("kept %d and %d bytes", len(d.Server), len(d.Rule))
			}
		}
		var b bytes.Buffer
		if err := r.render(&b, &st, 0); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(server+rule, "<") && strings.Contains(b.String(), "<script") {
			t.Fatal("input became markup")
		}
		req, _ := http.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", authorization)
		if tok.Allows(req) && !strings.Contains(authorization, "s3cret-admin-token-1234") &&
			!strings.HasPrefix(strings.ToLower(authorization), "basic ") {
			t.Fatalf("%q opens the console", authorization)
		}
	})
}

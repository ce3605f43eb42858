package gateway

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/policy"
)

// TestReasonCodesDocumented: every reason code a request can end with
// (the gateway's own, inbound and egress, the authentication kinds,
// policy's) has a row in docs/troubleshooting.md's reason code tables.
func TestReasonCodesDocumented(t *testing.T) {
	doc := docSection(t, "troubleshooting.md", "Every request has a reason code")
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		rows[m[1]] = true
	}
	codes := map[string]string{}
	files, _ := filepath.Glob("*.go")
	// Reason fields and assignments, and the (reason, message) pairs the
	// egress returns for delivery failures.
	reasonRE := regexp.MustCompile(`(?:Reason:\s*|reason\s*=\s*|e\.Reason = "[^"]*", )"([a-z_]+)"|return "([a-z_]+)", "`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range reasonRE.FindAllStringSubmatch(string(src), -1) {
			codes[m[1]+m[2]] = f
		}
	}
	if len(codes) < 15 {
		t.Fatalf("found only %d reason codes in the sources: %v", len(codes), codes)
	}
	for k := auth.KindMissingHeader; k <= auth.KindBadJSON; k++ {
		codes[k.String()] = "auth.Kind"
	}
	for _, r := range policy.Reasons() {
		codes[r] = "policy.Reasons"
	}
	for code, from := range codes {
		if !rows[code] {
			t.Errorf("reason code %s (%s) has no row in docs/troubleshooting.md's reason code tables", code, from)
		}
	}
}

// docSection returns the "## title" section of docs/page, up to the next
// second-level heading.
func docSection(t *testing.T, page, title string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "docs", page))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	start := strings.Index(s, "\n## "+title+"\n")
	if start < 0 {
		t.Fatalf("docs/%s has no section %q", page, title)
	}
	s = s[start+1:]
	if end := strings.Index(s[3:], "\n## "); end >= 0 {
		s = s[:end+3]
	}
	return s
}

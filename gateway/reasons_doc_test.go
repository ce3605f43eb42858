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
// policy's) has a row in README.md's Troubleshooting section or in the
// policy sources' pages (sourceDocPages).
func TestReasonCodesDocumented(t *testing.T) {
	doc := readmeSection(t, "Troubleshooting") + sourceDocPages(t)
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
			t.Errorf("reason code %s (%s) has no row in README.md's Troubleshooting section", code, from)
		}
	}
}

// sourceDocPages returns the pages that document the policy sources'
// reason codes and metrics (docs/ban-lists.md, docs/ti-messenger.md).
func sourceDocPages(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{"../docs/ban-lists.md", "../docs/ti-messenger.md"} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
		b.WriteByte('\n')
	}
	return b.String()
}

// readmeSection returns the "## title" section of README.md, up to the
// next second-level heading.
func readmeSection(t *testing.T, title string) string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	start := strings.Index(s, "\n## "+title+"\n")
	if start < 0 {
		t.Fatalf("README.md has no section %q", title)
	}
	s = s[start+1:]
	if end := strings.Index(s[3:], "\n## "); end >= 0 {
		s = s[:end+3]
	}
	return s
}

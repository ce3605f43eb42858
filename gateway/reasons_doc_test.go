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
// (the gateway's own, the authentication kinds, policy's) has a row in
// docs/readme/troubleshooting.md. The egress files document their codes
// in the egress section and are not scanned.
func TestReasonCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/readme/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		rows[m[1]] = true
	}
	codes := map[string]string{}
	files, _ := filepath.Glob("*.go")
	reasonRE := regexp.MustCompile(`(?:Reason:\s*|reason\s*=\s*|e\.Reason = "[^"]*", )"([a-z_]+)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || strings.HasPrefix(f, "egress") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range reasonRE.FindAllStringSubmatch(string(src), -1) {
			codes[m[1]] = f
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
			t.Errorf("reason code %s (%s) has no row in docs/readme/troubleshooting.md", code, from)
		}
	}
}

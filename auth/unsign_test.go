package auth

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"
)

// TestRemoveSignatures: only the named signer goes, the origin's
// self-signature still verifies, and a document without that signer comes
// back as it was (in canonical form).
func TestRemoveSignatures(t *testing.T) {
	originKey := mustKey(t, "o_1")
	doc, err := BuildKeyDocument("origin.test", []SigningKey{originKey}, nil, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, signer := range []string{"notary.test", "a.test"} {
		if doc, err = AddSignature(doc, signer, mustKey(t, "k")); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		what, remove string
		want         []string
	}{
		{"the seal removed, a trusted key server kept", "a.test", []string{"notary.test", "origin.test"}},
		{"a notary removed", "notary.test", []string{"a.test", "origin.test"}},
		{"nothing to remove", "b.test", []string{"a.test", "notary.test", "origin.test"}},
	} {
		out, err := RemoveSignatures(doc, tc.remove)
		if err != nil {
			t.Fatalf("%s: %v", tc.what, err)
		}
		var d struct {
			Signatures map[string]json.RawMessage `json:"signatures"`
		}
		if err := json.Unmarshal(out, &d); err != nil {
			t.Fatalf("%s: %v", tc.what, err)
		}
		if got := slices.Sorted(maps.Keys(d.Signatures)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: signed by %v, want %v", tc.what, got, tc.want)
		}
		if _, err := ParseServerKeys(out, "origin.test", time.Now()); err != nil {
			t.Errorf("%s: the origin's document no longer verifies: %v", tc.what, err)
		}
		if tc.remove == "b.test" && string(out) != string(doc) {
			t.Errorf("%s: the document changed:\n%s\n%s", tc.what, out, doc)
		}
	}
	for _, bad := range []string{`[]`, `{"signatures":[]}`, `{"a":`} {
		if _, err := RemoveSignatures([]byte(bad), "a.test"); err == nil {
			t.Errorf("RemoveSignatures(%s) accepted it", bad)
		}
	}
}

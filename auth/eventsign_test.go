package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"testing"
)

// Event hashing, redaction and signing exist only to check the spec's
// event-signing vectors: the gateway never signs events. They follow the
// spec's "Signing Events" section and the room v1-v10 redaction algorithm
// (the vectors keep the top-level "origin", which v11 removed).

// decodeObject decodes JSON keeping numbers exact.
func decodeObject(t testing.TB, raw []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// contentHash is the spec's content hash: SHA-256 of the canonical event
// without unsigned, signatures and hashes.
func contentHash(t testing.TB, ev map[string]any) []byte {
	t.Helper()
	c := map[string]any{}
	for k, v := range ev {
		if k != "unsigned" && k != "signatures" && k != "hashes" {
			c[k] = v
		}
	}
	sum := sha256.Sum256(mustMarshal(t, c))
	return sum[:]
}

// redactKeepV1 lists the top-level keys the room v1-v10 redaction keeps.
var redactKeepV1 = []string{"event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
	"signatures", "depth", "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts", "membership"}

// redactContentV1 lists the content keys kept per event type (room v1-v5).
var redactContentV1 = map[string][]string{
	"m.room.member":             {"membership"},
	"m.room.create":             {"creator"},
	"m.room.join_rules":         {"join_rule"},
	"m.room.power_levels":       {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"},
	"m.room.aliases":            {"aliases"},
	"m.room.history_visibility": {"history_visibility"},
}

func redactObjectV1(ev map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range redactKeepV1 {
		if v, ok := ev[k]; ok {
			out[k] = v
		}
	}
	content, _ := ev["content"].(map[string]any)
	kept := map[string]any{}
	typ, _ := ev["type"].(string)
	for _, k := range redactContentV1[typ] {
		if v, ok := content[k]; ok {
			kept[k] = v
		}
	}
	out["content"] = kept
	return out
}

// redactV1 redacts a JSON event with the room v1 algorithm.
func redactV1(t testing.TB, raw []byte) []byte {
	t.Helper()
	return mustMarshal(t, redactObjectV1(decodeObject(t, raw)))
}

// signEventV1 adds the content hash and entity's signature of the redacted
// event, as a homeserver does when it creates an event.
func signEventV1(t testing.TB, raw []byte, entity string, key SigningKey) []byte {
	t.Helper()
	ev := decodeObject(t, raw)
	ev["hashes"] = map[string]any{"sha256": EncodeBase64(contentHash(t, ev))}
	signedRedacted, err := SignJSON(mustMarshal(t, redactObjectV1(ev)), entity, key)
	if err != nil {
		t.Fatal(err)
	}
	ev["signatures"] = decodeObject(t, signedRedacted)["signatures"]
	return mustMarshal(t, ev)
}

func TestRedactV1KeepsOnlyProtectedContent(t *testing.T) {
	t.Parallel()
	got := redactV1(t, []byte(`{"type":"m.room.member","content":{"membership":"join","displayname":"x"},"unsigned":{"a":1},"origin":"o","extra":1}`))
	if want := `{"content":{"membership":"join"},"origin":"o","type":"m.room.member"}`; string(got) != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

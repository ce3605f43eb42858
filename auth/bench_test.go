package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"
)

// sendBody builds a realistic PUT /send/{txnId} body of at least size bytes
// in canonical form: PDUs with nested content, unicode text, HTML, hashes,
// signatures and unsigned data, plus typing and receipt EDUs.
func sendBody(tb testing.TB, size int) []byte {
	tb.Helper()
	texts := []string{
		"Hello, world! <b>bold</b> & friends",
		"Grüße aus Köln — ça va? 日本語のメッセージ 😀🎉",
		"line one\nline two\ttabbed \"quoted\" back\\slash",
		"Привет, как дела? Ελληνικά κείμενα",
	}
	var pdus []any
	for i := 0; ; i++ {
		text := texts[i%len(texts)]
		pdu := map[string]any{
			"auth_events": []any{"$aXJzdC1ldmVudC1pZC1oYXNoLWJhc2U2NA" + strconv.Itoa(i), "$c2Vjb25kLWV2ZW50LWlkLWhhc2gtYmFzZTY0", "$dGhpcmQtZXZlbnQtaWQtaGFzaC1iYXNlNjQ"},
			"content": map[string]any{
				"body":           text,
				"format":         "org.matrix.custom.html",
				"formatted_body": "<p>" + text + "</p>",
				"msgtype":        "m.text",
				"m.relates_to":   map[string]any{"m.in_reply_to": map[string]any{"event_id": "$cmVwbHktdG8tZXZlbnQtaWQ"}},
			},
			"depth":            1000 + i,
			"hashes":           map[string]any{"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
			"origin":           "remote.example.org",
			"origin_server_ts": 1700000000000 + i,
			"prev_events":      []any{"$cHJldi1ldmVudC1pZA" + strconv.Itoa(i)},
			"room_id":          "!OGEhHVWSdvArJzumhm:matrix.org",
			"sender":           "@alice:remote.example.org",
			"signatures": map[string]any{"remote.example.org": map[string]any{
				"ed25519:a_abcd": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},
			"type":     "m.room.message",
			"unsigned": map[string]any{"age": 1234 + i},
		}
		pdus = append(pdus, pdu)
		body := map[string]any{
			"origin":           "remote.example.org",
			"origin_server_ts": 1700000000000,
			"pdus":             pdus,
			"edus": []any{
				map[string]any{"edu_type": "m.typing", "content": map[string]any{"room_id": "!OGEhHVWSdvArJzumhm:matrix.org", "user_id": "@alice:remote.example.org", "typing": true}},
				map[string]any{"edu_type": "m.receipt", "content": map[string]any{"!OGEhHVWSdvArJzumhm:matrix.org": map[string]any{"m.read": map[string]any{
					"@alice:remote.example.org": map[string]any{"data": map[string]any{"ts": 1700000000000}, "event_ids": []any{"$cmVhZC1ldmVudA"}}}}}},
			},
		}
		b, err := Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		if len(b) >= size {
			return b
		}
	}
}

// jsonStyle is how another encoder writes JSON, for reencode. Synapse
// itself sends canonical JSON (encode_canonical_json); the others differ.
type jsonStyle struct {
	reversed   bool // members in falling key order; otherwise a fixed pseudo-random order
	html       bool // <, > and & as \u escapes
	escapeFrom rune // every character from this one up as \u escapes (0: none)
	spaces     bool // ", " and ": " separators instead of compact ones
}

var (
	// goJSON is Go's encoding/json, which Dendrite uses for request
	// bodies: compact, <>& escaped.
	goJSON = jsonStyle{html: true}
	// asciiJSON is compact JSON with every non-ASCII character escaped.
	asciiJSON = jsonStyle{escapeFrom: utf8.RuneSelf}
	// pythonJSON is Python's json.dumps with its defaults (ensure_ascii,
	// ", " and ": " separators).
	pythonJSON = jsonStyle{escapeFrom: utf8.RuneSelf, spaces: true}
	// fedloadJSON is what fedload's put-send-16k-nc scenario (and the
	// gateway's non-canonical benchmark) sends: every object's members in
	// reverse order, Python's separators, every character outside
	// printable ASCII as \uXXXX.
	fedloadJSON = jsonStyle{reversed: true, escapeFrom: 0x7f, spaces: true}
)

// reencode writes canonical JSON back out in style: nearly every object
// must then be reordered and some strings unescaped to canonicalise it.
func reencode(tb testing.TB, canon []byte, style jsonStyle) []byte {
	tb.Helper()
	d := json.NewDecoder(bytes.NewReader(canon))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		tb.Fatal(err)
	}
	itemSep, keySep := ",", ":"
	if style.spaces {
		itemSep, keySep = ", ", ": "
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var out []byte
	str := func(s string) {
		out = append(out, '"')
		for _, r := range s {
			switch {
			case r == '"' || r == '\\':
				out = append(out, '\\', byte(r))
			case r < 0x20 || (style.escapeFrom > 0 && r >= style.escapeFrom) || (style.html && (r == '<' || r == '>' || r == '&')):
				if r > 0xffff {
					r -= 0x10000
					out = fmt.Appendf(out, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
				} else {
					out = fmt.Appendf(out, `\u%04x`, r)
				}
			default:
				out = utf8.AppendRune(out, r)
			}
		}
		out = append(out, '"')
	}
	var enc func(v any)
	enc = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			keys := slices.Sorted(maps.Keys(v))
			if style.reversed {
				slices.Reverse(keys)
			} else {
				rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			}
			out = append(out, '{')
			for i, k := range keys {
				if i > 0 {
					out = append(out, itemSep...)
				}
				str(k)
				out = append(out, keySep...)
				enc(v[k])
			}
			out = append(out, '}')
		case []any:
			out = append(out, '[')
			for i, e := range v {
				if i > 0 {
					out = append(out, itemSep...)
				}
				enc(e)
			}
			out = append(out, ']')
		case string:
			str(v)
		default:
			b, _ := json.Marshal(v)
			out = append(out, b...)
		}
	}
	enc(v)
	return out
}

func TestBenchBodies(t *testing.T) {
	t.Parallel()
	for _, size := range []int{2 << 10, 64 << 10} {
		canon := sendBody(t, size)
		if !IsCanonical(canon) {
			t.Fatal("sendBody is not canonical")
		}
		for _, in := range [][]byte{reencode(t, canon, goJSON), reencode(t, canon, asciiJSON)} {
			if IsCanonical(in) {
				t.Fatal("re-encoded body is canonical")
			}
			got, err := Canonicalize(nil, in)
			if err != nil || !bytes.Equal(got, canon) {
				t.Fatalf("canonicalising a re-encoded body: %v\n got %.200s\nwant %.200s", err, got, canon)
			}
		}
	}
}

func benchSizes() []struct {
	name string
	size int
} {
	return []struct {
		name string
		size int
	}{{"2KiB", 2 << 10}, {"64KiB", 64 << 10}}
}

func BenchmarkCanonicalize(b *testing.B) {
	for _, s := range benchSizes() {
		canon := sendBody(b, s.size)
		unsorted := reencode(b, canon, goJSON)
		for _, in := range []struct {
			name string
			body []byte
		}{{"canonical", canon}, {"unsorted", unsorted}, {"unsorted-ascii", reencode(b, canon, asciiJSON)}} {
			b.Run(s.name+"/"+in.name, func(b *testing.B) {
				var c Canonicalizer
				dst := make([]byte, 0, 2*len(in.body))
				b.SetBytes(int64(len(in.body)))
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if dst, err = c.Canonicalize(dst[:0], in.body); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(float64(len(in.body))/1024), "ns/KiB")
			})
		}
		b.Run(s.name+"/naive-decode-to-any", func(b *testing.B) {
			b.SetBytes(int64(len(unsorted)))
			b.ReportAllocs()
			for b.Loop() {
				d := json.NewDecoder(bytes.NewReader(unsorted))
				d.UseNumber()
				var v any
				if err := d.Decode(&v); err != nil {
					b.Fatal(err)
				}
				if _, err := Marshal(v); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(float64(len(unsorted))/1024), "ns/KiB")
		})
	}
}

func BenchmarkIsCanonical(b *testing.B) {
	canon := sendBody(b, 64<<10)
	b.SetBytes(int64(len(canon)))
	b.ReportAllocs()
	for b.Loop() {
		if !IsCanonical(canon) {
			b.Fatal("not canonical")
		}
	}
}

func BenchmarkVerifyRequest(b *testing.B) {
	key := specKey(b)
	for _, s := range []struct {
		name     string
		size     int
		unsorted bool // re-encoded as Dendrite sends it (Synapse sends canonical JSON)
	}{{"nobody", 0, false}, {"2KiB", 2 << 10, false}, {"2KiB-unsorted", 2 << 10, true}, {"64KiB", 64 << 10, false}, {"64KiB-unsorted", 64 << 10, true}} {
		var body []byte
		method := "GET"
		if s.size > 0 {
			body = sendBody(b, s.size)
			if s.unsorted {
				body = reencode(b, body, goJSON)
			}
			method = "PUT"
		}
		uri := "/_matrix/federation/v1/send/1700000000000"
		x, err := SignRequest(key, method, uri, "remote.example.org", "gw.example.org", body)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := VerifyRequest(x, method, uri, "gw.example.org", body, key.Public()); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The same message verified directly: the floor VerifyRequest is
		// measured against.
		msg, err := requestMessage(nil, method, uri, "remote.example.org", "gw.example.org", body, bodyRaw)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.name+"/bare-ed25519", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if !ed25519.Verify(key.Public(), msg, x.Sig) {
					b.Fatal("bad signature")
				}
			}
		})
	}
}

func BenchmarkParseXMatrix(b *testing.B) {
	h := `X-Matrix origin="remote.example.org",destination="gw.example.org",key="ed25519:a_abcd",sig="KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseXMatrix(h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyringVerifyKeyHit(b *testing.B) {
	fetch := newFetcher()
	o := newOrigin(b, "o.example", "a")
	fetch.set(o.name, o.doc(b, testNow.Add(time.Hour)), nil)
	clock := newClock()
	ring, err := NewKeyring(KeyringOptions{Fetcher: fetch, Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	defer ring.Close()
	ctx := context.Background()
	if _, err := ring.VerifyKey(ctx, o.name, o.key.ID); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ring.VerifyKey(ctx, o.name, o.key.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
}

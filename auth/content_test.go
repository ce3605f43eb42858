package auth

import (
	"bytes"
	"testing"
	"unsafe"
)

func TestContentOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body string
		same bool // already canonical: the body itself comes back
	}{
		{`{"a":1,"b":[true,null,"x"]}`, true},
		{`{"b":1,"a":2}`, false},
		{` {"a" : "\u00e9"} `, false},
		{`{"big":18014398509481984}`, true}, // lenient: kept as written
		{`{"a":1e2}`, false},
	}
	for _, tt := range tests {
		body := []byte(tt.body)
		got, err := ContentOf(body)
		if err != nil {
			t.Fatalf("%s: %v", tt.body, err)
		}
		want, _ := CanonicalizeContent(nil, body)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got %s, want %s", tt.body, got, want)
		}
		if same := unsafe.SliceData(got) == unsafe.SliceData(body); same != tt.same {
			t.Errorf("%s: returned the body itself: %v, want %v", tt.body, same, tt.same)
		}
	}
	for _, bad := range []string{``, `{"a":1,"a":2}`, `{"a":1.5}`, `{`} {
		if _, err := ContentOf([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func BenchmarkContentOf(b *testing.B) {
	body := sendBody(b, 16<<10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ContentOf(body); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzContentOf: ContentOf agrees with CanonicalizeContent on every input,
// and never returns the input itself unless it was canonical.
func FuzzContentOf(f *testing.F) {
	f.Add([]byte(`{"a":1}`))
	f.Add([]byte(`{"b":{"d":1,"c":2},"a":[1e2,-0]}`))
	f.Add([]byte(`{"a":"\ud83d\ude00\/"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := ContentOf(body)
		want, werr := CanonicalizeContent(nil, body)
		if (err == nil) != (werr == nil) {
			t.Fatalf("ContentOf error %v, CanonicalizeContent error %v", err, werr)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
		if len(got) > 0 && unsafe.SliceData(got) == unsafe.SliceData(body) && !bytes.Equal(body, want) {
			t.Fatal("returned a non-canonical body as it was")
		}
	})
}

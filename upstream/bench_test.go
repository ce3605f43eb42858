package upstream

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkRoundTrip forwards a GET with a small answer and a 16 KiB PUT
// to a loopback homeserver, through a Member and, for comparison, through
// net/http's Transport set up as fedgate had it (one goroutine handoff to
// its reader and writer per request). Both include the homeserver's own
// work, which is the same for both.
//
//	go test -run '^$' -bench RoundTrip -benchmem ./upstream/
func BenchmarkRoundTrip(b *testing.B) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"displayname":"Load Test","avatar_url":"mxc://fedload.test/a"}`)
	}))
	b.Cleanup(hs.Close)
	header := http.Header{
		"Authorization": {`X-Matrix origin="origin.test",destination="gw.test",key="ed25519:o_1",sig="KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"`},
		"Content-Type":  {"application/json"},
	}
	body := bytes.Repeat([]byte("x"), 16<<10)
	cases := []struct {
		name, method string
		body         []byte
	}{{"GET", "GET", nil}, {"PUT-16KiB", "PUT", body}}
	for _, c := range cases {
		b.Run("member/"+c.name, func(b *testing.B) {
			m, err := New(Options{URL: hs.URL, MaxIdleConns: 4})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			set := []Field{{"X-Forwarded-For", "192.0.2.1"}, {"X-Forwarded-Proto", "https"}, {"X-Request-Id", "r"}}
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			var sink bytes.Buffer
			for b.Loop() {
				resp, err := m.RoundTrip(context.Background(), &Request{Method: c.method, Target: "/_matrix/federation/v1/query/profile?user_id=%40u%3Agw.test", Host: "gw.test", Header: header, Set: set, Body: c.body})
				if err != nil {
					b.Fatal(err)
				}
				sink.Reset()
				if _, err := resp.Body.StreamTo(&sink, nil); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
		b.Run("transport/"+c.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true, WriteBufferSize: 64 << 10}
			defer tr.CloseIdleConnections()
			b.SetBytes(int64(len(c.body)))
			b.ReportAllocs()
			var sink bytes.Buffer
			for b.Loop() {
				req, _ := http.NewRequest(c.method, hs.URL+"/_matrix/federation/v1/query/profile?user_id=%40u%3Agw.test", bytes.NewReader(c.body))
				req.Header = header.Clone()
				req.Header.Set("X-Forwarded-For", "192.0.2.1")
				req.Header.Set("X-Forwarded-Proto", "https")
				req.Header.Set("X-Request-Id", "r")
				resp, err := tr.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				sink.Reset()
				io.Copy(&sink, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkAppendHead is the cost of writing a request head.
func BenchmarkAppendHead(b *testing.B) {
	req := &Request{Method: "PUT", Target: "/_matrix/federation/v1/send/1700000000000", Host: "gw.test",
		Header: http.Header{
			"Authorization": {`X-Matrix origin="origin.test",destination="gw.test",key="ed25519:o_1",sig="KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"`},
			"Content-Type":  {"application/json"}, "User-Agent": {"Synapse/1.120"}, "Accept-Encoding": {"gzip"},
		},
		Set:  []Field{{"X-Forwarded-For", "192.0.2.1"}, {"X-Forwarded-Proto", "https"}, {"X-Request-Id", "r"}, {"Forwarded", ""}},
		Body: make([]byte, 16<<10)}
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = appendHead(buf[:0], req, "gw.test")
	}
}

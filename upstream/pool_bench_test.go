package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Benchmarks of choosing a member, without the network:
//
//	go test -run '^$' -bench 'Choose|Route' -benchmem ./upstream/
//
// Origin hashes the origin once (FNV-1a over its bytes) and scores every
// member (one multiply-xorshift mix each), so it grows with the pool.
func BenchmarkChoose(b *testing.B) {
	origins := originNames(1024)
	for _, bal := range []Balance{Origin, RoundRobin, LeastBusy} {
		for _, n := range []int{2, 8, 32} {
			b.Run(fmt.Sprintf("%s/%d", bal, n), func(b *testing.B) {
				p := buildSet(b, SetOptions{URLs: memberURLs(n), Balance: bal}, nil).Default()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					o := origins[i%len(origins)]
					i++
					c := clock{fn: p.now}
					if p.choose(hashString(o), bal == Origin, nil, &c) == nil {
						b.Fatal("no member")
					}
				}
			})
		}
	}
}

// BenchmarkRoute is the per-request route lookup: a map lookup by
// operation name when routes exist, nothing when none do.
func BenchmarkRoute(b *testing.B) {
	send := endpoint(b, "send", "PUT")
	profile := endpoint(b, "query_profile", "GET")
	for _, tt := range []struct {
		name   string
		routes []RouteOptions
	}{
		{"no-routes", nil},
		{"three-routes", []RouteOptions{
			{Name: "send", Endpoints: []string{"send"}, URLs: memberURLs(2)},
			{Name: "media", Endpoints: []string{"media"}, URLs: memberURLs(1)},
			{Name: "reads", Endpoints: []string{"events", "query", "user_devices"}, URLs: memberURLs(3)},
		}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			s := buildSet(b, SetOptions{URLs: memberURLs(1), Routes: tt.routes}, nil)
			b.ReportAllocs()
			for b.Loop() {
				if s.Route(send) == nil || s.Route(profile) == nil {
					b.Fatal("no pool")
				}
			}
		})
	}
}

// BenchmarkSetRoundTrip forwards a GET through a Set to loopback
// homeservers and compares it with the same request through a lone
// Member: the price of a pool on the request path (the homeserver's own
// work is in both).
//
//	go test -run '^$' -bench SetRoundTrip -benchmem ./upstream/
func BenchmarkSetRoundTrip(b *testing.B) {
	var urls []string
	for range 4 {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, `{"displayname":"Load Test"}`)
		}))
		b.Cleanup(hs.Close)
		urls = append(urls, hs.URL)
	}
	ep := endpoint(b, "query_profile", "GET")
	header := http.Header{"Authorization": {`X-Matrix origin="origin.test",destination="gw.test",key="ed25519:o_1",sig="x"`}}
	origins := originNames(256)
	run := func(b *testing.B, rt func(i int) (*Response, func(), error)) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			resp, done, err := rt(i)
			i++
			if err != nil {
				b.Fatal(err)
			}
			if _, err := resp.Body.StreamTo(io.Discard, nil); err != nil {
				b.Fatal(err)
			}
			done()
		}
	}
	req := func() *Request {
		return &Request{Method: "GET", Target: "/_matrix/federation/v1/query/profile?user_id=%40u%3Agw.test", Host: "gw.test", Header: header}
	}
	b.Run("member", func(b *testing.B) {
		m, err := New(Options{URL: urls[0], MaxIdleConns: 8})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		r := req()
		run(b, func(int) (*Response, func(), error) {
			resp, err := m.RoundTrip(context.Background(), r)
			if err != nil {
				return nil, nil, err
			}
			return resp, func() { resp.Body.Close() }, nil
		})
	})
	for _, bal := range []Balance{Origin, RoundRobin} {
		b.Run("set-"+bal.String()+"-4", func(b *testing.B) {
			s := buildSet(b, SetOptions{URLs: urls, Balance: bal, Member: Options{MaxIdleConns: 8}}, nil)
			r := req()
			run(b, func(i int) (*Response, func(), error) {
				x, err := s.RoundTrip(context.Background(), ep, origins[i%len(origins)], r)
				if err != nil {
					return nil, nil, err
				}
				return x.Response, func() { x.Close() }, nil
			})
		})
	}
}

package discovery

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/servername"
	"github.com/miekg/dns"
)

// FuzzParseWellKnown: any body gives a valid server name or an error.
func FuzzParseWellKnown(f *testing.F) {
	for _, s := range []string{
		`{"m.server":"matrix.example.org:443"}`,
		`{"m.server":"[::1]:8448"}`,
		"\xef\xbb\xbf{\"m.server\":\"1.2.3.4\"}",
		`{"m.server":null}`,
		`{"m.server":"a\u0000b"}`,
		`[{"m.server":"x"}]`,
		`{"m.server":"x","m.server":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := parseWellKnown(body)
		if err != nil {
			if s != "" {
				t.Fatalf("value %q with error %v", s, err)
			}
			if len(err.Error()) > 2048 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		if _, err := servername.Parse(s); err != nil {
			t.Fatalf("accepted %q: %v", s, err)
		}
	})
}

// FuzzCacheLifetime: header values never give a negative or unbounded
// lifetime.
func FuzzCacheLifetime(f *testing.F) {
	f.Add("max-age=3600", "", "")
	f.Add(`public, max-age="60"`, "", "")
	f.Add("no-store", "Thu, 01 Jan 1970 00:00:00 GMT", "")
	f.Add("", "Sun, 01 Mar 2026 14:00:00 GMT", "Sun, 01 Mar 2026 12:00:00 GMT")
	f.Add("max-age=99999999999999999999", "0", "garbage")
	f.Fuzz(func(t *testing.T, cacheControl, expires, date string) {
		h := http.Header{}
		for _, v := range strings.Split(cacheControl, "\n") {
			h.Add("Cache-Control", v)
		}
		h.Set("Expires", expires)
		h.Set("Date", date)
		ttl, _ := cacheLifetime(h, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		if ttl < 0 || ttl > maxHeaderSeconds*time.Second {
			t.Fatalf("lifetime %v", ttl)
		}
	})
}

// FuzzDNSAnswer: whatever a resolver sends, interpreting it neither panics
// nor keeps unbounded state, and SRV ordering is a permutation of the
// usable records.
func FuzzDNSAnswer(f *testing.F) {
	for _, zone := range [][]string{
		{"_matrix-fed._tcp.example.org. 300 IN SRV 10 5 8448 a.example.org.", "_matrix-fed._tcp.example.org. 300 IN SRV 10 0 8448 b.example.org."},
		{"example.org. 60 IN CNAME b.example.org.", "b.example.org. 60 IN A 192.0.2.1", "b.example.org. 60 IN AAAA 2001:db8::1"},
		{"example.org. 1 IN CNAME example.org."},
		{"_matrix-fed._tcp.example.org. 300 IN SRV 0 0 0 ."},
	} {
		m := new(dns.Msg)
		m.SetQuestion("example.org.", dns.TypeA)
		m.Response = true
		for _, l := range zone {
			rr, err := dns.NewRR(l)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	now := time.Unix(1.7e9, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if m.Unpack(data) != nil {
			return
		}
		for _, q := range m.Question {
			_ = checkReply(m, dnsKey{name: strings.ToLower(q.Name), qtype: q.Qtype})
		}
		a := newDNSAnswer(m, now)
		if len(a.records) > maxRecordsKept || a.expires.Before(now) || a.expires.After(now.Add(maxPositiveTTL)) {
			t.Fatalf("%d records, expires %v", len(a.records), a.expires)
		}
		var srvs []*dns.SRV
		for _, rr := range a.records {
			_, _, _ = chase(a.records, strings.ToLower(rr.Header().Name))
			if s, ok := rr.(*dns.SRV); ok {
				srvs = append(srvs, s)
			}
		}
		usable := 0
		for _, s := range srvs {
			if s.Target != "." {
				usable++
			}
		}
		calls := 0
		ordered := orderSRV(srvs, func(n int) int {
			calls++
			if n <= 0 {
				t.Fatalf("randN(%d)", n)
			}
			return calls % n
		})
		if len(ordered) != usable {
			t.Fatalf("%d records ordered, %d usable", len(ordered), usable)
		}
		for i := 1; i < len(ordered); i++ {
			if ordered[i].Priority < ordered[i-1].Priority {
				t.Fatal("priorities out of order")
			}
		}
	})
}

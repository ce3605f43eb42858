package discovery

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func srvRecs(t *testing.T, lines ...string) []*dns.SRV {
	t.Helper()
	var out []*dns.SRV
	for _, l := range lines {
		rr, err := dns.NewRR("_matrix-fed._tcp.example.org. 300 IN SRV " + l)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rr.(*dns.SRV))
	}
	return out
}

func targets(recs []*dns.SRV) string {
	var s []string
	for _, r := range recs {
		s = append(s, srvTarget(r))
	}
	return strings.Join(s, " ")
}

func TestOrderSRVPriority(t *testing.T) {
	t.Parallel()
	recs := srvRecs(t, "20 0 1 c.", "10 0 1 a.", "30 5 1 d.", "10 0 1 b.", "0 0 0 .")
	// Always the lowest random number: within a priority, weight-0
	// records in their original order.
	got := orderSRV(recs, func(int) int { return 0 })
	if targets(got) != "a b c d" {
		t.Fatalf("order %s", targets(got))
	}
	if srvTarget(recs[0]) != "c" {
		t.Fatal("input modified")
	}
}

// TestOrderSRVWeights: within one priority, a record goes first with a
// probability proportional to its weight (RFC 2782).
func TestOrderSRVWeights(t *testing.T) {
	t.Parallel()
	recs := srvRecs(t, "10 10 1 light.", "10 30 1 heavy.", "10 0 1 zero.", "20 100 1 backup.")
	rng := rand.New(rand.NewPCG(1, 2))
	first := map[string]int{}
	const n = 8000
	for range n {
		got := orderSRV(recs, rng.IntN)
		if len(got) != 4 || srvTarget(got[3]) != "backup" {
			t.Fatalf("order %s", targets(got))
		}
		first[srvTarget(got[0])]++
	}
	// Expected shares: zero 1/41, light 10/41, heavy 30/41.
	for name, want := range map[string]float64{"zero": 1.0 / 41, "light": 10.0 / 41, "heavy": 30.0 / 41} {
		got := float64(first[name]) / n
		if got < want*0.8-0.005 || got > want*1.2+0.005 {
			t.Errorf("%s first %.3f of the time, want about %.3f", name, got, want)
		}
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	if !unavailable(srvRecs(t, "0 0 0 .")) || unavailable(nil) {
		t.Fatal("unavailable")
	}
	if unavailable(srvRecs(t, "0 0 0 .", "10 0 8448 a.")) {
		t.Fatal("a real target among dots is available")
	}
}

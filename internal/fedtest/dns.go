package fedtest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// DNS is an authoritative-looking DNS server on 127.0.0.1, serving UDP and
// TCP on the same port. Records come from zone-file lines; behaviours can
// be set per name.
type DNS struct {
	Addr string // "127.0.0.1:port", for resolver configuration

	mu       sync.Mutex
	records  map[string][]dns.RR // key: lower-case FQDN + "/" + type
	behavior map[string]Behavior // key: lower-case FQDN
	queries  []Query
}

// Behavior is a deliberate misbehaviour for one name.
type Behavior int

const (
	// Normal answers from the records.
	Normal Behavior = iota
	// ServFail answers SERVFAIL.
	ServFail
	// Silent never answers.
	Silent
	// TruncateUDP sets the TC bit on UDP answers (without records), so a
	// client must retry over TCP to get the answer.
	TruncateUDP
)

// Query is one question the server received.
type Query struct {
	Name  string // lower-case FQDN
	Type  string // "SRV", "A", ...
	Proto string // "udp" or "tcp"
}

// StartDNS starts a server with the given zone-file lines, e.g.
// "_matrix-fed._tcp.example.org. 300 IN SRV 10 5 8448 host.example.org.".
func StartDNS(t testing.TB, zone ...string) *DNS {
	t.Helper()
	d := &DNS{records: map[string][]dns.RR{}, behavior: map[string]Behavior{}}
	for _, line := range zone {
		d.Add(t, line)
	}
	// The kernel picks a free UDP port; the same TCP port may be taken (by
	// any connection's local port), so try a few.
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if attempt == 20 {
			t.Fatal(err)
		}
	}
	d.Addr = pc.LocalAddr().String()
	udpReady, tcpReady := make(chan struct{}), make(chan struct{})
	udp := &dns.Server{PacketConn: pc, Handler: d.handler("udp"), NotifyStartedFunc: func() { close(udpReady) }}
	tcp := &dns.Server{Listener: ln, Handler: d.handler("tcp"), NotifyStartedFunc: func() { close(tcpReady) }}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	<-udpReady
	<-tcpReady
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return d
}

// Add adds one zone-file record.
func (d *DNS) Add(t testing.TB, line string) {
	t.Helper()
	rr, err := dns.NewRR(line)
	if err != nil {
		t.Fatalf("bad DNS record %q: %v", line, err)
	}
	key := strings.ToLower(rr.Header().Name) + "/" + dns.TypeToString[rr.Header().Rrtype]
	d.mu.Lock()
	d.records[key] = append(d.records[key], rr)
	d.mu.Unlock()
}

// Set gives name (an FQDN, trailing dot optional) a behaviour.
func (d *DNS) Set(name string, b Behavior) {
	d.mu.Lock()
	d.behavior[fqdn(name)] = b
	d.mu.Unlock()
}

// Queries returns the questions received so far.
func (d *DNS) Queries() []Query {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Query(nil), d.queries...)
}

// CountQueries counts received questions for name and type.
func (d *DNS) CountQueries(name, qtype string) int {
	n := 0
	for _, q := range d.Queries() {
		if q.Name == fqdn(name) && q.Type == qtype {
			n++
		}
	}
	return n
}

func fqdn(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}

func (d *DNS) handler(proto string) dns.HandlerFunc {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		qtype := dns.TypeToString[q.Qtype]
		d.mu.Lock()
		d.queries = append(d.queries, Query{Name: name, Type: qtype, Proto: proto})
		b := d.behavior[name]
		answer := append([]dns.RR(nil), d.records[name+"/"+qtype]...)
		cname := d.records[name+"/CNAME"]
		nameExists := false
		for key := range d.records {
			if strings.HasPrefix(key, name+"/") {
				nameExists = true
				break
			}
		}
		d.mu.Unlock()
		switch b {
		case Silent:
			return
		case ServFail:
			m.Rcode = dns.RcodeServerFailure
			w.WriteMsg(m)
			return
		case TruncateUDP:
			if proto == "udp" {
				m.Truncated = true
				w.WriteMsg(m)
				return
			}
		}
		if len(answer) == 0 && len(cname) > 0 && qtype != "CNAME" {
			// Follow one CNAME within the zone, as a recursive resolver would.
			answer = append(answer, cname...)
			target := strings.ToLower(cname[0].(*dns.CNAME).Target)
			d.mu.Lock()
			answer = append(answer, d.records[target+"/"+qtype]...)
			d.mu.Unlock()
		}
		m.Answer = answer
		if len(answer) == 0 && !nameExists {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	}
}

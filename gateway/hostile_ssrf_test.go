package gateway

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/discovery"
)

// TestHostileSSRF names origins whose discovery leads to loopback
// addresses: DNS answers, CNAMEs, SRV targets, well-known delegation and a
// well-known redirect. Claiming such an origin must never make fedgate
// connect there to fetch keys: the request gets 401 and trap listeners on
// those addresses see no connection. Only 127.0.0.1 is allowed (the
// well-known server's address), so the traps sit on 127.0.0.2, [::1] and,
// for 0.0.0.0, on a port nothing is allowed to reach.
func TestHostileSSRF(t *testing.T) {
	t.Parallel()
	e, _ := startHostile(t, `allow_networks = ["127.0.0.1/32"]`, nil)
	trap2 := startTrap(t, "127.0.0.2:0")
	trap6 := startTrap(t, "[::1]:0")
	trap1 := startTrap(t, "127.0.0.1:0") // reached by dialling 0.0.0.0
	p2 := strconv.Itoa(trap2.port)

	// The well-known server every *.wk name delegates through: it sits on
	// the one allowed address, reached on port 443 through a port map.
	var wkMu sync.Mutex
	wkAsked := map[string]int{}
	wk := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wkMu.Lock()
		wkAsked[r.Host]++
		wkMu.Unlock()
		switch r.Host {
		case "wk.test":
			fmt.Fprintf(w, `{"m.server":"inner.test:%d"}`, trap2.port)
		case "wkip.test":
			fmt.Fprintf(w, `{"m.server":"127.0.0.2:%d"}`, trap2.port)
		case "wkr.test":
			http.Redirect(w, r, "https://127.0.0.2:"+p2+"/.well-known/matrix/server", http.StatusFound)
		case "wkr6.test":
			http.Redirect(w, r, fmt.Sprintf("https://[::1]:%d/.well-known/matrix/server", trap6.port), http.StatusMovedPermanently)
		default:
			http.NotFound(w, r)
		}
	}))
	wk.TLS = &tls.Config{Certificates: []tls.Certificate{e.originCA.Issue(t, "wk.test", "wkip.test", "wkr.test", "wkr6.test")}}
	wk.StartTLS()
	t.Cleanup(wk.Close)
	_, wkPort, _ := net.SplitHostPort(wk.Listener.Addr().String())
	port, _ := strconv.Atoi(wkPort)

	opts, err := DiscoveryOptions(e.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts.PortMap = map[uint16]uint16{443: uint16(port)}
	r, err := discovery.NewResolver(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.gw.fedClient.Swap(discovery.NewClient(r)).CloseIdleConnections()

	for _, line := range []string{
		"direct.test. 60 IN A 127.0.0.2",
		"six.test. 60 IN AAAA ::1",
		"mapped.test. 60 IN AAAA ::ffff:127.0.0.2",
		"zero.test. 60 IN A 0.0.0.0",
		"inner.test. 60 IN A 127.0.0.2",
		"cname.test. 60 IN CNAME inner.test.",
		"_matrix-fed._tcp.srv.test. 60 IN SRV 10 5 " + p2 + " inner.test.",
		"_matrix-fed._tcp.srvcname.test. 60 IN SRV 10 5 " + p2 + " cname.test.",
		"_matrix._tcp.legacy.test. 60 IN SRV 10 5 " + p2 + " inner.test.",
		"wk.test. 60 IN A 127.0.0.1",
		"wkip.test. 60 IN A 127.0.0.1",
		"wkr.test. 60 IN A 127.0.0.1",
		"wkr6.test. 60 IN A 127.0.0.1",
	} {
		e.dns.Add(t, line)
	}
	for i := 2; i < 66; i++ {
		e.dns.Add(t, fmt.Sprintf("many.test. 60 IN A 127.0.0.%d", i))
	}

	const target = "/_matrix/federation/v1/query/profile?user_id=%40bob%3Agw.test"
	key, _ := auth.GenerateSigningKey("o_1")
	claim := func(name, origin string) hostileCase {
		return hostileCase{name: name, status: 401, errcode: CodeUnauthorized,
			request: rawRequest("GET", target, "", signWith(t, key, origin, "GET", target, "gw.test", ""))}
	}
	cases := []hostileCase{
		claim("A record on loopback", "direct.test:"+p2),
		claim("IP literal origin on loopback", "127.0.0.2:"+p2),
		claim("IPv6 literal origin on loopback", fmt.Sprintf("[::1]:%d", trap6.port)),
		claim("AAAA record on loopback", fmt.Sprintf("six.test:%d", trap6.port)),
		claim("AAAA record with an IPv4-mapped loopback", "mapped.test:"+p2),
		claim("A record 0.0.0.0", fmt.Sprintf("zero.test:%d", trap1.port)),
		claim("CNAME to a loopback name", "cname.test:"+p2),
		claim("64 A records, all loopback", "many.test:"+p2),
		claim("SRV target on loopback", "srv.test"),
		claim("SRV target that is a CNAME to loopback", "srvcname.test"),
		claim("legacy _matrix SRV target on loopback", "legacy.test"),
		claim("well-known delegating to a loopback name", "wk.test"),
		claim("well-known delegating to a loopback IP", "wkip.test"),
		claim("well-known redirecting to a loopback IP", "wkr.test"),
		claim("well-known redirecting to IPv6 loopback", "wkr6.test"),
	}
	e.run(t, cases)
	// The cases must have failed at the guard, not earlier: every
	// well-known host was asked, and the loopback names were resolved.
	wkMu.Lock()
	for _, h := range []string{"wk.test", "wkip.test", "wkr.test", "wkr6.test"} {
		if wkAsked[h] == 0 {
			t.Errorf("the well-known server was never asked for %s", h)
		}
	}
	wkMu.Unlock()
	for _, q := range []struct{ name, qtype string }{{"inner.test", "A"}, {"cname.test", "A"}, {"many.test", "A"}, {"_matrix-fed._tcp.srv.test", "SRV"}, {"_matrix._tcp.legacy.test", "SRV"}} {
		if e.dns.CountQueries(q.name, q.qtype) == 0 {
			t.Errorf("%s %s was never looked up", q.name, q.qtype)
		}
	}
	for _, tr := range []*trap{trap2, trap6, trap1} {
		if n := tr.accepted.Load(); n != 0 {
			t.Errorf("%s: %d connection(s) reached a forbidden address", tr.addr, n)
		}
	}
}

// trap is a listener that must never be connected to.
type trap struct {
	addr     string
	port     int
	accepted atomic.Int64
}

func startTrap(t *testing.T, addr string) *trap {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tr := &trap{addr: ln.Addr().String(), port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tr.accepted.Add(1)
			c.Close()
		}
	}()
	return tr
}

package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

const (
	ednsBufSize     = 1232 // DNS flag day 2020: no fragmentation
	maxCNAMEHops    = 8
	maxRecordsKept  = 64
	maxPositiveTTL  = time.Hour
	maxNegativeTTL  = 5 * time.Minute
	defaultNegative = time.Minute // NXDOMAIN/NODATA without an SOA
)

// dnsKey identifies one question.
type dnsKey struct {
	name  string // lower-case FQDN
	qtype uint16
}

func (k dnsKey) String() string {
	return k.name + " " + dns.TypeToString[k.qtype]
}

// dnsAnswer is what a resolver said about one question: the answer
// section's A, AAAA, CNAME and SRV records, or none (NXDOMAIN or NODATA).
type dnsAnswer struct {
	records []dns.RR
	expires time.Time
}

func (a *dnsAnswer) droppable(now time.Time) bool { return !now.Before(a.expires) }

// dnsClient asks the configured resolvers, caches answers for their TTL and
// coalesces concurrent questions.
type dnsClient struct {
	servers  []string // "ip:port"
	timeout  time.Duration
	udp, tcp *dns.Client
	cache    *boundedCache[dnsKey, *dnsAnswer]
	flights  flightGroup[dnsKey, *dnsAnswer]
	now      func() time.Time
	log      *slog.Logger
}

func newDNSClient(servers []string, o Options) *dnsClient {
	return &dnsClient{
		servers: servers,
		timeout: o.DNSTimeout,
		udp:     &dns.Client{Net: "udp", Timeout: o.DNSTimeout, UDPSize: ednsBufSize},
		tcp:     &dns.Client{Net: "tcp", Timeout: o.DNSTimeout},
		cache:   newBoundedCache[dnsKey, *dnsAnswer](o.MaxCacheEntries),
		now:     o.Now,
		log:     o.Logger,
	}
}

// resolverAddrs turns Options.Resolvers, or the nameservers of the
// resolv.conf file when there are none, into "ip:port" strings.
func resolverAddrs(list []string, resolvConf string) ([]string, error) {
	if len(list) == 0 {
		cc, err := dns.ClientConfigFromFile(resolvConf)
		if err != nil {
			return nil, fmt.Errorf("reading resolvers from %s: %w", resolvConf, err)
		}
		for _, s := range cc.Servers {
			list = append(list, net.JoinHostPort(s, cc.Port))
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("no nameserver in %s", resolvConf)
		}
		return list, nil
	}
	out := make([]string, 0, len(list))
	for _, s := range list {
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.AddrPortFrom(ip, 53).String())
			continue
		}
		ap, err := netip.ParseAddrPort(s)
		if err != nil || ap.Port() == 0 {
			return nil, fmt.Errorf("resolver %q: want \"IP\" or \"IP:port\"", s)
		}
		out = append(out, ap.String())
	}
	return out, nil
}

// query answers one question from the cache or the resolvers.
func (d *dnsClient) query(ctx context.Context, k dnsKey) (ans *dnsAnswer, cached bool, err error) {
	if a, ok := d.cached(k); ok {
		return a, true, nil
	}
	a, err := d.start(ctx, k).wait(ctx)
	return a, false, err
}

func (d *dnsClient) cached(k dnsKey) (*dnsAnswer, bool) {
	a, ok := d.cache.get(k)
	if ok && d.now().Before(a.expires) {
		return a, true
	}
	return nil, false
}

// start returns the flight asking k, starting it if needed. The flight
// outlives ctx's cancellation (its result is cached for others) but keeps
// its values; each exchange is bounded by DNSTimeout.
func (d *dnsClient) start(ctx context.Context, k dnsKey) *flight[*dnsAnswer] {
	detached := context.WithoutCancel(ctx)
	return d.flights.start(k, func() (*dnsAnswer, error) {
		a, err := d.exchange(detached, k)
		if err != nil {
			d.log.Debug("dns lookup failed", "question", k.String(), "error", err)
			return nil, err
		}
		d.cache.put(k, a, d.now())
		return a, nil
	})
}

// prefetch starts flights for the keys that are not cached, so that a
// following sequence of queries runs them in parallel.
func (d *dnsClient) prefetch(ctx context.Context, keys ...dnsKey) {
	for _, k := range keys {
		if _, ok := d.cached(k); !ok {
			d.start(ctx, k)
		}
	}
}

// exchange asks each resolver in turn until one gives a usable answer
// (NOERROR or NXDOMAIN). SERVFAIL, REFUSED, timeouts and malformed answers
// move on to the next resolver; if none answers, the error says why each
// failed.
func (d *dnsClient) exchange(ctx context.Context, k dnsKey) (*dnsAnswer, error) {
	var errs []error
	for _, server := range d.servers {
		a, err := d.exchangeOne(ctx, server, k)
		if err == nil {
			return a, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("resolver failure for %s: %w", k, errors.Join(errs...))
}

func (d *dnsClient) exchangeOne(ctx context.Context, server string, k dnsKey) (*dnsAnswer, error) {
	m := new(dns.Msg)
	m.SetQuestion(k.name, k.qtype)
	m.RecursionDesired = true
	m.SetEdns0(ednsBufSize, false)
	r, err := d.exchangeVia(ctx, d.udp, m, server)
	if err == nil && r.Truncated {
		// Big answers (many SRV records) do not fit a UDP datagram: ask
		// again over TCP, as RFC 7766 requires.
		r, err = d.exchangeVia(ctx, d.tcp, m, server)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", server, err)
	}
	if err := checkReply(r, k); err != nil {
		return nil, fmt.Errorf("%s: %w", server, err)
	}
	return newDNSAnswer(r, d.now()), nil
}

func (d *dnsClient) exchangeVia(ctx context.Context, c *dns.Client, m *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	r, _, err := c.ExchangeContext(ctx, m, server)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Net, err)
	}
	return r, nil
}

// checkReply accepts a reply to question k that is NOERROR or NXDOMAIN.
func checkReply(r *dns.Msg, k dnsKey) error {
	if !r.Response || len(r.Question) != 1 || r.Question[0].Qtype != k.qtype || !strings.EqualFold(r.Question[0].Name, k.name) {
		return errors.New("reply does not match the question")
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return nil
	}
	rc, ok := dns.RcodeToString[r.Rcode]
	if !ok {
		rc = fmt.Sprintf("rcode %d", r.Rcode)
	}
	return errors.New(rc)
}

// newDNSAnswer keeps the useful records of r and computes how long they
// may be cached: the smallest TTL among them (at most an hour), or for an
// empty answer the SOA's negative TTL (RFC 2308; at most five minutes).
func newDNSAnswer(r *dns.Msg, now time.Time) *dnsAnswer {
	a := &dnsAnswer{}
	ttl := maxPositiveTTL
	for _, rr := range r.Answer {
		h := rr.Header()
		if h.Class != dns.ClassINET {
			continue
		}
		switch rr.(type) {
		case *dns.A, *dns.AAAA, *dns.CNAME, *dns.SRV:
		default:
			continue
		}
		if len(a.records) == maxRecordsKept {
			break
		}
		a.records = append(a.records, rr)
		ttl = min(ttl, time.Duration(h.Ttl)*time.Second)
	}
	if len(a.records) == 0 {
		ttl = defaultNegative
		for _, rr := range r.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl = time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
				break
			}
		}
		ttl = min(ttl, maxNegativeTTL)
	}
	a.expires = now.Add(ttl)
	return a
}

// notFound is ErrNotFound for one question. A struct, not fmt.Errorf:
// "no such record" is the common case on the cached path (no AAAA, no
// _matrix._tcp) and its text is rarely read.
type notFound struct{ k dnsKey }

func (e notFound) Error() string        { return e.k.String() + ": " + ErrNotFound.Error() }
func (e notFound) Is(target error) bool { return target == ErrNotFound }

// lookup is the outcome of following one name to records of one type.
type lookup struct {
	records []dns.RR  // records of the asked type owned by the final name
	chain   []string  // CNAME targets followed, in order
	cached  bool      // every answer came from the cache
	expires time.Time // earliest expiry of the answers used
}

// follow asks for records of qtype at name, following the CNAME chain the
// answers contain; when an answer stops at a CNAME without the target's
// records, it asks for the target (at most maxCNAMEHops names).
func (d *dnsClient) follow(ctx context.Context, name string, qtype uint16) (lookup, error) {
	var l lookup
	l.cached = true
	k := dnsKey{name: strings.ToLower(dns.Fqdn(name)), qtype: qtype}
	for range maxCNAMEHops {
		a, cached, err := d.query(ctx, k)
		if err != nil {
			return l, err
		}
		l.cached = l.cached && cached
		l.expires = earliest(l.expires, a.expires)
		final, chain, err := chase(a.records, k.name)
		if err != nil {
			return l, fmt.Errorf("%s: %w", k, err)
		}
		l.chain = append(l.chain, chain...)
		for _, rr := range a.records {
			if rr.Header().Rrtype == qtype && strings.EqualFold(rr.Header().Name, final) {
				l.records = append(l.records, rr)
			}
		}
		if len(l.records) > 0 {
			return l, nil
		}
		if final == k.name {
			return l, notFound{k}
		}
		if len(l.chain) >= maxCNAMEHops {
			break
		}
		k.name = final
	}
	return l, fmt.Errorf("%s: CNAME chain longer than %d", name, maxCNAMEHops)
}

// chase follows CNAME records from name within one answer and returns the
// last name reached and the targets passed through. A loop is an error.
func chase(records []dns.RR, name string) (final string, chain []string, err error) {
	final = name
	for range maxCNAMEHops + 1 {
		next := ""
		for _, rr := range records {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, final) {
				next = strings.ToLower(c.Target)
				break
			}
		}
		if next == "" {
			return final, chain, nil
		}
		if next == name || contains(chain, next) {
			return "", nil, fmt.Errorf("CNAME loop at %s", next)
		}
		chain = append(chain, next)
		final = next
	}
	return "", nil, fmt.Errorf("CNAME chain longer than %d", maxCNAMEHops)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// addrs is the outcome of an A+AAAA lookup.
type addrs struct {
	list    []netip.Addr // interleaved, IPv6 first (RFC 8305)
	chain   []string
	cached  bool
	expires time.Time
	partial error  // one family failed while the other gave addresses
	source  string // SourceDNS or SourceHostsFile
	note    string // the hosts file's path, for a hosts file answer
}

// lookupAddrs resolves host with AAAA and A in parallel. It fails with
// ErrNotFound when neither type has records, and with a resolver failure
// when one type failed and the other gave nothing.
func (d *dnsClient) lookupAddrs(ctx context.Context, host string) (addrs, error) {
	name := strings.ToLower(dns.Fqdn(host))
	d.prefetch(ctx, dnsKey{name, dns.TypeAAAA}, dnsKey{name, dns.TypeA})
	l6, err6 := d.follow(ctx, name, dns.TypeAAAA)
	l4, err4 := d.follow(ctx, name, dns.TypeA)
	var out addrs
	out.cached = l6.cached && l4.cached
	out.expires = earliest(l6.expires, l4.expires)
	out.chain = l4.chain
	if len(l6.chain) > len(out.chain) {
		out.chain = l6.chain
	}
	var v6, v4 []netip.Addr
	for _, rr := range l6.records {
		if ip, ok := netip.AddrFromSlice(rr.(*dns.AAAA).AAAA); ok {
			v6 = append(v6, ip.Unmap())
		}
	}
	for _, rr := range l4.records {
		if ip, ok := netip.AddrFromSlice(rr.(*dns.A).A); ok {
			v4 = append(v4, ip.Unmap())
		}
	}
	out.list = interleave(v6, v4)
	if len(out.list) > 0 {
		switch {
		case err6 != nil && !errors.Is(err6, ErrNotFound):
			out.partial = err6
		case err4 != nil && !errors.Is(err4, ErrNotFound):
			out.partial = err4
		}
		return out, nil
	}
	switch {
	case err6 != nil && !errors.Is(err6, ErrNotFound):
		return out, err6
	case err4 != nil && !errors.Is(err4, ErrNotFound):
		return out, err4
	case err4 != nil:
		return out, fmt.Errorf("%s has no AAAA or A records: %w", strings.TrimSuffix(name, "."), ErrNotFound)
	}
	return out, fmt.Errorf("%s has no usable AAAA or A records: %w", strings.TrimSuffix(name, "."), ErrNotFound)
}

// earliest returns the earlier of two times, ignoring zero ones.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// interleave merges two address lists alternately, dropping duplicates.
func interleave(a, b []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(a)+len(b))
	add := func(ip netip.Addr) {
		for _, x := range out {
			if x == ip {
				return
			}
		}
		out = append(out, ip)
	}
	for i := 0; i < len(a) || i < len(b); i++ {
		if i < len(a) {
			add(a[i])
		}
		if i < len(b) {
			add(b[i])
		}
	}
	return out
}

// lookupSRV returns the SRV records of name (CNAMEs at the owner name are
// followed; it is the targets that must not be aliases).
func (d *dnsClient) lookupSRV(ctx context.Context, name string) ([]*dns.SRV, lookup, error) {
	l, err := d.follow(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, l, err
	}
	srvs := make([]*dns.SRV, 0, len(l.records))
	for _, rr := range l.records {
		srvs = append(srvs, rr.(*dns.SRV))
	}
	return srvs, l, nil
}

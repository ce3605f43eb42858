package gateway

import (
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/console"
	"github.com/fedgate/fedgate/policyroom"
)

// The console (package console) on the admin listener: GET / renders the
// status page and GET /status.json its JSON, both behind [admin]
// token_file when set. The gateway feeds the console's recorder from the
// finish path of every request (recordInbound, recordEgress) and builds
// the status from its own state per view (consoleStatus). Server names go
// through the name hasher, as in the logs.

const (
	// consoleTopN is how many servers each top table shows.
	consoleTopN = 10
	// consoleListMax bounds the failing key fetches and the backoff
	// destinations listed.
	consoleListMax = 25
	// consoleErrorMax bounds an error text shown, in bytes.
	consoleErrorMax = 400
)

// newConsole builds the console handlers over g.
func (g *Gateway) newConsole() (*console.Console, error) {
	return console.New(console.Options{
		Status: g.consoleStatus,
		Token:  func() *console.Token { return g.rt.Load().adminToken },
		OnError: func(err error) {
			g.log.Error("rendering the console", zap.Error(err))
		},
	})
}

// loadAdminToken reads [admin] token_file; nil when none is set.
func loadAdminToken(c *config.Config) (*console.Token, error) {
	if c.Admin.TokenFile == "" {
		return nil, nil
	}
	t, err := console.LoadToken(c.Admin.TokenFile)
	if err != nil {
		return nil, c.Errorf("admin.token_file", "%v", err)
	}
	return t, nil
}

// consoleOutcome maps a decision onto what the console counts: tunnels
// are delivered traffic, backoff answers are failed deliveries.
func consoleOutcome(decision int) console.Outcome {
	switch decision {
	case decisionLocal:
		return console.Local
	case decisionDenied:
		return console.Denied
	case decisionFailed, decisionBackoff:
		return console.Failed
	}
	return console.Forwarded
}

// recordInbound feeds a finished inbound request to the console. Routing
// misses are scanner noise: counted, not listed among the recent denials
// (the decision log leaves them out too).
func (g *Gateway) recordInbound(in *inbound, decision int, end time.Time) {
	g.traffic.Record(&console.Request{
		Time:    end,
		Server:  in.origin,
		Peer:    in.peer,
		Outcome: consoleOutcome(decision),
		Status:  in.status,
		Reason:  in.reason,
		Stage:   in.stage,
		Rule:    in.rule,
		Limiter: in.limiter,
		Noise:   in.stage == "route",
	})
}

// recordEgress feeds a finished egress request or tunnel to the console.
func (g *Gateway) recordEgress(r *egressRecord, decision int, end time.Time) {
	g.traffic.Record(&console.Request{
		Time:    end,
		Egress:  true,
		Server:  r.destination,
		Peer:    r.peer,
		Outcome: consoleOutcome(decision),
		Status:  r.status,
		Reason:  r.reason,
		Stage:   r.stage,
		Rule:    r.rule,
		Limiter: r.limiter,
	})
}

// consoleStatus builds what the console shows, as of now. It reads the
// runtime once and asks each part for its state; it never writes.
func (g *Gateway) consoleStatus(now time.Time) *console.Status {
	rt := g.rt.Load()
	names := rt.names
	st := &console.Status{Schema: console.SchemaVersion, Generated: now.UTC()}
	st.Server = &console.Server{Name: rt.cfg.ServerName, Version: g.version, Started: g.started, NamesHashed: names.enabled()}

	ready, checks := g.Ready()
	st.Readiness = &console.Readiness{Ready: ready}
	for _, c := range checks {
		st.Readiness.Checks = append(st.Readiness.Checks, console.Check{Name: c.Name, OK: c.OK, Advisory: c.Advisory, Detail: c.Detail})
	}

	st.Traffic = g.traffic.Traffic(now, consoleTopN, console.Names{Server: names.name, Rule: names.rule})
	st.Upstream = g.consoleUpstream(rt, now)
	st.Certificates = g.consoleCertificates(rt)
	st.Keyring = g.consoleKeyring(rt)
	if rt.cfg.Listen.Egress != "" {
		st.Egress = g.consoleEgress(names)
	}
	// Keys and policy per hosted server: the top-level one's where they
	// always were, the [[servers]] entries' under their names (ours,
	// never hashed).
	st.SigningKeys, st.Policy = consoleKeys(rt.primary()), consolePolicy(rt.primary())
	for _, hs := range rt.servers[1:] {
		st.Servers = append(st.Servers, console.HostedServer{Name: hs.name, SigningKeys: consoleKeys(hs), Policy: consolePolicy(hs)})
	}
	st.Cluster = g.consoleCluster()
	return st
}

// consoleCertificates lists the served certificates; nil without a TLS
// listener.
func (g *Gateway) consoleCertificates(rt *runtime) *console.Certificates {
	if len(rt.cfg.Listen.Federation) == 0 && len(rt.cfg.Listen.HTTPS) == 0 {
		return nil
	}
	cs := &console.Certificates{Items: []console.Certificate{}}
	if g.opts.Certificates == nil {
		return cs
	}
	for _, s := range g.opts.Certificates.Status() {
		cs.Items = append(cs.Items, console.Certificate{
			Name: s.Name, Source: s.Source, Subjects: s.Subjects, Issuer: s.Issuer,
			NotBefore: s.NotBefore.UTC(), NotAfter: s.NotAfter.UTC(),
			Pending: s.Pending, LastError: clipText(s.LastError),
		})
	}
	return cs
}

// consoleKeys shows a hosted server's keys: ids and public keys only.
func consoleKeys(hs *hostedServer) *console.SigningKeys {
	keys := hs.keys
	k := &console.SigningKeys{Current: []console.SigningKey{}, Old: []console.OldKey{}}
	for _, key := range keys.current {
		k.Current = append(k.Current, console.SigningKey{
			ID: string(key.ID), PublicKey: auth.EncodeBase64(key.Public()), SignsRequests: key.ID == keys.request.ID,
		})
	}
	for _, o := range keys.old {
		k.Old = append(k.Old, console.OldKey{ID: string(o.ID), PublicKey: auth.EncodeBase64(o.Key), ExpiredTS: o.ExpiredTS})
	}
	if doc := keys.doc.current.Load(); doc != nil {
		k.ValidUntilTS = doc.validUntil.UnixMilli()
	}
	return k
}

func (g *Gateway) consoleKeyring(rt *runtime) *console.Keyring {
	total, failing := g.keyring.Failing(consoleListMax)
	k := &console.Keyring{Servers: g.keyring.Len(), FailingTotal: total, Failing: []console.FailingFetch{}}
	var notaries []string
	for _, n := range rt.cfg.Keys.TrustedKeyServers {
		notaries = append(notaries, n.ServerName)
	}
	for _, f := range failing {
		text := ""
		if f.Err != nil {
			text = strings.ReplaceAll(f.Err.Error(), "\n", "; ")
			if rt.names.enabled() {
				text = replaceNames(rt.names, text, append([]string{f.Server}, notaries...))
			}
		}
		k.Failing = append(k.Failing, console.FailingFetch{
			Server: rt.names.name(f.Server), Failures: f.Failures, Error: clipText(text),
			NextRetry: f.RetryAt.UTC(), LastUsed: f.LastUsed.UTC(), HasKeys: f.HasKeys,
		})
	}
	return k
}

func (g *Gateway) consoleEgress(names *nameHasher) *console.Egress {
	total, list := g.egress.backoff.active(g.egress.now(), consoleListMax)
	e := &console.Egress{BackoffTotal: total, Backoff: []console.Backoff{}}
	for _, b := range list {
		e.Backoff = append(e.Backoff, console.Backoff{
			Destination: names.name(b.destination), Kind: b.kind.String(), Failures: b.failures, Until: b.until.UTC(),
		})
	}
	return e
}

// consolePolicy shows where a hosted server's policy comes from: its
// configuration, its plain list file, and the state of its policy
// sources (policy rooms, signed list).
func consolePolicy(hs *hostedServer) *console.Policy {
	c := hs.cfg.Policy
	p := &console.Policy{Default: c.Default, DryRun: c.DryRun, Allow: len(c.Allow), Deny: len(c.Deny)}
	if l := hs.policy().Stats().List; l.File != "" {
		p.ListFile = &console.ListFile{
			Path: l.File, Version: l.Version, Allow: l.Allow, Deny: l.Deny, Stale: l.Stale,
			MaxAgeSeconds: c.ListMaxAge.D().Seconds(), LastError: clipText(l.LastError),
		}
		if !l.Modified.IsZero() {
			p.ListFile.Modified = l.Modified.UTC()
		}
	}
	rooms, list := hs.state.sources.Status()
	for _, r := range rooms {
		p.Rooms = append(p.Rooms, console.PolicyRoom{
			Room: r.Room, RoomID: r.RoomID, State: r.State, Rules: r.Rules,
			Ignored: console.IgnoredRules{
				Recommendation: r.Ignored[policyroom.IgnoredRecommendation], Invalid: r.Ignored[policyroom.IgnoredInvalid],
				TooBroad: r.Ignored[policyroom.IgnoredTooBroad], OverLimit: r.Ignored[policyroom.IgnoredOverLimit],
			},
			LastSync: r.LastSync.UTC(), MaxAgeSeconds: r.MaxAge.Seconds(), Stale: r.Stale, DryRun: r.DryRun,
			Failures: r.Failures, Changes: r.Changes, LastError: clipText(r.LastError), Upgrade: r.Upgrade,
		})
	}
	if list != nil {
		p.FederationList = &console.FederationList{
			Location: list.Location, Version: list.Version, Allow: list.Allow, Deny: list.Deny,
			Confirmed: list.Confirmed.UTC(), MaxAgeSeconds: list.MaxAge.Seconds(), Stale: list.Stale,
			Signer: list.Signer, SignerNotAfter: list.SignerNotAfter.UTC(),
			Loads: list.Loads, Failures: list.Failures, LastError: clipText(list.LastError),
		}
	}
	return p
}

// consoleCluster shows cluster mode's Redis: its address without
// credentials, health and counters; nil without [cluster].
func (g *Gateway) consoleCluster() *console.Cluster {
	cl := g.opts.Cluster
	if cl == nil {
		return nil
	}
	s := cl.Stats()
	c := &console.Cluster{
		Redis: cl.Address(), Node: cl.Node(), Prefix: cl.Prefix(), TimeoutSeconds: cl.Timeout().Seconds(),
		Up: s.Up, Since: s.Since.UTC(), Downs: s.Downs,
		RoundTrip: console.ClusterRoundTrip{Count: s.RoundTrip.Count, MeanSeconds: s.RoundTrip.Mean.Seconds(), P99Seconds: s.RoundTrip.P99.Seconds()},
	}
	for _, op := range cluster.Operations() {
		c.Operations = append(c.Operations, console.ClusterOperation{Name: op, RoundTrips: s.Calls[op], Errors: s.Errors[op], Fallbacks: s.Fallbacks[op]})
	}
	return c
}

// clipText cuts an error text for the page at consoleErrorMax bytes, on a
// character boundary.
func clipText(s string) string {
	if len(s) <= consoleErrorMax {
		return s
	}
	cut := consoleErrorMax
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Set serves the certificates of several hosted servers behind the same
// TLS listeners, choosing by the name the client asks for (SNI). It is
// built from one [Options] per hosted server, the first being the default
// for handshakes without SNI or with a name no server lists. Options that
// differ only in Names share one [Manager] (one ACME account and certmagic
// cache obtaining one certificate per name, one certificate file pair, one
// self-signed certificate covering every name); each distinct set of
// settings gets its own, so one server may use ACME while another brings
// its own files.
//
// [Set.Update] applies a reloaded configuration: Managers whose settings
// are unchanged keep serving; an ACME Manager whose names changed starts
// and stops managing those names in place; new settings get new Managers,
// and Managers no longer needed stop once the new table is in place.
// Handshakes read the current table through an atomic pointer. A Set is
// safe for concurrent use; like a Manager, it outlives reloads.
type Set struct {
	log *zap.Logger

	mu      sync.Mutex // serialises Start, Update and Stop
	ctx     context.Context
	started bool
	stopped bool

	table atomic.Pointer[sniTable]
}

// sniTable is one configuration's Managers and the names they serve.
// Immutable.
type sniTable struct {
	groups []*sniGroup          // the first serves unknown names
	byName map[string]*sniGroup // normalised name -> group
	acme   bool                 // some group is in acme mode
}

// sniGroup is one Manager and the settings it was made from.
type sniGroup struct {
	key     string  // the settings without Names
	opts    Options // Names merged from every server of the group
	m       *Manager
	getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// NewSet validates opts (one per hosted server, at least one) and
// prepares the Managers without starting background work, as [New] does.
func NewSet(opts []Options) (*Set, error) {
	if len(opts) == 0 {
		return nil, errors.New("no certificate settings")
	}
	log := opts[0].Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Set{log: log.Named("certs")}
	t, _, err := s.build(opts, nil)
	if err != nil {
		return nil, err
	}
	s.table.Store(t)
	return s, nil
}

// groupKey identifies the settings a Manager is made from, Names aside.
func groupKey(o Options) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%v\x00%v\x00%v",
		o.Mode, o.DataDir, o.CertFile, o.KeyFile, o.Email, o.CA, o.CARoot, o.Storage,
		o.HTTPChallengeAddr, o.TLSALPNChallengeAddr, o.RenewalWindowRatio, o.RenewCheckInterval, o.PollInterval)
}

// build groups opts and makes the table, reusing the groups of cur whose
// settings are unchanged. It returns the new groups it made (not started);
// on error those are stopped and cur is untouched.
func (s *Set) build(opts []Options, cur *sniTable) (*sniTable, []*sniGroup, error) {
	type merged struct {
		key  string
		opts Options
	}
	var order []*merged
	byKey := map[string]*merged{}
	for _, o := range opts {
		k := groupKey(o)
		g := byKey[k]
		if g == nil {
			g = &merged{key: k, opts: o}
			g.opts.Names = nil
			byKey[k] = g
			order = append(order, g)
		}
		for _, n := range normalizeNames(o.Names) {
			if !slices.Contains(g.opts.Names, n) {
				g.opts.Names = append(g.opts.Names, n)
			}
		}
	}
	old := map[string]*sniGroup{}
	if cur != nil {
		for _, g := range cur.groups {
			old[g.key] = g
		}
	}
	t := &sniTable{byName: map[string]*sniGroup{}}
	var made []*sniGroup
	fail := func(err error) (*sniTable, []*sniGroup, error) {
		for _, g := range made {
			g.m.Stop()
		}
		return nil, nil, err
	}
	for _, mg := range order {
		g := old[mg.key]
		switch {
		case g != nil && slices.Equal(g.opts.Names, mg.opts.Names):
			// Unchanged: keep serving.
		case g != nil && mg.opts.Mode == ModeACME:
			// Same account, other names: changed in place by Update.
			g = &sniGroup{key: g.key, opts: mg.opts, m: g.m, getCert: g.getCert}
		default:
			m, err := New(mg.opts)
			if err != nil {
				return fail(fmt.Errorf("certificates for %s: %w", strings.Join(mg.opts.Names, ", "), err))
			}
			g = &sniGroup{key: mg.key, opts: m.Options(), m: m, getCert: m.TLSConfig().GetCertificate}
			made = append(made, g)
		}
		t.groups = append(t.groups, g)
		t.acme = t.acme || g.opts.Mode == ModeACME
		for _, n := range g.opts.Names {
			if _, taken := t.byName[n]; !taken {
				t.byName[n] = g
			}
		}
	}
	return t, made, nil
}

// Start starts every Manager's background work (see [Manager.Start]);
// Managers an Update adds later start at once. ctx bounds all of it.
func (s *Set) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.stopped {
		return errors.New("certificate set already started or stopped")
	}
	for _, g := range s.table.Load().groups {
		if err := g.m.Start(ctx); err != nil {
			return err
		}
	}
	s.ctx, s.started = ctx, true
	return nil
}

// Stop ends every Manager's background work. It may be called more than
// once.
func (s *Set) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	for _, g := range s.table.Load().groups {
		g.m.Stop()
	}
}

// Update applies the certificate settings of a reloaded configuration
// (one Options per hosted server, the default first). On error nothing
// changes and the error says which settings were refused.
func (s *Set) Update(opts []Options) error {
	if len(opts) == 0 {
		return errors.New("no certificate settings")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("certificate set stopped")
	}
	cur := s.table.Load()
	t, made, err := s.build(opts, cur)
	if err != nil {
		return err
	}
	if s.started {
		for _, g := range made {
			if err := g.m.Start(s.ctx); err != nil {
				for _, g := range made {
					g.m.Stop()
				}
				return fmt.Errorf("certificates for %s: %w", strings.Join(g.opts.Names, ", "), err)
			}
		}
	}
	for _, g := range t.groups {
		if g.m.acme != nil && !slices.Equal(g.m.acme.names(), g.opts.Names) {
			g.m.acme.setNames(s.ctx, g.opts.Names, s.log)
		}
	}
	s.table.Store(t)
	kept := map[*Manager]bool{}
	for _, g := range t.groups {
		kept[g.m] = true
	}
	for _, g := range cur.groups {
		if !kept[g.m] {
			g.m.Stop()
		}
	}
	return nil
}

// TLSConfig returns a configuration for a TLS listener like
// [Manager.TLSConfig], serving each name from the Manager that lists it
// (exactly, or a "*.parent" wildcard name), other names from the first.
func (s *Set) TLSConfig() *tls.Config {
	c := baseTLSConfig()
	if s.table.Load().acme {
		c.NextProtos = append(c.NextProtos, acmeTLSALPNProtocol)
	}
	c.GetCertificate = s.getCertificate
	return c
}

func (s *Set) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.table.Load().pick(hello.ServerName).getCert(hello)
}

// pick returns the group serving name.
func (t *sniTable) pick(name string) *sniGroup {
	if name != "" {
		n := strings.TrimSuffix(strings.ToLower(name), ".")
		if g, ok := t.byName[n]; ok {
			return g
		}
		if _, parent, ok := strings.Cut(n, "."); ok {
			if g, ok := t.byName["*."+parent]; ok {
				return g
			}
		}
	}
	return t.groups[0]
}

// HTTPHandler wraps the plain-HTTP listener's handler like
// [Manager.HTTPHandler]: HTTP-01 challenges are answered by the ACME
// Manager of the name asked for; everything else goes to next.
func (s *Set) HTTPHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if certmagic.LooksLikeHTTPChallenge(r) {
			host := r.Host
			if h, _, ok := strings.Cut(host, ":"); ok && !strings.HasPrefix(host, "[") {
				host = h
			}
			if g := s.table.Load().pick(host); g.m.acme != nil {
				g.m.HTTPHandler(next).ServeHTTP(w, r)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Reload re-reads the certificate files of every files-mode Manager (as
// [Manager.Reload] does), reporting each refusal.
func (s *Set) Reload() error {
	var errs []error
	for _, g := range s.table.Load().groups {
		if err := g.m.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Status describes every certificate served or awaited.
func (s *Set) Status() []CertStatus {
	var out []CertStatus
	for _, g := range s.table.Load().groups {
		out = append(out, g.m.Status()...)
	}
	return out
}

// Ready reports whether every certificate exists and is valid now, as
// [Manager.Ready] does.
func (s *Set) Ready() (bool, string) {
	t := s.table.Load()
	if len(t.groups) == 1 {
		return t.groups[0].m.Ready()
	}
	ok, why := readiness(s.Status(), t.groups[0].m.opts.Now())
	return ok, why
}

// Options returns the settings each Manager runs with, Names merged, the
// default first (copies).
func (s *Set) Options() []Options {
	var out []Options
	for _, g := range s.table.Load().groups {
		o := g.opts
		o.Names = slices.Clone(o.Names)
		out = append(out, o)
	}
	return out
}

// setNames makes an ACME source manage exactly names: new names are
// obtained (or loaded from storage) in the background, names no longer
// listed leave the cache and are not renewed.
func (a *acmeSource) setNames(ctx context.Context, names []string, log *zap.Logger) {
	a.mu.Lock()
	old := a.opts.Names
	a.opts.Names = slices.Clone(names)
	state := make(map[string]*acmeNameState, len(names))
	for _, n := range names {
		if st := a.state[n]; st != nil {
			state[n] = st
		} else {
			state[n] = &acmeNameState{}
		}
	}
	a.state = state
	a.mu.Unlock()
	var added, removed []string
	for _, n := range names {
		if !slices.Contains(old, n) {
			added = append(added, n)
		}
	}
	var gone []certmagic.SubjectIssuer
	for _, n := range old {
		if !slices.Contains(names, n) {
			removed = append(removed, n)
			gone = append(gone, certmagic.SubjectIssuer{Subject: n})
		}
	}
	if cache := a.cache.Load(); cache != nil && len(gone) > 0 {
		cache.RemoveManaged(gone)
	}
	if cfg := a.magic.Load(); cfg != nil && ctx != nil && len(added) > 0 {
		if err := cfg.ManageAsync(ctx, added); err != nil {
			log.Error("could not start managing certificates", zap.Strings("names", added), zap.Error(err))
		}
	}
	log.Info("ACME names changed", zap.Strings("added", added), zap.Strings("removed", removed))
}

var _ interface {
	Ready() (bool, string)
	Status() []CertStatus
} = (*Set)(nil)

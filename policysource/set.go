package policysource

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/policyroom"
	"github.com/fedgate/fedgate/signedlist"
)

// listSetName is the engine's name for the signed federation list.
const listSetName = "federation-list"

// Set runs the policy sources of one policy engine: its
// [[policy.rooms]] and its signed federation list. Each source is built
// from the configuration it belongs to and keyed by that configuration,
// so a reload restarts only the sources whose settings changed; the
// others keep syncing. Safe for concurrent use.
type Set struct {
	engine *policy.Engine
	log    *slog.Logger
	fetch  signedlist.Fetcher

	mu      sync.Mutex
	ctx     context.Context // nil until start
	rooms   []*runningSource
	list    *runningSource
	stopped bool
}

// runningSource is one source with its configuration key and goroutine.
type runningSource struct {
	key    string
	room   *policyroom.Source // one of room and list is set
	list   *signedlist.Source
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *runningSource) publish() {
	if r.room != nil {
		r.room.Publish()
	} else {
		r.list.Publish()
	}
}

func (r *runningSource) run(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		if r.room != nil {
			r.room.Run(ctx)
		} else {
			r.list.Run(ctx)
		}
	}()
}

// stop ends the goroutine, if any, and waits for it.
func (r *runningSource) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

func (r *runningSource) close() {
	r.stop()
	if r.room != nil {
		r.room.Close()
	} else {
		r.list.Close()
	}
}

// New returns an empty Set feeding engine; fetch reaches list_url.
func New(engine *policy.Engine, log *slog.Logger, fetch signedlist.Fetcher) *Set {
	return &Set{engine: engine, log: log, fetch: fetch}
}

// Plan is what Apply needs: the sources for a configuration, new
// ones built but not published, unchanged ones reused.
type Plan struct {
	rooms []*runningSource
	list  *runningSource
	fresh []*runningSource // built for this plan
}

// Prepare builds the sources c asks for, reusing running ones whose
// configuration is unchanged. Nothing is published or started, so a plan
// that is not applied changes nothing.
func (ps *Set) Prepare(c *config.Config) (*Plan, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	plan := &Plan{}
	for i, rc := range c.Policy.Rooms {
		key := roomKey(c, rc)
		if old := findSource(ps.rooms, key); old != nil {
			plan.rooms = append(plan.rooms, old)
			continue
		}
		src, err := newRoomSource(c, rc, ps.engine, ps.log)
		if err != nil {
			return nil, c.Errorf(fmt.Sprintf("policy.rooms[%d]", i), "%v", err)
		}
		r := &runningSource{key: key, room: src}
		plan.rooms = append(plan.rooms, r)
		plan.fresh = append(plan.fresh, r)
	}
	if key, ok := listKey(c); ok {
		if ps.list != nil && ps.list.key == key {
			plan.list = ps.list
		} else {
			src, err := newListSource(c, ps.engine, ps.fetch, ps.log)
			if err != nil {
				return nil, err
			}
			plan.list = &runningSource{key: key, list: src}
			plan.fresh = append(plan.fresh, plan.list)
		}
	}
	return plan, nil
}

func findSource(list []*runningSource, key string) *runningSource {
	for _, r := range list {
		if r.key == key {
			return r
		}
	}
	return nil
}

// Apply puts a prepared plan in service: sources no longer wanted, or
// replaced, are stopped (the replaced ones' rules stay in force until
// their successor publishes under the same name; removed ones are taken
// out of the engine), new ones publish what they restored and, once the
// gateway has started, run.
func (ps *Set) Apply(plan *Plan) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	keep := map[*runningSource]bool{}
	for _, r := range plan.rooms {
		keep[r] = true
	}
	if plan.list != nil {
		keep[plan.list] = true
	}
	names := map[string]bool{}
	for _, r := range plan.rooms {
		names[r.room.Name()] = true
	}
	for _, r := range ps.all() {
		if keep[r] {
			continue
		}
		if (r.room != nil && names[r.room.Name()]) || (r.list != nil && plan.list != nil) {
			r.stop() // replaced: its successor publishes under the same name
		} else {
			r.close()
		}
	}
	ps.rooms, ps.list = plan.rooms, plan.list
	for _, r := range plan.fresh {
		r.publish()
		if ps.ctx != nil && !ps.stopped {
			r.run(ps.ctx)
		}
	}
}

// Start runs every source until ctx ends; sources a later Apply adds run
// too.
func (ps *Set) Start(ctx context.Context) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.ctx = ctx
	for _, r := range ps.all() {
		if r.cancel == nil {
			r.run(ctx)
		}
	}
}

// Stop ends every source's goroutine (their rules stay in the engine).
func (ps *Set) Stop() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.stopped = true
	for _, r := range ps.all() {
		r.stop()
	}
}

// all returns the sources in service, in a slice of its own; ps.mu must
// be held.
func (ps *Set) all() []*runningSource {
	out := append([]*runningSource{}, ps.rooms...)
	if ps.list != nil {
		out = append(out, ps.list)
	}
	return out
}

// List returns the signed list's source in service, or nil without one.
func (ps *Set) List() *signedlist.Source {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.list == nil {
		return nil
	}
	return ps.list.list
}

// Status returns the rooms' and the list's state.
func (ps *Set) Status() ([]policyroom.Status, *signedlist.Status) {
	ps.mu.Lock()
	rooms := append([]*runningSource{}, ps.rooms...)
	list := ps.list
	ps.mu.Unlock()
	out := make([]policyroom.Status, len(rooms))
	for i, r := range rooms {
		out[i] = r.room.Status()
	}
	if list == nil {
		return out, nil
	}
	st := list.list.Status()
	return out, &st
}

// roomKey identifies a room's configuration: a change of any setting, of
// the CA used for an https homeserver or of data_dir restarts the room.
func roomKey(c *config.Config, rc config.PolicyRoom) string {
	return fmt.Sprintf("%+v|%s|%s", rc, c.Upstream.CAFile, c.DataDir)
}

// listKey identifies the signed list's configuration, including the
// content of list_trust (read again on every reload); ok is false when
// there is no signed list.
func listKey(c *config.Config) (string, bool) {
	p := c.Policy
	if p.ListSignature == "" {
		return "", false
	}
	trust, _ := os.ReadFile(p.ListTrust)
	sum := sha256.Sum256(trust)
	return fmt.Sprintf("%s|%s|%s|%v|%v|%s|%x", p.ListFile, p.ListURL, p.ListSignature, p.ListRefresh, p.ListMaxAge, c.DataDir, sum), true
}

// roomStateFile is where a room's last good rules are kept: one file per
// hosted server and configured room, named by a hash of both, so that two
// hosted servers subscribing the same room keep their own state.
func roomStateFile(c *config.Config, room string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(c.ServerName) + "\x00" + room))
	return filepath.Join(c.DataDir, "policy-rooms", hex.EncodeToString(sum[:12])+".json")
}

// listCacheFile is where the last good signed list is kept: named after
// the list's location, so that servers with lists of their own (and a
// list_url that changes) never share a cache or a rollback floor.
func listCacheFile(c *config.Config) string {
	loc := c.Policy.ListURL
	if loc == "" {
		loc = c.Policy.ListFile
	}
	sum := sha256.Sum256([]byte(loc))
	return filepath.Join(c.DataDir, "federation-list-"+hex.EncodeToString(sum[:6])+".jws")
}

// newRoomSource builds (without publishing or starting) the source for
// one [[policy.rooms]] entry. engine nil builds it for a check only.
func newRoomSource(c *config.Config, rc config.PolicyRoom, engine *policy.Engine, log *slog.Logger) (*policyroom.Source, error) {
	u, err := url.Parse(rc.Homeserver)
	if err != nil {
		return nil, fmt.Errorf("homeserver: %w", err)
	}
	hc, err := homeserverClient(c, u)
	if err != nil {
		return nil, err
	}
	o := policyroom.Options{
		Room:            rc.Room,
		Homeserver:      u,
		HTTP:            hc,
		AccessTokenFile: rc.AccessTokenFile,
		DryRun:          rc.Apply == config.ApplyDryRun,
		MaxAge:          rc.MaxAge.D(),
		MaxRules:        rc.MaxRules,
		StateFile:       roomStateFile(c, rc.Room),
		Name:            "room:" + rc.Room,
		Logger:          log.With("source", "policyroom"),
	}
	if engine != nil {
		o.Sink = engine
	}
	return policyroom.New(o)
}

// homeserverClient reaches the client-server API: no overall timeout
// (each call carries its own deadline; sync long-polls), upstream.ca_file
// added to the system roots for https.
func homeserverClient(c *config.Config, u *url.URL) (*http.Client, error) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	if u.Scheme == "https" && c.Upstream.CAFile != "" {
		pem, err := os.ReadFile(c.Upstream.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream.ca_file: no PEM certificate in %s", c.Upstream.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}

// newListSource builds (without publishing or starting) the signed list
// source. engine nil builds it for a check only.
func newListSource(c *config.Config, engine *policy.Engine, fetch signedlist.Fetcher, log *slog.Logger) (*signedlist.Source, error) {
	p := c.Policy
	pem, err := os.ReadFile(p.ListTrust)
	if err != nil {
		return nil, c.Errorf("policy.list_trust", "%v", err)
	}
	v, err := signedlist.NewVerifier(pem)
	if err != nil {
		return nil, c.Errorf("policy.list_trust", "%s: %v", p.ListTrust, err)
	}
	o := signedlist.Options{
		File:      p.ListFile,
		URL:       p.ListURL,
		Fetch:     fetch,
		Verifier:  v,
		Refresh:   p.ListRefresh.D(),
		MaxAge:    p.ListMaxAge.D(),
		CacheFile: listCacheFile(c),
		Name:      listSetName,
		Logger:    log.With("source", "signedlist"),
	}
	if engine != nil {
		o.Sink = engine
	}
	src, err := signedlist.New(o)
	if err != nil {
		key := "policy.list_url"
		if p.ListFile != "" {
			key = "policy.list_file"
		}
		return nil, c.Errorf(key, "%v", err)
	}
	return src, nil
}

// Check builds every source c asks for without publishing or starting
// any, so that check-config refuses what a reload would.
func Check(c *config.Config) error {
	nop := slog.New(slog.DiscardHandler)
	for i, rc := range c.Policy.Rooms {
		if _, err := newRoomSource(c, rc, nil, nop); err != nil {
			return c.Errorf(fmt.Sprintf("policy.rooms[%d]", i), "%v", err)
		}
	}
	if _, ok := listKey(c); ok {
		fetch := func(context.Context, string, http.Header, int64) (int, http.Header, []byte, error) {
			return 0, nil, nil, fmt.Errorf("not fetched by check-config")
		}
		if _, err := newListSource(c, nil, fetch, nop); err != nil {
			return err
		}
	}
	return nil
}

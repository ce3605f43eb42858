package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/policy"
	"github.com/fedgate/fedgate/policyroom"
	"github.com/fedgate/fedgate/signedlist"
)

// listSetName is the engine's name for the signed federation list.
const listSetName = "federation-list"

// policySources runs the policy sources of one policy engine: its
// [[policy.rooms]] and its signed federation list. Each source is built
// from the configuration it belongs to and keyed by that configuration,
// so a reload restarts only the sources whose settings changed; the
// others keep syncing. Safe for concurrent use.
type policySources struct {
	engine *policy.Engine
	log    *zap.Logger
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

func newPolicySources(engine *policy.Engine, log *zap.Logger, fetch signedlist.Fetcher) *policySources {
	return &policySources{engine: engine, log: log.Named("policysources"), fetch: fetch}
}

// sourcePlan is what apply needs: the sources for a configuration, new
// ones built but not published, unchanged ones reused.
type sourcePlan struct {
	rooms []*runningSource
	list  *runningSource
	fresh []*runningSource // built for this plan
}

// prepare builds the sources c asks for, reusing running ones whose
// configuration is unchanged. Nothing is published or started: a plan
// that is not applied changes nothing (close it with discard).
func (ps *policySources) prepare(c *config.Config) (*sourcePlan, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	plan := &sourcePlan{}
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

// apply puts a prepared plan in service: sources no longer wanted, or
// replaced, are stopped (the replaced ones' rules stay in force until
// their successor publishes under the same name; removed ones are taken
// out of the engine), new ones publish what they restored and, once the
// gateway has started, run.
func (ps *policySources) apply(plan *sourcePlan) {
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
	old := append([]*runningSource{}, ps.rooms...)
	if ps.list != nil {
		old = append(old, ps.list)
	}
	for _, r := range old {
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

// start runs every source until ctx ends.
func (ps *policySources) start(ctx context.Context) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.ctx = ctx
	for _, r := range ps.all() {
		if r.cancel == nil {
			r.run(ctx)
		}
	}
}

// stop ends every source's goroutine (their rules stay in the engine).
func (ps *policySources) stop() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.stopped = true
	for _, r := range ps.all() {
		r.stop()
	}
}

func (ps *policySources) all() []*runningSource {
	out := append([]*runningSource{}, ps.rooms...)
	if ps.list != nil {
		out = append(out, ps.list)
	}
	return out
}

// status returns the rooms' and the list's state.
func (ps *policySources) status() ([]policyroom.Status, *signedlist.Status) {
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
func newRoomSource(c *config.Config, rc config.PolicyRoom, engine *policy.Engine, log *zap.Logger) (*policyroom.Source, error) {
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
		Logger:          slogFor(log, "policyroom"),
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
func newListSource(c *config.Config, engine *policy.Engine, fetch signedlist.Fetcher, log *zap.Logger) (*signedlist.Source, error) {
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
		Logger:    slogFor(log, "signedlist"),
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

// fetchList fetches the signed list through the current outbound
// settings: the resolver's DNS, outbound.ca_file and the SSRF guard.
func (g *Gateway) fetchList(ctx context.Context, u string, h http.Header, maxBytes int64) (int, http.Header, []byte, error) {
	return discovery.NewURLClient(g.client().Resolver()).Get(ctx, u, h, maxBytes)
}

// checkPolicySources builds every source c asks for without publishing or
// starting any, for check-config.
func checkPolicySources(c *config.Config) error {
	nop := zap.NewNop()
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

// Readiness check names of the policy sources: one per room, named after
// the room as configured, and one for the signed list.
const (
	readyPolicyRoomPrefix = "policy_room "
	readyFederationList   = "federation_list"
)

// readyPolicySources reports each source. A source that cannot be read
// degrades fedgate but does not make it unready (its last rules stay in
// force); only one failing closed (max_age, list_max_age passed) does,
// since then every federation request is refused anyway.
func (g *Gateway) readyPolicySources(now time.Time) []ReadyCheck {
	rt := g.rt.Load()
	if rt == nil {
		return nil
	}
	var out []ReadyCheck
	for _, hs := range rt.servers {
		out = append(out, readySources(hs, len(rt.servers) > 1, now)...)
	}
	return out
}

// readySources reports one hosted server's sources; with several hosted
// servers, each check's name says whose source it is.
func readySources(hs *hostedServer, several bool, now time.Time) []ReadyCheck {
	rooms, list := hs.state.sources.status()
	whose := ""
	if several {
		whose = " (" + hs.name + ")"
	}
	var out []ReadyCheck
	for _, st := range rooms {
		c := ReadyCheck{Name: readyPolicyRoomPrefix + st.Room + whose, OK: !st.Stale}
		age := "never synced"
		if !st.LastSync.IsZero() {
			age = "last synced " + now.Sub(st.LastSync).Round(time.Second).String() + " ago"
		}
		mode := ""
		if st.DryRun {
			mode = ", dry run"
		}
		c.Detail = fmt.Sprintf("%s %s: %d ban rules in force%s, %s", st.State, st.RoomID, st.Rules, mode, age)
		if st.LastError != "" {
			c.Detail += "; " + truncateDetail(st.LastError)
		}
		if st.Stale {
			c.Detail += "; max_age exceeded: federation fails closed (ban_list_stale)"
		}
		out = append(out, c)
	}
	if list != nil {
		c := ReadyCheck{Name: readyFederationList + whose, OK: !list.Stale}
		if list.Version < 0 {
			c.Detail = "no good list yet from " + list.Location
		} else {
			c.Detail = fmt.Sprintf("version %d from %s (%d allow, %d deny), confirmed %s ago, signer valid until %s",
				list.Version, list.Location, list.Allow, list.Deny, now.Sub(list.Confirmed).Round(time.Second),
				list.SignerNotAfter.UTC().Format(time.RFC3339))
		}
		if list.LastError != "" {
			c.Detail += "; " + truncateDetail(list.LastError)
		}
		if list.Stale {
			c.Detail += "; list_max_age exceeded: federation fails closed (list_stale)"
		}
		out = append(out, c)
	}
	return out
}

func truncateDetail(s string) string {
	const max = 300
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// policySourceDescs are the policy sources' metrics.
type policySourceDescs struct {
	roomUp, roomLastSync, roomRules, roomIgnored, roomStale, roomFailures, roomChanges *prometheus.Desc
	listSignerNotAfter                                                                 *prometheus.Desc
}

func newPolicySourceDescs(d func(sub, name, help string, labels ...string) *prometheus.Desc) policySourceDescs {
	return policySourceDescs{
		roomUp:             d("policy_room", "up", "1 when the last sync of the policy room succeeded.", "room", "server"),
		roomLastSync:       d("policy_room", "last_sync_timestamp_seconds", "When the policy room was last synced successfully, as a Unix time.", "room", "server"),
		roomRules:          d("policy_room", "rules", "Ban rules of the policy room in force.", "room", "server"),
		roomIgnored:        d("policy_room", "ignored_rules", "Server rules of the policy room not in force, by why: recommendation (not m.ban), invalid, too_broad, over_limit (max_rules).", "room", "why", "server"),
		roomStale:          d("policy_room", "stale", "1 when the policy room has not been synced within its max_age: federation fails closed.", "room", "server"),
		roomFailures:       d("policy_room", "sync_failures_total", "Failed attempts to read the policy room.", "room", "server"),
		roomChanges:        d("policy_room", "rule_changes_total", "Rule changes applied from the policy room.", "room", "server"),
		listSignerNotAfter: d("policy", "list_signer_not_after_timestamp_seconds", "When the certificate chain that signed the federation list in force expires, as a Unix time.", "server"),
	}
}

func (p *policySourceDescs) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{p.roomUp, p.roomLastSync, p.roomRules, p.roomIgnored, p.roomStale, p.roomFailures, p.roomChanges, p.listSignerNotAfter} {
		ch <- d
	}
}

// collect reports the sources; the signed list also fills the list_*
// metrics the list file uses, so dashboards work for both.
func (p *policySourceDescs) collect(c *stateCollector, g *Gateway, gauge, counter func(*prometheus.Desc, float64, ...string)) {
	rt := g.rt.Load()
	if rt == nil {
		return
	}
	for _, hs := range rt.servers {
		p.collectServer(c, hs, gauge, counter)
	}
}

// collectServer reports one hosted server's sources, labelled with its
// name. The signed list also fills the list_* metrics of that server.
func (p *policySourceDescs) collectServer(c *stateCollector, hs *hostedServer, gauge, counter func(*prometheus.Desc, float64, ...string)) {
	unix := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	rooms, list := hs.state.sources.status()
	for _, st := range rooms {
		gauge(p.roomUp, b2f(st.State == policyroom.StateSyncing), st.Room, hs.name)
		if !st.LastSync.IsZero() {
			gauge(p.roomLastSync, unix(st.LastSync), st.Room, hs.name)
		}
		gauge(p.roomRules, float64(st.Rules), st.Room, hs.name)
		for why, n := range st.Ignored {
			gauge(p.roomIgnored, float64(n), st.Room, why, hs.name)
		}
		gauge(p.roomStale, b2f(st.Stale), st.Room, hs.name)
		counter(p.roomFailures, float64(st.Failures), st.Room, hs.name)
		counter(p.roomChanges, float64(st.Changes), st.Room, hs.name)
	}
	if list == nil {
		return
	}
	if list.Version >= 0 {
		gauge(c.listVersion, float64(list.Version), hs.name)
		gauge(c.listModified, unix(list.Confirmed), hs.name)
		gauge(c.listEntries, float64(list.Allow), "allow", hs.name)
		gauge(c.listEntries, float64(list.Deny), "deny", hs.name)
		gauge(p.listSignerNotAfter, unix(list.SignerNotAfter), hs.name)
	}
	gauge(c.listStale, b2f(list.Stale), hs.name)
	counter(c.listLoads, float64(list.Loads), hs.name)
	counter(c.listFailures, float64(list.Failures), hs.name)
}

package gateway

import (
	"crypto/ed25519"
	"reflect"
	"strings"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/policy"
)

// Cluster mode (Options.Cluster set): the seams of policy, auth and the
// egress are wired to Redis here, and nowhere else in the gateway. The
// limits namespace is the server name this gateway fronts, so instances
// fronting the same name share buckets and other deployments under the
// same prefix do not.

// clusterNamespace is the rate-limit namespace for the server name c fronts.
func clusterNamespace(c *config.Config) string { return strings.ToLower(c.ServerName) }

// sharedLimiter returns the shared rate limiter, or nil without a cluster.
func (g *Gateway) sharedLimiter(c *config.Config) policy.SharedLimiter {
	if g.opts.Cluster == nil {
		return nil
	}
	return g.opts.Cluster.Limiter(clusterNamespace(c))
}

// wireCluster connects the keyring-independent parts: the egress backoff
// and the cluster metrics. Called by New once the egress exists.
func (g *Gateway) wireCluster() {
	cl := g.opts.Cluster
	if cl == nil {
		return
	}
	g.egress.backoff.shared = cl.Backoff()
	g.metrics.reg.MustRegister(cl.Collector())
}

// startCluster runs the egress backoff subscription until Shutdown.
func (g *Gateway) startCluster() {
	if g.egress.backoff.shared == nil {
		return
	}
	g.bgWG.Add(1)
	go func() {
		defer g.bgWG.Done()
		g.egress.backoff.shared.Run(g.bg, g.egress.backoff.apply)
	}()
}

// keySeal seals key documents the keyring shares through Redis with the
// server's own request key, as a notary signs what it relays, and accepts
// a document read back only with a valid signature by one of our current
// or retired keys: whoever can write to Redis cannot plant keys for an
// origin without our signing key. It reads the keys of the current
// runtime, so a reload that rotates them applies here too.
type keySeal struct{ g *Gateway }

func (s keySeal) Seal(doc []byte) ([]byte, error) {
	rt := s.g.rt.Load()
	return auth.AddSignature(doc, rt.cfg.ServerName, rt.keys.request)
}

func (s keySeal) Check(doc []byte) error {
	rt := s.g.rt.Load()
	keys := make(map[auth.KeyID]ed25519.PublicKey, len(rt.keys.current)+len(rt.keys.old))
	for _, k := range rt.keys.current {
		keys[k.ID] = k.Public()
	}
	for _, k := range rt.keys.old {
		keys[k.ID] = k.Key
	}
	return auth.CheckNotarySignature(doc, rt.cfg.ServerName, keys)
}

// warnClusterRestart logs a reload that changes [cluster]: it applies
// only after a restart.
func (g *Gateway) warnClusterRestart(old, c *config.Config) {
	if !reflect.DeepEqual(old.Cluster, c.Cluster) {
		g.log.Warn("cluster settings changed; restart fedgate to apply them (the running ones stay)")
	}
	if g.opts.Cluster != nil && !strings.EqualFold(old.ServerName, c.ServerName) {
		g.log.Warn("server_name changed; shared rate limits keep the namespace of the old name until a restart")
	}
}

var (
	_ sharedBackoff     = (*cluster.Backoff)(nil)
	_ auth.SharedSealer = keySeal{}
)

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

// sharedLimiter returns the shared rate limiter of the hosted server
// named server (its limits namespace in Redis), or nil without a cluster.
// Each hosted server's policy engine gets its own, so limits hold per
// server name across the cluster, as they do per server name within one
// instance.
func (g *Gateway) sharedLimiter(server string) policy.SharedLimiter {
	if g.opts.Cluster == nil {
		return nil
	}
	return g.opts.Cluster.Limiter(strings.ToLower(server))
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
// request key of the top-level server (the first hosted server; every
// instance of a cluster runs the same configuration), as a notary signs
// what it relays, and accepts a document read back only with a valid
// signature by one of that server's current or retired keys: whoever can
// write to Redis cannot plant keys for an origin without our signing key.
// It reads the keys of the current runtime, so a reload that rotates them
// applies here too.
type keySeal struct{ g *Gateway }

func (s keySeal) Seal(doc []byte) ([]byte, error) {
	hs := s.g.rt.Load().primary()
	return auth.AddSignature(doc, hs.name, hs.keys.request)
}

// Open checks the seal and removes it: the keyring keeps (and a notary
// answer relays) the document as its server signed it, never with the
// cluster's seal, which would name the top-level server to every peer of
// another hosted server.
func (s keySeal) Open(doc []byte) ([]byte, error) {
	hs := s.g.rt.Load().primary()
	keys := make(map[auth.KeyID]ed25519.PublicKey, len(hs.keys.current)+len(hs.keys.old))
	for _, k := range hs.keys.current {
		keys[k.ID] = k.Public()
	}
	for _, k := range hs.keys.old {
		keys[k.ID] = k.Key
	}
	if err := auth.CheckNotarySignature(doc, hs.name, keys); err != nil {
		return nil, err
	}
	return auth.RemoveSignatures(doc, hs.name)
}

// warnClusterRestart logs a reload that changes [cluster]: it applies
// only after a restart.
func (g *Gateway) warnClusterRestart(old, c *config.Config) {
	if !reflect.DeepEqual(old.Cluster, c.Cluster) {
		g.log.Warn("cluster settings changed; restart fedgate to apply them (the running ones stay)")
	}
}

var (
	_ sharedBackoff     = (*cluster.Backoff)(nil)
	_ auth.SharedSealer = keySeal{}
)

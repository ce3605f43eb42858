package gateway

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/discovery"
	"github.com/fedgate/fedgate/policy"
)

// maxKeyResponse bounds a key document or notary answer fetched from the
// network (auth refuses documents over auth.MaxKeyDocumentSize anyway; a
// notary answer may hold a few documents).
const maxKeyResponse = 256 << 10

// signingKeys is the runtime's view of our own keys.
type signingKeys struct {
	current []auth.SigningKey
	request auth.SigningKey // signs outbound requests and notary answers
	old     []auth.OldVerifyKey
	doc     *keyDocument
	// verifiers are the current keys prepared for verifying (precomputed
	// tables): the egress checks our homeserver's signatures with them,
	// and the inbound pipeline the signatures of other servers hosted
	// here. Retired keys ([[keys.old]]) authenticate nothing.
	verifiers map[auth.KeyID]*auth.Verifier
}

// verifier returns the prepared public half of our current key id, or nil.
func (k *signingKeys) verifier(id auth.KeyID) *auth.Verifier { return k.verifiers[id] }

// loadSigningKeys reads [keys]: the key file (every key in it is current),
// the request key and the retired keys. Problems point into the config.
func loadSigningKeys(c *config.Config) (*signingKeys, error) {
	keys, err := auth.LoadKeyFile(c.Keys.SigningKey)
	if err != nil {
		return nil, c.Errorf("keys.signing_key", "%v", err)
	}
	sk := &signingKeys{current: keys, request: keys[0], verifiers: make(map[auth.KeyID]*auth.Verifier, len(keys))}
	for _, k := range keys {
		v, err := auth.NewPrecomputedVerifier(k.Public())
		if err != nil {
			return nil, c.Errorf("keys.signing_key", "%s: %v", k.ID, err)
		}
		sk.verifiers[k.ID] = v
	}
	if id := c.Keys.RequestKey; id != "" {
		found := false
		for _, k := range keys {
			if string(k.ID) == id {
				sk.request, found = k, true
			}
		}
		if !found {
			return nil, c.Errorf("keys.request_key", "%s is not in %s", id, c.Keys.SigningKey)
		}
	}
	for i, o := range c.Keys.Old {
		pub, err := auth.DecodeBase64(o.PublicKey)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, c.Errorf(fmt.Sprintf("keys.old[%d].public_key", i), "not an ed25519 public key")
		}
		for _, k := range keys {
			if string(k.ID) == o.KeyID {
				return nil, c.Errorf(fmt.Sprintf("keys.old[%d].key_id", i), "%s is still in the signing key file; a key is either current or old", o.KeyID)
			}
		}
		sk.old = append(sk.old, auth.OldVerifyKey{ID: auth.KeyID(o.KeyID), Key: ed25519.PublicKey(pub), ExpiredTS: o.ExpiredTS})
	}
	sk.doc = &keyDocument{serverName: c.ServerName, keys: keys, old: sk.old, validFor: c.Keys.ValidFor.D()}
	if _, err := sk.doc.get(time.Now()); err != nil {
		return nil, c.Errorf("keys.signing_key", "building the key document: %v", err)
	}
	return sk, nil
}

// keyDocument is our /_matrix/key/v2/server answer: built once, served
// from memory, and signed again before it gets within an hour of its
// valid_until_ts (servers refuse documents that expire sooner).
type keyDocument struct {
	serverName string
	keys       []auth.SigningKey
	old        []auth.OldVerifyKey
	validFor   time.Duration

	mu      sync.Mutex
	current atomic.Pointer[signedDocument]
}

type signedDocument struct {
	body       []byte
	validUntil time.Time
}

// resignBefore is how long before valid_until_ts the document is renewed.
const resignBefore = time.Hour

func (d *keyDocument) get(now time.Time) (*signedDocument, error) {
	if cur := d.current.Load(); cur != nil && now.Before(cur.validUntil.Add(-resignBefore)) {
		return cur, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur := d.current.Load(); cur != nil && now.Before(cur.validUntil.Add(-resignBefore)) {
		return cur, nil
	}
	validUntil := now.Add(d.validFor).Truncate(time.Millisecond)
	body, err := auth.BuildKeyDocument(d.serverName, d.keys, d.old, validUntil)
	if err != nil {
		return nil, err
	}
	doc := &signedDocument{body: body, validUntil: validUntil}
	d.current.Store(doc)
	return doc, nil
}

// newKeyring builds the keyring from [keys]; it lives as long as the
// Gateway (its cache is worth keeping across reloads).
func (g *Gateway) newKeyring(c *config.Config) (*auth.Keyring, error) {
	opts := auth.KeyringOptions{
		Fetcher:      &keyFetcher{g: g},
		CacheFile:    c.Keys.CacheFile,
		FetchTimeout: c.Keys.FetchTimeout.D(),
		Logger:       g.slog("keyring"),
		OnEvent:      g.onKeyringEvent,
	}
	if g.opts.Cluster != nil {
		opts.Shared, opts.SharedSealer = g.opts.Cluster.Keys(), keySeal{g: g}
	}
	for i, t := range c.Keys.TrustedKeyServers {
		n := auth.Notary{ServerName: t.ServerName, Keys: map[auth.KeyID]ed25519.PublicKey{}}
		for id, b64 := range t.VerifyKeys {
			pub, err := auth.DecodeBase64(b64)
			if err != nil || len(pub) != ed25519.PublicKeySize {
				return nil, c.Errorf(fmt.Sprintf("keys.trusted_key_servers[%d].verify_keys", i), "%s is not an ed25519 public key", id)
			}
			n.Keys[auth.KeyID(id)] = pub
		}
		opts.Notaries = append(opts.Notaries, n)
	}
	if len(c.Keys.Pinned) > 0 {
		opts.Pinned = map[string]map[auth.KeyID]ed25519.PublicKey{}
		for i, p := range c.Keys.Pinned {
			pub, err := auth.DecodeBase64(p.PublicKey)
			if err != nil || len(pub) != ed25519.PublicKeySize {
				return nil, c.Errorf(fmt.Sprintf("keys.pinned[%d].public_key", i), "not an ed25519 public key")
			}
			if opts.Pinned[p.ServerName] == nil {
				opts.Pinned[p.ServerName] = map[auth.KeyID]ed25519.PublicKey{}
			}
			opts.Pinned[p.ServerName][auth.KeyID(p.KeyID)] = pub
		}
	}
	return auth.NewKeyring(opts)
}

// onKeyringEvent counts and logs what the keyring does.
func (g *Gateway) onKeyringEvent(ev auth.KeyringEvent) {
	g.metrics.keyringEvent(ev)
	switch ev.Kind {
	case auth.EventFetchFailed, auth.EventNotaryFailed:
		if ce := g.log.Check(zap.InfoLevel, "key fetch failed"); ce != nil {
			errText := ""
			if ev.Err != nil {
				errText = replaceNames(g.hasher(), ev.Err.Error(), []string{ev.Server, ev.Notary})
			}
			ce.Write(zap.String("server", g.logName(ev.Server)), zap.String("notary", g.logName(ev.Notary)),
				zap.Bool("background", ev.Background), zap.String("error", errText))
		}
	case auth.EventCacheError:
		g.log.Warn("keyring cache file", zap.Error(ev.Err))
	}
}

// keyFetcher is the keyring's network side: it fetches key documents over
// the federation client (discovery, TLS checks, the SSRF guard) and applies
// outbound server policy first, since notary queries let anyone name the
// server we fetch from.
type keyFetcher struct{ g *Gateway }

// allowed applies destination policy to a key fetch. The keyring is shared
// by the hosted servers and fetches for whichever needs the keys, so a
// fetch is allowed when one hosted server's policy allows the server (a
// network fetch is rare, so going through each is cheap; the engines
// visited before one allows count a denial in their metrics). The keys of
// a server hosted here are never fetched: they are known.
func (f *keyFetcher) allowed(server string) error {
	rt := f.g.rt.Load()
	if rt.hosted.Lookup(server) >= 0 {
		return &auth.Error{Kind: auth.KindKeyFetchFailed, Msg: fmt.Sprintf("Keys of %s are not fetched: it is hosted here", server)}
	}
	var d policy.Decision
	for _, hs := range rt.servers {
		if d = hs.policy().Snapshot().CheckDestination(server); d.Allowed {
			return nil
		}
	}
	return &auth.Error{Kind: auth.KindKeyFetchFailed, Msg: fmt.Sprintf("Keys of %s are not fetched: %s", server, d.Msg)}
}

// FetchServerKeys gets GET /_matrix/key/v2/server from server.
func (f *keyFetcher) FetchServerKeys(ctx context.Context, server string) ([]byte, error) {
	if err := f.allowed(server); err != nil {
		return nil, err
	}
	body, err := f.g.fedGet(ctx, server, "/_matrix/key/v2/server", maxKeyResponse)
	if err != nil {
		return nil, fmt.Errorf("fetching keys of %s: %w", server, err)
	}
	return body, nil
}

// QueryNotary asks notary for all of server's keys. The GET form carries
// minimum_valid_until_ts for every key id, which the POST form cannot.
func (f *keyFetcher) QueryNotary(ctx context.Context, notary, server string, minValidUntil time.Time) ([]byte, error) {
	if err := f.allowed(notary); err != nil {
		return nil, err
	}
	path := "/_matrix/key/v2/query/" + url.PathEscape(server) +
		"?minimum_valid_until_ts=" + strconv.FormatInt(minValidUntil.UnixMilli(), 10)
	body, err := f.g.fedGet(ctx, notary, path, maxKeyResponse)
	if err != nil {
		return nil, fmt.Errorf("asking notary %s for keys of %s: %w", notary, server, err)
	}
	return body, nil
}

// newClient builds the federation client from [outbound].
func (g *Gateway) newClient(c *config.Config) (*discovery.Client, error) {
	opts, err := DiscoveryOptions(c, g.slog("discovery"))
	if err != nil {
		return nil, err
	}
	r, err := discovery.NewResolver(opts)
	if errors.Is(err, discovery.ErrHostsFile) {
		return nil, c.Errorf("outbound.hosts_file", "%v", err)
	}
	if err != nil {
		return nil, c.Errorf("outbound", "%v", err)
	}
	return discovery.NewClient(r), nil
}

// client returns the current federation client.
func (g *Gateway) client() *discovery.Client { return g.fedClient.Load() }

// fedDo is discovery.Client.Do with the resolution and any failure counted
// in the discovery metrics; key fetches and the egress both send through it.
func (g *Gateway) fedDo(ctx context.Context, server string, req *http.Request) (*http.Response, error) {
	c := g.client()
	res, err := c.Resolver().Resolve(ctx, server)
	g.metrics.discovery(res, err)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	resp, err := c.DoResolved(ctx, res, req)
	if err != nil {
		g.metrics.discovery(nil, err)
	}
	return resp, err
}

// fedGet sends GET path to server and returns the body of a 200 answer of
// at most maxBytes.
func (g *Gateway) fedGet(ctx context.Context, server, path string, maxBytes int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, &discovery.Error{ServerName: server, Phase: discovery.PhaseRequest, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := g.fedDo(ctx, server, req)
	if err != nil {
		return nil, err
	}
	body, err := discovery.ReadBody(server, resp, maxBytes)
	if err != nil {
		g.metrics.discovery(nil, err)
		return nil, err
	}
	return body, nil
}

// keyError maps a key lookup or verification failure to the Matrix answer.
func keyError(err error) *Error {
	var ae *auth.Error
	msg := "Request could not be authenticated"
	if errors.As(err, &ae) && ae.Msg != "" {
		msg = ae.Msg
	}
	kind := auth.KindOf(err)
	switch kind {
	case auth.KindBadBody:
		return &Error{Status: 400, Code: CodeBadJSON, Msg: msg, Reason: "bad_body", Err: err}
	case auth.KindMalformedHeader:
		return &Error{Status: 400, Code: CodeUnauthorized, Msg: msg, Reason: "malformed_header", Err: err}
	case auth.KindOther, auth.KindNone:
		return &Error{Status: 401, Code: CodeUnauthorized, Msg: msg, Reason: "key_unavailable", Err: err}
	}
	return &Error{Status: 401, Code: CodeUnauthorized, Msg: msg, Reason: kind.String(), Err: err}
}

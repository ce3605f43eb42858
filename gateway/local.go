package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/hosting"
	"github.com/fedgate/fedgate/internal/servername"
)

// Notary limits: a query may name this many servers at most, and this many
// of them are looked up at once.
const (
	maxNotaryServers     = 100
	notaryParallel       = 8
	maxNotaryRequestBody = 64 << 10
)

// stageLocal answers the endpoints fedgate serves itself, as the hosted
// server the request was sent to (Host, SNI; the top-level server when
// they name none). A host several hosted servers share does not say whose
// answer is wanted. Endpoint policy applies to them as to forwarded ones
// (deny_endpoints = ["notary"]).
func (g *Gateway) stageLocal(in *inbound) error {
	ep := in.match.Endpoint
	if !ep.Local {
		return nil
	}
	if in.sent == hosting.Ambiguous {
		return errAmbiguousHost(in.r.Host)
	}
	if err := in.decisionError(in.pol.CheckRequest("", &in.match, in.rawQuery, nil)); err != nil {
		return err
	}
	var err error
	switch ep.Name {
	case "well_known":
		err = g.serveWellKnown(in)
	case "server_keys":
		err = g.serveKeyDocument(in)
	case "key_query":
		err = g.serveNotary(in)
	default:
		err = errUnrecognized()
	}
	if err != nil {
		return err
	}
	return errDone
}

func (g *Gateway) serveWellKnown(in *inbound) error {
	server := in.hs.cfg.WellKnown.Server
	if server == "" {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Msg: "No well-known delegation is configured", Reason: "no_well_known"}
	}
	body := appendJSONString([]byte(`{"m.server":`), server)
	body = append(body, '}')
	h := in.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=86400")
	in.w.Write(body)
	return nil
}

// serveKeyDocument answers /_matrix/key/v2/server and its removed forms
// (/{keyId} and the trailing slash) with the whole document.
func (g *Gateway) serveKeyDocument(in *inbound) error {
	doc, err := in.hs.keys.doc.get(time.Now())
	if err != nil {
		return &Error{Status: http.StatusInternalServerError, Code: CodeUnknown, Msg: "Key document unavailable", Reason: "key_document", Err: err}
	}
	writeJSON(in.w, doc.body)
	return nil
}

// serveNotary answers GET /_matrix/key/v2/query/{serverName}[/{keyId}] and
// POST /_matrix/key/v2/query as the hosted server the request was sent to:
// the documents of the servers hosted here (from memory), and (with
// keys.notary) those the keyring holds or fetches, each signed by that
// server as notary.
func (g *Gateway) serveNotary(in *inbound) error {
	var queries []notaryQuery
	now := time.Now()
	if in.r.Method == http.MethodGet {
		server, err := in.match.Param("serverName")
		if err != nil || !servername.Valid(server) {
			return &Error{Status: http.StatusBadRequest, Code: CodeInvalidParam, Msg: "serverName is not a valid server name", Reason: "bad_request"}
		}
		min := now
		if v := queryValue(in.rawQuery, "minimum_valid_until_ts"); v != "" {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return &Error{Status: http.StatusBadRequest, Code: CodeInvalidParam, Msg: "minimum_valid_until_ts must be an integer", Reason: "bad_request"}
			}
			min = time.UnixMilli(ms)
		}
		queries = []notaryQuery{{server: server, minValidUntil: min}}
	} else {
		var err error
		if queries, err = parseNotaryPost(in, now); err != nil {
			return err
		}
	}
	docs := g.notaryDocuments(in, queries)
	var body bytes.Buffer
	body.WriteString(`{"server_keys":[`)
	for i, d := range docs {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(d)
	}
	body.WriteString(`]}`)
	writeJSON(in.w, body.Bytes())
	return nil
}

type notaryQuery struct {
	server        string
	minValidUntil time.Time
}

// parseNotaryPost reads {"server_keys":{"<server>":{"<keyId>":{"minimum_valid_until_ts":N}}}}.
// An empty inner object means "all keys, valid now". Invalid server names
// are skipped, as servers that cannot be reached are.
func parseNotaryPost(in *inbound, now time.Time) ([]notaryQuery, error) {
	body, err := readLimited(in.r.Body, in.r.ContentLength, maxNotaryRequestBody, nil)
	if err != nil {
		return nil, errTooLarge(maxNotaryRequestBody)
	}
	in.body = body
	var req struct {
		ServerKeys map[string]map[string]struct {
			MinimumValidUntilTS *int64 `json:"minimum_valid_until_ts"`
		} `json:"server_keys"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.ServerKeys == nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeBadJSON, Msg: "Body must be {\"server_keys\": {...}}", Reason: "bad_json"}
	}
	if len(req.ServerKeys) > maxNotaryServers {
		return nil, &Error{Status: http.StatusBadRequest, Code: CodeInvalidParam,
			Msg: fmt.Sprintf("At most %d servers per query", maxNotaryServers), Reason: "bad_request"}
	}
	var out []notaryQuery
	for server, keys := range req.ServerKeys {
		if !servername.Valid(server) {
			continue
		}
		q := notaryQuery{server: server, minValidUntil: now}
		for _, k := range keys {
			if k.MinimumValidUntilTS != nil {
				if t := time.UnixMilli(*k.MinimumValidUntilTS); t.After(q.minValidUntil) {
					q.minValidUntil = t
				}
			}
		}
		out = append(out, q)
	}
	return out, nil
}

// notaryDocuments looks the queries up, several at a time, and returns
// each document with our notary signature. Servers we cannot answer for
// are left out, as the spec asks.
func (g *Gateway) notaryDocuments(in *inbound, queries []notaryQuery) [][]byte {
	results := make([][][]byte, len(queries))
	sem := make(chan struct{}, notaryParallel)
	var wg sync.WaitGroup
	for i, q := range queries {
		if hs := in.rt.hostedByName(q.server); hs != nil {
			results[i] = g.hostedDocument(in, hs)
			continue
		}
		if !in.hs.cfg.Keys.Notary {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = g.notaryLookup(in, q)
		}()
	}
	wg.Wait()
	var out [][]byte
	for _, r := range results {
		out = append(out, r...)
	}
	return out
}

func (g *Gateway) notaryLookup(in *inbound, q notaryQuery) [][]byte {
	held, err := g.keyring.ServerKeysFor(in.r.Context(), q.server, q.minValidUntil)
	if err != nil && len(held) == 0 {
		return nil
	}
	var out [][]byte
	for _, sk := range held {
		// sk.Raw is what the origin (and any notary before us) signed: a
		// document taken from the cluster's shared store lost its seal
		// when the keyring opened it (keySeal.Open).
		signed, err := auth.AddSignature(sk.Raw, in.hs.name, in.hs.keys.request)
		if err != nil {
			continue
		}
		out = append(out, signed)
	}
	return out
}

// hostedDocument answers a notary query for a server hosted here from
// memory: its own document as is, another hosted server's with the
// answering server's notary signature added.
func (g *Gateway) hostedDocument(in *inbound, hs *hostedServer) [][]byte {
	doc, err := hs.keys.doc.get(time.Now())
	if err != nil {
		return nil
	}
	if hs == in.hs {
		return [][]byte{doc.body}
	}
	signed, err := auth.AddSignature(doc.body, in.hs.name, in.hs.keys.request)
	if err != nil {
		return nil
	}
	return [][]byte{signed}
}

// queryValue returns the first value of key in a raw query, unescaped.
func queryValue(rawQuery, key string) string {
	v, _ := url.ParseQuery(rawQuery) // keeps what parsed before a bad pair
	return v.Get(key)
}

func writeJSON(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

package gateway

import (
	"net/http"
	"strings"

	"github.com/fedgate/fedgate/internal/endpoints"
)

// serveFederation is the handler of the federation and https listeners.
func (g *Gateway) serveFederation(w http.ResponseWriter, r *http.Request) {
	rt := g.rt.Load()
	path := rawPath(r)
	m, res := g.router.Lookup(r.Method, path)
	switch res {
	case endpoints.NotFound:
		writeError(w, &Error{Status: http.StatusNotFound, Code: CodeUnrecognized, Msg: "Unrecognized request", Reason: "unknown_endpoint"})
		return
	case endpoints.MethodNotAllowed:
		writeError(w, &Error{Status: http.StatusMethodNotAllowed, Code: CodeUnrecognized, Msg: "Method not allowed",
			Reason: "method_not_allowed", Allow: strings.Join(g.router.Allowed(path), ", ")})
		return
	}
	switch m.Endpoint.Name {
	case "well_known":
		g.serveWellKnown(w, rt)
		return
	}
	writeError(w, &Error{Status: http.StatusNotFound, Code: CodeUnrecognized, Msg: "Unrecognized request", Reason: "unknown_endpoint"})
}

// rawPath returns the path part of the request-target exactly as received.
func rawPath(r *http.Request) string {
	uri := r.RequestURI
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	return uri
}

func (g *Gateway) serveWellKnown(w http.ResponseWriter, rt *runtime) {
	server := rt.cfg.WellKnown.Server
	if server == "" {
		writeError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Msg: "No well-known delegation configured", Reason: "no_well_known"})
		return
	}
	body := appendJSONString([]byte(`{"m.server":`), server)
	body = append(body, '}')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=86400")
	w.Write(body)
}

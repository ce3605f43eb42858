package fedtest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Request is what the recording homeserver saw of one request.
type Request struct {
	Method     string
	RequestURI string // exactly as on the wire
	Host       string
	Header     http.Header
	Body       []byte
	Proto      string
}

// Homeserver is a plain-HTTP server standing in for Synapse or Dendrite
// behind fedgate. It records every request and answers with Handler, or
// with 200 {} when Handler is nil.
type Homeserver struct {
	*httptest.Server

	mu       sync.Mutex
	requests []Request
	handler  http.HandlerFunc
}

// StartHomeserver starts a recording homeserver on 127.0.0.1.
func StartHomeserver(t testing.TB) *Homeserver {
	t.Helper()
	h := &Homeserver{}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

// Handle sets the handler that answers requests (after they are recorded).
func (h *Homeserver) Handle(f http.HandlerFunc) {
	h.mu.Lock()
	h.handler = f
	h.mu.Unlock()
}

// Requests returns what arrived so far.
func (h *Homeserver) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Request(nil), h.requests...)
}

// Reset forgets recorded requests.
func (h *Homeserver) Reset() {
	h.mu.Lock()
	h.requests = nil
	h.mu.Unlock()
}

func (h *Homeserver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.requests = append(h.requests, Request{
		Method: r.Method, RequestURI: r.RequestURI, Host: r.Host,
		Header: r.Header.Clone(), Body: body, Proto: r.Proto,
	})
	handler := h.handler
	h.mu.Unlock()
	if handler != nil {
		handler(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("{}"))
}

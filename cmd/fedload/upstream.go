package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// mediaSize is the size of the file the upstream serves for media GETs.
const mediaSize = 16 << 10

// upstream is the minimal homeserver every proxy under test forwards to.
// It answers each federation endpoint fedload uses with a small fixed
// body, reading request bodies completely, and serves stand-ins for the
// key document and well-known (which fedgate answers itself but plain
// proxies forward).
type upstream struct {
	addr string
	srv  *http.Server
}

func startUpstream(keyDoc []byte) (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	media := []byte(strings.Repeat("m", mediaSize))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, "/_matrix/federation/v1/send/"):
			writeJSON(w, []byte(`{"pdus":{}}`))
		case strings.HasPrefix(p, "/_matrix/federation/v1/query/profile"):
			writeJSON(w, []byte(`{"displayname":"Load Test","avatar_url":"mxc://fedload.test/a"}`))
		case strings.HasPrefix(p, "/_matrix/federation/v1/media/download/"):
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(media)
		case p == "/_matrix/key/v2/server":
			writeJSON(w, keyDoc)
		case p == "/.well-known/matrix/server":
			writeJSON(w, []byte(`{"m.server":"fedload.test:443"}`))
		default:
			http.NotFound(w, r)
		}
	})
	u := &upstream{addr: ln.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}}
	go func() {
		if err := u.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Printf("fedload: upstream stopped: %v\n", err)
		}
	}()
	return u, nil
}

func writeJSON(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (u *upstream) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u.srv.Shutdown(ctx)
}

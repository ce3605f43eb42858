package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/internal/fedtest"
)

// origin is one simulated remote homeserver: a server name, a signing key,
// and a key server on loopback TLS publishing it.
type origin struct {
	name    string
	key     auth.SigningKey
	addr    string // the key server's "127.0.0.1:port"
	srv     *http.Server
	fetches atomic.Int64
}

// startOrigins starts n key servers named o<i>.<domain>.
func startOrigins(ca *fedtest.CA, n int, domain string) ([]*origin, error) {
	var out []*origin
	for i := range n {
		o, err := startOrigin(ca, fmt.Sprintf("o%d.%s", i, domain))
		if err != nil {
			stopOrigins(out)
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func startOrigin(ca *fedtest.CA, name string) (*origin, error) {
	key, err := auth.GenerateSigningKey("load")
	if err != nil {
		return nil, err
	}
	doc, err := auth.BuildKeyDocument(name, []auth.SigningKey{key}, nil, time.Now().Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	cert, err := ca.Leaf(time.Now().Add(-time.Hour), ca.Cert.NotAfter, name)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("origin %s: %w", name, err)
	}
	o := &origin{name: name, key: key, addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_matrix/key/v2/server", func(w http.ResponseWriter, r *http.Request) {
		o.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	})
	o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() {
		if err := o.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Printf("fedload: origin %s stopped: %v\n", name, err)
		}
	}()
	return o, nil
}

func stopOrigins(os []*origin) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, o := range os {
		o.srv.Shutdown(ctx)
	}
}

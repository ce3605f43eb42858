package certs_test

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/fedgate/fedgate/certs"
)

// Example shows what cmd/fedgate wires: one Manager for the process, its
// TLS configuration on every TLS listener and its handler wrapper on the
// plain-HTTP listener.
func Example() {
	dataDir, err := os.MkdirTemp("", "fedgate-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dataDir)

	m, err := certs.New(certs.Options{Mode: certs.ModeSelfSigned, DataDir: dataDir})
	if err != nil {
		panic(err)
	}
	if err := m.Start(context.Background()); err != nil {
		panic(err)
	}
	defer m.Stop()

	federation := &http.Server{Addr: "127.0.0.1:8448", TLSConfig: m.TLSConfig()}
	plain := &http.Server{Addr: "127.0.0.1:8080", Handler: m.HTTPHandler(http.NotFoundHandler())}
	_, _ = federation, plain // ListenAndServeTLS("", "") and ListenAndServe in a real program

	ok, _ := m.Ready()
	st := m.Status()[0]
	fmt.Println(st.Source, st.Subjects, ok)
	// Output: self_signed [localhost 127.0.0.1 ::1] true
}

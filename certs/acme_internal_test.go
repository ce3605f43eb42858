package certs

import (
	"context"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestACMEWaitsForChallengeListeners pins the startup order: certmagic
// must not order (and so bind the challenge ports itself) before fedgate's
// listeners accept connections.
func TestACMEWaitsForChallengeListeners(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // not listening yet

	a := &acmeSource{opts: Options{HTTPChallengeAddr: addr}, log: zap.NewNop()}
	done := make(chan struct{})
	go func() {
		a.waitForListeners(t.Context(), time.Minute)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("returned before the listener was bound")
	default:
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s was taken meanwhile: %v", addr, err)
	}
	defer ln.Close()
	<-done

	// A cancelled context ends the wait too.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b := &acmeSource{opts: Options{TLSALPNChallengeAddr: "127.0.0.1:1"}, log: zap.NewNop()}
	b.waitForListeners(ctx, time.Minute)
}

func TestAcceptingWildcardHosts(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, addr := range []string{"127.0.0.1:" + port, ":" + port, "0.0.0.0:" + port} {
		if !accepting(t.Context(), addr) {
			t.Errorf("%s not seen as accepting", addr)
		}
	}
	if accepting(t.Context(), "not an address") {
		t.Error("bad address seen as accepting")
	}
}

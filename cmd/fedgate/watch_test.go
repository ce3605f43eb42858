package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWatchFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.toml")
	os.WriteFile(path, []byte("a = 1\n"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan struct{}, 1)
	go watchFile(ctx, path, 10*time.Millisecond, changed)
	// Rewriting the same content is not a change. (Rewritten by rename: an
	// in-place rewrite can be read half-written, which is a change.)
	time.Sleep(30 * time.Millisecond)
	os.WriteFile(path+".same", []byte("a = 1\n"), 0o600)
	os.Rename(path+".same", path)
	select {
	case <-changed:
		t.Fatal("same content reported as a change")
	case <-time.After(100 * time.Millisecond):
	}
	// Replacing the file by rename, as editors and config management do.
	tmp := path + ".new"
	os.WriteFile(tmp, []byte("a = 2\n"), 0o600)
	os.Rename(tmp, path)
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("change not noticed")
	}
}

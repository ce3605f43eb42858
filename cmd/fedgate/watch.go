package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"time"
)

// configPollInterval is how often the configuration file is checked for
// changes (SIGHUP reloads at once).
const configPollInterval = 2 * time.Second

// watchFile signals on changed whenever the content of path changes. It
// polls: inotify does not see edits through some editors' rename dance or
// through configuration-management symlink swaps, a stat every few seconds
// always does. A file that cannot be read is ignored until it can.
func watchFile(ctx context.Context, path string, every time.Duration, changed chan<- struct{}) {
	last := fileDigest(path)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d := fileDigest(path)
		if d == nil || bytes.Equal(d, last) {
			continue
		}
		last = d
		select {
		case changed <- struct{}{}:
		default: // a reload is already pending
		}
	}
}

func fileDigest(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(data)
	return sum[:]
}

package fedtest

import (
	"bytes"
	"strings"
	"sync"
)

// SyncBuffer collects output that a logger, a flushing goroutine or a
// child process writes while a test reads it: a bytes.Buffer whose
// methods take a lock. The zero value is ready to use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Lines returns the lines written so far, without their newlines and
// without a trailing empty one; nil when nothing was written.
func (s *SyncBuffer) Lines() []string {
	text := strings.TrimSuffix(s.String(), "\n")
	if text == "" {
		return nil
	}
	return strings.Split(text, "\n")
}

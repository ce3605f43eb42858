package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/gateway"
)

// newLogger builds the process logger from [log]: JSON or console lines on
// w, at the configured level, in the encoding every fedgate log shares
// (gateway.LogEncoder). Sampling keeps a flood of identical messages
// (remote junk) from swamping the log, except for the access log: it
// promises one line per request, so its lines are never sampled. With
// log.access_buffer the access lines are collected and written together
// at least once a second; stop writes what is still collected and ends
// that, and must be called once the logger is no longer used.
func newLogger(c config.Log, w io.Writer) (log *zap.Logger, stop func(), err error) {
	var level zapcore.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, nil, fmt.Errorf("log level: %w", err)
	}
	out := zapcore.Lock(zapcore.AddSync(w))
	core := zapcore.NewCore(gateway.LogEncoder(c.Format), out, level)
	// The access log is written at info level even when log.level is
	// higher: log.access is its own switch. Its buffer writes through the
	// same lock as every other line, so no write of one splits a line of
	// the other.
	accessOut, stop := out, func() {}
	if c.AccessBuffer > 0 {
		buffered := &zapcore.BufferedWriteSyncer{WS: out, Size: int(c.AccessBuffer), FlushInterval: time.Second}
		accessOut, stop = buffered, func() { _ = buffered.Stop() }
	}
	access := zapcore.NewCore(gateway.LogEncoder(c.Format), accessOut, zapcore.InfoLevel)
	return zap.New(&splitCore{
		Core:    zapcore.NewSamplerWithOptions(core, time.Second, 100, 100),
		exempt:  access,
		loggers: []string{"access"},
	}, zap.ErrorOutput(out)), stop, nil
}

// splitCore samples every entry except those of the named loggers, which go
// to exempt unsampled.
type splitCore struct {
	zapcore.Core              // sampled
	exempt       zapcore.Core // unsampled, for the loggers below
	loggers      []string     // logger names (or their last component)
}

func (s *splitCore) isExempt(name string) bool {
	for _, l := range s.loggers {
		if name == l || strings.HasSuffix(name, "."+l) {
			return true
		}
	}
	return false
}

// Enabled reports whether either core logs at l.
func (s *splitCore) Enabled(l zapcore.Level) bool {
	return s.Core.Enabled(l) || s.exempt.Enabled(l)
}

// With adds fields to both cores.
func (s *splitCore) With(fields []zapcore.Field) zapcore.Core {
	return &splitCore{Core: s.Core.With(fields), exempt: s.exempt.With(fields), loggers: s.loggers}
}

// Check routes the entry by its logger's name.
func (s *splitCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if s.isExempt(e.LoggerName) {
		return s.exempt.Check(e, ce)
	}
	return s.Core.Check(e, ce)
}

// Sync flushes both cores.
func (s *splitCore) Sync() error {
	err := s.Core.Sync()
	if e := s.exempt.Sync(); err == nil {
		err = e
	}
	return err
}

package gateway

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fedgate/fedgate/config"
)

// The decision log (log.decisions) holds one line per refused request and
// per request dry_run would have refused, with the same fields as the
// access log: an audit trail of policy that stays short enough to keep. It
// goes to "stderr", "stdout" or a file; a file is reopened on every reload
// (SIGHUP), so logrotate can move it away and signal fedgate. Routing
// misses (404 for paths outside the endpoint table) are scanner noise, not
// decisions, and stay in the access log only. Rate-limit refusals are
// sampled beyond 100 lines per second and limiter (then one in 100): a
// flood must not fill the disk; the metrics count every one.

// decisionLogMode is the file mode of a decision log fedgate creates.
const decisionLogMode = 0o600

// LogEncoder returns the encoder every fedgate log line is written with,
// for log.format "json" (the default for any other value) or "console":
// ISO 8601 times under "ts", durations as strings ("1.5ms").
func LogEncoder(format string) zapcore.Encoder {
	cfg := zap.NewProductionEncoderConfig()
	cfg.TimeKey = "ts"
	cfg.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.EncodeDuration = zapcore.StringDurationEncoder
	if format == "console" {
		cfg.EncodeLevel = zapcore.CapitalLevelEncoder
		return zapcore.NewConsoleEncoder(cfg)
	}
	return zapcore.NewJSONEncoder(cfg)
}

// decisionLog is an open decision log. Its loggers are safe for
// concurrent use; reopen and close are serialised by the Gateway's reload.
type decisionLog struct {
	dest, format string
	file         *reopenFile // nil for stdout and stderr
	log          *zap.Logger // denials, every one
	limited      *zap.Logger // rate-limit refusals, sampled
}

// openDecisionLog opens log.decisions; nil when it is off. Write errors
// are counted in errs.
func openDecisionLog(c config.Log, errs *atomic.Uint64) (*decisionLog, error) {
	d := &decisionLog{dest: c.Decisions, format: c.Format}
	var ws zapcore.WriteSyncer
	switch c.Decisions {
	case "":
		return nil, nil
	case "stderr":
		ws = zapcore.Lock(zapcore.AddSync(&countingWriter{w: os.Stderr, errs: errs}))
	case "stdout":
		ws = zapcore.Lock(zapcore.AddSync(&countingWriter{w: os.Stdout, errs: errs}))
	default:
		f, err := openReopenFile(c.Decisions, errs)
		if err != nil {
			return nil, err
		}
		d.file, ws = f, f
	}
	core := zapcore.NewCore(LogEncoder(c.Format), ws, zap.InfoLevel)
	d.log = zap.New(core).Named("decisions")
	d.limited = zap.New(zapcore.NewSamplerWithOptions(core, time.Second, 100, 100)).Named("decisions")
	return d, nil
}

// same reports whether d already writes where c asks, in c's format.
func (d *decisionLog) same(c config.Log) bool {
	return d != nil && d.dest == c.Decisions && d.format == c.Format
}

// reopen reopens a file destination (after rotation); stdout and stderr
// need nothing.
func (d *decisionLog) reopen() error {
	if d == nil || d.file == nil {
		return nil
	}
	return d.file.reopen()
}

// close flushes and closes the destination.
func (d *decisionLog) close() error {
	if d == nil {
		return nil
	}
	d.log.Sync()
	if d.file != nil {
		return d.file.close()
	}
	return nil
}

// reopenFile is an append-only log file that can be reopened under the
// same name while writers use it.
type reopenFile struct {
	path string
	errs *atomic.Uint64

	mu sync.Mutex
	f  *os.File
}

func openReopenFile(path string, errs *atomic.Uint64) (*reopenFile, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &reopenFile{path: path, errs: errs, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the decision log's folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, decisionLogMode)
	if err != nil {
		return nil, fmt.Errorf("opening the decision log: %w", err)
	}
	return f, nil
}

// Write appends one encoded line.
func (r *reopenFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		r.errs.Add(1)
		return 0, errors.New("decision log closed")
	}
	n, err := r.f.Write(p)
	if err != nil {
		r.errs.Add(1)
	}
	return n, err
}

// Sync flushes the file to disk.
func (r *reopenFile) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	return r.f.Sync()
}

// reopen opens the path again and swaps it in; on error the old file stays.
func (r *reopenFile) reopen() error {
	f, err := openAppend(r.path)
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

func (r *reopenFile) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// countingWriter counts failed writes to stdout or stderr.
type countingWriter struct {
	w    io.Writer
	errs *atomic.Uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		c.errs.Add(1)
	}
	return n, err
}

// prepareDecisionLog opens the decision log c asks for, without
// installing it: nil and keep = true when the current log already writes
// there (commit reopens it), nil and keep = false when the log is off.
func (g *Gateway) prepareDecisionLog(c *config.Config) (next *decisionLog, keep bool, err error) {
	if g.decisions.Load().same(c.Log) {
		return nil, true, nil
	}
	next, err = openDecisionLog(c.Log, &g.decisionErrors)
	if err != nil {
		return nil, false, c.Errorf("log.decisions", "%v", err)
	}
	return next, false, nil
}

// commitDecisionLog installs what prepareDecisionLog returned: with keep,
// the current file is reopened in place (log rotation); otherwise next
// replaces it and the old one is closed.
func (g *Gateway) commitDecisionLog(next *decisionLog, keep bool) {
	g.decisionsMu.Lock()
	defer g.decisionsMu.Unlock()
	if keep {
		if err := g.decisions.Load().reopen(); err != nil {
			g.log.Error("reopening the decision log failed; still writing to the previous file", zap.Error(err))
		}
		return
	}
	if err := g.decisions.Swap(next).close(); err != nil {
		g.log.Warn("closing the previous decision log", zap.Error(err))
	}
}

// closeDecisionLog closes the decision log at shutdown.
func (g *Gateway) closeDecisionLog() {
	g.decisionsMu.Lock()
	defer g.decisionsMu.Unlock()
	if err := g.decisions.Swap(nil).close(); err != nil {
		g.log.Warn("closing the decision log", zap.Error(err))
	}
}

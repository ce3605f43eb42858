package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/internal/fsutil"
)

// fileSource serves the certificate and key of files mode and replaces
// them when the files change. Handshakes read the current pair through an
// atomic pointer; reloads are serialised by mu.
type fileSource struct {
	certFile, keyFile string
	names             []string
	now               func() time.Time
	log               *zap.Logger

	current atomic.Pointer[tls.Certificate]

	mu          sync.Mutex
	servedHash  pairHash  // contents of the pair being served
	refusedHash pairHash  // contents of the last refused pair, to log it once
	refused     bool      // refusedHash is set
	lastErr     error     // why the last replacement was refused; nil after a success
	lastErrTime time.Time // when lastErr happened
}

func newFileSource(o *Options) *fileSource {
	return &fileSource{
		certFile: o.CertFile,
		keyFile:  o.KeyFile,
		names:    o.Names,
		now:      o.Now,
		log:      o.Logger,
	}
}

// loadInitial reads the pair at startup. A pair that cannot be used at all
// is an error; an expired one is served with an error logged, since
// refusing to start would not make the certificate valid either.
func (f *fileSource) loadInitial() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	certPEM, keyPEM, err := f.read()
	if err != nil {
		return err
	}
	cert, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("loading %s and %s: %w", f.certFile, f.keyFile, err)
	}
	if err := validityError(cert.Leaf, f.now()); err != nil {
		f.log.Error("serving a certificate that is not valid now; replace it (fedgate picks up new files by itself)",
			zap.String("cert_file", f.certFile), zap.Error(err))
	}
	f.install(cert, hashPair(certPEM, keyPEM))
	return nil
}

// reload re-reads the files and serves the pair they hold if it changed
// and is usable. A pair that cannot be read, does not match, or is not
// valid now is refused and the served pair stays; the error says why.
// With logRefusal, a refusal is logged once per distinct file contents.
func (f *fileSource) reload(logRefusal bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	certPEM, keyPEM, err := f.read()
	if err != nil {
		return f.refuse(pairHash{}, err, logRefusal)
	}
	h := hashPair(certPEM, keyPEM)
	if h == f.servedHash {
		f.lastErr, f.refused = nil, false // back to the served pair
		return nil
	}
	if f.refused && h == f.refusedHash {
		return f.lastErr
	}
	cert, err := parsePair(certPEM, keyPEM)
	if err == nil {
		err = validityError(cert.Leaf, f.now())
	}
	if err != nil {
		return f.refuse(h, fmt.Errorf("refusing the new certificate pair in %s and %s, the old one stays: %w", f.certFile, f.keyFile, err), logRefusal)
	}
	f.install(cert, h)
	f.lastErr = nil
	f.refused = false
	return nil
}

// refuse records why a replacement was refused. Callers hold mu.
func (f *fileSource) refuse(h pairHash, err error, log bool) error {
	repeat := f.lastErr != nil && f.lastErr.Error() == err.Error()
	f.lastErr, f.lastErrTime = err, f.now()
	f.refusedHash, f.refused = h, h != pairHash{}
	if log && !repeat {
		f.log.Warn("certificate files changed but cannot be used; still serving the previous certificate", zap.Error(err))
	}
	return err
}

// install serves cert from now on. Callers hold mu.
func (f *fileSource) install(cert *tls.Certificate, h pairHash) {
	f.current.Store(cert)
	f.servedHash = h
	leaf := cert.Leaf
	fields := []zap.Field{
		zap.String("cert_file", f.certFile),
		zap.Strings("subjects", subjects(leaf)),
		zap.String("issuer", leaf.Issuer.CommonName),
		zap.Time("not_after", leaf.NotAfter),
	}
	f.log.Info("serving certificate from files", fields...)
	if missing := missingNames(leaf, f.names); len(missing) > 0 {
		f.log.Warn("certificate does not cover every configured name; remote servers checking those names will refuse it",
			zap.String("cert_file", f.certFile), zap.Strings("missing", missing))
	}
}

// read returns the contents of both files.
func (f *fileSource) read() (certPEM, keyPEM []byte, err error) {
	certPEM, err = fsutil.ReadFileLimited(f.certFile, maxPEMFileSize)
	if err != nil {
		return nil, nil, fmt.Errorf("reading certificate file: %w", err)
	}
	keyPEM, err = fsutil.ReadFileLimited(f.keyFile, maxPEMFileSize)
	if err != nil {
		return nil, nil, fmt.Errorf("reading key file: %w", err)
	}
	return certPEM, keyPEM, nil
}

// watch polls the files every interval until ctx ends. Reading and hashing
// a few kilobytes is cheaper and more reliable than trusting modification
// times, which have coarse granularity and do not change when a symlink is
// swapped (Kubernetes secrets, certbot's live/ folder) on some systems.
func (f *fileSource) watch(ctx context.Context, interval time.Duration, done func()) {
	defer done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.reload(true)
		}
	}
}

// getCertificate serves the current pair whatever the SNI name.
func (f *fileSource) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.current.Load(), nil
}

// status describes the served pair.
func (f *fileSource) status() CertStatus {
	s := CertStatus{Source: ModeFiles, Location: f.certFile}
	if len(f.names) > 0 {
		s.Name = f.names[0]
	}
	if c := f.current.Load(); c != nil {
		statusFromLeaf(&s, c.Leaf)
	}
	f.mu.Lock()
	if f.lastErr != nil {
		s.LastError, s.LastErrorTime = f.lastErr.Error(), f.lastErrTime
	}
	f.mu.Unlock()
	return s
}

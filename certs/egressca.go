package certs

import (
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/internal/fsutil"
)

// Egress CA files inside [EgressCAOptions].Dir.
const (
	EgressCACertFile = "ca.pem"
	EgressCAKeyFile  = "ca.key"
)

const (
	// egressCAValidity is the lifetime of a newly created egress CA.
	egressCAValidity = 10 * 365 * 24 * time.Hour
	// egressCAWarnBefore warns at load when the CA expires within this.
	egressCAWarnBefore = 90 * 24 * time.Hour
	// DefaultEgressLeafValidity is the lifetime of minted leaf certificates
	// when [EgressCAOptions].LeafValidity is zero.
	DefaultEgressLeafValidity = 24 * time.Hour
	// DefaultEgressCacheSize is how many leaf certificates are kept when
	// [EgressCAOptions].CacheSize is zero.
	DefaultEgressCacheSize = 4096
	// leafBackdate covers clocks that run a little behind ours.
	leafBackdate = time.Hour
)

// EgressCAOptions configures [NewEgressCA].
type EgressCAOptions struct {
	// Dir holds the CA (EgressCACertFile, EgressCAKeyFile); it is created
	// with mode 0700 when missing. Required.
	Dir string
	// Logger receives creation and load messages; nil discards them.
	Logger *zap.Logger
	// Now is the clock for validity checks and minted certificates; nil
	// means time.Now.
	Now func() time.Time
	// LeafValidity is the lifetime of minted leaf certificates; zero means
	// DefaultEgressLeafValidity. A leaf is replaced once less than a third
	// of it remains.
	LeafValidity time.Duration
	// CacheSize bounds the leaf cache (least recently used entries go
	// first); zero means DefaultEgressCacheSize.
	CacheSize int
}

// EgressCA is the certificate authority fedgate's egress uses to
// intercept the homeserver's outbound TLS: the homeserver trusts the CA,
// and the egress answers each intercepted connection with a leaf minted
// for the requested name. Leaves are ECDSA P-256, short-lived, kept in a
// bounded cache and refreshed before they expire; concurrent requests for
// the same name share one mint. An EgressCA is safe for concurrent use.
type EgressCA struct {
	cert     *x509.Certificate
	certPEM  []byte
	certPath string
	key      *ecdsa.PrivateKey
	now      func() time.Time
	validity time.Duration
	limit    int

	mu       sync.Mutex
	leaves   map[string]*list.Element // name -> element holding *leafEntry
	lru      *list.List               // front = most recently used
	inflight map[string]*mintCall
	minted   uint64 // leaves minted so far
}

// leafEntry is one cached leaf.
type leafEntry struct {
	name      string
	cert      *tls.Certificate
	refreshAt time.Time
}

// mintCall is a mint in progress that other callers wait for.
type mintCall struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

// LoadOrCreateEgressCA loads the egress CA from dir, or creates one there
// on first start (key 0600, certificate 0644). A half-present, unreadable,
// mismatched or expired pair is refused with an error saying what to do;
// it is never replaced silently, because homeservers trust the existing
// CA. logger may be nil.
func LoadOrCreateEgressCA(dir string, logger *zap.Logger) (*EgressCA, error) {
	return NewEgressCA(EgressCAOptions{Dir: dir, Logger: logger})
}

// NewEgressCA is [LoadOrCreateEgressCA] with every option.
func NewEgressCA(o EgressCAOptions) (*EgressCA, error) {
	if o.Dir == "" {
		return nil, errors.New("egress CA: no folder")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LeafValidity <= 0 {
		o.LeafValidity = DefaultEgressLeafValidity
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultEgressCacheSize
	}
	log := o.Logger.Named("certs").With(zap.String("egress_ca_dir", o.Dir))
	certPath, keyPath := filepath.Join(o.Dir, EgressCACertFile), filepath.Join(o.Dir, EgressCAKeyFile)
	certPEM, keyPEM, err := readCAFiles(certPath, keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		certPEM, keyPEM, err = createEgressCA(o.Dir, certPath, keyPath, o.Now())
		if err != nil {
			return nil, fmt.Errorf("creating egress CA: %w", err)
		}
		log.Info("created the egress CA; homeservers whose traffic is intercepted must trust its certificate",
			zap.String("cert_file", certPath))
	} else if err != nil {
		return nil, err
	}
	ca := &EgressCA{
		certPEM:  certPEM,
		certPath: certPath,
		now:      o.Now,
		validity: o.LeafValidity,
		limit:    o.CacheSize,
		leaves:   map[string]*list.Element{},
		lru:      list.New(),
		inflight: map[string]*mintCall{},
	}
	if err := ca.parse(certPEM, keyPEM, certPath, keyPath); err != nil {
		return nil, err
	}
	if st, err := os.Stat(keyPath); err == nil && st.Mode().Perm()&0o077 != 0 {
		log.Warn("egress CA key is readable by other users; it can mint certificates the homeserver trusts",
			zap.String("key_file", keyPath), zap.String("mode", st.Mode().Perm().String()))
	}
	if left := ca.cert.NotAfter.Sub(o.Now()); left < egressCAWarnBefore {
		log.Warn("egress CA expires soon; create a new one and have homeservers trust it",
			zap.Time("not_after", ca.cert.NotAfter))
	}
	log.Info("egress CA loaded", zap.String("subject", ca.cert.Subject.CommonName), zap.Time("not_after", ca.cert.NotAfter))
	return ca, nil
}

// readCAFiles reads both files. It returns fs.ErrNotExist only when both
// are missing; one without the other is an error of its own.
func readCAFiles(certPath, keyPath string) (certPEM, keyPEM []byte, err error) {
	certPEM, certErr := fsutil.ReadFileLimited(certPath, maxPEMFileSize)
	keyPEM, keyErr := fsutil.ReadFileLimited(keyPath, maxPEMFileSize)
	certMissing, keyMissing := errors.Is(certErr, fs.ErrNotExist), errors.Is(keyErr, fs.ErrNotExist)
	switch {
	case certMissing && keyMissing:
		return nil, nil, fs.ErrNotExist
	case certMissing || keyMissing:
		have, missing := keyPath, certPath
		if keyMissing {
			have, missing = certPath, keyPath
		}
		return nil, nil, fmt.Errorf("egress CA is incomplete: %s exists but %s does not; restore the missing file, or remove %s to create a new CA (homeservers must then trust the new certificate)",
			have, missing, have)
	case certErr != nil:
		return nil, nil, fmt.Errorf("reading egress CA certificate: %w", certErr)
	case keyErr != nil:
		return nil, nil, fmt.Errorf("reading egress CA key: %w", keyErr)
	}
	return certPEM, keyPEM, nil
}

// parse checks the loaded pair and fills ca.cert and ca.key.
func (ca *EgressCA) parse(certPEM, keyPEM []byte, certPath, keyPath string) error {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("egress CA in %s and %s is unusable (remove both to create a new one): %w", certPath, keyPath, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return fmt.Errorf("egress CA key %s is a %T, not an ECDSA key", keyPath, pair.PrivateKey)
	}
	leaf := pair.Leaf
	if !leaf.IsCA || !leaf.BasicConstraintsValid || leaf.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("egress CA certificate %s is not a CA certificate", certPath)
	}
	if err := validityError(leaf, ca.now()); err != nil {
		return fmt.Errorf("egress CA %s: %w; remove %s and %s to create a new CA (homeservers must then trust it)", certPath, err, certPath, keyPath)
	}
	ca.cert, ca.key = leaf, key
	return nil
}

// createEgressCA makes a new CA and writes it to dir: the key first, so a
// crash between the two writes leaves a state readCAFiles reports clearly.
func createEgressCA(dir, certPath, keyPath string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		return nil, nil, fmt.Errorf("generating CA name: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "fedgate egress CA " + hex.EncodeToString(id),
			Organization: []string{"fedgate"},
		},
		NotBefore:             now.Add(-leafBackdate),
		NotAfter:              now.Add(egressCAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing CA certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	if err := fsutil.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, nil, fmt.Errorf("writing key: %w", err)
	}
	if err := fsutil.WriteFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, nil, fmt.Errorf("writing certificate: %w", err)
	}
	return certPEM, keyPEM, nil
}

// CertPEM returns the CA certificate in PEM form, for homeservers to
// trust. The slice is a copy.
func (ca *EgressCA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// CertPath returns the path of the CA certificate file.
func (ca *EgressCA) CertPath() string { return ca.certPath }

// Certificate returns the parsed CA certificate. It must not be modified.
func (ca *EgressCA) Certificate() *x509.Certificate { return ca.cert }

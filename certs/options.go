package certs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Modes, matching the [tls] mode values of the configuration.
const (
	ModeACME       = "acme"
	ModeFiles      = "files"
	ModeSelfSigned = "self_signed"
)

// ACME directory shorthands accepted in [Options].CA.
const (
	CALetsEncrypt        = "letsencrypt"
	CALetsEncryptStaging = "letsencrypt-staging"
)

// DefaultPollInterval is how often files mode checks the certificate and
// key files for changes when [Options].PollInterval is zero.
const DefaultPollInterval = 5 * time.Second

// maxPEMFileSize bounds what files mode reads from cert_file and key_file;
// a real chain with its key is a few kilobytes.
const maxPEMFileSize = 1 << 20

// Options configures a [Manager]. The zero value is not valid: Mode is
// required, and each mode needs its own fields (see below). Options are
// copied by [New]; changing them afterwards has no effect.
type Options struct {
	// Mode is ModeACME, ModeFiles or ModeSelfSigned.
	Mode string
	// Names are the names the certificate must cover. acme: DNS names, one
	// certificate each (required). self_signed: DNS names and IP addresses
	// (default localhost, 127.0.0.1, ::1). files: optional; when set, a
	// certificate that does not cover every name is served with a warning.
	// The first name also answers TLS handshakes without SNI or with an
	// unknown SNI name.
	Names []string
	// Logger receives certificate events; nil discards them.
	Logger *zap.Logger
	// Now is the clock used for validity checks, status and generated
	// certificates; nil means time.Now. certmagic keeps its own clock.
	Now func() time.Time

	// DataDir is the folder self_signed mode keeps its certificate in
	// (DataDir/selfsigned/). Required for self_signed.
	DataDir string

	// CertFile and KeyFile are the PEM files of files mode: the leaf
	// certificate followed by its intermediates, and the private key
	// (PKCS#1, PKCS#8 or SEC 1). Required for files.
	CertFile, KeyFile string
	// PollInterval is how often files mode re-reads CertFile and KeyFile
	// to pick up a replaced pair. Zero means DefaultPollInterval; a
	// negative value disables polling ([Manager.Reload] still works).
	PollInterval time.Duration

	// Email is the ACME account's contact address; empty registers an
	// account without contact (the CA cannot warn about expiry then).
	Email string
	// CA is the ACME directory: CALetsEncrypt (also when empty),
	// CALetsEncryptStaging, or a directory URL (https, or http for a CA on
	// an internal address).
	CA string
	// CARoot is a PEM file of root certificates that replace the system
	// roots when talking to the ACME CA (step-ca, Pebble). Empty means the
	// system roots.
	CARoot string
	// Storage is the folder where certmagic keeps the ACME account,
	// certificates, keys and OCSP staples, and the locks that let several
	// fedgate instances share it. Required for acme.
	Storage string
	// SharedStorage, when set, replaces the Storage folder: certmagic keeps
	// the account, certificates, keys and locks there instead. Cluster
	// mode sets it to the Redis storage (cluster.CertStorage), so that the
	// instances obtain one certificate per name and all serve it; its
	// Locker should use fencing tokens. Only used in acme mode.
	SharedStorage certmagic.Storage
	// HTTPChallengeAddr is the address of the plain-HTTP listener whose
	// handler is wrapped by [Manager.HTTPHandler], e.g. "[::]:80". It
	// enables the HTTP-01 challenge; the CA connects to port 80 of each
	// name, so the listener must be reachable there. Empty disables HTTP-01.
	HTTPChallengeAddr string
	// TLSALPNChallengeAddr is the address of a TLS listener that uses
	// [Manager.TLSConfig], e.g. "[::]:443". It enables the TLS-ALPN-01
	// challenge; the CA connects to port 443 of each name. Empty disables
	// TLS-ALPN-01. At least one challenge must be enabled in acme mode.
	TLSALPNChallengeAddr string
	// RenewalWindowRatio is the fraction of a certificate's lifetime,
	// counted back from its expiry, in which it is renewed. Zero means
	// certmagic's default (one third).
	RenewalWindowRatio float64
	// RenewCheckInterval is how often managed certificates are checked for
	// renewal. Zero means certmagic's default (10 minutes).
	RenewCheckInterval time.Duration
}

// validate checks o for its mode and fills in defaults. It does no I/O.
func (o *Options) validate() error {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	o.Names = normalizeNames(o.Names)
	switch o.Mode {
	case ModeSelfSigned:
		if o.DataDir == "" {
			return errors.New("self_signed mode needs a data folder")
		}
		if len(o.Names) == 0 {
			o.Names = []string{"localhost", "127.0.0.1", "::1"}
		}
	case ModeFiles:
		if o.CertFile == "" || o.KeyFile == "" {
			return errors.New("files mode needs cert_file and key_file")
		}
		if o.PollInterval == 0 {
			o.PollInterval = DefaultPollInterval
		}
	case ModeACME:
		if len(o.Names) == 0 {
			return errors.New("acme mode needs at least one name")
		}
		for _, n := range o.Names {
			if _, err := netip.ParseAddr(n); err == nil {
				return fmt.Errorf("acme name %q is an IP address; ACME certificates here are for DNS names", n)
			}
		}
		if o.Storage == "" && o.SharedStorage == nil {
			return errors.New("acme mode needs a storage folder")
		}
		if _, err := directoryURL(o.CA); err != nil {
			return err
		}
		if o.HTTPChallengeAddr == "" && o.TLSALPNChallengeAddr == "" {
			return errors.New("acme mode needs an HTTP listener (HTTP-01) or a TLS listener (TLS-ALPN-01) to answer challenges")
		}
		for _, a := range []string{o.HTTPChallengeAddr, o.TLSALPNChallengeAddr} {
			if a == "" {
				continue
			}
			if _, _, err := splitListenAddr(a); err != nil {
				return err
			}
		}
		if o.RenewalWindowRatio < 0 || o.RenewalWindowRatio >= 1 {
			return fmt.Errorf("renewal window ratio %v is outside [0, 1)", o.RenewalWindowRatio)
		}
		if o.RenewCheckInterval < 0 {
			return fmt.Errorf("renew check interval %v is negative", o.RenewCheckInterval)
		}
	case "":
		return errors.New("no tls mode")
	default:
		return fmt.Errorf("tls mode %q is not one of %q, %q, %q", o.Mode, ModeACME, ModeFiles, ModeSelfSigned)
	}
	return nil
}

// directoryURL maps the CA option onto an ACME directory URL.
func directoryURL(ca string) (string, error) {
	switch ca {
	case "", CALetsEncrypt:
		return certmagic.LetsEncryptProductionCA, nil
	case CALetsEncryptStaging:
		return certmagic.LetsEncryptStagingCA, nil
	}
	if strings.HasPrefix(ca, "https://") || strings.HasPrefix(ca, "http://") {
		return ca, nil
	}
	return "", fmt.Errorf("acme ca %q is not %q, %q or a directory URL", ca, CALetsEncrypt, CALetsEncryptStaging)
}

// splitListenAddr splits a listener address into host and port number.
func splitListenAddr(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("challenge listener address %q: %w", addr, err)
	}
	pn, err := net.LookupPort("tcp", p)
	if err != nil || pn <= 0 {
		return "", 0, fmt.Errorf("challenge listener address %q: bad port", addr)
	}
	return h, pn, nil
}

// normalizeNames lower-cases DNS names, canonicalises IP addresses and
// drops empty entries and duplicates, keeping the order.
func normalizeNames(names []string) []string {
	var out []string
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		n = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
		if ip, err := netip.ParseAddr(strings.Trim(n, "[]")); err == nil {
			n = ip.String()
		}
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, n)
	}
	return out
}

package main

import (
	"net"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/internal/servername"
)

// certsOptions maps [tls] (and the listeners ACME challenges arrive on)
// onto the certs package's options.
func certsOptions(c *config.Config, log *zap.Logger) certs.Options {
	o := certs.Options{
		Mode:     c.TLS.Mode,
		Names:    c.TLS.Names,
		Logger:   log,
		DataDir:  c.DataDir,
		CertFile: c.TLS.CertFile,
		KeyFile:  c.TLS.KeyFile,
		Email:    c.TLS.Email,
		CA:       c.TLS.CA,
		CARoot:   c.TLS.CARoot,
		Storage:  c.TLS.Storage,
	}
	switch c.TLS.Mode {
	case config.TLSModeFiles:
		if len(o.Names) == 0 {
			// Only used to warn when the files do not cover the names
			// remote servers check.
			o.Names = federationNames(c)
		}
	case config.TLSModeACME:
		o.HTTPChallengeAddr = c.Listen.HTTP
		o.TLSALPNChallengeAddr = tlsALPNListener(c)
	}
	return o
}

// tlsALPNListener picks the TLS listener that answers TLS-ALPN-01, which
// the CA always sends to port 443: a listener on port 443; failing that,
// with no plain-HTTP listener to fall back on, the first TLS listener (a
// forward from 443 is assumed). Otherwise TLS-ALPN-01 stays off, so the
// CA is not sent to a port 443 that something else answers.
func tlsALPNListener(c *config.Config) string {
	tlsAddrs := append(slices.Clone(c.Listen.HTTPS), c.Listen.Federation...)
	for _, a := range tlsAddrs {
		if _, port, err := net.SplitHostPort(a); err == nil && port == "443" {
			return a
		}
	}
	if c.Listen.HTTP == "" && len(tlsAddrs) > 0 {
		return tlsAddrs[0]
	}
	return ""
}

// federationNames are the names remote servers check our certificate
// against: the server name's host and the well-known delegated host.
func federationNames(c *config.Config) []string {
	var names []string
	for _, s := range []string{c.ServerName, c.WellKnown.Server} {
		if n, err := servername.Parse(s); err == nil && !slices.Contains(names, n.Host) {
			names = append(names, n.Host)
		}
	}
	return names
}

// reloadCertificates runs on SIGHUP: it re-reads the certificate files
// (files mode) and warns when the reloaded configuration (nil if it did not
// load) changes [tls] settings, which take effect only after a restart.
func reloadCertificates(cm *certs.Manager, c *config.Config, log *zap.Logger) {
	if c != nil && certSettingsChanged(cm.Options(), certsOptions(c, log)) {
		log.Warn("tls settings changed; restart fedgate to apply them (certificates keep being served as before)")
	}
	if err := cm.Reload(); err != nil {
		log.Error("certificate reload refused, still serving the previous certificate", zap.Error(err))
	}
}

// certSettingsChanged compares the settings a running Manager cannot
// change.
func certSettingsChanged(running, next certs.Options) bool {
	return running.Mode != next.Mode ||
		!slices.EqualFunc(running.Names, next.Names, strings.EqualFold) ||
		running.DataDir != next.DataDir ||
		running.CertFile != next.CertFile || running.KeyFile != next.KeyFile ||
		running.Email != next.Email || running.CA != next.CA || running.CARoot != next.CARoot ||
		running.Storage != next.Storage ||
		running.HTTPChallengeAddr != next.HTTPChallengeAddr ||
		running.TLSALPNChallengeAddr != next.TLSALPNChallengeAddr
}

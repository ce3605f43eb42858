package main

import (
	"net"
	"slices"

	"github.com/caddyserver/certmagic"
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

// reloadCertificates runs on SIGHUP: it applies the [tls] settings of the
// reloaded configuration (nil if it was refused), every hosted server's,
// and re-reads the certificate files (files mode). Settings that cannot
// be used are refused and the certificates served before stay. Changed
// challenge listeners need a restart, as every listener does. shared is
// the cluster's ACME storage (nil without [cluster]).
func reloadCertificates(cm *certs.Set, c *config.Config, shared certmagic.Storage, log *zap.Logger) {
	if c != nil {
		next := withSharedStorage(certsOptionsAll(c, log), shared)
		if running := cm.Options(); running[0].HTTPChallengeAddr != next[0].HTTPChallengeAddr || running[0].TLSALPNChallengeAddr != next[0].TLSALPNChallengeAddr {
			log.Warn("ACME challenge listeners changed; restart fedgate to apply them")
		}
		if err := cm.Update(next); err != nil {
			log.Error("tls settings refused, still serving the previous certificates", zap.Error(err))
		}
	}
	if err := cm.Reload(); err != nil {
		log.Error("certificate reload refused, still serving the previous certificate", zap.Error(err))
	}
}

package main

import (
	"go.uber.org/zap"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/config"
)

// certsOptions maps [tls] onto the certs package's options.
func certsOptions(c *config.Config, log *zap.Logger) certs.Options {
	return certs.Options{
		Mode:    c.TLS.Mode,
		Names:   c.TLS.Names,
		DataDir: c.DataDir,
		Logger:  log,
	}
}

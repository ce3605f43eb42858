package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/config"
)

// newCluster builds the Redis client [cluster] describes, or nil without
// one. It does not connect: an unreachable Redis is logged and retried,
// and each instance uses its own state meanwhile.
func newCluster(c *config.Config, log *zap.Logger) (*cluster.Client, error) {
	cc := c.Cluster
	if !cc.Enabled() {
		return nil, nil
	}
	opts := cluster.Options{
		URL:     cc.Redis,
		CAFile:  cc.CAFile,
		Prefix:  cc.Prefix,
		Node:    cc.Node,
		Timeout: cc.Timeout.D(),
		Logger:  log,
	}
	if cc.PasswordFile != "" {
		b, err := os.ReadFile(cc.PasswordFile)
		if err != nil {
			return nil, c.Errorf("cluster.password_file", "%v", err)
		}
		opts.Password = strings.TrimRight(string(b), "\r\n")
		if opts.Password == "" {
			return nil, c.Errorf("cluster.password_file", "%s is empty", cc.PasswordFile)
		}
	}
	cl, err := cluster.New(opts)
	if err != nil {
		return nil, c.Errorf("cluster.redis", "%v", err)
	}
	return cl, nil
}

// withSharedStorage points every ACME entry of opts at the cluster's
// storage, so that the instances obtain one certificate per name and all
// serve it; without a cluster (shared nil) opts are returned as they are.
func withSharedStorage(opts []certs.Options, shared certmagic.Storage) []certs.Options {
	if shared == nil {
		return opts
	}
	for i := range opts {
		if opts[i].Mode == certs.ModeACME {
			opts[i].SharedStorage = shared
		}
	}
	return opts
}

// checkCluster is check-config's part for [cluster]: the settings parse
// (nothing is dialled).
func checkCluster(c *config.Config) error {
	cl, err := newCluster(c, zap.NewNop())
	if err != nil {
		return err
	}
	if cl != nil {
		if err := cl.Close(); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	return nil
}

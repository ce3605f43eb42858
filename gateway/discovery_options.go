package gateway

import (
	"crypto/x509"
	"log/slog"
	"net/netip"
	"os"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/discovery"
)

// DiscoveryOptions maps [outbound] onto discovery.Options, for the gateway
// and for "fedgate resolve". outbound.ca_file is read now and added to the
// system roots; a file that cannot be read or holds no certificate is a
// problem located at its line. max_idle_per_host = 0 turns keep-alive
// pooling off. logger may be nil (discard).
func DiscoveryOptions(c *config.Config, logger *slog.Logger) (discovery.Options, error) {
	o := c.Outbound
	opts := discovery.Options{
		Resolvers:             o.Resolvers,
		HostsFile:             o.HostsFile,
		DNSTimeout:            o.DNSTimeout.D(),
		DialTimeout:           o.DialTimeout.D(),
		TLSTimeout:            o.TLSTimeout.D(),
		ResponseHeaderTimeout: o.ResponseHeaderTimeout.D(),
		InsecureSkipVerify:    o.InsecureSkipVerify,
		Overrides:             o.Overrides,
		MaxIdlePerHost:        o.MaxIdlePerHost,
		Logger:                logger,
	}
	if opts.MaxIdlePerHost == 0 {
		opts.MaxIdlePerHost = -1
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return discovery.Options{}, c.Errorf("outbound.ca_file", "%v", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool() // no system roots on this platform: the file's only
		}
		if !pool.AppendCertsFromPEM(pem) {
			return discovery.Options{}, c.Errorf("outbound.ca_file", "no PEM certificate in %s", o.CAFile)
		}
		opts.RootCAs = pool
	}
	for _, s := range o.AllowNetworks {
		if ip, err := netip.ParseAddr(s); err == nil {
			opts.AllowNetworks = append(opts.AllowNetworks, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return discovery.Options{}, c.Errorf("outbound.allow_networks", "bad CIDR %q: %v", s, err)
		}
		opts.AllowNetworks = append(opts.AllowNetworks, p.Masked())
	}
	return opts, nil
}

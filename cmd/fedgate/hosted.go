package main

import (
	"fmt"
	"io"
	"strings"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/config"
)

// Several hosted servers ([[servers]]): what "run", "check-config",
// "resolve" and "selftest" do once per hosted server, through the
// per-server configurations config.Config.Hosted returns.

// certsOptionsAll maps every hosted server's [tls] onto certificate
// options, the top-level server first (its certificate answers names no
// server lists); certs.NewSet shares one Manager among servers with the
// same settings.
func certsOptionsAll(c *config.Config, log *zap.Logger) []certs.Options {
	hosted := c.Hosted()
	out := make([]certs.Options, 0, len(hosted))
	for _, hc := range hosted {
		out = append(out, certsOptions(hc, log))
	}
	return out
}

// ensureSigningKeys creates every hosted server's missing signing key
// where keys.generate asks for it.
func ensureSigningKeys(c *config.Config, log *zap.Logger) error {
	for _, hc := range c.Hosted() {
		if err := ensureSigningKey(hc, log.With(zap.String("server", hc.ServerName))); err != nil {
			return err
		}
	}
	return nil
}

// hostedNames lists the hosted server names, the top-level one first.
func hostedNames(c *config.Config) []string {
	var names []string
	for _, hc := range c.Hosted() {
		names = append(names, hc.ServerName)
	}
	return names
}

// writeHostedSummary adds one block per [[servers]] entry to check-config's
// summary: what differs from server to server.
func writeHostedSummary(w io.Writer, c *config.Config) {
	hosted := c.Hosted()
	if len(hosted) == 1 {
		return
	}
	fmt.Fprintf(w, "  %-13s %d: %s\n", "hosted:", len(hosted), strings.Join(hostedNames(c), ", "))
	for i, hc := range hosted[1:] {
		fmt.Fprintf(w, "  servers[%d]:   %s\n", i, hc.ServerName)
		row := func(k, format string, args ...any) {
			fmt.Fprintf(w, "    %-11s %s\n", k+":", fmt.Sprintf(format, args...))
		}
		row("upstream", "%s", describeUpstream(hc.Upstream))
		row("signing key", "%s", describeKeys(hc))
		if hc.WellKnown.Server != "" {
			row("well-known", "m.server = %s", hc.WellKnown.Server)
		} else {
			row("well-known", "not served")
		}
		row("tls", "%s for %s", hc.TLS.Mode, strings.Join(hc.TLS.Names, " "))
		p := hc.Policy
		row("policy", "default %s; %d allow, %d deny entries%s", p.Default, len(p.Allow), len(p.Deny),
			map[bool]string{true: "; DRY RUN", false: ""}[p.DryRun])
		rl := hc.RateLimit
		row("rate limits", "per_ip %s; per_origin %s", describeLimit(rl.PerIP), describeLimit(rl.PerOrigin))
		if hc.Egress.Secret != "" || hc.Egress.SecretFile != "" {
			row("egress", "own secret")
		} else {
			row("egress", "no secret: its homeserver cannot use the worker proxy protocol")
		}
	}
}

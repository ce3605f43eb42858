package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/gateway"
)

func cmdCheckConfig(env *environment, args []string) int {
	fs := newFlagSet(env, "check-config", "-config FILE [-print]",
		"Validates FILE and prints a short summary of the effective configuration.\n"+
			"Exits 0 if it is valid; otherwise prints every problem as FILE:LINE: message\n"+
			"and exits 1. Nothing is started and no file is created.")
	path := fs.String("config", "gateway.toml", "configuration file")
	printAll := fs.Bool("print", false, "also print the whole effective configuration (defaults filled in) as TOML")
	if code, ok := parseFlags(env, fs, args, 0); !ok {
		return code
	}
	c, err := config.Load(*path)
	if err != nil {
		printConfigError(env.stderr, err)
		return exitFailure
	}
	if err := gateway.Check(c); err != nil {
		printConfigError(env.stderr, err)
		return exitFailure
	}
	if err := checkCluster(c); err != nil {
		printConfigError(env.stderr, err)
		return exitFailure
	}
	keys := describeKeys(c)
	fmt.Fprintf(env.stdout, "%s: configuration OK\n", c.File)
	writeSummary(env.stdout, c, keys)
	if *printAll {
		out, err := toml.Marshal(c)
		if err != nil {
			fmt.Fprintf(env.stderr, "fedgate check-config: rendering configuration: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(env.stdout, "\n# effective configuration\n%s", out)
	}
	return exitOK
}

// printConfigError prints one problem per line.
func printConfigError(w io.Writer, err error) {
	var ps config.Problems
	var p *config.Problem
	switch {
	case errors.As(err, &ps):
		for _, p := range ps {
			fmt.Fprintln(w, p.Error())
		}
	case errors.As(err, &p):
		fmt.Fprintln(w, p.Error())
	default:
		fmt.Fprintf(w, "fedgate: %v\n", err)
	}
}

func writeSummary(w io.Writer, c *config.Config, keys string) {
	row := func(k, format string, args ...any) {
		fmt.Fprintf(w, "  %-13s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	orNone := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	list := func(s []string) string {
		if len(s) == 0 {
			return "-"
		}
		return strings.Join(s, " ")
	}
	row("server_name", "%s", c.ServerName)
	row("upstream", "%s", describeUpstream(c.Upstream))
	row("listeners", "federation %s; https %s; http %s; egress %s; admin %s",
		list(c.Listen.Federation), list(c.Listen.HTTPS), orNone(c.Listen.HTTP), orNone(c.Listen.Egress), orNone(c.Listen.Admin))
	switch c.TLS.Mode {
	case config.TLSModeFiles:
		row("tls", "files (%s, %s)", c.TLS.CertFile, c.TLS.KeyFile)
	case config.TLSModeACME:
		row("tls", "acme from %s for %s", c.TLS.CA, list(c.TLS.Names))
	default:
		row("tls", "self_signed for %s (development only)", list(c.TLS.Names))
	}
	row("signing keys", "%s", keys)
	row("key document", "valid for %v; %d old keys; %d pinned keys; %d trusted key servers",
		c.Keys.ValidFor.D(), len(c.Keys.Old), len(c.Keys.Pinned), len(c.Keys.TrustedKeyServers))
	if c.WellKnown.Server != "" {
		row("well-known", "m.server = %s", c.WellKnown.Server)
	} else {
		row("well-known", "not served")
	}
	p := c.Policy
	row("policy", "default %s; %d allow, %d deny entries; %d allow, %d deny networks; %d denied endpoints; %d denied rooms; %d per-origin rules%s%s",
		p.Default, len(p.Allow), len(p.Deny), len(p.AllowNetworks), len(p.DenyNetworks), len(p.DenyEndpoints), len(p.DenyRooms), len(p.Origins),
		map[bool]string{true: "; list_file " + p.ListFile, false: ""}[p.ListFile != ""],
		map[bool]string{true: "; DRY RUN (nothing is denied)", false: ""}[p.DryRun])
	rl := c.RateLimit
	row("rate limits", "per_ip %s; per_origin %s; %d concurrent per origin; %d class limits",
		describeLimit(rl.PerIP), describeLimit(rl.PerOrigin), rl.ConcurrentPerOrigin, len(rl.Classes))
	o := c.Outbound
	resolvers := "from /etc/resolv.conf"
	if len(o.Resolvers) > 0 {
		resolvers = list(o.Resolvers)
	}
	hosts := "hosts file " + o.HostsFile + " before DNS"
	if o.HostsFile == "" {
		hosts = "DNS only"
	}
	row("outbound", "%s; resolvers %s; %d overrides; allow_networks %s", hosts, resolvers, len(o.Overrides), list(o.AllowNetworks))
	if c.Listen.Egress != "" {
		row("egress", "worker_proxy %v; connect %s; per destination %s", c.Egress.WorkerProxy, c.Egress.Connect, describeLimit(rl.PerDestination))
	} else {
		row("egress", "off (no listen.egress)")
	}
	access := "off"
	switch {
	case c.Log.Access && c.Log.AccessBuffer > 0:
		size, _ := c.Log.AccessBuffer.MarshalText()
		access = fmt.Sprintf("on, buffered (%s, written at least once a second)", size)
	case c.Log.Access:
		access = "on"
	}
	row("log", "%s, %s, access log %s", c.Log.Level, c.Log.Format, access)
	if c.Cluster.Enabled() {
		row("cluster", "redis %s; prefix %q; node %s; timeout %v", redactURL(c.Cluster.Redis), c.Cluster.Prefix, orNone(c.Cluster.Node), c.Cluster.Timeout.D())
	} else {
		row("cluster", "off (state in this process)")
	}
	writeHostedSummary(w, c)
}

// redactURL hides a password in a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// describeUpstream is the default pool, its timeout, and each route with
// its endpoints, members and balance.
func describeUpstream(u config.Upstream) string {
	pool := func(urls []string, balance string) string {
		if len(urls) == 1 {
			return urls[0]
		}
		if balance == "" {
			balance = "round_robin"
		}
		return fmt.Sprintf("%s (%s)", strings.Join(urls, " "), balance)
	}
	out := fmt.Sprintf("%s (timeout %v)", pool(u.MemberURLs(), u.Balance), u.Timeout.D())
	for _, r := range u.Routes {
		out += fmt.Sprintf("; route %s: %s -> %s", r.PoolName(), strings.Join(r.Endpoints, " "), pool(r.URLs, r.Balance))
	}
	return out
}

func describeLimit(l config.Limit) string {
	if !l.Enabled() {
		return "unlimited"
	}
	r, _ := l.Rate.MarshalText()
	return fmt.Sprintf("%s burst %d", r, l.Burst)
}

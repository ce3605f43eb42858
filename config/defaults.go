package config

import (
	"path/filepath"
	"time"

	"github.com/fedgate/fedgate/internal/servername"
)

// Default returns the configuration every file starts from: a key absent
// from the file keeps the value given here. Values that depend on other keys
// (paths under data_dir, certificate names) are filled in by [Config.derive]
// after decoding. This is the only place defaults are set.
func Default() Config {
	return Config{
		DataDir: "data",
		Upstream: Upstream{
			Timeout:       Duration(60 * time.Second),
			BodyTimeout:   Duration(60 * time.Second),
			DialTimeout:   Duration(5 * time.Second),
			MaxIdleConns:  256,
			Balance:       "round_robin",
			ProbePath:     "/_matrix/federation/v1/version",
			ProbeTimeout:  Duration(5 * time.Second),
			DownPeriod:    Duration(5 * time.Second),
			DownPeriodMax: Duration(time.Minute),
		},
		Listen: Listen{
			Federation: []string{"[::]:8448"},
		},
		Server: Server{
			ReadHeaderTimeout: Duration(10 * time.Second),
			ReadTimeout:       Duration(60 * time.Second),
			WriteTimeout:      Duration(5 * time.Minute),
			IdleTimeout:       Duration(2 * time.Minute),
			MaxHeaderBytes:    64 << 10,
			ShutdownGrace:     Duration(30 * time.Second),
		},
		Inbound: Inbound{
			MaxBody:     1 << 20,
			MaxBodySend: 8 << 20,
		},
		Keys: Keys{
			ValidFor:     Duration(24 * time.Hour),
			FetchTimeout: Duration(15 * time.Second),
			Notary:       true,
		},
		TLS: TLS{
			Mode: TLSModeSelfSigned,
			CA:   "letsencrypt",
		},
		Outbound: Outbound{
			HostsFile:             "/etc/hosts",
			DNSTimeout:            Duration(5 * time.Second),
			DialTimeout:           Duration(10 * time.Second),
			TLSTimeout:            Duration(10 * time.Second),
			ResponseHeaderTimeout: Duration(60 * time.Second),
			MaxIdlePerHost:        8,
		},
		Egress: Egress{
			WorkerProxy:      true,
			Connect:          ConnectIntercept,
			Timeout:          Duration(90 * time.Second),
			RequireSignature: true,
		},
		Policy: Policy{
			Default:        PolicyAllow,
			LocalityChecks: true,
			ListRefresh:    Duration(5 * time.Minute),
		},
		RateLimit: RateLimit{
			PerIP:               Limit{Rate: MustRate("100/s"), Burst: 200},
			PerOrigin:           Limit{Rate: MustRate("50/s"), Burst: 200},
			ConcurrentPerOrigin: 32,
			ConcurrentWait:      Duration(2 * time.Second),
			PerDestination:      Limit{Rate: MustRate("50/s"), Burst: 200},
			IdleEviction:        Duration(10 * time.Minute),
		},
		Log: Log{
			Level:  "info",
			Format: "json",
			Access: true,
		},
		Admin: Admin{
			Pprof:       true,
			ReadyWindow: Duration(30 * time.Second),
		},
		Cluster: Cluster{
			Prefix:  "fedgate:",
			Timeout: Duration(50 * time.Millisecond),
		},
	}
}

// derive fills in defaults that depend on other values and makes relative
// paths absolute (relative to dir, the config file's folder).
func (c *Config) derive(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.DataDir)
	under := func(p *string, name string) {
		if *p == "" {
			*p = filepath.Join(c.DataDir, name)
		}
		abs(p)
	}
	under(&c.Keys.SigningKey, "signing.key")
	under(&c.Keys.CacheFile, "keyring.json")
	under(&c.TLS.Storage, "acme")
	under(&c.Egress.CADir, "egress-ca")
	under(&c.Log.HashKeyFile, "log-hash.key")
	for _, p := range []*string{
		&c.Upstream.CAFile, &c.TLS.CARoot, &c.TLS.CertFile, &c.TLS.KeyFile,
		&c.Outbound.CAFile, &c.Outbound.HostsFile, &c.Egress.SecretFile, &c.Policy.ListFile, &c.Policy.ListTrust,
		&c.Admin.TokenFile,
		&c.Cluster.PasswordFile, &c.Cluster.CAFile,
	} {
		abs(p)
	}
	derivePolicyRooms(c.Policy.Rooms, c.Upstream, abs)
	if c.Log.Decisions != "" && c.Log.Decisions != "stderr" && c.Log.Decisions != "stdout" {
		abs(&c.Log.Decisions)
	}
	if len(c.TLS.Names) == 0 {
		switch c.TLS.Mode {
		case TLSModeSelfSigned:
			c.TLS.Names = []string{"localhost", "127.0.0.1", "::1"}
		case TLSModeACME:
			c.TLS.Names = defaultACMENames(c)
		}
	}
	c.deriveServers(dir)
}

// defaultACMENames are the names remote servers check our certificate
// against: the server name's host, and the delegated host when well-known
// delegation is served.
func defaultACMENames(c *Config) []string {
	var names []string
	add := func(s string) {
		n, err := servername.Parse(s)
		if err != nil || n.IsIP() {
			return
		}
		for _, have := range names {
			if have == n.Host {
				return
			}
		}
		names = append(names, n.Host)
	}
	add(c.ServerName)
	add(c.WellKnown.Server)
	return names
}

// derivePolicyRooms fills in the defaults of [[policy.rooms]] entries: the
// bot's homeserver is the hosted server's own (its default pool's first
// member), the access token file's path is made absolute.
func derivePolicyRooms(rooms []PolicyRoom, up Upstream, abs func(*string)) {
	for i := range rooms {
		r := &rooms[i]
		abs(&r.AccessTokenFile)
		if r.Homeserver == "" && len(up.MemberURLs()) > 0 {
			r.Homeserver = up.MemberURLs()[0]
		}
		if r.Apply == "" {
			r.Apply = ApplyDeny
		}
		if r.MaxRules == 0 {
			r.MaxRules = DefaultPolicyRoomMaxRules
		}
	}
}

package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// benchOptions are the flags of "fedload bench".
type benchOptions struct {
	fedgate, caddy, nginx string
	dir                   string
	origins, distinct     int
	spec                  loadSpec
	rounds                int
	scenarios             []string
	accessLog             string // "off", "on", "buffered", "both", "all" or a list
	halfPeak              bool
	idleConns             int
	cluster               bool
	redis                 string
	clusterBase           string // the target cluster mode is compared with
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o benchOptions
	var scen string
	fs.StringVar(&o.fedgate, "fedgate", "", `fedgate binary ("": beside fedload or in PATH; "none": skip); several as "label=path,label=path" are measured side by side`)
	fs.StringVar(&o.caddy, "caddy", "", `caddy binary for comparison ("": PATH; "none": skip)`)
	fs.StringVar(&o.nginx, "nginx", "", `nginx binary for comparison ("": PATH; "none": skip)`)
	fs.StringVar(&o.dir, "dir", "", "folder for configurations and logs (default: a temporary one, removed)")
	fs.IntVar(&o.origins, "origins", 16, "simulated origin servers, each with its own key and key server")
	fs.IntVar(&o.distinct, "distinct", 4096, "distinct pre-signed requests per scenario")
	fs.IntVar(&o.spec.requests, "requests", 20000, "requests per measurement (upper bound)")
	fs.DurationVar(&o.spec.duration, "duration", 30*time.Second, "time per measurement (upper bound)")
	fs.IntVar(&o.spec.conns, "conns", 32, "concurrent keep-alive connections")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds; the table shows medians")
	fs.StringVar(&scen, "scenarios", strings.Join(scenarioNames, ","), "comma-separated scenarios")
	fs.StringVar(&o.accessLog, "access-log", "both", `fedgate's access log: "off", "on" (a write per line), "buffered" (log.access_buffer = "64KiB"), "both" (off,on), "all", or a comma-separated list (one fedgate process each; nginx and Caddy run without one)`)
	fs.BoolVar(&o.halfPeak, "half-peak", true, "also measure latency at half of fedgate's peak rate")
	fs.IntVar(&o.idleConns, "idle-conns", 1000, "measure each proxy's RSS holding this many idle keep-alive connections (0: skip)")
	fs.BoolVar(&o.cluster, "cluster", false, "also run fedgate in cluster mode (target fedgate+redis) against a redis-server fedload starts, and report what [cluster] adds per request")
	fs.StringVar(&o.redis, "redis", "", `redis-server binary for -cluster ("": PATH)`)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: fedload bench [flags]\n\nMeasures fedgate, Caddy and nginx in front of the same upstream, and the\nupstream directly, in interleaved rounds on loopback. It is fedload's default\nmode; \"fedload soak -h\" describes the other one.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.scenarios = splitList(scen)
	logModes, err := accessLogModes(o.accessLog)
	if err != nil {
		return err
	}
	bins, err := fedgateBinaries(o.fedgate)
	if err != nil {
		return err
	}
	if o.origins < 1 || o.distinct < 1 || o.spec.requests < 1 || o.spec.conns < 1 || o.rounds < 1 || o.spec.duration <= 0 {
		return fmt.Errorf("-origins, -distinct, -requests, -conns, -rounds and -duration must be positive")
	}
	dir, cleanup, err := workDir(o.dir)
	if err != nil {
		return err
	}
	defer cleanup()
	e, err := newEnv(dir, o.origins)
	if err != nil {
		return err
	}
	defer e.close()
	scenarios, err := buildScenarios(o.scenarios, e.origins, o.distinct)
	if err != nil {
		return err
	}
	targets := []*target{{name: "direct", base: "http://" + e.upstream.addr}}
	for _, b := range bins {
		for _, mode := range logModes {
			t, _, err := e.startFedgate(b.label+mode.suffix(), b.path, mode)
			if err != nil {
				return err
			}
			defer t.stop()
			targets = append(targets, t)
		}
	}
	if o.cluster && len(bins) > 0 {
		// One more fedgate, the first binary with the first access-log
		// mode, in cluster mode against a redis-server of its own.
		rbin := findBinary(o.redis, "redis-server")
		if rbin == "" {
			return fmt.Errorf("-cluster needs redis-server (apt-get install redis-server, or -redis PATH)")
		}
		redis, err := e.startRedis(rbin)
		if err != nil {
			return err
		}
		defer redis.stop()
		o.clusterBase = bins[0].label + logModes[0].suffix()
		ct, err := e.startFedgateCluster(o.clusterBase+"+redis", bins[0].path, logModes[0], redis)
		if err != nil {
			return err
		}
		defer ct.stop()
		targets = append(targets, ct)
	}
	if len(bins) == 0 && o.fedgate != "none" {
		fmt.Fprintln(stderr, "fedload: no fedgate binary (build it with: go build -o bin/ ./cmd/...); measuring without it")
	}
	if bin := findBinary(o.caddy, "caddy"); bin != "" {
		t, err := e.startCaddy(bin)
		if err != nil {
			return err
		}
		defer t.stop()
		targets = append(targets, t)
	}
	if bin := findBinary(o.nginx, "nginx"); bin != "" {
		t, err := e.startNginx(bin)
		if err != nil {
			return err
		}
		defer t.stop()
		targets = append(targets, t)
	}
	return bench(ctx, e, targets, scenarios, o, stdout)
}

// bench runs the rounds and prints the tables.
func bench(ctx context.Context, e *env, targets []*target, scenarios []scenario, o benchOptions, out io.Writer) error {
	fmt.Fprintf(out, "fedload: %d origins, %d distinct requests per scenario, %d requests x %d connections per measurement, %d rounds\n",
		o.origins, o.distinct, o.spec.requests, o.spec.conns, o.rounds)
	for _, t := range targets {
		fmt.Fprintf(out, "  %-8s %s pid %d\n", t.name, t.base, t.pid)
	}
	clients := map[string]*http.Client{}
	for _, t := range targets {
		clients[t.name] = newClient(e.ca, o.spec.conns)
		defer clients[t.name].CloseIdleConnections()
	}
	// Warm up: every origin's keys fetched, connections open, code paths hot.
	for _, s := range scenarios {
		for _, t := range targets {
			warm := o.spec
			warm.requests = min(o.spec.requests, max(2*o.origins, 500))
			r, err := run(ctx, clients[t.name], t, s, warm)
			if err != nil {
				return err
			}
			if r.errors > 0 {
				return fmt.Errorf("warm-up of %s against %s: %d errors, first: %s", s.name, t.name, r.errors, r.firstError)
			}
		}
	}
	all := map[string][]*result{} // key: scenario/target
	verify := map[string][]verifyTiming{}
	for round := range o.rounds {
		for _, s := range scenarios {
			// Rotate the order each round so no target always runs first
			// (or right after the heaviest one).
			for k := range targets {
				t := targets[(k+round)%len(targets)]
				r, err := run(ctx, clients[t.name], t, s, o.spec)
				if err != nil {
					return err
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				all[s.name+"/"+t.name] = append(all[s.name+"/"+t.name], r)
				fmt.Fprintf(out, "round %d %-13s %-8s %7.0f req/s  p99 %-8s cpu/req %-7s errors %d %s\n",
					round+1, s.name, t.name, r.rps(), fmtDur(r.pct(0.99)), fmtDur(r.cpuPerReq()), r.errors, r.firstError)
			}
			if !s.local {
				// The signature check is timed in every round, right
				// after the scenario's measurements, so that it sees the
				// same machine as they did.
				verify[s.name] = append(verify[s.name], timeVerify(e, s))
			}
		}
	}
	medians := map[string]*result{}
	for k, rs := range all {
		medians[k] = median(rs)
	}
	printTable(out, targets, scenarios, medians)
	printOwnWork(out, targets, scenarios, medians, verify)
	if o.clusterBase != "" {
		printClusterCost(out, scenarios, medians, o.clusterBase)
	}
	if o.halfPeak {
		if err := halfPeak(ctx, out, clients, targets, scenarios, medians, o.spec, o.rounds); err != nil {
			return err
		}
	}
	if o.idleConns > 0 {
		if err := idleRSS(ctx, out, e, targets, o.idleConns); err != nil {
			return err
		}
	}
	return nil
}

// median picks, per metric, the median over rounds.
func median(rs []*result) *result {
	pick := func(f func(*result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m := *rs[0]
	rps := pick(func(r *result) float64 { return r.rps() })
	m.n = 1000000
	m.elapsed = time.Duration(float64(m.n) / rps * float64(time.Second))
	m.cpu = time.Duration(pick(func(r *result) float64 { return float64(r.cpuPerReq()) })) * time.Duration(m.n)
	m.sideCPU = time.Duration(pick(func(r *result) float64 { return float64(r.sideCPUPerReq()) })) * time.Duration(m.n)
	p := func(q float64) time.Duration {
		return time.Duration(pick(func(r *result) float64 { return float64(r.pct(q)) }))
	}
	m.lat = []time.Duration{p(0.5), p(0.9), p(0.99)}
	m.errors = 0
	for _, r := range rs {
		m.errors += r.errors
	}
	return &m
}

func printTable(out io.Writer, targets []*target, scenarios []scenario, med map[string]*result) {
	fmt.Fprintf(out, "\nMedians of the rounds (CPU is the target process's, from /proc; ratios are target/baseline):\n\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttarget\treq/s\tp50\tp90\tp99\tCPU/req\tCPU/caddy\tCPU/nginx\treq/s vs direct\treq/s vs caddy\treq/s vs nginx\terrors\t")
	for _, s := range scenarios {
		base := func(name string) *result { return med[s.name+"/"+name] }
		for _, t := range targets {
			r := med[s.name+"/"+t.name]
			if r == nil {
				continue
			}
			ratio := func(b *result, f func(*result) float64) string {
				if b == nil || f(b) == 0 || f(r) == 0 {
					return "-"
				}
				return fmt.Sprintf("%.2f", f(r)/f(b))
			}
			cpu := func(x *result) float64 { return float64(x.cpuPerReq()) }
			rps := func(x *result) float64 { return x.rps() }
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", s.name, t.name, r.rps(),
				fmtDur(r.lat[0]), fmtDur(r.lat[1]), fmtDur(r.lat[2]), fmtDur(r.cpuPerReq()),
				ratio(base("caddy"), cpu), ratio(base("nginx"), cpu), ratio(base("direct"), rps), ratio(base("caddy"), rps), ratio(base("nginx"), rps), r.errors)
		}
	}
	tw.Flush()
}

// halfPeak measures latency at half of fedgate's peak rate for every
// target (the same rate for all), in interleaved rounds, and the p99 each
// adds over direct, against issue 14's targets (2 ms for GETs, 4 ms for
// the PUTs). The peak is the first fedgate target's, without access log
// when there is one. The table shows medians over the rounds.
func halfPeak(ctx context.Context, out io.Writer, clients map[string]*http.Client, targets []*target, scenarios []scenario, med map[string]*result, spec loadSpec, rounds int) error {
	primary := primaryFedgate(targets)
	if primary == nil {
		return nil
	}
	paced := map[string]loadSpec{}
	for _, s := range scenarios {
		peak := med[s.name+"/"+primary.name]
		if peak == nil || s.local {
			// fedgate answers local endpoints faster than the upstream
			// can: half its peak would only measure the others' queues.
			continue
		}
		p := spec
		p.rate = peak.rps() / 2
		p.requests = min(spec.requests, int(p.rate*spec.duration.Seconds()))
		paced[s.name] = p
	}
	all := map[string][]*result{}
	for round := range rounds {
		for _, s := range scenarios {
			p, ok := paced[s.name]
			if !ok {
				continue
			}
			for k := range targets {
				t := targets[(k+round)%len(targets)]
				r, err := run(ctx, clients[t.name], t, s, p)
				if err != nil {
					return err
				}
				all[s.name+"/"+t.name] = append(all[s.name+"/"+t.name], r)
			}
		}
	}
	fmt.Fprintf(out, "\nLatency at half of %s's peak rate (open loop, medians of %d rounds; added = p99 - direct's p99 at the same rate):\n\n", primary.name, rounds)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttarget\trate\tp50\tp90\tp99\tp99 added\ttarget\tmet\terrors\t")
	for _, s := range scenarios {
		p, ok := paced[s.name]
		if !ok {
			continue
		}
		limit := 2 * time.Millisecond
		if s.reqs[0].method != http.MethodGet {
			limit = 4 * time.Millisecond
		}
		// median keeps p50, p90 and p99 as lat[0:3].
		direct := median(all[s.name+"/direct"]).lat[2]
		for _, t := range targets {
			r := median(all[s.name+"/"+t.name])
			added, goal, met := "-", "-", "-"
			if t.name != "direct" {
				added = fmtSigned(r.lat[2] - direct)
			}
			if t.fedgate {
				goal, met = fmtDur(limit), "no"
				if r.lat[2]-direct <= limit {
					met = "yes"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f/s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", s.name, t.name, p.rate, fmtDur(r.lat[0]), fmtDur(r.lat[1]), fmtDur(r.lat[2]), added, goal, met, r.errors)
		}
	}
	tw.Flush()
	return nil
}

// fmtSigned is fmtDur for differences, which may be negative.
func fmtSigned(d time.Duration) string {
	if d < 0 {
		return "-" + fmtDur(-d)
	}
	return fmtDur(d)
}

// primaryFedgate is the fedgate target whose peak sets the paced rate:
// the first one without access log, else the first one.
func primaryFedgate(targets []*target) *target {
	var first *target
	for _, t := range targets {
		if !t.fedgate {
			continue
		}
		if t.logMode == logOff {
			return t
		}
		if first == nil {
			first = t
		}
	}
	return first
}

// idleRSS opens n keep-alive TLS connections to each proxy, makes one
// request on each, leaves them idle and reads the proxy's RSS.
func idleRSS(ctx context.Context, out io.Writer, e *env, targets []*target, n int) error {
	fmt.Fprintf(out, "\nRSS with %d idle keep-alive TLS connections (process and children):\n\n", n)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tRSS before\tRSS idle\tper connection\tfds\t")
	for _, t := range targets {
		if t.pid == 0 {
			continue
		}
		before, err := readProcMem(t.pid)
		if err != nil {
			return err
		}
		var conns []*tls.Conn
		for range n {
			c, err := tls.Dial("tcp", strings.TrimPrefix(t.base, "https://"), &tls.Config{RootCAs: e.ca.Pool(), ServerName: serverName, NextProtos: []string{"http/1.1"}})
			if err != nil {
				break
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "GET /.well-known/matrix/server HTTP/1.1\r\nHost: "+serverName+"\r\n\r\n")
			buf := make([]byte, 4096)
			if _, err := c.Read(buf); err != nil {
				c.Close()
				break
			}
			conns = append(conns, c)
		}
		after, err := readProcMem(t.pid)
		for _, c := range conns {
			c.Close()
		}
		if err != nil {
			return err
		}
		per := int64(0)
		if len(conns) > 0 {
			per = (after.RSS - before.RSS) / int64(len(conns))
		}
		fmt.Fprintf(tw, "%s\t%.1f MiB\t%.1f MiB\t%.1f KiB\t%d\t\n", t.name, float64(before.RSS)/(1<<20), float64(after.RSS)/(1<<20), float64(per)/1024, after.FDs)
		if len(conns) < n {
			fmt.Fprintf(out, "  %s: only %d of %d connections opened\n", t.name, len(conns), n)
		}
	}
	tw.Flush()
	return nil
}

// verifiedGET is the scenario whose fedgate CPU per request is the
// yardstick for what cluster mode may add (issue 15: under 10 %).
const verifiedGET = "get-profile"

// printClusterCost compares fedgate with and without [cluster], same run:
// the CPU each request costs fedgate, what cluster mode adds (as a share
// of fedgate's verified GET), what redis-server spends per request, and
// the p99 of both.
func printClusterCost(out io.Writer, scenarios []scenario, med map[string]*result, name string) {
	base := med[verifiedGET+"/"+name]
	if med[scenarios[0].name+"/"+name+"+redis"] == nil || base == nil || base.cpuPerReq() == 0 {
		return
	}
	fmt.Fprintf(out, "\nCluster mode (fedgate+redis: [cluster] with a local redis-server) against fedgate alone, same run;\n"+
		"added CPU is a share of fedgate's CPU per verified GET (%s, %s); target: under 10%%:\n\n", verifiedGET, fmtDur(base.cpuPerReq()))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tfedgate CPU/req\t+redis CPU/req\tadded\tadded/verified GET\tredis-server CPU/req\tp99 fedgate\tp99 +redis\tmet\t")
	for _, s := range scenarios {
		f, c := med[s.name+"/"+name], med[s.name+"/"+name+"+redis"]
		if f == nil || c == nil {
			continue
		}
		added := c.cpuPerReq() - f.cpuPerReq()
		share := float64(added) / float64(base.cpuPerReq()) * 100
		met := "yes"
		if share >= 10 {
			met = "no"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f%%\t%s\t%s\t%s\t%s\t\n", s.name, fmtDur(f.cpuPerReq()), fmtDur(c.cpuPerReq()), fmtDur(added), share,
			fmtDur(c.sideCPUPerReq()), fmtDur(f.pct(0.99)), fmtDur(c.pct(0.99)), met)
	}
	tw.Flush()
}

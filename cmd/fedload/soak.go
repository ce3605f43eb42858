package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cmdSoak runs a bounded mixed load against fedgate at a fixed rate and
// samples its memory, goroutines, threads and descriptors.
func cmdSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("fedgate", "", `fedgate binary ("": beside fedload or in PATH)`)
	dir := fs.String("dir", "", "folder for configuration and logs (default: temporary, removed)")
	duration := fs.Duration("duration", 10*time.Minute, "how long to run (bounded)")
	rate := fs.Float64("rate", 200, "requests per second, mixed over the scenarios")
	sample := fs.Duration("sample", 30*time.Second, "how often to sample the process")
	conns := fs.Int("conns", 16, "concurrent keep-alive connections")
	origins := fs.Int("origins", 64, "simulated origin servers")
	distinct := fs.Int("distinct", 4096, "distinct pre-signed requests per scenario")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: fedload soak [flags]\n\nRuns fedgate under a steady mixed load and prints RSS, goroutines, threads\nand open descriptors over time.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *duration <= 0 || *rate <= 0 || *sample <= 0 || *conns < 1 || *origins < 1 || *distinct < 1 {
		return fmt.Errorf("-duration, -rate, -sample, -conns, -origins and -distinct must be positive")
	}
	path := findBinary(*bin, "fedgate")
	if path == "" {
		return fmt.Errorf("no fedgate binary; build it with: go build -o bin/ ./cmd/... and pass -fedgate bin/fedgate")
	}
	d, cleanup, err := workDir(*dir)
	if err != nil {
		return err
	}
	defer cleanup()
	e, err := newEnv(d, *origins)
	if err != nil {
		return err
	}
	defer e.close()
	scenarios, err := buildScenarios(scenarioNames, e.origins, *distinct)
	if err != nil {
		return err
	}
	t, admin, err := e.startFedgate("fedgate", path, logOn)
	if err != nil {
		return err
	}
	defer t.stop()
	client := newClient(e.ca, *conns)
	defer client.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	fmt.Fprintf(stdout, "fedload soak: fedgate pid %d, %.0f req/s for %s, %d origins\n", t.pid, *rate, *duration, *origins)
	fmt.Fprintf(stdout, "%8s %10s %8s %10s %11s %8s %6s\n", "elapsed", "requests", "errors", "RSS", "goroutines", "threads", "fds")
	var wg sync.WaitGroup
	var mu sync.Mutex
	total, errs := 0, 0
	// Each scenario gets its share of the rate on its own loop.
	for _, s := range scenarios {
		wg.Go(func() {
			spec := loadSpec{requests: int(*rate / float64(len(scenarios)) * duration.Seconds()), duration: *duration,
				conns: max(1, *conns/len(scenarios)), rate: *rate / float64(len(scenarios))}
			for ctx.Err() == nil {
				// Runs in slices of one sample period so counts show up live.
				spec.duration = min(*sample, time.Until(deadlineOf(ctx)))
				if spec.requests = int(spec.rate * spec.duration.Seconds()); spec.requests < 1 {
					return // less than one request's interval left
				}
				r, err := run(ctx, client, &target{name: t.name, base: t.base}, s, spec)
				if err != nil {
					return
				}
				mu.Lock()
				total += r.n
				errs += r.errors
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(*sample)
	defer tick.Stop()
	report := func() {
		m, err := readProcMem(t.pid)
		if err != nil {
			fmt.Fprintf(stdout, "fedgate: %v\n", err)
			return
		}
		mu.Lock()
		n, ne := total, errs
		mu.Unlock()
		fmt.Fprintf(stdout, "%8s %10d %8d %8.1fMiB %11s %8d %6d\n", time.Since(start).Round(time.Second), n, ne,
			float64(m.RSS)/(1<<20), goroutines(admin), m.Threads, m.FDs)
	}
	report()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			report()
		}
	}
	wg.Wait()
	report()
	return nil
}

func deadlineOf(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Hour)
	}
	return d
}

// goroutines asks fedgate's admin listener: the pprof goroutine profile's
// total when pprof is served, else go_goroutines from /metrics, else "-".
func goroutines(adminPort int) string {
	c := &http.Client{Timeout: 5 * time.Second}
	base := "http://127.0.0.1:" + strconv.Itoa(adminPort)
	if resp, err := c.Get(base + "/debug/pprof/goroutine?debug=1"); err == nil {
		defer resp.Body.Close()
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		if resp.StatusCode == 200 {
			if _, n, ok := strings.Cut(strings.TrimSpace(line), "total "); ok {
				return n
			}
		}
	}
	if resp, err := c.Get(base + "/metrics"); err == nil {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
				return v
			}
		}
	}
	return "-"
}

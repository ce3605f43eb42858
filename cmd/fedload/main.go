package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	mode := "bench"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		mode, args = args[0], args[1:]
	}
	var err error
	switch mode {
	case "bench":
		err = cmdBench(ctx, args, stdout, stderr)
	case "soak":
		err = cmdSoak(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprintln(stdout, "Usage: fedload [bench|soak] [flags]; fedload bench -h, fedload soak -h")
		return 0
	default:
		fmt.Fprintf(stderr, "fedload: unknown mode %q (bench, soak)\n", mode)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "fedload: %v\n", err)
		return 1
	}
	return 0
}

// findBinary resolves a -fedgate/-caddy/-nginx flag: "none" skips the
// target, a path is used as given (made absolute: the processes run in the
// work folder, where a relative path would point elsewhere), "" looks
// beside fedload and in PATH.
func findBinary(flagValue, name string) string {
	switch flagValue {
	case "none":
		return ""
	case "":
	default:
		if strings.ContainsRune(flagValue, filepath.Separator) {
			if abs, err := filepath.Abs(flagValue); err == nil {
				return abs
			}
		}
		return flagValue
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

// workDir returns dir as an absolute path (the proxies run with it as
// their working folder, so paths inside it must not be relative to ours),
// or a new temporary folder removed by the cleanup.
func workDir(dir string) (string, func(), error) {
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", nil, err
		}
		return abs, func() {}, os.MkdirAll(abs, 0o700)
	}
	d, err := os.MkdirTemp("", "fedload-")
	if err != nil {
		return "", nil, err
	}
	return d, func() { os.RemoveAll(d) }, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

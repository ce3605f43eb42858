package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at build time: go build -ldflags "-X main.version=1.2.3 -X main.commit=abc".
var (
	version = "dev"
	commit  = ""
)

func cmdVersion(env *environment, args []string) int {
	fs := newFlagSet(env, "version", "", "Prints fedgate's version, the Go version it was built with and the source commit.")
	if code, ok := parseFlags(env, fs, args, 0); !ok {
		return code
	}
	fmt.Fprintf(env.stdout, "fedgate %s\ngo %s %s/%s\ncommit %s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, buildCommit())
	return exitOK
}

// buildCommit returns the commit set with -ldflags, else the one the Go
// toolchain stamped (builds with VCS stamping enabled), else "unknown".
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return rev
		}
	}
	return "unknown"
}

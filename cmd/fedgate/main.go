// Command fedgate is a Matrix federation gateway. Run "fedgate help" for the
// list of subcommands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// exit codes
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// command is one subcommand. run gets the arguments after the subcommand's
// name and returns the process exit code.
type command struct {
	name    string
	summary string
	run     func(env *environment, args []string) int
}

// environment is what a subcommand may touch of the process, so that tests
// can run subcommands in-process with their own streams and signals.
type environment struct {
	stdout, stderr io.Writer
}

// commands lists every subcommand; each lives in its own file.
func commands() []command {
	return []command{
		{"run", "run the gateway", cmdRun},
		{"check-config", "validate a configuration file and summarise it", cmdCheckConfig},
		{"keygen", "write a new ed25519 signing key", cmdKeygen},
		{"version", "print version information", cmdVersion},
		{"resolve", "show how a server name is resolved and whether federation with it works", cmdResolve},
		{"egress-ca", "print (creating it if needed) the CA homeservers trust for intercepted egress", cmdEgressCA},
		{"selftest", "check this deployment from the outside: discovery, TLS, keys, homeserver, egress", cmdSelftest},
	}
}

func main() {
	env := &environment{stdout: os.Stdout, stderr: os.Stderr}
	os.Exit(dispatch(env, os.Args[1:]))
}

func dispatch(env *environment, args []string) int {
	if len(args) == 0 {
		usage(env.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			return dispatch(env, []string{args[1], "-h"})
		}
		usage(env.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(env, args[1:])
		}
	}
	fmt.Fprintf(env.stderr, "fedgate: unknown command %q\n\n", name)
	usage(env.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	cmds := commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	var b strings.Builder
	b.WriteString("fedgate: a Matrix federation gateway\n\nUsage:\n  fedgate <command> [flags]\n\nCommands:\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "  %-14s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun \"fedgate <command> -h\" for a command's flags.\n")
	io.WriteString(w, b.String())
}

// newFlagSet builds a subcommand's flag set: errors and -h are returned to
// the caller (parseFlags) instead of exiting.
func newFlagSet(env *environment, name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: %s\n\n%s\n", strings.TrimSpace("fedgate "+name+" "+synopsis), description)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(out, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args; ok is false when the command should exit with
// code (0 after -h, 2 after a bad flag or unexpected arguments). Usage is
// printed once: on stdout for -h, on stderr after an error.
func parseFlags(env *environment, fs *flag.FlagSet, args []string, maxArgs int) (code int, ok bool) {
	usage := fs.Usage
	fs.Usage = func() {} // the flag package would print it to stderr for -h too
	err := fs.Parse(args)
	fs.Usage = usage
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(env.stdout)
			fs.Usage()
			return exitOK, false
		}
		fs.Usage()
		return exitUsage, false
	}
	if fs.NArg() > maxArgs {
		fmt.Fprintf(env.stderr, "fedgate %s: unexpected argument %q\n", fs.Name(), fs.Arg(maxArgs))
		fs.Usage()
		return exitUsage, false
	}
	return exitOK, true
}

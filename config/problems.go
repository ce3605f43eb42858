package config

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with a configuration file, located by line.
type Problem struct {
	File string // path of the config file
	Line int    // 1-based line, best effort: the key, else its table, else 1
	Key  string // dotted key path, e.g. "policy.deny[2]"; may be empty
	Msg  string
}

// Error renders "FILE:LINE: key: message".
func (p *Problem) Error() string {
	if p.Key == "" {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Key, p.Msg)
}

// Problems is every problem found in one file, in file order. It is the
// error type [Load] returns for an invalid file.
type Problems []*Problem

// Error renders one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the individual problems to errors.Is and errors.As.
func (ps Problems) Unwrap() []error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errs
}

// Errorf returns a [Problem] located at key (a dotted path such as
// "keys.signing_key" or "policy.deny[2]"). Packages that compile the
// configuration further use it so their errors point into the file too.
// On the configuration of a [[servers]] entry (see [Config.Hosted]) the
// key is located in that entry ("servers[1].keys.signing_key"), or at the
// top level when the entry inherits the value.
func (c *Config) Errorf(key, format string, args ...any) *Problem {
	key = c.fileKey(key)
	line := 1
	if c.src != nil {
		line = c.src.line(key)
	}
	return &Problem{File: c.File, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Line returns the line of key in the file, falling back to the enclosing
// table and then to 1.
func (c *Config) Line(key string) int {
	if c.src == nil {
		return 1
	}
	return c.src.line(c.fileKey(key))
}

// IsSet reports whether key was written in the file (as opposed to taking
// its default).
func (c *Config) IsSet(key string) bool {
	if c.src == nil {
		return false
	}
	_, ok := c.src.lines[c.fileKey(key)]
	return ok
}

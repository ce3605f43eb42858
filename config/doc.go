// Package config owns fedgate's configuration file: the TOML schema, the
// defaults (applied in one place, [Default]), and validation that reports
// every problem at once as "FILE:LINE: key: message".
//
// [Load] decodes strictly: unknown keys, wrong types, bad durations, sizes,
// rates, CIDRs, globs, regular expressions, server names and endpoint names,
// unreadable files and duplicate listeners are all problems, collected into
// one [Problems] error. Relative paths are resolved against the config
// file's folder. The returned *Config is never modified afterwards; code that
// compiles it further (policy, keys, certificates) may report its own
// problems with positions through [Config.Errorf].
//
// [[servers]] adds hosted server names next to the top-level one;
// [Config.Hosted] gives each its complete configuration, inheritance
// applied (servers.go says what is inherited), with problems located in
// its entry.
//
// config imports only the standard library, the TOML parser and fedgate's
// leaf packages for names (internal/servername, internal/glob,
// internal/endpoints), so every other package can depend on it.
package config

//go:generate go run ./internal/refgen/configref -src . -o ../docs/configuration.md

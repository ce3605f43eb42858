package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Name hashing (log.hash_server_names): logs name servers by a keyed hash,
// so that a log file does not tell who talks to whom, while the operator,
// who holds the key, can still follow one server through the logs and find
// a server they know by name:
//
//	printf '%s' example.org | openssl dgst -sha256 -mac HMAC -macopt hexkey:$(cat log-hash.key)
//
// gives the hash; the log shows "h:" and its first 16 hex digits.

const (
	// hashKeyBytes is the size of a generated hashing key.
	hashKeyBytes = 32
	// minHashKeyBytes is the shortest key accepted from a file.
	minHashKeyBytes = 16
	// hashPrefix marks a hashed name in logs.
	hashPrefix = "h:"
	// hashHexDigits is how much of the HMAC is shown: 64 bits, plenty to
	// tell servers apart, and useless without the key.
	hashHexDigits = 16
)

// nameHasher turns server names (and peer addresses) into what the logs
// show. A nil *nameHasher shows names as they are. Build it with
// newHasher; immutable and safe for concurrent use.
type nameHasher struct {
	// ipad and opad are the HMAC key blocks (RFC 2104), computed once so
	// that hashing a name allocates nothing but the result.
	ipad, opad [sha256.BlockSize]byte
}

// newHasher returns the hasher for key (any length, as HMAC allows).
func newHasher(key []byte) *nameHasher {
	if len(key) > sha256.BlockSize {
		sum := sha256.Sum256(key)
		key = sum[:]
	}
	h := &nameHasher{}
	for i := range h.ipad {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		h.ipad[i], h.opad[i] = k^0x36, k^0x5c
	}
	return h
}

// name returns s for the logs: "h:" followed by the first 16 hex digits of
// HMAC-SHA256(key, lower-case s) when hashing is on, s otherwise. The
// empty string stays empty.
func (h *nameHasher) name(s string) string {
	if h == nil || s == "" {
		return s
	}
	var buf [sha256.BlockSize + 256]byte
	b := append(buf[:0], h.ipad[:]...)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	inner := sha256.Sum256(b)
	var outer [sha256.BlockSize + sha256.Size]byte
	copy(outer[:], h.opad[:])
	copy(outer[sha256.BlockSize:], inner[:])
	sum := sha256.Sum256(outer[:])
	var out [len(hashPrefix) + hashHexDigits]byte
	copy(out[:], hashPrefix)
	hex.Encode(out[len(hashPrefix):], sum[:hashHexDigits/2])
	return string(out[:])
}

// enabled reports whether names are hashed.
func (h *nameHasher) enabled() bool { return h != nil }

// rule shortens a policy rule for the logs when hashing is on: `policy.deny[2]
// "evil.example"` names the server it matched, so only the part before the
// quoted entry is kept (the index still finds it in the configuration).
func (h *nameHasher) rule(r string) string {
	if !h.enabled() {
		return r
	}
	if i := strings.Index(r, ` "`); i >= 0 {
		return r[:i]
	}
	return r
}

// loadHashKey reads the hashing key from path (hex, as written by
// createHashKey) or, when the file does not exist and create is set,
// creates it with a new random key, mode 0600.
func loadHashKey(path string, create bool) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		return createHashKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the log hashing key: %w", err)
	}
	key, err := hex.DecodeString(string(bytes.TrimSpace(data)))
	if err != nil || len(key) < minHashKeyBytes {
		return nil, fmt.Errorf("log hashing key %s: want at least %d bytes as hex on one line", path, minHashKeyBytes)
	}
	return key, nil
}

// createHashKey writes a new random key to path, refusing to overwrite a
// file that appeared meanwhile.
func createHashKey(path string) ([]byte, error) {
	key := make([]byte, hashKeyBytes)
	rand.Read(key)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the log hashing key's folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadHashKey(path, false)
		}
		return nil, fmt.Errorf("creating the log hashing key: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(key) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("writing the log hashing key: %w", err)
	}
	return key, nil
}

// newNameHasher builds the hasher [log] asks for: nil when hashing is off.
// With create, a missing key file is created; without (check-config), it
// must not exist or must be valid.
func newNameHasher(hash bool, keyFile string, create bool) (*nameHasher, error) {
	if !hash {
		return nil, nil
	}
	if !create {
		if _, err := os.Stat(keyFile); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	key, err := loadHashKey(keyFile, create)
	if err != nil {
		return nil, err
	}
	return newHasher(key), nil
}

// isHashedAttr reports whether key is one of the attribute keys the
// packages below gateway use for server names and host names in their logs.
func isHashedAttr(key string) bool {
	switch key {
	case "server", "origin", "destination", "notary", "host", "m.server", "server_name", "question":
		return true
	}
	return false
}

// hashingHandler applies name hashing to the slog records of the packages
// below gateway (keyring, discovery, policy): values of the attributes in
// isHashedAttr are hashed, and those names are also replaced inside the
// other string and error attributes of the same record ("fetching keys of
// evil.example: ..."). The hasher is read per record, so a reload that
// turns hashing on or off applies at once.
type hashingHandler struct {
	next   slog.Handler
	hasher func() *nameHasher
}

func (h *hashingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *hashingHandler) Handle(ctx context.Context, r slog.Record) error {
	hs := h.hasher()
	if !hs.enabled() {
		return h.next.Handle(ctx, r)
	}
	var names []string
	r.Attrs(func(a slog.Attr) bool {
		names = collectNames(names, a)
		return true
	})
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(hashAttr(hs, a, names))
		return true
	})
	return h.next.Handle(ctx, out)
}

// collectNames appends the server names a (or its group) carries.
func collectNames(names []string, a slog.Attr) []string {
	v := a.Value.Resolve()
	switch {
	case v.Kind() == slog.KindGroup:
		for _, ga := range v.Group() {
			names = collectNames(names, ga)
		}
	case isHashedAttr(a.Key) && v.Kind() == slog.KindString && v.String() != "":
		names = append(names, v.String())
	}
	return names
}

// hashAttr returns a with server names hashed.
func hashAttr(hs *nameHasher, a slog.Attr, names []string) slog.Attr {
	v := a.Value.Resolve()
	switch {
	case isHashedAttr(a.Key) && v.Kind() == slog.KindString:
		return slog.String(a.Key, hs.name(v.String()))
	case v.Kind() == slog.KindString:
		return slog.String(a.Key, replaceNames(hs, v.String(), names))
	case v.Kind() == slog.KindAny:
		if err, ok := v.Any().(error); ok && len(names) > 0 {
			return slog.String(a.Key, replaceNames(hs, err.Error(), names))
		}
	case v.Kind() == slog.KindGroup:
		attrs := v.Group()
		out := make([]any, len(attrs))
		for i, ga := range attrs {
			out[i] = hashAttr(hs, ga, names)
		}
		return slog.Group(a.Key, out...)
	}
	return a
}

// replaceNames replaces every occurrence of the given names in s, and
// every IP address (error texts name the addresses dialled), by its hash.
func replaceNames(hs *nameHasher, s string, names []string) string {
	for _, n := range names {
		if n != "" && strings.Contains(s, n) {
			s = strings.ReplaceAll(s, n, hs.name(n))
		}
	}
	return hashAddresses(hs, s)
}

// hashAddresses replaces the IPv4 addresses and bracketed IPv6 addresses
// ("[2001:db8::1]:8448", as Go's errors print them) in s by their hashes.
func hashAddresses(hs *nameHasher, s string) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		var end int
		var addr string
		switch {
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				i = len(s)
				continue
			}
			end, addr = i+j+1, s[i+1:i+j]
		case c >= '0' && c <= '9' && (i == 0 || !isAddrByte(s[i-1])):
			end = i
			for end < len(s) && (s[end] == '.' || (s[end] >= '0' && s[end] <= '9')) {
				end++
			}
			addr = strings.TrimSuffix(s[i:end], ".")
			end = i + len(addr)
		default:
			i++
			continue
		}
		ip, err := netip.ParseAddr(addr)
		if err != nil || (c != '[' && !ip.Is4()) {
			i = max(end, i+1)
			continue
		}
		b.WriteString(s[last:i])
		if c == '[' {
			b.WriteString("[" + hs.name(ip.String()) + "]")
		} else {
			b.WriteString(hs.name(ip.String()))
		}
		last, i = end, end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// isAddrByte reports whether c may continue an address or a name, so that
// digits inside "v1.2.3.4x" or "host10.0.0.1" are not taken for one.
func isAddrByte(c byte) bool {
	return c == '.' || c == '-' || c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func (h *hashingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	// Attributes bound with With are hashed now if hashing is on now; the
	// packages below gateway bind no server names this way.
	if hs := h.hasher(); hs.enabled() {
		out := make([]slog.Attr, len(attrs))
		for i, a := range attrs {
			out[i] = hashAttr(hs, a, nil)
		}
		attrs = out
	}
	return &hashingHandler{next: h.next.WithAttrs(attrs), hasher: h.hasher}
}

func (h *hashingHandler) WithGroup(name string) slog.Handler {
	return &hashingHandler{next: h.next.WithGroup(name), hasher: h.hasher}
}

var _ slog.Handler = (*hashingHandler)(nil)

// slog returns the *slog.Logger a package below gateway logs through:
// zap underneath, with name hashing applied when log.hash_server_names is
// on.
func (g *Gateway) slog(name string) *slog.Logger {
	return slog.New(&hashingHandler{next: slogFor(g.log, name).Handler(), hasher: g.hasher})
}

// hasher returns the name hasher of the current configuration (nil before
// one is loaded, or with hashing off).
func (g *Gateway) hasher() *nameHasher {
	if rt := g.rt.Load(); rt != nil {
		return rt.names
	}
	return nil
}

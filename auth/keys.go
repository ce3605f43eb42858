package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeyAlgorithm is the only signing algorithm Matrix defines.
const KeyAlgorithm = "ed25519"

// KeyID is a signing key identifier, "ed25519:<version>".
type KeyID string

// ParseKeyID checks s against the key-id grammar: "ed25519:" followed by one
// or more of [a-zA-Z0-9_].
func ParseKeyID(s string) (KeyID, error) {
	version, ok := strings.CutPrefix(s, KeyAlgorithm+":")
	if !ok {
		return "", fmt.Errorf("key id %q: algorithm must be %s", s, KeyAlgorithm)
	}
	if !ValidKeyVersion(version) {
		return "", fmt.Errorf("key id %q: version must be one or more of [a-zA-Z0-9_]", s)
	}
	return KeyID(s), nil
}

// ValidKeyVersion reports whether v is a valid key version.
func ValidKeyVersion(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')) {
			return false
		}
	}
	return true
}

// Version returns the part after "ed25519:".
func (id KeyID) Version() string {
	_, v, _ := strings.Cut(string(id), ":")
	return v
}

// SigningKey is one of our ed25519 signing keys. It is immutable and safe
// to share. The zero value has no key and cannot sign.
type SigningKey struct {
	ID      KeyID
	Private ed25519.PrivateKey
}

// Public returns the public half of the key.
func (k SigningKey) Public() ed25519.PublicKey {
	return k.Private.Public().(ed25519.PublicKey)
}

// Seed returns the 32-byte seed the private key was derived from.
func (k SigningKey) Seed() []byte { return k.Private.Seed() }

// NewSigningKey builds a key from its id and 32-byte seed.
func NewSigningKey(id KeyID, seed []byte) (SigningKey, error) {
	if _, err := ParseKeyID(string(id)); err != nil {
		return SigningKey{}, err
	}
	if len(seed) != ed25519.SeedSize {
		return SigningKey{}, fmt.Errorf("key %s: seed is %d bytes, want %d", id, len(seed), ed25519.SeedSize)
	}
	return SigningKey{ID: id, Private: ed25519.NewKeyFromSeed(seed)}, nil
}

// GenerateSigningKey creates a fresh key. An empty version picks a random
// one of the form "a_XXXX", as Synapse does.
func GenerateSigningKey(version string) (SigningKey, error) {
	if version == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return SigningKey{}, fmt.Errorf("generating key version: %w", err)
		}
		version = "a_" + strings.NewReplacer("+", "A", "/", "B").Replace(EncodeBase64(b[:]))
	}
	id, err := ParseKeyID(KeyAlgorithm + ":" + version)
	if err != nil {
		return SigningKey{}, err
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return SigningKey{}, fmt.Errorf("generating key seed: %w", err)
	}
	return NewSigningKey(id, seed)
}

// Key file formats.
const (
	FormatSynapse  = "synapse"
	FormatDendrite = "dendrite"
)

// dendritePEMType is the PEM block type Dendrite writes.
const dendritePEMType = "MATRIX PRIVATE KEY"

// ParseKeyFile reads signing keys in either format, detected from the
// content: Dendrite PEM blocks ("MATRIX PRIVATE KEY" with a "Key-ID" header)
// or Synapse lines ("ed25519 <version> <base64 seed>", blank lines and
// lines starting with '#' ignored). It fails on an empty file, on any
// malformed entry and on duplicate key ids.
func ParseKeyFile(data []byte) ([]SigningKey, error) {
	var keys []SigningKey
	var err error
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		keys, err = parseDendrite(data)
	} else {
		keys, err = parseSynapse(data)
	}
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no signing keys in file")
	}
	seen := map[KeyID]bool{}
	for _, k := range keys {
		if seen[k.ID] {
			return nil, fmt.Errorf("key %s listed twice", k.ID)
		}
		seen[k.ID] = true
	}
	return keys, nil
}

func parseSynapse(data []byte) ([]SigningKey, error) {
	var keys []SigningKey
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			return nil, fmt.Errorf("line %d: want \"ed25519 <version> <base64 seed>\", got %d fields", i+1, len(fields))
		}
		if fields[0] != KeyAlgorithm {
			return nil, fmt.Errorf("line %d: unsupported algorithm %q", i+1, fields[0])
		}
		seed, err := DecodeBase64(fields[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: seed is not base64: %w", i+1, err)
		}
		k, err := NewSigningKey(KeyID(KeyAlgorithm+":"+fields[1]), seed)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func parseDendrite(data []byte) ([]SigningKey, error) {
	var keys []SigningKey
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != dendritePEMType {
			return nil, fmt.Errorf("PEM block %q: want %q", block.Type, dendritePEMType)
		}
		id := block.Headers["Key-ID"]
		if id == "" {
			return nil, errors.New("PEM block has no Key-ID header")
		}
		k, err := NewSigningKey(KeyID(id), block.Bytes)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("unparsable data after the last PEM block")
	}
	return keys, nil
}

// MarshalKeyFile renders keys in the given format (FormatSynapse or
// FormatDendrite).
func MarshalKeyFile(format string, keys []SigningKey) ([]byte, error) {
	var buf bytes.Buffer
	for _, k := range keys {
		switch format {
		case FormatSynapse:
			fmt.Fprintf(&buf, "%s %s %s\n", KeyAlgorithm, k.ID.Version(), EncodeBase64(k.Seed()))
		case FormatDendrite:
			err := pem.Encode(&buf, &pem.Block{
				Type:    dendritePEMType,
				Headers: map[string]string{"Key-ID": string(k.ID)},
				Bytes:   k.Seed(),
			})
			if err != nil {
				return nil, fmt.Errorf("encoding key %s: %w", k.ID, err)
			}
		default:
			return nil, fmt.Errorf("unknown key file format %q (want %s or %s)", format, FormatSynapse, FormatDendrite)
		}
	}
	return buf.Bytes(), nil
}

// LoadKeyFile reads and parses a key file.
func LoadKeyFile(path string) ([]SigningKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	keys, err := ParseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("signing key file %s: %w", path, err)
	}
	return keys, nil
}

// WriteKeyFile writes keys to path with mode 0600, refusing to overwrite an
// existing file.
func WriteKeyFile(path, format string, keys []SigningKey) error {
	data, err := MarshalKeyFile(format, keys)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("creating key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing key file: %w", err)
	}
	if err := f.Sync(); err != nil { // a new key must survive a crash
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing key file: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("writing key file: %w", err)
	}
	return nil
}

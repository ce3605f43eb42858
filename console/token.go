package console

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// MinTokenLength is the shortest admin token accepted: anything shorter is
// guessable.
const MinTokenLength = 16

// maxTokenFile bounds what is read of a token file.
const maxTokenFile = 4096

// Token is the admin token ([admin] token_file) that the console and
// status.json require. Only its SHA-256 is kept, and presented tokens are
// compared through theirs in constant time, so neither the token's bytes
// nor its length leak through timing. A nil *Token requires nothing.
// Immutable; safe for concurrent use.
type Token struct{ sum [sha256.Size]byte }

// NewToken returns the Token for secret, which must have at least
// MinTokenLength characters and no whitespace.
func NewToken(secret string) (*Token, error) {
	if len(secret) < MinTokenLength {
		return nil, fmt.Errorf("the token has %d characters; use at least %d (e.g. openssl rand -hex 32)", len(secret), MinTokenLength)
	}
	if strings.ContainsAny(secret, " \t\r\n") {
		return nil, errors.New("the token contains whitespace")
	}
	return &Token{sum: sha256.Sum256([]byte(secret))}, nil
}

// LoadToken reads a token file: the token on one line (surrounding
// whitespace and the final newline are ignored).
func LoadToken(path string) (*Token, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the admin token: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading the admin token %s: %w", path, err)
	}
	if len(data) > maxTokenFile {
		return nil, fmt.Errorf("admin token file %s is larger than %d bytes", path, maxTokenFile)
	}
	t, err := NewToken(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("admin token file %s: %w", path, err)
	}
	return t, nil
}

// Allows reports whether r presents the token: "Authorization: Bearer
// <token>" for scripts, or HTTP Basic with the token as password (any user
// name) so that a browser can ask a person for it. A nil Token allows
// every request.
func (t *Token) Allows(r *http.Request) bool {
	if t == nil {
		return true
	}
	presented, ok := "", false
	h := r.Header.Get("Authorization")
	if scheme, rest, found := strings.Cut(h, " "); found && strings.EqualFold(scheme, "Bearer") {
		presented, ok = strings.TrimSpace(rest), true
	} else if _, pass, basic := r.BasicAuth(); basic {
		presented, ok = pass, true
	}
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 && ok
}

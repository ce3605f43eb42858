package policyroom

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds on what a homeserver may send.
const (
	// MaxSyncResponse bounds one /sync answer. A room of 50,000 rules
	// needs about 25 MB; a bigger answer is refused (the last good rules
	// stay) rather than read without bound.
	MaxSyncResponse = 48 << 20
	// maxSmallResponse bounds every other answer (join, alias).
	maxSmallResponse = 64 << 10
	// maxTokenFile bounds the access token file.
	maxTokenFile = 4 << 10
)

// matrixError is a client-server API error answer.
type matrixError struct {
	Status       int
	Errcode      string `json:"errcode"`
	Message      string `json:"error"`
	RetryAfterMS int64  `json:"retry_after_ms"`
}

func (e *matrixError) Error() string {
	if e.Errcode == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Errcode, truncate(e.Message, 200))
}

// errUnknownToken marks answers that refuse the access token.
var errUnknownToken = errors.New("the homeserver refuses the access token")

// client speaks the few client-server API calls a policy room needs,
// with the bot's access token. Safe for concurrent use.
type client struct {
	base      *url.URL
	http      *http.Client
	tokenFile string

	mu    sync.Mutex
	token string
}

func newClient(base *url.URL, hc *http.Client, tokenFile string) *client {
	return &client{base: base, http: hc, tokenFile: tokenFile}
}

// readToken (re)reads the token file: one line, surrounding space
// ignored.
func (c *client) readToken() (string, error) {
	f, err := os.Open(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("access token: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("access token: %w", err)
	}
	if len(data) > maxTokenFile {
		return "", fmt.Errorf("access token file %s is larger than %d bytes", c.tokenFile, maxTokenFile)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("access token file %s must hold one token on one line", c.tokenFile)
	}
	c.mu.Lock()
	c.token = tok
	c.mu.Unlock()
	return tok, nil
}

func (c *client) currentToken() (string, error) {
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	if tok != "" {
		return tok, nil
	}
	return c.readToken()
}

// do sends a request to path (already escaped) with query, and decodes a
// 200 answer of at most limit bytes into out. A refused token makes the
// next call read the token file again.
func (c *client) do(ctx context.Context, method, path string, query url.Values, body any, limit int64, out any) error {
	tok, err := c.currentToken()
	if err != nil {
		return err
	}
	u := *c.base
	escaped := strings.TrimSuffix(c.base.EscapedPath(), "/") + path
	if u.Path, err = url.PathUnescape(escaped); err != nil {
		return err
	}
	u.RawPath = escaped
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("reading the answer to %s %s: %w", method, redactPath(path), err)
	}
	if int64(len(data)) > limit {
		return fmt.Errorf("the answer to %s %s is larger than %d bytes", method, redactPath(path), limit)
	}
	if resp.StatusCode != http.StatusOK {
		me := &matrixError{Status: resp.StatusCode}
		json.Unmarshal(data, me) // best effort: the status alone is enough
		me.Status = resp.StatusCode
		if resp.StatusCode == http.StatusUnauthorized || me.Errcode == "M_UNKNOWN_TOKEN" || me.Errcode == "M_MISSING_TOKEN" {
			c.mu.Lock()
			c.token = ""
			c.mu.Unlock()
			return fmt.Errorf("%w: %w", errUnknownToken, me)
		}
		return me
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the answer to %s %s is not the expected JSON: %w", method, redactPath(path), err)
	}
	return nil
}

// redactPath keeps the endpoint, not the room or alias, for messages.
func redactPath(p string) string {
	if i := strings.Index(p, "/v3/"); i >= 0 {
		rest := p[i+4:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			return p[:i+4] + rest[:j] + "/..."
		}
	}
	return p
}

// resolveAlias asks GET /_matrix/client/v3/directory/room/{roomAlias}.
func (c *client) resolveAlias(ctx context.Context, alias string) (string, []string, error) {
	var out struct {
		RoomID  string   `json:"room_id"`
		Servers []string `json:"servers"`
	}
	if err := c.do(ctx, http.MethodGet, "/_matrix/client/v3/directory/room/"+url.PathEscape(alias), nil, nil, maxSmallResponse, &out); err != nil {
		return "", nil, fmt.Errorf("resolving %s: %w", alias, err)
	}
	if !validRoomID(out.RoomID) {
		return "", nil, fmt.Errorf("resolving %s: the answer names no valid room ID", alias)
	}
	return out.RoomID, out.Servers, nil
}

// join asks POST /_matrix/client/v3/join/{roomIdOrAlias}, with via
// servers to join through.
func (c *client) join(ctx context.Context, room string, via []string) (string, error) {
	q := url.Values{}
	for _, v := range via[:min(len(via), 5)] {
		q.Add("via", v)
		q.Add("server_name", v) // before v1.12 the parameter was server_name
	}
	var out struct {
		RoomID string `json:"room_id"`
	}
	if err := c.do(ctx, http.MethodPost, "/_matrix/client/v3/join/"+url.PathEscape(room), q, struct{}{}, maxSmallResponse, &out); err != nil {
		return "", fmt.Errorf("joining %s: %w", room, err)
	}
	if !validRoomID(out.RoomID) {
		return "", fmt.Errorf("joining %s: the answer names no valid room ID", room)
	}
	return out.RoomID, nil
}

// sync asks GET /_matrix/client/v3/sync with an inline filter. since ""
// is an initial sync (full state); timeout is the long-poll wait.
func (c *client) sync(ctx context.Context, since, filter string, timeout time.Duration) (*syncResponse, error) {
	q := url.Values{}
	q.Set("filter", filter)
	q.Set("set_presence", "offline")
	q.Set("timeout", strconv.FormatInt(timeout.Milliseconds(), 10))
	if since != "" {
		q.Set("since", since)
	}
	var out syncResponse
	if err := c.do(ctx, http.MethodGet, "/_matrix/client/v3/sync", q, nil, MaxSyncResponse, &out); err != nil {
		return nil, fmt.Errorf("sync: %w", err)
	}
	if out.NextBatch == "" {
		return nil, errors.New("sync: the answer has no next_batch")
	}
	return &out, nil
}

// syncResponse is the part of a /sync answer a policy room needs.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join  map[string]joinedRoom `json:"join"`
		Leave map[string]leftRoom   `json:"leave"`
	} `json:"rooms"`
}

type joinedRoom struct {
	State    eventList `json:"state"`
	Timeline struct {
		Events  []event `json:"events"`
		Limited bool    `json:"limited"`
	} `json:"timeline"`
}

type leftRoom struct{}

type eventList struct {
	Events []event `json:"events"`
}

// event is a room event as sync returns it. Content stays raw until the
// type says it matters.
type event struct {
	Type     string          `json:"type"`
	StateKey *string         `json:"state_key"`
	Content  json.RawMessage `json:"content"`
	EventID  string          `json:"event_id"`
	Sender   string          `json:"sender"`
	Redacts  string          `json:"redacts"` // room versions before 11
}

// validRoomID accepts "!opaque" and "!opaque:server" of sane length.
func validRoomID(s string) bool {
	if len(s) < 2 || len(s) > 255 || s[0] != '!' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f || s[i] == '/' {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && n < len(s) && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Options configure a [Console].
type Options struct {
	// Status returns the status as of now (required). It is called once
	// per page or status.json request, never more often.
	Status func(now time.Time) *Status
	// Token returns the admin token in force; nil, or a nil func, lets
	// every request in. It is read per request, so a reload that changes
	// the token applies at once.
	Token func() *Token
	// Refresh is how often the page reloads itself. Default 15s; a
	// ?refresh=N query overrides it per view (0 turns it off).
	Refresh time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// OnError, if set, is told about a page that could not be rendered.
	OnError func(error)
}

// DefaultRefresh is the page's default self-refresh interval.
const DefaultRefresh = 15 * time.Second

// maxInFlight bounds the console requests served at once; more get 503,
// as promhttp does for /metrics: the admin listener must stay light.
const maxInFlight = 4

// Console serves the status page and status.json. Create it with [New];
// safe for concurrent use.
type Console struct {
	opts   Options
	render *renderer
	slots  chan struct{}
}

// New checks opts and parses the page templates.
func New(opts Options) (*Console, error) {
	if opts.Status == nil {
		return nil, errors.New("console: no Status function")
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r, err := newRenderer()
	if err != nil {
		return nil, err
	}
	return &Console{opts: opts, render: r, slots: make(chan struct{}, maxInFlight)}, nil
}

// Page serves the HTML status page (mount it at "GET /{$}").
func (c *Console) Page() http.Handler {
	return c.guard(func(w http.ResponseWriter, r *http.Request) {
		refresh := int(c.opts.Refresh / time.Second)
		if v := r.URL.Query().Get("refresh"); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				refresh = n
				if n > 0 {
					refresh = min(max(n, 5), 3600)
				}
			}
		}
		var buf bytes.Buffer
		if err := c.render.render(&buf, c.opts.Status(c.opts.Now()), refresh); err != nil {
			if c.opts.OnError != nil {
				c.opts.OnError(err)
			}
			http.Error(w, "the status page could not be rendered; see the log", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		// No script runs, nothing is loaded from elsewhere: the only
		// inline content is the stylesheet, allowed by its hash.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src "+c.render.styleHash+"; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Length", strconv.Itoa(buf.Len()))
		w.Write(buf.Bytes())
	})
}

// JSON serves status.json (mount it at "GET /status.json").
func (c *Console) JSON() http.Handler {
	return c.guard(func(w http.ResponseWriter, r *http.Request) {
		body, err := json.MarshalIndent(c.opts.Status(c.opts.Now()), "", "  ")
		if err != nil {
			if c.opts.OnError != nil {
				c.opts.OnError(err)
			}
			http.Error(w, "status.json could not be encoded; see the log", http.StatusInternalServerError)
			return
		}
		body = append(body, '\n')
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
}

// guard checks the token and bounds concurrency, and sets the headers
// both answers share.
func (c *Console) guard(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		var tok *Token
		if c.opts.Token != nil {
			tok = c.opts.Token()
		}
		if !tok.Allows(r) {
			h.Add("WWW-Authenticate", `Bearer realm="fedgate console"`)
			h.Add("WWW-Authenticate", `Basic realm="fedgate console (the admin token is the password)", charset="UTF-8"`)
			http.Error(w, "the fedgate console needs the admin token ([admin] token_file): send Authorization: Bearer <token>", http.StatusUnauthorized)
			return
		}
		select {
		case c.slots <- struct{}{}:
			defer func() { <-c.slots }()
		default:
			http.Error(w, "too many console requests at once; try again", http.StatusServiceUnavailable)
			return
		}
		next(w, r)
	})
}

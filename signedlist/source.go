package signedlist

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/fedgate/fedgate/internal/fsutil"
	"github.com/fedgate/fedgate/policy"
)

// Defaults for zero [Options] fields.
const (
	DefaultPollInterval = 5 * time.Second
	DefaultRefresh      = 5 * time.Minute
	DefaultFetchTimeout = 30 * time.Second
	DefaultName         = "federation-list"
	// minRetry is the first retry delay after a failed fetch; it doubles
	// up to the refresh interval.
	minRetry = 5 * time.Second
)

// Fetcher fetches url with GET and the given request headers, returning
// the status, the response headers and the body, which must be at most
// maxBytes long (longer is an error). It must verify TLS with the
// operator's roots and refuse addresses the SSRF guard refuses; ctx bounds
// the whole exchange.
type Fetcher func(ctx context.Context, url string, header http.Header, maxBytes int64) (status int, respHeader http.Header, body []byte, err error)

// Sink receives the list; *policy.Engine is one.
type Sink interface {
	SetExternal(name string, x *policy.External) policy.ExternalResult
	SetExternalStaleAt(name string, staleAt time.Time) bool
}

// Options configure a [Source]. Exactly one of File and URL is set.
type Options struct {
	// File is a signed list file (list_file with list_signature = "jws"),
	// read again when it changes.
	File string
	// URL is an https URL the signed list is fetched from (list_url).
	URL string
	// Fetch fetches URL (required with URL).
	Fetch Fetcher
	// Verifier checks every list (required).
	Verifier *Verifier
	// Refresh is how often URL is fetched; zero means [DefaultRefresh].
	Refresh time.Duration
	// PollInterval is how often File is looked at; zero means
	// [DefaultPollInterval].
	PollInterval time.Duration
	// FetchTimeout bounds one fetch; zero means [DefaultFetchTimeout].
	FetchTimeout time.Duration
	// MaxAge is list_max_age: the list goes stale MaxAge after it was last
	// confirmed (File: its modification time; URL: the last fetch that
	// returned it, or 304, and verified). Zero: never stale.
	MaxAge time.Duration
	// CacheFile keeps the last good JWS
	// (data_dir/federation-list-<hash>.jws); "" keeps nothing. Its
	// modification time is when it was last confirmed.
	CacheFile string
	// Sink receives the list under Name; nil only checks (for
	// check-config).
	Sink Sink
	// Name is the engine's name for the set; "" means [DefaultName].
	Name string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives loads, refusals and stale alarms; nil discards.
	Logger *slog.Logger
}

// Status is a point-in-time view of a [Source], for /readyz and metrics.
type Status struct {
	// Location is the file path or URL.
	Location string
	// Version is the version of the list in force; -1 when there is none.
	Version int64
	// Allow and Deny count the entries in force.
	Allow, Deny int
	// Confirmed is when the list in force was last confirmed; zero when
	// there is none.
	Confirmed time.Time
	// Stale reports that list_max_age has passed since Confirmed (or no
	// list was ever loaded and list_max_age is set): federation fails
	// closed.
	Stale bool
	// MaxAge is Options.MaxAge (list_max_age); zero when unchecked.
	MaxAge time.Duration
	// Loads counts lists accepted (and confirmations of the same list);
	// Failures counts refusals and failed fetches.
	Loads, Failures uint64
	// LastError says why the last attempt failed; "" after a success.
	LastError string
	// Signer is the subject of the certificate that signed the list in
	// force; SignerNotAfter is when its chain stops verifying.
	Signer         string
	SignerNotAfter time.Time
}

// Source keeps a signed federation list current in a [Sink]. Build it
// with [New], run [Source.Run] in a goroutine. Safe for concurrent use.
type Source struct {
	o     Options
	label string // "list_file" or "list_url", as Decision.Rule names it
	log   *slog.Logger
	now   func() time.Time

	mu        sync.Mutex
	cur       *current // last good list; nil when there is none
	etag      string   // of cur, from the URL
	stamp     os.FileInfo
	refused   [sha256.Size]byte // last refused content, logged once
	lastErr   string
	loads     uint64
	failures  uint64
	staleLogd bool
	expired   bool // cur's chain no longer verifies (logged once)
	published bool // Publish was called: changes reach the sink
}

// current is the list in force.
type current struct {
	jws       []byte
	sum       [sha256.Size]byte
	v         *Verified
	confirmed time.Time
}

// New checks o and loads the last good list (the cache file, then for
// File the file itself); [Source.Publish] hands it to the sink. For File,
// a file that cannot be verified is an error unless the cache holds a
// good list; for URL, nothing is fetched yet ([Source.Run] fetches at
// once). New changes nothing outside the source.
func New(o Options) (*Source, error) {
	switch {
	case o.Verifier == nil:
		return nil, errors.New("signed list: no trusted roots")
	case (o.File == "") == (o.URL == ""):
		return nil, errors.New("signed list: exactly one of a file and a URL is needed")
	case o.URL != "" && o.Fetch == nil:
		return nil, errors.New("signed list: no fetcher for the URL")
	}
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = DefaultFetchTimeout
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	s := &Source{o: o, log: o.Logger, now: o.Now, label: "list_url"}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if o.File != "" {
		s.label = "list_file"
	}
	s.loadCache()
	if o.File != "" {
		if err := s.pollFile(true); err != nil && s.cur == nil {
			return nil, fmt.Errorf("signed list %s: %w", o.File, err)
		}
	}
	return s, nil
}

// Publish hands the list known now to the sink; from then on every
// change reaches it. Call it once, before Run, when the source is put in
// service: a source built only to check a configuration, or for a reload
// that fails, never publishes.
func (s *Source) Publish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.published = true
	s.publish()
	if s.cur != nil {
		s.writeCache(s.cur.confirmed)
	}
}

// Location returns the file path or URL.
func (s *Source) Location() string {
	if s.o.File != "" {
		return s.o.File
	}
	return s.o.URL
}

// loadCache reads the cache file, if any, and keeps it when it verifies
// now. A cache that does not verify (its signer expired meanwhile) is
// ignored, with a warning.
func (s *Source) loadCache() {
	if s.o.CacheFile == "" {
		return
	}
	st, err := os.Stat(s.o.CacheFile)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	var data []byte
	if err == nil {
		data, err = fsutil.ReadFileLimited(s.o.CacheFile, MaxListSize)
	}
	if err != nil {
		s.log.Warn("signed list cache unreadable", "file", s.o.CacheFile, "error", err)
		return
	}
	v, err := s.o.Verifier.Verify(data, s.now())
	if err != nil {
		s.log.Warn("signed list cache no longer verifies; ignoring it", "file", s.o.CacheFile, "error", err)
		return
	}
	s.cur = &current{jws: data, sum: sha256.Sum256(data), v: v, confirmed: st.ModTime()}
	s.loads++
	s.log.Info("signed list restored from the cache", "file", s.o.CacheFile, "version", v.List.Version,
		"confirmed", st.ModTime(), "allow", len(v.List.Allow), "deny", len(v.List.Deny))
}

// Run keeps the list current until ctx ends: it looks at the file every
// PollInterval, or fetches the URL at once and then every Refresh
// (retrying sooner after a failure). Call it once, in its own goroutine.
func (s *Source) Run(ctx context.Context) {
	if s.o.File != "" {
		t := time.NewTicker(s.o.PollInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.pollFile(false)
				s.checkFreshness()
			}
		}
	}
	retry := minRetry
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next := s.o.Refresh
		if err := s.Fetch(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			next = min(retry, s.o.Refresh)
			retry *= 2
		} else {
			retry = minRetry
		}
		s.checkFreshness()
		t.Reset(next)
	}
}

// Fetch fetches the URL once and applies the answer. [Source.Run] calls
// it; tests may too.
func (s *Source) Fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.o.FetchTimeout)
	defer cancel()
	h := http.Header{}
	h.Set("Accept", "application/jose, */*;q=0.5")
	s.mu.Lock()
	if s.cur != nil && s.etag != "" {
		h.Set("If-None-Match", s.etag)
	}
	s.mu.Unlock()
	status, rh, body, err := s.o.Fetch(ctx, s.o.URL, h, MaxListSize)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil:
		return s.fail(fmt.Errorf("fetching %s: %w", s.o.URL, err), nil)
	case status == http.StatusNotModified && s.cur != nil:
		return s.confirm(s.cur.jws, s.now())
	case status != http.StatusOK:
		return s.fail(fmt.Errorf("fetching %s: HTTP %d", s.o.URL, status), nil)
	}
	if err := s.accept(body, s.now()); err != nil {
		return err
	}
	s.etag = rh.Get("ETag")
	return nil
}

// pollFile reads the file if it changed (or, with force, in any case) and
// applies it. It returns why a changed file was refused.
func (s *Source) pollFile(force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := os.Stat(s.o.File)
	if err != nil {
		return s.fail(fmt.Errorf("reading %s: %w", s.o.File, err), nil)
	}
	if !force && s.stamp != nil && os.SameFile(s.stamp, st) && s.stamp.ModTime().Equal(st.ModTime()) && s.stamp.Size() == st.Size() {
		return nil
	}
	data, err := fsutil.ReadFileLimited(s.o.File, MaxListSize)
	if err != nil {
		return s.fail(fmt.Errorf("reading %s: %w", s.o.File, err), nil)
	}
	s.stamp = st
	return s.accept(data, st.ModTime())
}

// accept verifies data and makes it the list in force, confirmed at
// confirmed. A list that does not verify or is older than the one in force
// is refused. Called with s.mu held.
func (s *Source) accept(data []byte, confirmed time.Time) error {
	sum := sha256.Sum256(data)
	if s.cur != nil && sum == s.cur.sum {
		return s.confirm(data, confirmed)
	}
	v, err := s.o.Verifier.Verify(data, s.now())
	if err == nil && s.cur != nil && v.List.Version < s.cur.v.List.Version {
		err = fmt.Errorf("version %d is older than the version in force, %d (rollback refused)", v.List.Version, s.cur.v.List.Version)
	}
	if err != nil {
		return s.fail(fmt.Errorf("%s %s refused, keeping the last good list: %w", s.label, s.Location(), err), &sum)
	}
	if s.cur != nil && v.List.Version == s.cur.v.List.Version {
		s.log.Warn("signed list changed without a new version", "list", s.Location(), "version", v.List.Version)
	}
	s.cur = &current{jws: data, sum: sum, v: v, confirmed: confirmed}
	s.expired = false
	s.succeeded()
	s.writeCache(confirmed)
	s.publish()
	s.log.Info("signed list loaded", "list", s.Location(), "version", v.List.Version, "alg", v.Alg,
		"signer", v.Signer.Subject.String(), "signer_not_after", v.NotAfter, "allow", len(v.List.Allow), "deny", len(v.List.Deny))
	return nil
}

// confirm records that the list in force is still current (same content
// at the file, or 304 from the URL), after checking that its chain still
// verifies now: an expired signer confirms nothing. Called with s.mu held.
func (s *Source) confirm(data []byte, confirmed time.Time) error {
	if _, err := s.o.Verifier.Verify(data, s.now()); err != nil {
		if !s.expired {
			s.expired = true
			s.log.Error("the signed list in force no longer verifies; it stays in force but cannot be confirmed"+
				" (list_max_age counts from its last confirmation)", "list", s.Location(), "error", err)
		}
		return s.fail(fmt.Errorf("the list in force no longer verifies: %w", err), nil)
	}
	s.succeeded()
	if confirmed.After(s.cur.confirmed) {
		s.cur.confirmed = confirmed
		s.writeCache(confirmed)
		if s.o.MaxAge > 0 && s.o.Sink != nil && s.published {
			s.o.Sink.SetExternalStaleAt(s.o.Name, confirmed.Add(s.o.MaxAge))
		}
	}
	return nil
}

func (s *Source) succeeded() {
	s.loads++
	if s.lastErr != "" {
		s.log.Info("signed list source recovered", "list", s.Location())
	}
	s.lastErr = ""
}

// fail records a failure; refusals of the same content are logged once.
// Called with s.mu held.
func (s *Source) fail(err error, sum *[sha256.Size]byte) error {
	s.failures++
	msg := err.Error()
	repeat := msg == s.lastErr || (sum != nil && *sum == s.refused)
	s.lastErr = msg
	if sum != nil {
		s.refused = *sum
	}
	if !repeat {
		s.log.Error("signed list not updated", "list", s.Location(), "error", err)
	}
	return err
}

// writeCache stores the list in force and its confirmation time. Called
// with s.mu held.
func (s *Source) writeCache(confirmed time.Time) {
	if s.o.CacheFile == "" || s.cur == nil || !s.published {
		return // a source that is not in service writes nothing
	}
	if old, err := os.ReadFile(s.o.CacheFile); err != nil || !bytes.Equal(old, s.cur.jws) {
		if err := fsutil.WriteFileAtomic(s.o.CacheFile, s.cur.jws, 0o600); err != nil {
			s.log.Warn("signed list cache not written", "file", s.o.CacheFile, "error", err)
			return
		}
	}
	if err := os.Chtimes(s.o.CacheFile, confirmed, confirmed); err != nil {
		s.log.Warn("signed list cache not touched", "file", s.o.CacheFile, "error", err)
	}
}

// publish hands the list in force to the sink. Without one, and with
// list_max_age, an empty set that is already stale is published, so that
// federation fails closed until a good list arrives. Called with s.mu held.
func (s *Source) publish() {
	if s.o.Sink == nil || !s.published {
		return
	}
	x := &policy.External{Kind: policy.KindList, Source: s.label}
	if s.cur == nil {
		if s.o.MaxAge <= 0 {
			return
		}
		x.StaleAt = s.now()
	} else {
		l := s.cur.v.List
		x.Allow = entries(l.Allow)
		x.Deny = entries(l.Deny)
		if s.o.MaxAge > 0 {
			x.StaleAt = s.cur.confirmed.Add(s.o.MaxAge)
		}
	}
	res := s.o.Sink.SetExternal(s.o.Name, x)
	for _, err := range res.Errors {
		s.log.Error("signed list entry ignored", "error", err)
	}
}

func entries(list []string) []policy.ExternalEntry {
	out := make([]policy.ExternalEntry, len(list))
	for i, e := range list {
		out[i] = policy.ExternalEntry{Entity: e}
	}
	return out
}

// checkFreshness logs when the list goes stale and when it is fresh
// again.
func (s *Source) checkFreshness() {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.statusLocked()
	switch {
	case st.Stale && !s.staleLogd:
		s.log.Error("signed list is stale: federation fails closed (list_stale) until a good list is confirmed",
			"list", s.Location(), "confirmed", st.Confirmed, "max_age", s.o.MaxAge)
	case !st.Stale && s.staleLogd:
		s.log.Info("signed list is fresh again", "list", s.Location(), "confirmed", st.Confirmed)
	}
	s.staleLogd = st.Stale
}

// Status returns the source's state.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statusLocked()
}

func (s *Source) statusLocked() Status {
	st := Status{Location: s.Location(), Version: -1, MaxAge: s.o.MaxAge, Loads: s.loads, Failures: s.failures, LastError: s.lastErr}
	if c := s.cur; c != nil {
		st.Version = c.v.List.Version
		st.Allow, st.Deny = len(c.v.List.Allow), len(c.v.List.Deny)
		st.Confirmed = c.confirmed
		st.Signer = c.v.Signer.Subject.String()
		st.SignerNotAfter = c.v.NotAfter
		st.Stale = s.o.MaxAge > 0 && !s.now().Before(c.confirmed.Add(s.o.MaxAge))
	} else {
		st.Stale = s.o.MaxAge > 0
	}
	return st
}

// Close removes the list from the sink. Call it after Run has returned
// when the source is dropped for good (a reload that removes the list);
// a replacement source publishing under the same name need not.
func (s *Source) Close() {
	if s.o.Sink != nil {
		s.o.Sink.SetExternal(s.o.Name, nil)
	}
}

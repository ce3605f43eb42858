package discovery

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedgate/fedgate/internal/fsutil"
)

// Hosts file limits.
const (
	// DefaultHostsFile is the hosts file glibc's "hosts: files dns"
	// consults; [Options.HostsFile] is empty (no hosts file) by default, so
	// callers that want the host's behaviour set it to this.
	DefaultHostsFile = "/etc/hosts"
	// MaxHostsFileSize bounds the hosts file read. Ordinary hosts files are
	// a few hundred bytes; ad-blocking lists installed as /etc/hosts reach a
	// few MiB, which still fit. A larger file is refused (the last good
	// table stays in use) rather than read without bound.
	MaxHostsFileSize = 8 << 20
	// hostsCheckInterval is how often the file's metadata is looked at:
	// an edit is seen within this long, and lookups in between cost no
	// system call.
	hostsCheckInterval = time.Second
	// hostsRacyWindow: a file modified this close to when it was read may
	// be modified again within the file system's timestamp resolution
	// without its mtime changing, so it is read once more at the next
	// check (git's "racy" index entries have the same problem).
	hostsRacyWindow = 2 * time.Second
	// maxHostsAddrs caps the addresses kept for one name.
	maxHostsAddrs = 64
)

// hostsTable is a parsed hosts file: lower-case name (no trailing dot) ->
// its addresses in file order. Immutable once built.
type hostsTable struct {
	names map[string][]netip.Addr
}

// lookup returns name's addresses; ok is false when the table does not
// know the name (DNS is asked then).
func (t *hostsTable) lookup(name string) (addrs []netip.Addr, ok bool) {
	if t == nil || len(t.names) == 0 {
		return nil, false
	}
	addrs, ok = t.names[hostsKey(name)]
	return addrs, ok
}

// hostsKey normalises a name the way lookups compare names: ASCII case is
// ignored (glibc compares with strcasecmp, in the C locale) and trailing
// dots are dropped, so "Peer.Example." and "peer.example" are one name.
// Other bytes are kept as they are.
func hostsKey(name string) string {
	name = strings.TrimRight(name, ".")
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

// parseHosts reads hosts(5) text the way glibc's files backend does:
//
//   - "#" starts a comment anywhere on a line;
//   - fields are separated by blanks (space, tab, and the other isspace
//     characters, so CRLF files work);
//   - the first field is an IPv4 or IPv6 address, the others are the
//     canonical name and its aliases, all looked up alike;
//   - a line whose address does not parse (including IPv6 with a zone such
//     as fe80::1%eth0, which glibc's inet_pton refuses, and IPv4 with
//     leading zeros) or that has no name is ignored;
//   - a name on several lines gets the addresses of all of them, in file
//     order, duplicates dropped (what glibc's getaddrinfo and Go's resolver
//     return before any sorting of their own).
//
// IPv4-mapped IPv6 addresses are kept as the IPv4 address they map, as DNS
// answers are. Names are not validated: a line naming something that is
// not a host name can never match a lookup.
func parseHosts(data []byte) *hostsTable {
	t := &hostsTable{names: map[string][]netip.Addr{}}
	for len(data) > 0 {
		var line []byte
		if i := indexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if i := indexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.FieldsFunc(string(line), isHostsSpace)
		if len(fields) < 2 {
			continue
		}
		addr, err := netip.ParseAddr(fields[0])
		if err != nil || addr.Zone() != "" {
			continue
		}
		addr = addr.Unmap()
		for _, name := range fields[1:] {
			key := hostsKey(name)
			if key == "" {
				continue
			}
			list := t.names[key]
			if len(list) >= maxHostsAddrs || containsAddr(list, addr) {
				continue
			}
			t.names[key] = append(list, addr)
		}
	}
	return t
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// isHostsSpace is C's isspace in the "C" locale.
func isHostsSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// hostsFile keeps a parsed hosts file current. Lookups read the current
// table through an atomic pointer; at most once per hostsCheckInterval one
// of them stats the file and, when its identity, size or modification time
// changed, reads and parses it again. Safe for concurrent use.
type hostsFile struct {
	path  string
	log   *slog.Logger
	table atomic.Pointer[hostsTable]
	// nextCheck is when the file's metadata is next looked at (Unix ns).
	nextCheck atomic.Int64
	now       func() time.Time

	mu      sync.Mutex // serialises refreshes; guards what follows
	info    fs.FileInfo
	racy    bool   // read too soon after a write: read again at the next check
	lastErr string // the last problem logged, so it is logged once
}

// newHostsFile loads path. A file that does not exist is an empty table
// (DNS answers everything, as glibc does without /etc/hosts); a file that
// exists but cannot be used (unreadable, a folder, too large) is an error.
func newHostsFile(path string, now func() time.Time, log *slog.Logger) (*hostsFile, error) {
	h := &hostsFile{path: path, log: log, now: now}
	h.table.Store(&hostsTable{})
	if err := h.refresh(true); err != nil {
		return nil, err
	}
	h.nextCheck.Store(now().Add(hostsCheckInterval).UnixNano())
	return h, nil
}

// lookup returns name's addresses from the current table, first checking
// the file for changes if the check is due.
func (h *hostsFile) lookup(name string) ([]netip.Addr, bool) {
	if h == nil {
		return nil, false
	}
	now := h.now().UnixNano()
	if next := h.nextCheck.Load(); now >= next && h.nextCheck.CompareAndSwap(next, now+int64(hostsCheckInterval)) {
		h.refresh(false)
	}
	return h.table.Load().lookup(name)
}

// refresh re-reads the file if it changed since it was last read. Problems
// are logged once each; the last good table stays in use, except that a
// file that no longer exists empties it (glibc then asks DNS only).
func (h *hostsFile) refresh(first bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	info, err := os.Stat(h.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if first || h.info != nil {
			h.log.Info("hosts file does not exist; every name is looked up in DNS", "hosts_file", h.path)
		}
		h.info, h.racy, h.lastErr = nil, false, ""
		h.table.Store(&hostsTable{})
		return nil
	case err != nil:
		return h.problem(first, fmt.Errorf("%w: %w", ErrHostsFile, err))
	case info.IsDir():
		return h.problem(first, fmt.Errorf("%w: %s is a folder", ErrHostsFile, h.path))
	case info.Size() > MaxHostsFileSize:
		return h.problem(first, fmt.Errorf("%w: %s is larger than %d bytes", ErrHostsFile, h.path, MaxHostsFileSize))
	}
	if !first && !h.racy && h.info != nil && os.SameFile(h.info, info) &&
		info.Size() == h.info.Size() && info.ModTime().Equal(h.info.ModTime()) {
		return nil
	}
	readAt := time.Now() // compared with the file system's clock, not h.now
	data, err := fsutil.ReadFileLimited(h.path, MaxHostsFileSize)
	if err != nil {
		return h.problem(first, fmt.Errorf("%w: %w", ErrHostsFile, err))
	}
	t := parseHosts(data)
	h.table.Store(t)
	h.info, h.lastErr = info, ""
	h.racy = readAt.Sub(info.ModTime()) < hostsRacyWindow
	if !first {
		h.log.Info("hosts file reloaded", "hosts_file", h.path, "names", len(t.names))
	}
	return nil
}

// problem reports err: returned on the first load (the caller refuses the
// configuration), logged once later on (the last good table stays).
func (h *hostsFile) problem(first bool, err error) error {
	if first {
		return err
	}
	if msg := err.Error(); msg != h.lastErr {
		h.lastErr = msg
		h.log.Warn("hosts file not reloaded; keeping the last good one", "hosts_file", h.path, "error", err)
	}
	return err
}

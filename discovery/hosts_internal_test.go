package discovery

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedgate/fedgate/internal/fedtest"
)

func ipList(list ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(list))
	for _, s := range list {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// TestParseHosts pins the glibc-compatible reading of hosts(5) lines.
func TestParseHosts(t *testing.T) {
	t.Parallel()
	const file = "# /etc/hosts as Debian writes it, and worse\n" +
		"127.0.0.1\tlocalhost\n" +
		"::1     localhost ip6-localhost ip6-loopback\n" +
		"192.0.2.10 Peer.Example peer-alias # the canonical name, an alias, a comment\n" +
		"2001:db8::10 peer.example\n" +
		"192.0.2.10 peer.example\n" + // duplicate, dropped
		"192.0.2.11 peer.example\n" + // second line for the same name: merged in file order
		"  198.51.100.7   spaced.example\t\tother.example  \n" +
		"203.0.113.5 crlf.example\r\n" +
		"fe80::1%eth0 zoned.example\n" + // glibc's inet_pton refuses zones: line ignored
		"010.0.0.1 octal.example\n" + // leading zeros: refused by inet_pton, ignored
		"1.2.3 short.example\n" +
		"not-an-address bogus.example\n" +
		"192.0.2.99\n" + // no name
		"#192.0.2.98 commented.example\n" +
		"192.0.2.97#glued.example\n" + // the comment starts inside the field
		"::ffff:192.0.2.12 mapped.example\n" +
		"192.0.2.13 dotted.example.\n" +
		"192.0.2.14 vt.example\vff.example\fcr.example\n" +
		"0.0.0.0 blocked.example\n" +
		"192.0.2.15 last.example" // no final newline
	tbl := parseHosts([]byte(file))
	tests := []struct {
		name string
		want []netip.Addr // nil: not listed
	}{
		{"localhost", ipList("127.0.0.1", "::1")},
		{"LOCALHOST", ipList("127.0.0.1", "::1")},
		{"ip6-loopback", ipList("::1")},
		{"peer.example", ipList("192.0.2.10", "2001:db8::10", "192.0.2.11")},
		{"PEER.example.", ipList("192.0.2.10", "2001:db8::10", "192.0.2.11")},
		{"peer-alias", ipList("192.0.2.10")},
		{"spaced.example", ipList("198.51.100.7")},
		{"other.example", ipList("198.51.100.7")},
		{"crlf.example", ipList("203.0.113.5")},
		{"zoned.example", nil},
		{"octal.example", nil},
		{"short.example", nil},
		{"bogus.example", nil},
		{"commented.example", nil},
		{"glued.example", nil},
		{"mapped.example", ipList("192.0.2.12")},
		{"dotted.example", ipList("192.0.2.13")},
		{"vt.example", ipList("192.0.2.14")},
		{"ff.example", ipList("192.0.2.14")},
		{"cr.example", ipList("192.0.2.14")},
		{"blocked.example", ipList("0.0.0.0")},
		{"last.example", ipList("192.0.2.15")},
		{"absent.example", nil},
		{"", nil},
	}
	for _, tt := range tests {
		got, ok := tbl.lookup(tt.name)
		if ok != (tt.want != nil) || !slices.Equal(got, tt.want) {
			t.Errorf("lookup(%q) = %v, %v; want %v", tt.name, got, ok, tt.want)
		}
	}
	if _, ok := tbl.names["192.0.2.97#glued.example"]; ok {
		t.Error("a field with # kept its comment part")
	}
}

func TestParseHostsBounds(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 200 {
		b.WriteString(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String() + " many.example\n")
	}
	got, _ := parseHosts([]byte(b.String())).lookup("many.example")
	if len(got) != maxHostsAddrs || got[0] != netip.MustParseAddr("192.0.2.0") {
		t.Fatalf("%d addresses, first %v; want the first %d in file order", len(got), got[0], maxHostsAddrs)
	}
}

// hostsFixture is a hosts file in a temporary folder read through a
// hostsFile with a settable clock.
type hostsFixture struct {
	t     *testing.T
	path  string
	clock *fedtest.Clock
	h     *hostsFile
}

func newHostsFixture(t *testing.T, content string) *hostsFixture {
	t.Helper()
	f := &hostsFixture{t: t, path: filepath.Join(t.TempDir(), "hosts"), clock: fedtest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))}
	if content != "" {
		f.write(content)
	}
	h, err := newHostsFile(f.path, f.clock.Now, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	return f
}

func (f *hostsFixture) write(content string) {
	f.t.Helper()
	if err := os.WriteFile(f.path, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *hostsFixture) lookup(name string) []netip.Addr {
	got, _ := f.h.lookup(name)
	return got
}

// TestHostsFileReload: an edit is seen at the next check (within a second
// of the clock), not before; a removed file empties the table; a file that
// becomes unusable keeps the last good table.
func TestHostsFileReload(t *testing.T) {
	t.Parallel()
	f := newHostsFixture(t, "192.0.2.1 peer.example\n")
	if got := f.lookup("peer.example"); !slices.Equal(got, ipList("192.0.2.1")) {
		t.Fatalf("first read: %v", got)
	}

	f.write("192.0.2.2 peer.example other.example\n")
	f.clock.Advance(hostsCheckInterval / 2)
	if got := f.lookup("peer.example"); !slices.Equal(got, ipList("192.0.2.1")) {
		t.Fatalf("between checks (no system call yet): %v", got)
	}
	f.clock.Advance(hostsCheckInterval / 2)
	if got := f.lookup("other.example"); !slices.Equal(got, ipList("192.0.2.2")) {
		t.Fatalf("after an edit and a check: %v", got)
	}

	// Same size, and the modification time put back: the file was read
	// within the racy window of its mtime, so it is read again anyway.
	info, _ := os.Stat(f.path)
	f.write("192.0.2.3 peer.example other.example\n")
	os.Chtimes(f.path, info.ModTime(), info.ModTime())
	f.clock.Advance(hostsCheckInterval)
	if got := f.lookup("peer.example"); !slices.Equal(got, ipList("192.0.2.3")) {
		t.Fatalf("same-size edit with the old mtime: %v", got)
	}

	// Too large: refused, the last good table stays.
	f.write("192.0.2.4 peer.example\n" + strings.Repeat("#", MaxHostsFileSize))
	f.clock.Advance(hostsCheckInterval)
	if got := f.lookup("peer.example"); !slices.Equal(got, ipList("192.0.2.3")) {
		t.Fatalf("after an oversized file: %v", got)
	}

	// Removed: nothing is listed, DNS answers everything.
	os.Remove(f.path)
	f.clock.Advance(hostsCheckInterval)
	if got, ok := f.h.lookup("peer.example"); ok {
		t.Fatalf("after removal: %v", got)
	}

	// Created again (a rename over it, as editors and docker do).
	tmp := f.path + ".new"
	os.WriteFile(tmp, []byte("192.0.2.5 peer.example\n"), 0o644)
	os.Rename(tmp, f.path)
	f.clock.Advance(hostsCheckInterval)
	if got := f.lookup("peer.example"); !slices.Equal(got, ipList("192.0.2.5")) {
		t.Fatalf("after re-creation: %v", got)
	}
}

func TestHostsFileProblemsAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	if _, err := newHostsFile(filepath.Join(dir, "missing"), time.Now, log); err != nil {
		t.Errorf("a missing hosts file is fine (DNS only): %v", err)
	}
	if _, err := newHostsFile(dir, time.Now, log); !errors.Is(err, ErrHostsFile) || !strings.Contains(err.Error(), "is a folder") {
		t.Errorf("folder: %v", err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, MaxHostsFileSize+1), 0o644)
	if _, err := newHostsFile(big, time.Now, log); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized: %v", err)
	}
	if _, err := NewResolver(Options{Resolvers: []string{"127.0.0.1:1"}, HostsFile: dir}); err == nil {
		t.Error("NewResolver accepted a folder as hosts file")
	}
}

// FuzzParseHosts: any file content parses without panicking into a table
// whose entries are names without blanks or "#", each with 1 to
// maxHostsAddrs distinct, valid, zone-free, unmapped addresses.
func FuzzParseHosts(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
		"192.0.2.1 a.example b.example # comment\r\n",
		"fe80::1%eth0 zoned\n",
		"::ffff:192.0.2.1 mapped\n",
		"#only a comment",
		"192.0.2.1\tTAB.Example.\n192.0.2.1 tab.example\n",
		"\x00\xff 1.2.3.4\n1.2.3.4 \x00\n",
		"1.2.3.4 a\v b\f c\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tbl := parseHosts(data)
		for name, list := range tbl.names {
			if name == "" || strings.ContainsAny(name, " \t\n\v\f\r#") || strings.HasSuffix(name, ".") {
				t.Fatalf("bad name %q", name)
			}
			if name != hostsKey(name) {
				t.Fatalf("name %q is not normalised", name)
			}
			if len(list) == 0 || len(list) > maxHostsAddrs {
				t.Fatalf("%q has %d addresses", name, len(list))
			}
			for i, a := range list {
				if !a.IsValid() || a.Zone() != "" || a.Is4In6() || slices.Contains(list[:i], a) {
					t.Fatalf("%q: bad or repeated address %v in %v", name, a, list)
				}
			}
			upper := []byte(name)
			for i, c := range upper {
				if 'a' <= c && c <= 'z' {
					upper[i] = c - 'a' + 'A'
				}
			}
			if got, ok := tbl.lookup(string(upper) + "."); !ok || !slices.Equal(got, list) {
				t.Fatalf("lookup ignoring case of %q: %v %v", name, got, ok)
			}
		}
	})
}

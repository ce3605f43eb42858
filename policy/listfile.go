package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// MaxListFileSize bounds the external list file. A list of a million server
// names fits.
const MaxListFileSize = 64 << 20

// externalList is a parsed and compiled list file.
type externalList struct {
	version     int64
	allow, deny []string
	allowP      []pattern
	denyP       []pattern
	sum         [sha256.Size]byte
}

// listInfo describes the list a snapshot uses.
type listInfo struct {
	file     string
	version  int64
	modified time.Time // mtime of the file the list was read from
	allow    int
	deny     int
}

// listDoc is the file's JSON shape. Version is a pointer so that a
// missing version is an error rather than version 0.
type listDoc struct {
	Version *int64   `json:"version"`
	Allow   []string `json:"allow"`
	Deny    []string `json:"deny"`
}

// parseList parses a list file: {"version":N,"allow":[...],"deny":[...]},
// N a non-negative integer, entries in the syntax of policy.allow and
// policy.deny. Unknown keys and trailing data are errors, so that a typo
// cannot silently empty a list. Every entry is compiled here; the first bad
// one is named.
func parseList(data []byte) (*externalList, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var doc listDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a list document: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not a list document: data after the JSON object")
	}
	if doc.Version == nil {
		return nil, errors.New(`"version" is missing`)
	}
	if *doc.Version < 0 {
		return nil, fmt.Errorf(`"version" %d is negative`, *doc.Version)
	}
	l := &externalList{version: *doc.Version, allow: doc.Allow, deny: doc.Deny, sum: sha256.Sum256(data)}
	var err error
	if l.allowP, err = compileEntries("allow", doc.Allow); err != nil {
		return nil, err
	}
	if l.denyP, err = compileEntries("deny", doc.Deny); err != nil {
		return nil, err
	}
	return l, nil
}

func compileEntries(key string, entries []string) ([]pattern, error) {
	ps := make([]pattern, len(entries))
	for i, e := range entries {
		p, err := compilePattern(e)
		if err != nil {
			return nil, fmt.Errorf("%s[%d] %q: %w", key, i, e, err)
		}
		ps[i] = p
	}
	return ps, nil
}

// fileStamp identifies one state of a file, to notice rewrites without
// reading the file.
type fileStamp struct {
	info os.FileInfo
}

func (s fileStamp) same(info os.FileInfo) bool {
	if s.info == nil || info == nil {
		return false
	}
	return os.SameFile(s.info, info) && s.info.ModTime().Equal(info.ModTime()) && s.info.Size() == info.Size()
}

// errListRead marks failures to read the list file, as opposed to
// content that is wrong.
var errListRead = errors.New("cannot read list file")

// readList reads and parses the list file at path. It returns the file's
// stat (when the file could be opened, even if its content is refused, so
// that the same bad content is not read again) and the list. Failures to
// open or read wrap errListRead.
func readList(path string) (os.FileInfo, *externalList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errListRead, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errListRead, err)
	}
	if info.IsDir() {
		return info, nil, fmt.Errorf("list file %s is a folder", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxListFileSize+1))
	if err != nil {
		return info, nil, fmt.Errorf("%w %s: %w", errListRead, path, err)
	}
	if len(data) > MaxListFileSize {
		return info, nil, fmt.Errorf("list file %s is larger than %d bytes", path, MaxListFileSize)
	}
	l, err := parseList(data)
	if err != nil {
		return info, nil, fmt.Errorf("list file %s: %w", path, err)
	}
	return info, l, nil
}

// ListDocument is a federation list as its JSON states it.
type ListDocument struct {
	// Version orders lists: a source refuses a list older than the one it
	// has (rollback).
	Version int64
	// Allow and Deny are entries in the syntax of policy.allow and
	// policy.deny.
	Allow, Deny []string
}

// ParseListDocument parses and checks a list in list_file's JSON format
// ({"version":N,"allow":[...],"deny":[...]}), as a signed list's payload
// carries it: unknown keys, trailing data, a missing or negative version
// and any entry that does not compile are errors.
func ParseListDocument(data []byte) (ListDocument, error) {
	l, err := parseList(data)
	if err != nil {
		return ListDocument{}, err
	}
	return ListDocument{Version: l.version, Allow: l.allow, Deny: l.deny}, nil
}

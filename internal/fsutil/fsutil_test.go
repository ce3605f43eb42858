package fsutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "new", "state.json")
	if err := WriteFileAtomic(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil || string(data) != "two" {
		t.Fatalf("%q %v", data, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v", st.Mode())
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	// Under a regular file nothing can be written.
	if err := WriteFileAtomic(filepath.Join(path, "x"), nil, 0o600); err == nil {
		t.Fatal("wrote under a regular file")
	}
}

func TestReadFileLimited(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("12345"), 0o600)
	if data, err := ReadFileLimited(path, 5); err != nil || string(data) != "12345" {
		t.Fatalf("%q %v", data, err)
	}
	if _, err := ReadFileLimited(path, 4); err == nil || !strings.Contains(err.Error(), "larger than 4") {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := ReadFileLimited(path+".missing", 4); !os.IsNotExist(err) {
		t.Fatalf("missing: %v", err)
	}
}

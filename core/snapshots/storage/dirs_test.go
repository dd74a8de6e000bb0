package storage

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPlaceDirReplacesLeftovers: whatever a rolled-back transaction left
// at the target (a tree, an empty directory, a file) gives way to the new
// directory, whose contents arrive whole.
func TestPlaceDirReplacesLeftovers(t *testing.T) {
	for name, leave := range map[string]func(string) error{
		"nothing": func(string) error { return nil },
		"a tree": func(p string) error {
			return os.MkdirAll(filepath.Join(p, "fs", "junk"), 0o755)
		},
		"an empty directory": func(p string) error { return os.Mkdir(p, 0o700) },
		"a file":             func(p string) error { return os.WriteFile(p, []byte("junk"), 0o600) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			tmp, target := filepath.Join(dir, "new-1"), filepath.Join(dir, "7")
			if err := os.MkdirAll(filepath.Join(tmp, "fs"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := leave(target); err != nil {
				t.Fatal(err)
			}
			if err := PlaceDir(tmp, target); err != nil {
				t.Fatalf("PlaceDir: %v", err)
			}
			entries, err := os.ReadDir(target)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 || entries[0].Name() != "fs" {
				t.Errorf("target holds %v, want just fs", entries)
			}
			if _, err := os.Lstat(filepath.Join(target, "fs", "junk")); err == nil {
				t.Error("the leftover's files are in the new directory")
			}
			if _, err := os.Lstat(tmp); !os.IsNotExist(err) {
				t.Errorf("the temporary directory is still there: %v", err)
			}
		})
	}
}

// TestPlaceDirMissing names what it could not move.
func TestPlaceDirMissing(t *testing.T) {
	dir := t.TempDir()
	err := PlaceDir(filepath.Join(dir, "new-1"), filepath.Join(dir, "7"))
	if err == nil {
		t.Fatal("PlaceDir of a missing directory succeeded")
	}
}

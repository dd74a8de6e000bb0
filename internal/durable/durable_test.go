package durable

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(dir); err != nil {
		t.Fatalf("SyncDir of a directory: %v", err)
	}
	// A file is not a directory, and a missing path is reported with
	// its name.
	err := SyncDir(filepath.Join(dir, "f"))
	if !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("SyncDir of a file: %v, want ENOTDIR", err)
	}
	missing := filepath.Join(dir, "missing")
	err = SyncDir(missing)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("SyncDir of a missing directory: %v, want ENOENT naming %s", err, missing)
	}
}

//go:build linux

package native

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/internal/tmpfstest"
)

// A snapshot that does not fit (here a copy of a parent bigger than the
// space left) fails as ResourceExhausted naming the filesystem.
func TestPrepareOnFullDiskIsResourceExhausted(t *testing.T) {
	mnt := tmpfstest.Mount(t, 6<<20)
	root := filepath.Join(mnt, "native")
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	ms, err := s.Prepare(ctx, "base-active", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ms[0].Source, "big"), make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "base", "base-active"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Prepare(ctx, "child", "base")
	if !errdefs.IsResourceExhausted(err) {
		t.Fatalf("prepare needing a 4 MiB copy with 2 MiB free: %v, want ResourceExhausted", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "no space left on device on "+mnt) || !strings.Contains(msg, "snapshotter native at "+root) {
		t.Errorf("error %q does not name the filesystem and the snapshotter", msg)
	}
}

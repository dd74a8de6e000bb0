package oci

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
)

// countingSnapshotter is bindSnapshotter counting the calls of Mounts,
// each of which the user options turn into a temporary mount.
type countingSnapshotter struct {
	bindSnapshotter
	calls *int
}

func (c countingSnapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	*c.calls++
	return c.bindSnapshotter.Mounts(ctx, key)
}

type countingClient struct {
	dir   string
	calls *int
}

func (c countingClient) SnapshotService(string) snapshots.Snapshotter {
	return countingSnapshotter{bindSnapshotter{dir: c.dir}, c.calls}
}

// One spec's user and groups read the snapshot's user database once,
// however many options need it; the next spec reads it afresh.
func TestUserDBReadOncePerSpec(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test mounts: run it as root (make test does)")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc", "group"), []byte("root:x:0:\napp:x:1000:\nvideo:x:44:app\naudio:x:29:app,root\n"), 0o644)
	calls := 0
	cl := countingClient{dir: dir, calls: &calls}
	c := &containers.Container{ID: "c", Snapshotter: "bind", SnapshotKey: "k"}
	s, err := GenerateSpec(testCtx(), cl, c, WithUser("app"), WithAdditionalGIDs("app"), WithUsername("app"))
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("the snapshot was mounted %d times for one spec, want 1", calls)
	}
	u := s.Process.User
	if u.UID != 1000 || u.GID != 1000 || !slices.Equal(u.AdditionalGids, []uint32{44, 29}) {
		t.Fatalf("user %+v, want 1000:1000 with groups 44 and 29", u)
	}
	// Another snapshot in the same spec is read on its own.
	other := t.TempDir()
	os.MkdirAll(filepath.Join(other, "etc"), 0o755)
	os.WriteFile(filepath.Join(other, "etc", "passwd"), []byte("app:x:7:7::/:/bin/sh\n"), 0o644)
	c2 := &containers.Container{ID: "c2", Snapshotter: "bind", SnapshotKey: "k2"}
	if _, err := GenerateSpec(testCtx(), cl, c, WithUser("app")); err != nil || calls != 2 {
		t.Fatalf("a second spec: %v, %d mounts in all, want 2", err, calls)
	}
	s, err = GenerateSpec(testCtx(), countingClient{dir: other, calls: &calls}, c2, WithUser("app"))
	if err != nil || s.Process.User.UID != 7 || calls != 3 {
		t.Fatalf("another snapshot: %+v %v, %d mounts in all, want uid 7 and 3", s.Process.User, err, calls)
	}
}

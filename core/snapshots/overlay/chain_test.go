package overlay

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/archive"
	"github.com/hullrt/hull/core/snapshots"
)

// tarOf is a layer of directories (names ending in "/", with their modes)
// and small files.
func tarOf(t *testing.T, entries map[string]int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, mode := range entries {
		h := &tar.Header{Name: name, Mode: mode, Typeflag: tar.TypeReg, Size: 1}
		if name[len(name)-1] == '/' {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("x"))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// detached prepares key without parent and applies layer into it as an
// upper directory, as an unpack that applies layers apart does.
func detached(t *testing.T, s *Snapshotter, key string, layer []byte) {
	t.Helper()
	mounts, err := s.Prepare(context.Background(), key, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Apply(context.Background(), mounts[0].Source, bytes.NewReader(layer), archive.WithDetachedUpper()); err != nil {
		t.Fatal(err)
	}
}

// A chain commit stacks each layer on the one before it and gives the
// directories a layer wrote into without naming them the metadata they
// have below, also where what is below is an earlier link of the same
// chain, not committed before the call.
func TestCommitChainFixesImplicitParents(t *testing.T) {
	ctx := context.Background()
	s, dir := newSnapshotter(t)
	layer(t, s, dir, "base", "", func(root string) {
		if err := os.Mkdir(filepath.Join(root, "tmp"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
			t.Fatal(err)
		}
	})
	// l1 names data/ (0700) and writes into tmp/ without naming it; l2
	// writes into both without naming them.
	detached(t, s, "k1", tarOf(t, map[string]int64{"data/": 0o700, "tmp/x": 0o644}))
	detached(t, s, "k2", tarOf(t, map[string]int64{"data/y": 0o644, "tmp/y": 0o644}))
	links := []snapshots.CommitLink{{Name: "l1", Key: "k1"}, {Name: "l2", Key: "k2"}}
	if n, err := s.CommitChain(ctx, "base", links); n != 2 || err != nil {
		t.Fatalf("CommitChain = %d, %v", n, err)
	}
	mounts, err := s.View(ctx, "v", "l2")
	if err != nil {
		t.Fatal(err)
	}
	withMounted(t, dir, mounts, func(root string) {
		for path, mode := range map[string]uint32{"data": 0o700, "tmp": 0o1777, "data/y": 0o644, "tmp/x": 0o644, "tmp/y": 0o644} {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(root, path), &st); err != nil {
				t.Errorf("%s: %v", path, err)
				continue
			}
			if st.Mode&0o7777 != mode {
				t.Errorf("%s: mode %#o, want %#o", path, st.Mode&0o7777, mode)
			}
		}
	})
	for _, name := range []string{"l1", "l2"} {
		if info, err := s.Stat(ctx, name); err != nil || info.Kind != snapshots.KindCommitted {
			t.Errorf("%s: %+v %v", name, info, err)
		}
	}
	if info, _ := s.Stat(ctx, "l2"); info.Parent != "l1" {
		t.Errorf("l2's parent is %q, want l1", info.Parent)
	}
	if info, _ := s.Stat(ctx, "l1"); info.Parent != "base" {
		t.Errorf("l1's parent is %q, want base", info.Parent)
	}
}

// An overlay that cannot rebase commits a first link without parent and
// refuses the next one, as Commit would.
func TestCommitChainWithoutRebase(t *testing.T) {
	ctx := context.Background()
	s, _ := newSnapshotter(t, WithMountOptions([]string{"metacopy=on"}))
	for _, k := range []string{"k1", "k2"} {
		if _, err := s.Prepare(ctx, k, ""); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.CommitChain(ctx, "", []snapshots.CommitLink{{Name: "l1", Key: "k1"}, {Name: "l2", Key: "k2"}})
	if n != 1 || !errdefs.IsNotImplemented(err) {
		t.Fatalf("CommitChain = %d, %v; want 1 and NotImplemented", n, err)
	}
	if info, err := s.Stat(ctx, "k2"); err != nil || info.Kind != snapshots.KindActive {
		t.Fatalf("k2 after the refused link: %+v %v", info, err)
	}
}

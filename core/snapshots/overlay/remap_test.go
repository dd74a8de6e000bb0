//go:build linux

package overlay

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
)

var podLabels = snapshots.WithLabels(map[string]string{
	snapshots.LabelUIDMapping: "0:100000:65536",
	snapshots.LabelGIDMapping: "0:200000:65536",
})

func ownerOf(t *testing.T, path string) (uint32, uint32, os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode()
}

// remapBase commits an image-like layer: root's files, one of 5:7 and a
// set-uid program.
func remapBase(t *testing.T, s *Snapshotter, dir string) {
	layer(t, s, dir, "base", "", func(root string) {
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, "etc", "f"), "root's")
		writeFile(t, filepath.Join(root, "user-file"), "5's")
		if err := os.Lchown(filepath.Join(root, "user-file"), 5, 7); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, "suid"), "x")
		if err := os.Chmod(filepath.Join(root, "suid"), os.ModeSetuid|0o755); err != nil {
			t.Fatal(err)
		}
	})
	layer(t, s, dir, "top", "base", func(root string) {
		writeFile(t, filepath.Join(root, "top-file"), "top")
	})
}

func checkRemapped(t *testing.T, root string) {
	t.Helper()
	for path, want := range map[string][2]uint32{
		".": {100000, 200000}, "etc": {100000, 200000}, "etc/f": {100000, 200000},
		"user-file": {100005, 200007}, "top-file": {100000, 200000}, "suid": {100000, 200000},
	} {
		if u, g, _ := ownerOf(t, filepath.Join(root, path)); u != want[0] || g != want[1] {
			t.Errorf("%s shows as %d:%d, want %d:%d", path, u, g, want[0], want[1])
		}
	}
	if _, _, mode := ownerOf(t, filepath.Join(root, "suid")); mode&os.ModeSetuid == 0 {
		t.Errorf("suid lost its set-uid bit: %v", mode)
	}
}

func TestRemap(t *testing.T) {
	for _, mode := range []string{"idmapped", "chowned"} {
		t.Run(mode, func(t *testing.T) {
			s, dir := newSnapshotter(t)
			if mode == "chowned" {
				s.features.IDMappedLayers = false
			} else if !s.features.IDMappedLayers {
				t.Skip("the kernel cannot idmap overlay layers")
			}
			ctx := context.Background()
			remapBase(t, s, dir)
			mounts, err := s.Prepare(ctx, "ctr", "top", podLabels)
			if err != nil {
				t.Fatal(err)
			}
			idmapped := slices.ContainsFunc(mounts[0].Options, func(o string) bool { return strings.HasPrefix(o, "uidmap=") })
			if idmapped != (mode == "idmapped") {
				t.Errorf("mounts %v: idmapped = %v in mode %s", mounts, idmapped, mode)
			}
			again, err := s.Mounts(ctx, "ctr")
			if err != nil || !slices.Equal(again[0].Options, mounts[0].Options) {
				t.Errorf("Mounts = %v, %v; Prepare gave %v", again, err, mounts)
			}
			withMounted(t, dir, mounts, func(root string) { checkRemapped(t, root) })
			// The committed layers, shared with every other user of the
			// image, are untouched.
			withMounted(t, dir, mustView(t, s, "plain-view", "top"), func(root string) {
				if u, _, _ := ownerOf(t, filepath.Join(root, "etc", "f")); u != 0 {
					t.Errorf("image layer's file is owned by %d on disk after remapping", u)
				}
			})

			// A view in the namespace.
			vm, err := s.View(ctx, "ctr-view", "top", podLabels)
			if mode == "chowned" {
				if !errdefs.IsNotImplemented(err) {
					t.Errorf("view with id mapping, no idmapped layers: err = %v, want NotImplemented", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				withMounted(t, dir, vm, func(root string) { checkRemapped(t, root) })
			}

			// An empty tree in the namespace.
			em, err := s.Prepare(ctx, "empty", "", podLabels)
			if err != nil {
				t.Fatal(err)
			}
			withMounted(t, dir, em, func(root string) {
				if u, g, _ := ownerOf(t, root); u != 100000 || g != 200000 {
					t.Errorf("empty tree's root shows as %d:%d", u, g)
				}
			})
			for _, k := range []string{"ctr", "ctr-view", "empty", "plain-view"} {
				if err := s.Remove(ctx, k); err != nil && !errdefs.IsNotFound(err) {
					t.Error(err)
				}
			}
			if err := s.Cleanup(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}

func mustView(t *testing.T, s *Snapshotter, key, parent string) []mount.Mount {
	t.Helper()
	m, err := s.View(context.Background(), key, parent)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRemapBadLabels(t *testing.T) {
	s, dir := newSnapshotter(t)
	remapBase(t, s, dir)
	ctx := context.Background()
	for name, labels := range map[string]map[string]string{
		"uid alone":   {snapshots.LabelUIDMapping: "0:1000:10"},
		"gid alone":   {snapshots.LabelGIDMapping: "0:1000:10"},
		"malformed":   {snapshots.LabelUIDMapping: "0:1000", snapshots.LabelGIDMapping: "0:1000:10"},
		"zero length": {snapshots.LabelUIDMapping: "0:1000:0", snapshots.LabelGIDMapping: "0:1000:10"},
	} {
		_, err := s.Prepare(ctx, "bad", "top", snapshots.WithLabels(labels))
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: err = %v, want InvalidArgument", name, err)
		}
		if _, err := s.Stat(ctx, "bad"); !errdefs.IsNotFound(err) {
			t.Errorf("%s: snapshot left behind (%v)", name, err)
		}
	}
}

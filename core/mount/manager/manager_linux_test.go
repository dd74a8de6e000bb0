package manager_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/metadata"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/mount/manager"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/internal/servicetest"
)

func newManager(t *testing.T) (*manager.Manager, context.Context, *metadata.DB) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("mounting needs root")
	}
	db := servicetest.OpenDB(t)
	m, err := manager.New(db.Mounts(), filepath.Join(t.TempDir(), "t"), manager.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.SetMountRelease(m.Release)
	t.Cleanup(func() {
		// Whatever a failed test left mounted.
		if left, _ := mount.MountedUnder(m.Dir()); len(left) > 0 {
			t.Errorf("left mounted: %v", left)
			for _, mp := range left {
				mount.UnmountAll(mp)
			}
		}
	})
	return m, namespaces.WithNamespace(context.Background(), "test"), db
}

func wantClass(t *testing.T, err error, is func(error) bool, class string, words ...string) {
	t.Helper()
	if err == nil || !is(err) {
		t.Fatalf("error %v, want %s", err, class)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

// withSystem mounts an activation's system mounts in a temporary
// directory and calls fn with it, as a shim would.
func withSystem(t *testing.T, info manager.ActivationInfo, fn func(root string)) {
	t.Helper()
	if err := mount.WithTempMount(context.Background(), info.System, func(root string) error { fn(root); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestActivateNothingToDo(t *testing.T) {
	m, ctx, _ := newManager(t)
	_, err := m.Activate(ctx, "plain", []mount.Mount{{Type: "tmpfs", Source: "tmpfs"}})
	wantClass(t, err, errdefs.IsNotImplemented, "NotImplemented", `"plain"`)
	// An unknown transform is part of the type, as in containerd: the
	// caller's to mount.
	_, err = m.Activate(ctx, "unknown", []mount.Mount{{Type: "foo/bar"}})
	wantClass(t, err, errdefs.IsNotImplemented, "NotImplemented")
	if l, err := m.List(ctx); err != nil || len(l) != 0 {
		t.Errorf("list after refused activations: %v %v", l, err)
	}
}

func TestActivateTemporary(t *testing.T) {
	m, ctx, _ := newManager(t)
	info, err := m.Activate(ctx, "tmp", []mount.Mount{{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}}, manager.WithTemporary, manager.WithLabels(map[string]string{"a": "b"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Active) != 1 || len(info.System) != 1 || info.System[0].Type != "bind" || info.System[0].Source != info.Active[0].MountPoint || info.Labels["a"] != "b" {
		t.Fatalf("activation %+v", info)
	}
	if mps, _ := mount.MountedUnder(info.Active[0].MountPoint); len(mps) != 1 {
		t.Fatalf("tmpfs not mounted at %s: %v", info.Active[0].MountPoint, mps)
	}
	withSystem(t, info, func(root string) {
		if err := os.WriteFile(filepath.Join(root, "f"), []byte("x"), 0o600); err != nil {
			t.Error(err)
		}
	})
	got, err := m.Info(ctx, "tmp")
	if err != nil || got.Active[0].MountPoint != info.Active[0].MountPoint || got.System[0].Source != info.System[0].Source {
		t.Errorf("info %+v %v", got, err)
	}
	_, err = m.Activate(ctx, "tmp", []mount.Mount{{Type: "tmpfs"}}, manager.WithTemporary)
	wantClass(t, err, errdefs.IsAlreadyExists, "AlreadyExists", `"tmp"`)
	if err := m.Deactivate(ctx, "tmp"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(info.Active[0].MountPoint)); !os.IsNotExist(err) {
		t.Errorf("activation directory after deactivate: %v", err)
	}
	wantClass(t, m.Deactivate(ctx, "tmp"), errdefs.IsNotFound, "NotFound", `"tmp"`)
	wantClass(t, m.Deactivate(ctx, "nosuch"), errdefs.IsNotFound, "NotFound", `"nosuch"`)
}

// An overlay whose layers are the mounts before it: the manager performs
// those and returns the overlay, its templates filled in.
func TestActivateFormattedOverlay(t *testing.T) {
	m, ctx, _ := newManager(t)
	src := t.TempDir()
	for _, d := range []string{"lower0", "lower1"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
		os.WriteFile(filepath.Join(src, d, d), []byte(d), 0o644)
	}
	os.WriteFile(filepath.Join(src, "lower1", "shadow"), []byte("lower1"), 0o644)
	os.WriteFile(filepath.Join(src, "lower0", "shadow"), []byte("lower0"), 0o644)
	upper := filepath.Join(m.Dir(), "scratch")
	mounts := []mount.Mount{
		{Type: "bind", Source: filepath.Join(src, "lower0"), Options: []string{"rbind", "ro"}},
		{Type: "bind", Source: filepath.Join(src, "lower1"), Options: []string{"rbind", "ro"}},
		{Type: "format/mkdir/overlay", Source: "overlay", Options: []string{
			"X-containerd.mkdir.path=" + upper + "/upper:0755", "X-containerd.mkdir.path=" + upper + "/work",
			"lowerdir={{ overlay 1 0 }}", "upperdir=" + upper + "/upper", "workdir=" + upper + "/work",
		}},
	}
	info, err := m.Activate(ctx, "ovl", mounts)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Active) != 2 || len(info.System) != 1 {
		t.Fatalf("activation %+v", info)
	}
	sys := info.System[0]
	want := "lowerdir=" + info.Active[1].MountPoint + ":" + info.Active[0].MountPoint
	if sys.Type != "overlay" || !strings.Contains(strings.Join(sys.Options, ","), want) || strings.Contains(strings.Join(sys.Options, ","), "X-containerd") {
		t.Fatalf("system mount %+v, want type overlay with %s and no mkdir options", sys, want)
	}
	if st, err := os.Stat(upper + "/upper"); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("mkdir transform: %v %v", st, err)
	}
	withSystem(t, info, func(root string) {
		for name, want := range map[string]string{"lower0": "lower0", "lower1": "lower1", "shadow": "lower1"} {
			if b, err := os.ReadFile(filepath.Join(root, name)); err != nil || string(b) != want {
				t.Errorf("%s through the overlay: %q %v", name, b, err)
			}
		}
	})
	if err := m.Deactivate(ctx, "ovl"); err != nil {
		t.Fatal(err)
	}
}

func TestActivateLoopExt4(t *testing.T) {
	m, ctx, _ := newManager(t)
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("no mkfs.ext4")
	}
	content := t.TempDir()
	os.WriteFile(filepath.Join(content, "hello"), []byte("from ext4"), 0o644)
	img := filepath.Join(t.TempDir(), "fs.img")
	if out, err := exec.Command(mkfs, "-q", "-d", content, img, "4M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	info, err := m.Activate(ctx, "img", []mount.Mount{{Type: "ext4", Source: img, Options: []string{"ro", "loop"}}}, manager.WithTemporary)
	if err != nil {
		t.Fatal(err)
	}
	withSystem(t, info, func(root string) {
		if b, err := os.ReadFile(filepath.Join(root, "hello")); err != nil || string(b) != "from ext4" {
			t.Errorf("file in the image: %q %v", b, err)
		}
	})
	if out, _ := exec.Command("losetup", "-j", img).Output(); len(out) == 0 {
		t.Errorf("no loop device for %s while active", img)
	}
	if err := m.Deactivate(ctx, "img"); err != nil {
		t.Fatal(err)
	}
	// Autoclear frees the device at the unmount.
	if out, _ := exec.Command("losetup", "-j", img).Output(); len(out) != 0 {
		t.Errorf("loop device left after deactivate: %s", out)
	}
}

func TestActivateBadInput(t *testing.T) {
	m, ctx, _ := newManager(t)
	_, err := m.Activate(ctx, "badtype", []mount.Mount{{Type: "nosuchfs", Source: "x"}}, manager.WithTemporary)
	wantClass(t, err, errdefs.IsInvalidArgument, "InvalidArgument", `"nosuchfs"`)
	_, err = m.Activate(ctx, "badindex", []mount.Mount{
		{Type: "tmpfs", Source: "tmpfs"},
		{Type: "format/bind", Source: "{{ mount 3 }}", Options: []string{"rbind"}},
	})
	wantClass(t, err, errdefs.IsInvalidArgument, "InvalidArgument", "index 3", `"badindex"`)
	_, err = m.Activate(ctx, "badfunc", []mount.Mount{{Type: "tmpfs"}, {Type: "format/bind", Source: "{{ rm 0 }}"}})
	wantClass(t, err, errdefs.IsInvalidArgument, "InvalidArgument", `"rm"`)
	_, err = m.Activate(ctx, "mkfs", []mount.Mount{{Type: "mkfs/ext4", Source: "x"}})
	wantClass(t, err, errdefs.IsNotImplemented, "NotImplemented", "mkfs")
	_, err = m.Activate(ctx, "", []mount.Mount{{Type: "tmpfs"}}, manager.WithTemporary)
	wantClass(t, err, errdefs.IsInvalidArgument, "InvalidArgument")
	_, err = m.Activate(ctx, "escape", []mount.Mount{{Type: "mkdir/tmpfs", Options: []string{"X-containerd.mkdir.path=/etc/hull-escape"}}})
	wantClass(t, err, errdefs.IsInvalidArgument, "InvalidArgument", "/etc/hull-escape")
	// A mount that fails half way leaves nothing: not the first mount,
	// not the record.
	_, err = m.Activate(ctx, "half", []mount.Mount{{Type: "tmpfs", Source: "tmpfs"}, {Type: "bind", Source: "/nonexistent/x"}}, manager.WithTemporary)
	if err == nil {
		t.Fatal("activation of a missing bind source worked")
	}
	if l, err := m.List(ctx); err != nil || len(l) != 0 {
		t.Errorf("records after failed activations: %+v %v", l, err)
	}
	if entries, _ := os.ReadDir(m.Dir()); len(entries) != 0 {
		t.Errorf("directories after failed activations: %v", entries)
	}
}

// An activation in a lease goes, unmounted, when its lease ends.
func TestActivationEndsWithLease(t *testing.T) {
	m, ctx, db := newManager(t)
	if _, err := db.Leases().Create(ctx, "l1", nil); err != nil {
		t.Fatal(err)
	}
	info, err := m.Activate(leases.WithLease(ctx, "l1"), "leased", []mount.Mount{{Type: "tmpfs", Source: "tmpfs"}}, manager.WithTemporary)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Info(ctx, "leased"); err != nil {
		t.Fatalf("activation of a live lease after gc: %v", err)
	}
	if err := db.Leases().Delete(ctx, "l1", true); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Info(ctx, "leased"); !errdefs.IsNotFound(err) {
		t.Errorf("activation after its lease ended: %v", err)
	}
	if mps, _ := mount.MountedUnder(m.Dir()); len(mps) != 0 {
		t.Errorf("mounted after the lease ended: %v", mps)
	}
	if _, err := os.Stat(filepath.Dir(info.Active[0].MountPoint)); !os.IsNotExist(err) {
		t.Errorf("directory after the lease ended: %v", err)
	}
}

// Recover undoes an activation cut short by a crash, and one whose mounts
// are gone.
func TestRecover(t *testing.T) {
	m, ctx, _ := newManager(t)
	info, err := m.Activate(ctx, "live", []mount.Mount{{Type: "tmpfs", Source: "tmpfs"}}, manager.WithTemporary)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := m.Activate(ctx, "gone", []mount.Mount{{Type: "tmpfs", Source: "tmpfs"}}, manager.WithTemporary)
	if err != nil {
		t.Fatal(err)
	}
	// As after a reboot: the mount is gone, the record is not.
	if err := mount.UnmountAll(gone.Active[0].MountPoint); err != nil {
		t.Fatal(err)
	}
	// A directory no record names, with a mount in it.
	stray := filepath.Join(m.Dir(), "999999")
	os.MkdirAll(stray+"/0", 0o700)
	if err := mount.All([]mount.Mount{{Type: "tmpfs", Source: "tmpfs"}}, stray+"/0"); err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Info(ctx, "gone"); !errdefs.IsNotFound(err) {
		t.Errorf("activation whose mounts are gone: %v", err)
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("stray directory: %v", err)
	}
	if _, err := m.Info(ctx, "live"); err != nil {
		t.Errorf("live activation: %v", err)
	}
	if err := m.Deactivate(ctx, info.Name); err != nil {
		t.Fatal(err)
	}
}

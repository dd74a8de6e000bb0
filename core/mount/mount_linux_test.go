package mount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// testDir returns a temporary directory that must have nothing mounted in
// it when the test ends. The check is registered after t.TempDir's
// removal, so it runs before it: removing a mounted tree would delete
// through the mount.
func testDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	dir := t.TempDir()
	t.Cleanup(func() {
		left, err := MountedUnder(dir)
		if err != nil {
			t.Errorf("read mounts: %v", err)
			return
		}
		if len(left) > 0 {
			t.Errorf("mounts left under %s: %v", dir, left)
			for _, m := range left {
				_ = unix.Unmount(m, unix.MNT_DETACH)
			}
		}
	})
	return dir
}

func mkdirs(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mountAll mounts and registers the unmount.
func mountAll(t *testing.T, mounts []Mount, target string) {
	t.Helper()
	if err := All(mounts, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := UnmountAll(target); err != nil {
			t.Error(err)
		}
	})
}

func TestBindReadWrite(t *testing.T) {
	dir := testDir(t)
	src, target := filepath.Join(dir, "src"), filepath.Join(dir, "target")
	mkdirs(t, src, target)
	writeFile(t, filepath.Join(src, "a"), "hello")
	m := Mount{Type: "bind", Source: src, Options: []string{"rbind", "rw"}}
	if ReadOnly(m) {
		t.Error("ReadOnly(rw bind) = true")
	}
	mountAll(t, []Mount{m}, target)
	if got := readFile(t, filepath.Join(target, "a")); got != "hello" {
		t.Errorf("read through bind = %q", got)
	}
	writeFile(t, filepath.Join(target, "b"), "written")
	if got := readFile(t, filepath.Join(src, "b")); got != "written" {
		t.Errorf("write through bind reached source as %q", got)
	}
}

func TestBindReadOnlyRecursive(t *testing.T) {
	dir := testDir(t)
	src, target := filepath.Join(dir, "src"), filepath.Join(dir, "target")
	sub := filepath.Join(src, "sub")
	mkdirs(t, sub, target)
	writeFile(t, filepath.Join(src, "a"), "hello")
	// A submount in the source: a read-only rbind must not leave it
	// writable.
	mountAll(t, []Mount{{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}}, sub)

	m := Mount{Type: "bind", Source: src, Options: []string{"rbind", "ro"}}
	if !ReadOnly(m) {
		t.Error("ReadOnly(ro bind) = false")
	}
	mountAll(t, []Mount{m}, target)
	t.Cleanup(func() { _ = UnmountAll(filepath.Join(target, "sub")) })
	if got := readFile(t, filepath.Join(target, "a")); got != "hello" {
		t.Errorf("read through bind = %q", got)
	}
	for _, p := range []string{filepath.Join(target, "b"), filepath.Join(target, "sub", "b")} {
		err := os.WriteFile(p, nil, 0o644)
		if !errors.Is(err, unix.EROFS) {
			t.Errorf("write %s through read-only rbind: %v, want EROFS", p, err)
		}
	}
	// The source itself stays writable.
	writeFile(t, filepath.Join(src, "c"), "")
}

func TestOverlay(t *testing.T) {
	dir := testDir(t)
	l1, l2, upper, work, target := filepath.Join(dir, "l1"), filepath.Join(dir, "l2"),
		filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	mkdirs(t, l1, l2, upper, work, target)
	writeFile(t, filepath.Join(l1, "top"), "l1")
	writeFile(t, filepath.Join(l1, "shared"), "from l1")
	writeFile(t, filepath.Join(l2, "bottom"), "l2")
	writeFile(t, filepath.Join(l2, "shared"), "from l2")
	m := Mount{Type: "overlay", Source: "overlay", Options: []string{
		"index=off",
		"workdir=" + work, "upperdir=" + upper, "lowerdir=" + l1 + ":" + l2,
	}}
	if ReadOnly(m) {
		t.Error("ReadOnly(overlay with upperdir) = true")
	}
	mountAll(t, []Mount{m}, target)
	for name, want := range map[string]string{"top": "l1", "bottom": "l2", "shared": "from l1"} {
		if got := readFile(t, filepath.Join(target, name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	writeFile(t, filepath.Join(target, "new"), "upper")
	if got := readFile(t, filepath.Join(upper, "new")); got != "upper" {
		t.Errorf("write reached upper as %q", got)
	}
	if err := os.Remove(filepath.Join(target, "bottom")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l2, "bottom")); err != nil {
		t.Errorf("removing through the overlay touched the lower: %v", err)
	}
}

// manyLayers makes n layers with long paths, each holding its own file and
// a file "who" that all share, and returns them top first. leaf formats
// the part of a layer's path that differs from the others.
func manyLayers(t *testing.T, dir string, n int, leaf string) []string {
	t.Helper()
	base := filepath.Join(dir, "a-rather-long-directory-name-for-layers", "that-keeps-going-for-a-while")
	var layers []string
	for i := range n {
		l := filepath.Join(base, fmt.Sprintf(leaf, i))
		mkdirs(t, l)
		writeFile(t, filepath.Join(l, fmt.Sprintf("file-%d", i)), fmt.Sprint(i))
		writeFile(t, filepath.Join(l, "who"), fmt.Sprint(i))
		layers = append(layers, l)
	}
	return layers
}

func checkManyLayers(t *testing.T, target string, n int) {
	t.Helper()
	for _, i := range []int{0, 1, n / 2, n - 1} {
		if got := readFile(t, filepath.Join(target, fmt.Sprintf("file-%d", i))); got != fmt.Sprint(i) {
			t.Errorf("file-%d = %q", i, got)
		}
	}
	if got := readFile(t, filepath.Join(target, "who")); got != "0" {
		t.Errorf("who = %q, want the top layer's 0", got)
	}
	entries, err := os.ReadDir(target)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < n+1 {
		t.Errorf("%d entries in the merged tree, want %d", len(entries), n+1)
	}
}

func TestOverlayManyLayers(t *testing.T) {
	dir := testDir(t)
	const n = 150
	layers := manyLayers(t, dir, n, "layer-%04d-with-a-long-name-too/fs")
	upper, work, target := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	mkdirs(t, upper, work, target)
	opts := []string{"workdir=" + work, "upperdir=" + upper, "lowerdir=" + strings.Join(layers, ":")}
	if l := len(strings.Join(opts, ",")); l <= dataLimit() {
		t.Fatalf("options are only %d bytes; the test needs them over a page", l)
	}
	mountAll(t, []Mount{{Type: "overlay", Source: "overlay", Options: opts}}, target)
	checkManyLayers(t, target, n)
	writeFile(t, filepath.Join(target, "new"), "x")
	if got := readFile(t, filepath.Join(upper, "new")); got != "x" {
		t.Errorf("write reached upper as %q", got)
	}
}

// TestOverlayManyLayersRelative exercises the fallback for kernels without
// "lowerdir+" directly, whatever this kernel supports.
func TestOverlayManyLayersRelative(t *testing.T) {
	dir := testDir(t)
	const n = 150
	// Short leaves, as a snapshotter's "<id>/fs", under a long
	// common directory: over a page absolute, under it relative.
	layers := manyLayers(t, dir, n, "%d/fs")
	target := filepath.Join(dir, "merged")
	mkdirs(t, target)
	opts := []string{"ro", "lowerdir=" + strings.Join(layers, ":")}
	if l := len(strings.Join(opts, ",")); l <= dataLimit() {
		t.Fatalf("options are only %d bytes; the test needs them over a page", l)
	}
	p := parseOptions(opts)
	if err := mountOverlayRelative("overlay", target, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := UnmountAll(target); err != nil {
			t.Error(err)
		}
	})
	checkManyLayers(t, target, n)
	// The mounting thread's chdir must not have leaked.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(wd, dir) {
		t.Errorf("working directory moved to %s", wd)
	}
}

func TestOverlayTooManyLayersFails(t *testing.T) {
	dir := testDir(t)
	// The kernel stacks at most 500 layers; the error must come back
	// and nothing stay mounted.
	layers := manyLayers(t, dir, 510, "%d")
	target := filepath.Join(dir, "merged")
	mkdirs(t, target)
	err := All([]Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + strings.Join(layers, ":")}}}, target)
	if err == nil {
		_ = UnmountAll(target)
		t.Fatal("mounting 510 layers succeeded")
	}
	t.Log(err)
}

func TestUnsupportedType(t *testing.T) {
	dir := testDir(t)
	err := All([]Mount{{Type: "ext4", Source: "/dev/null"}}, dir)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `unsupported mount type "ext4"`) {
		t.Errorf("err = %v, want InvalidArgument naming the type", err)
	}
}

func TestAllUndoesOnFailure(t *testing.T) {
	dir := testDir(t)
	err := All([]Mount{
		{Type: "tmpfs", Source: "tmpfs"},
		{Type: "tmpfs", Source: "tmpfs", Target: "sub"}, // sub does not exist
	}, dir)
	if err == nil {
		_ = UnmountAll(dir)
		t.Fatal("All succeeded")
	}
	// testDir's check finds anything left.
}

func TestTargetAndStacking(t *testing.T) {
	dir := testDir(t)
	mkdirs(t, filepath.Join(dir, "root"))
	root := filepath.Join(dir, "root")
	// The second mount goes to "proc" below the first, which creates
	// it, and ".." cannot leave root.
	if err := All([]Mount{{Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=755"}}}, root); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountAll(root) })
	mkdirs(t, filepath.Join(root, "proc"))
	if err := All([]Mount{{Type: "proc", Source: "proc", Target: "../../proc", Options: []string{"nosuid", "nodev", "noexec"}}}, root); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := UnmountAll(filepath.Join(root, "proc")); err != nil {
			t.Error(err)
		}
	})
	if _, err := os.Stat(filepath.Join(root, "proc", "self", "status")); err != nil {
		t.Errorf("proc not mounted below root: %v", err)
	}
	// Stack a second tmpfs on the same point; UnmountAll removes both.
	stack := filepath.Join(dir, "stack")
	mkdirs(t, stack)
	if err := All([]Mount{{Type: "tmpfs"}, {Type: "tmpfs"}}, stack); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountAll(stack) })
	if err := UnmountAll(stack); err != nil {
		t.Fatal(err)
	}
	if left, _ := MountedUnder(stack); len(left) != 0 {
		t.Errorf("left after UnmountAll: %v", left)
	}
	if err := Unmount(stack); err != nil {
		t.Errorf("Unmount of nothing: %v", err)
	}
	if err := Unmount(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("Unmount of a missing path: %v", err)
	}
}

func TestWithTempMount(t *testing.T) {
	dir := testDir(t)
	src := filepath.Join(dir, "src")
	mkdirs(t, src)
	writeFile(t, filepath.Join(src, "a"), "hello")
	mounts := []Mount{{Type: "bind", Source: src, Options: []string{"rbind", "ro"}}}
	scratch := filepath.Join(dir, "scratch")
	mkdirs(t, scratch)

	var seen string
	err := WithTempMount(context.Background(), mounts, func(root string) error {
		seen = root
		if got := readFile(t, filepath.Join(root, "a")); got != "hello" {
			t.Errorf("read %q", got)
		}
		return nil
	}, WithTempMountDir(scratch))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(seen, scratch+"/") {
		t.Errorf("root %s not in %s", seen, scratch)
	}
	if _, err := os.Stat(seen); !os.IsNotExist(err) {
		t.Errorf("root left behind: %v", err)
	}

	boom := errors.New("boom")
	err = WithTempMount(context.Background(), mounts, func(root string) error {
		seen = root
		return boom
	}, WithTempMountDir(scratch))
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want fn's", err)
	}
	if _, err := os.Stat(seen); !os.IsNotExist(err) {
		t.Errorf("root left behind after an error: %v", err)
	}

	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic did not propagate")
			}
		}()
		_ = WithTempMount(context.Background(), mounts, func(root string) error {
			seen = root
			panic("boom")
		}, WithTempMountDir(scratch))
	}()
	if _, err := os.Stat(seen); !os.IsNotExist(err) {
		t.Errorf("root left behind after a panic: %v", err)
	}

	// A failing mount leaves no directory either.
	err = WithTempMount(context.Background(), []Mount{{Type: "nope"}}, func(string) error { return nil }, WithTempMountDir(scratch))
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("err = %v, want InvalidArgument", err)
	}
	if entries, _ := os.ReadDir(scratch); len(entries) != 0 {
		t.Errorf("scratch not empty: %v", entries)
	}
}

func TestParseOptions(t *testing.T) {
	p := parseOptions([]string{"ro", "nosuid", "rw", "rbind", "rprivate", "index=off", "userxattr", "lowerdir=/a:/b"})
	if p.flags != unix.MS_NOSUID|unix.MS_BIND|unix.MS_REC {
		t.Errorf("flags = %#x", p.flags)
	}
	if p.propagation != unix.MS_PRIVATE|unix.MS_REC {
		t.Errorf("propagation = %#x", p.propagation)
	}
	if want := []string{"index=off", "userxattr", "lowerdir=/a:/b"}; !reflect.DeepEqual(p.data, want) {
		t.Errorf("data = %q, want %q", p.data, want)
	}
}

func TestOverlayLayers(t *testing.T) {
	lower, data := OverlayLayers(`/a:/b\:c:/d\\e::/data1::/data2`)
	if want := []string{"/a", "/b:c", `/d\e`}; !reflect.DeepEqual(lower, want) {
		t.Errorf("lower = %q, want %q", lower, want)
	}
	if want := []string{"/data1", "/data2"}; !reflect.DeepEqual(data, want) {
		t.Errorf("data = %q, want %q", data, want)
	}
	if got := EscapeOverlayPath(`b:c,d\e`); got != `b\:c\,d\\e` {
		t.Errorf("escape = %q", got)
	}
}

func TestCommonDir(t *testing.T) {
	for _, tc := range []struct {
		paths []string
		want  string
	}{
		{[]string{"/x/s/1/fs", "/x/s/2/fs"}, "/x/s"},
		{[]string{"/x/s/1/fs", "/x/s/1/fs"}, "/x/s/1"},
		{[]string{"/x/abc", "/x/abd"}, "/x"},
		{[]string{"/a", "/b"}, "/"},
		{[]string{"/a", "rel"}, ""},
	} {
		if got := commonDir(tc.paths); got != tc.want {
			t.Errorf("commonDir(%q) = %q, want %q", tc.paths, got, tc.want)
		}
	}
}

func TestReadOnly(t *testing.T) {
	for _, tc := range []struct {
		m    Mount
		want bool
	}{
		{Mount{Type: "bind", Options: []string{"ro", "rbind"}}, true},
		{Mount{Type: "bind", Options: []string{"ro", "rw"}}, false},
		{Mount{Type: "bind"}, false},
		{Mount{Type: "overlay", Options: []string{"lowerdir=/a:/b"}}, true},
		{Mount{Type: "overlay", Options: []string{"lowerdir=/a", "upperdir=/u", "workdir=/w"}}, false},
	} {
		if got := ReadOnly(tc.m); got != tc.want {
			t.Errorf("ReadOnly(%+v) = %v", tc.m, got)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/a\040b\134c\01`); got != `/a b\c\01` {
		t.Errorf("got %q", got)
	}
}

// TestOverlayLongLayerPaths covers layer paths longer than fsconfig takes
// as a string.
func TestOverlayLongLayerPaths(t *testing.T) {
	dir := testDir(t)
	deep := filepath.Join(dir, strings.Repeat("d", 100), strings.Repeat("e", 100), strings.Repeat("f", 60))
	const n = 20
	layers := manyLayers(t, deep, n, "layer-%d")
	if len(layers[0]) <= fsconfigMaxString {
		t.Fatalf("layer path is only %d bytes", len(layers[0]))
	}
	upper, work, target := filepath.Join(deep, "upper"), filepath.Join(deep, "work"), filepath.Join(dir, "merged")
	mkdirs(t, upper, work, target)
	mountAll(t, []Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"workdir=" + work, "upperdir=" + upper, "lowerdir=" + strings.Join(layers, ":"),
	}}}, target)
	checkManyLayers(t, target, n)
}

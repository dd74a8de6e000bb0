package mount

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

func owner(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

func chown(t *testing.T, path string, uid, gid int) {
	t.Helper()
	if err := os.Lchown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// noScratchLeft fails if an idmapped mount left its scratch directory.
func noScratchLeft(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".hull-idmap-") {
			t.Errorf("scratch directory %s left in %s", e.Name(), dir)
		}
	}
}

func TestIDMappedOverlay(t *testing.T) {
	dir := testDir(t)
	l1, l2 := filepath.Join(dir, "l1"), filepath.Join(dir, "l2")
	upper, work, target := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "target")
	mkdirs(t, l1, l2, upper, work, target)
	writeFile(t, filepath.Join(l1, "root-file"), "r")
	writeFile(t, filepath.Join(l2, "user-file"), "u")
	chown(t, filepath.Join(l2, "user-file"), 5, 7)
	// The snapshotter gives the upper directory's root to the mapped root.
	chown(t, upper, 100000, 100000)
	m := Mount{Type: "overlay", Source: "overlay", Options: []string{
		"index=off", "workdir=" + work, "upperdir=" + upper, "lowerdir=" + l1 + ":" + l2,
		"uidmap=0:100000:65536", "gidmap=0:200000:65536"}}
	mountAll(t, []Mount{m}, target)
	noScratchLeft(t, dir)
	if u, g := owner(t, filepath.Join(target, "root-file")); u != 100000 || g != 200000 {
		t.Errorf("root's file shows as %d:%d, want 100000:200000", u, g)
	}
	if u, g := owner(t, filepath.Join(target, "user-file")); u != 100005 || g != 200007 {
		t.Errorf("5:7's file shows as %d:%d, want 100005:200007", u, g)
	}
	if u, _ := owner(t, target); u != 100000 {
		t.Errorf("the root directory shows as owned by %d, want 100000", u)
	}
	// A copy-up keeps the owner the layer showed.
	if err := os.Chmod(filepath.Join(target, "user-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if u, g := owner(t, filepath.Join(upper, "user-file")); u != 100005 || g != 200007 {
		t.Errorf("copied-up file is %d:%d on disk, want 100005:200007", u, g)
	}
	// The layers on disk are untouched.
	if u, _ := owner(t, filepath.Join(l1, "root-file")); u != 0 {
		t.Errorf("layer file owner changed on disk to %d", u)
	}
}

func TestIDMappedBind(t *testing.T) {
	dir := testDir(t)
	src, target := filepath.Join(dir, "src"), filepath.Join(dir, "target")
	mkdirs(t, filepath.Join(src, "sub"), target)
	writeFile(t, filepath.Join(src, "sub", "f"), "x")
	mountAll(t, []Mount{{Type: "bind", Source: src, Options: []string{"rbind", "ro", "uidmap=0:3000:10", "gidmap=0:4000:10"}}}, target)
	if u, g := owner(t, filepath.Join(target, "sub", "f")); u != 3000 || g != 4000 {
		t.Errorf("file shows as %d:%d, want 3000:4000", u, g)
	}
	if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); err == nil {
		t.Error("wrote through a read-only idmapped bind")
	}
	if u, _ := owner(t, filepath.Join(src, "sub", "f")); u != 0 {
		t.Errorf("source file owner changed on disk to %d", u)
	}
}

func TestIDMapBadOptions(t *testing.T) {
	dir := testDir(t)
	src, target := filepath.Join(dir, "src"), filepath.Join(dir, "target")
	mkdirs(t, src, target)
	for name, m := range map[string]Mount{
		"uidmap alone":   {Type: "bind", Source: src, Options: []string{"rbind", "uidmap=0:1000:10"}},
		"gidmap alone":   {Type: "bind", Source: src, Options: []string{"rbind", "gidmap=0:1000:10"}},
		"not a triple":   {Type: "bind", Source: src, Options: []string{"rbind", "uidmap=0:1000", "gidmap=0:1000:10"}},
		"zero size":      {Type: "bind", Source: src, Options: []string{"rbind", "uidmap=0:1000:0", "gidmap=0:1000:10"}},
		"not a number":   {Type: "bind", Source: src, Options: []string{"rbind", "uidmap=0:x:10", "gidmap=0:1000:10"}},
		"overflow":       {Type: "bind", Source: src, Options: []string{"rbind", "uidmap=0:4294967290:10", "gidmap=0:1000:10"}},
		"tmpfs idmapped": {Type: "tmpfs", Source: "tmpfs", Options: []string{"uidmap=0:1000:10", "gidmap=0:1000:10"}},
	} {
		err := All([]Mount{m}, target)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: err = %v, want InvalidArgument", name, err)
		}
	}
	left, err := MountedUnder(dir)
	if err != nil || len(left) > 0 {
		t.Errorf("mounts left after failures: %v (%v)", left, err)
	}
}

func TestParseIDMaps(t *testing.T) {
	got, err := ParseIDMaps("0:1000:1,1:2000:99")
	if err != nil {
		t.Fatal(err)
	}
	want := []IDMap{{0, 1000, 1}, {1, 2000, 99}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("ParseIDMaps = %v, want %v", got, want)
	}
	if s := FormatIDMaps(got); s != "0:1000:1,1:2000:99" {
		t.Errorf("FormatIDMaps = %q", s)
	}
	for id, want := range map[uint32]uint32{0: 1000, 1: 2000, 99: 2098} {
		if h, ok := HostID(got, id); !ok || h != want {
			t.Errorf("HostID(%d) = %d, %v, want %d", id, h, ok, want)
		}
	}
	if _, ok := HostID(got, 100); ok {
		t.Error("HostID(100) mapped, want unmapped")
	}
	if _, err := ParseIDMaps(strings.Repeat("0:1:1,", 340) + "0:1:1"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("341 ranges: err = %v, want InvalidArgument", err)
	}
}

func FuzzParseIDMaps(f *testing.F) {
	for _, s := range []string{"0:1000:65536", "0:1000:1,1:2000:99", "", "0:1", "a:b:c", "0:4294967295:1", ",", "1:2:3,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		maps, err := ParseIDMaps(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("ParseIDMaps(%q) error %v is not InvalidArgument", s, err)
			}
			return
		}
		again, err := ParseIDMaps(FormatIDMaps(maps))
		if err != nil || len(again) != len(maps) {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
		for i := range maps {
			if again[i] != maps[i] || maps[i].Size == 0 {
				t.Fatalf("round trip of %q: %v != %v", s, again, maps)
			}
		}
	})
}

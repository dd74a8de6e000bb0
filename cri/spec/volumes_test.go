package spec

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

// tree lists every path below dir with its kind and, for files, content,
// without following symlinks.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link:" + target
		case d.IsDir():
			out[rel] = "dir"
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "file:" + string(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func write(t *testing.T, p, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func TestPrepareImageVolumes(t *testing.T) {
	outside := t.TempDir()
	write(t, filepath.Join(outside, "secret"), "host secret", 0o600)
	before := tree(t, outside)

	rootfs := t.TempDir()
	write(t, filepath.Join(rootfs, "data/a.txt"), "a", 0o640)
	write(t, filepath.Join(rootfs, "data/sub/b.txt"), "b", 0o644)
	symlink(t, "/etc/passwd", filepath.Join(rootfs, "data/lnk"))
	if err := syscall.Mkfifo(filepath.Join(rootfs, "data/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(rootfs, "etc/hosts"), "image hosts", 0o644)
	symlink(t, outside, filepath.Join(rootfs, "abs"))
	rel, err := filepath.Rel(rootfs, outside)
	if err != nil {
		t.Fatal(err)
	}
	symlink(t, rel, filepath.Join(rootfs, "relative"))
	symlink(t, "/data", filepath.Join(rootfs, "inside"))
	symlink(t, "../../../data/sub", filepath.Join(rootfs, "dotdot"))
	if os.Geteuid() == 0 {
		if err := os.Lchown(filepath.Join(rootfs, "data/a.txt"), 1000, 1001); err != nil {
			t.Fatal(err)
		}
	}

	vols := map[string]struct{}{
		"/data": {}, "../../etc": {}, "/abs": {}, "/relative/": {}, "/inside": {}, "/dotdot": {}, "/missing/dir": {}, "rel/vol": {},
	}
	state := filepath.Join(t.TempDir(), "volumes")
	mounts, err := PrepareImageVolumes(context.Background(), rootfs, vols, state)
	if err != nil {
		t.Fatal(err)
	}
	byDest := map[string]string{}
	var dests []string
	for _, m := range mounts {
		if m.Type != "bind" || !reflect.DeepEqual(m.Options, []string{"rbind", "rprivate", "rw"}) || filepath.Dir(m.Source) != state {
			t.Errorf("mount %+v", m)
		}
		byDest[m.Destination] = m.Source
		dests = append(dests, m.Destination)
	}
	want := []string{"/abs", "/data", "/dotdot", "/etc", "/inside", "/missing/dir", "/rel/vol", "/relative"}
	if !reflect.DeepEqual(dests, want) {
		t.Fatalf("destinations %v want %v", dests, want)
	}
	dataWant := map[string]string{".": "dir", "a.txt": "file:a", "sub": "dir", "sub/b.txt": "file:b", "lnk": "link:/etc/passwd"}
	for dst, w := range map[string]map[string]string{
		"/data":        dataWant,
		"/inside":      dataWant,
		"/etc":         {".": "dir", "hosts": "file:image hosts"},
		"/dotdot":      {".": "dir", "b.txt": "file:b"},
		"/abs":         {".": "dir"},
		"/relative":    {".": "dir"},
		"/missing/dir": {".": "dir"},
	} {
		if got := tree(t, byDest[dst]); !reflect.DeepEqual(got, w) {
			t.Errorf("volume %s: %v\nwant %v", dst, got, w)
		}
	}
	st, err := os.Lstat(filepath.Join(byDest["/data"], "a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", st.Mode())
	}
	if sys := st.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (sys.Uid != 1000 || sys.Gid != 1001) {
		t.Errorf("owner %d:%d", sys.Uid, sys.Gid)
	}
	if got := tree(t, outside); !reflect.DeepEqual(got, before) {
		t.Errorf("outside changed: %v", got)
	}
	entries, err := os.ReadDir(filepath.Dir(state))
	if err != nil || len(entries) != 1 || entries[0].Name() != "volumes" {
		t.Errorf("written next to the volume directory: %v %v", entries, err)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("volume directory mode %v %v", fi.Mode(), err)
	}

	// A second preparation into the same directory would mix data.
	_, err = PrepareImageVolumes(context.Background(), rootfs, map[string]struct{}{"/data": {}}, state)
	wantErr(t, err, errdefs.ErrAlreadyExists, "/data")
}

func TestPrepareImageVolumesErrors(t *testing.T) {
	rootfs := t.TempDir()
	symlink(t, "loop2", filepath.Join(rootfs, "loop1"))
	symlink(t, "/loop1", filepath.Join(rootfs, "loop2"))
	write(t, filepath.Join(rootfs, "file"), "x", 0o644)
	for _, tc := range []struct {
		vol    string
		class  error
		naming string
	}{
		{"/loop1/x", errInvalid, "/loop1/x"},
		{"/file", errInvalid, "/file"},
		{"/", errInvalid, `"/"`},
		{"../..", errInvalid, `"../.."`},
		{"/a\x00b", errInvalid, "a"},
	} {
		t.Run(strings.ReplaceAll(tc.vol, "/", "_"), func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "v")
			_, err := PrepareImageVolumes(context.Background(), rootfs, map[string]struct{}{tc.vol: {}}, state)
			wantErr(t, err, tc.class, tc.naming)
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := PrepareImageVolumes(ctx, rootfs, map[string]struct{}{"/file": {}}, filepath.Join(t.TempDir(), "v"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	if m, err := PrepareImageVolumes(context.Background(), rootfs, nil, filepath.Join(t.TempDir(), "v")); m != nil || err != nil {
		t.Fatalf("no volumes: %v %v", m, err)
	}
}

// A volume's content may hold symlinks that point anywhere: they are
// copied as links, and never followed while writing.
func TestPrepareImageVolumesLinkInVolume(t *testing.T) {
	outside := t.TempDir()
	rootfs := t.TempDir()
	write(t, filepath.Join(rootfs, "v/z"), "z", 0o644)
	symlink(t, outside, filepath.Join(rootfs, "v/evil"))
	state := filepath.Join(t.TempDir(), "s")
	mounts, err := PrepareImageVolumes(context.Background(), rootfs, map[string]struct{}{"/v": {}}, state)
	if err != nil {
		t.Fatal(err)
	}
	if got := tree(t, mounts[0].Source); !reflect.DeepEqual(got, map[string]string{".": "dir", "evil": "link:" + outside, "z": "file:z"}) {
		t.Fatalf("volume %v", got)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("written outside: %v", entries)
	}
}

func FuzzResolveInRoot(f *testing.F) {
	for _, s := range []string{"/data", "../../etc", "/abs/x", "/rel", "a/./b/../c", "/loop", ""} {
		f.Add(s)
	}
	rootfs := f.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "data/sub"), 0o755); err != nil {
		f.Fatal(err)
	}
	for target, name := range map[string]string{"/": "abs", "../../..": "rel", "loop": "loop", "/data/sub": "in"} {
		if err := os.Symlink(target, filepath.Join(rootfs, name)); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, name string) {
		r, err := os.OpenRoot(rootfs)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, err := resolveInRoot(r, name)
		if err != nil {
			if !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errdefs.ErrInvalidArgument) {
				var pe *fs.PathError
				if !errors.As(err, &pe) {
					t.Fatalf("%q: %v", name, err)
				}
			}
			return
		}
		if strings.HasPrefix(got, "..") || filepath.IsAbs(got) {
			t.Fatalf("%q resolved outside the root: %q", name, got)
		}
		if slices.Contains(strings.Split(got, "/"), "..") {
			t.Fatalf("%q resolved to %q", name, got)
		}
		if _, err := r.Lstat(got); err != nil {
			t.Fatalf("%q resolved to missing %q: %v", name, got, err)
		}
	})
}

package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// lowerLayer is the tree the diff tests start from.
func lowerLayer(t testing.TB) []byte {
	return buildTar(t,
		entry{Name: "base", Data: "unchanged"},
		entry{Name: "mod", Data: "aaaa"},
		entry{Name: "samesec", Data: "bbbb", MTime: time.Unix(1600000000, 0)},
		entry{Name: "chm", Mode: 0o600, Data: "c"},
		entry{Name: "cho", Data: "c"},
		entry{Name: "xat", Data: "x"},
		entry{Name: "del", Data: "d"},
		entry{Name: "deldir/", Type: tar.TypeDir},
		entry{Name: "deldir/sub/f", Data: "f"},
		entry{Name: "f2d", Data: "file"},
		entry{Name: "d2f/", Type: tar.TypeDir},
		entry{Name: "d2f/child", Data: "c"},
		entry{Name: "sym", Type: tar.TypeSymlink, Link: "base"},
		entry{Name: "dmeta/", Type: tar.TypeDir},
		entry{Name: "dmeta/same", Data: "s"},
		entry{Name: "dir/", Type: tar.TypeDir},
		entry{Name: "dir/same", Data: "s"},
		entry{Name: "dir/changed", Data: "old"},
		entry{Name: "linked", Data: "l"},
		entry{Name: "linked2", Type: tar.TypeLink, Link: "linked"},
	)
}

// changeUpper makes the changes the diff tests look for, directly in a
// copy of the lower tree.
func changeUpper(t testing.TB, upper string) {
	p := func(n string) string { return filepath.Join(upper, n) }
	now := time.Unix(1700000000, 987654321)
	must(t, os.WriteFile(p("mod"), []byte("AAAA"), 0o644))
	must(t, os.Chtimes(p("mod"), now, now))
	must(t, os.WriteFile(p("samesec"), []byte("BBBB"), 0o644))
	must(t, os.Chtimes(p("samesec"), time.Unix(1600000000, 0), time.Unix(1600000000, 0)))
	must(t, os.Chmod(p("chm"), 0o640))
	must(t, os.Lchown(p("cho"), 12, 34))
	must(t, unix.Lsetxattr(p("xat"), "user.new", []byte("v"), 0))
	must(t, unix.Lsetxattr(p("xat"), "trusted.overlay.origin", []byte("skipped"), 0))
	must(t, os.Remove(p("del")))
	must(t, os.RemoveAll(p("deldir")))
	must(t, os.Remove(p("f2d")))
	must(t, os.MkdirAll(p("f2d/inner"), 0o700))
	must(t, os.WriteFile(p("f2d/inner/x"), []byte("x"), 0o600))
	must(t, os.RemoveAll(p("d2f")))
	must(t, os.WriteFile(p("d2f"), []byte("now a file"), 0o644))
	must(t, os.Remove(p("sym")))
	must(t, os.Symlink("/elsewhere", p("sym")))
	must(t, os.Chmod(p("dmeta"), 0o700))
	must(t, os.WriteFile(p("dir/changed"), []byte("new content"), 0o644))
	must(t, os.WriteFile(p("dir/added"), []byte("a"), 0o644))
	must(t, os.WriteFile(p("new1"), []byte("hard"), 0o755))
	must(t, os.Link(p("new1"), p("new2")))
	must(t, os.WriteFile(p("ping"), []byte("cap"), 0o755))
	must(t, unix.Lsetxattr(p("ping"), "security.capability", []byte(capNetRaw), 0))
	must(t, unix.Mkfifo(p("fifo"), 0o600))
	must(t, unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, os.Symlink("../../../../etc/shadow", p("escaping-link")))
	must(t, os.WriteFile(p("linked"), []byte("L"), 0o644)) // both names
	l, err := listenUnix(p("sock"))
	must(t, err)
	defer l()
}

// listenUnix creates a socket file, which tar cannot hold.
func listenUnix(p string) (func(), error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: p}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return func() { unix.Close(fd) }, nil
}

func TestDiffRoundTrip(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	lower, upper, target := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "target")
	for _, d := range []string{lower, upper, target} {
		must(t, os.Mkdir(d, 0o755))
		mustApply(t, d, lowerLayer(t))
	}
	changeUpper(t, upper)
	var buf bytes.Buffer
	must(t, Diff(context.Background(), lower, upper, &buf))
	names := tarNames(t, buf.Bytes())
	want := []string{
		".wh.d2f", "chm", "cho", "d2f", ".wh.del", ".wh.deldir", "dir/", "dir/added", "dir/changed",
		"dmeta/", "escaping-link", "f2d/", "f2d/inner/", "f2d/inner/x", "fifo", "linked", "linked2", "mod",
		"new1", "new2", "null", "ping", "samesec", "sym", "xat",
	}
	// .wh.d2f is not written: d2f's file entry replaces the directory.
	want = want[1:]
	if !slices.Equal(names, want) {
		t.Errorf("diff entries\n got %v\nwant %v", names, want)
	}
	mustApply(t, target, buf.Bytes())
	got, exp := snapshot(t, target), snapshot(t, upper)
	delete(exp, "sock")
	n := exp["xat"]
	n.Xattrs = xattrString(map[string]string{"user.new": "v"})
	exp["xat"] = n
	if d := diffSnapshots(exp, got, "."); len(d) > 0 {
		t.Fatalf("diff applied to lower differs from upper:\n%s", strings.Join(d, "\n"))
	}

	// Deterministic.
	var again bytes.Buffer
	must(t, Diff(context.Background(), lower, upper, &again))
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Fatal("two diffs of the same trees differ")
	}
	// And nothing between identical trees.
	var none bytes.Buffer
	must(t, Diff(context.Background(), lower, lower, &none))
	if n := tarNames(t, none.Bytes()); len(n) != 0 {
		t.Fatalf("diff of a tree with itself: %v", n)
	}
}

// tarNames lists a tar's entry names, and checks the headers are the
// reproducible kind: PAX, no access times, no user names.
func tarNames(t testing.TB, data []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		must(t, err)
		if !h.AccessTime.IsZero() || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: atime %v, uname %q, gname %q", h.Name, h.AccessTime, h.Uname, h.Gname)
		}
		for k := range h.PAXRecords {
			if strings.Contains(k, "trusted.overlay") {
				t.Errorf("%s exports %s", h.Name, k)
			}
		}
		names = append(names, h.Name)
	}
}

func TestDiffFromEmpty(t *testing.T) {
	requireRoot(t)
	src, empty, dst := t.TempDir(), t.TempDir(), t.TempDir()
	mustApply(t, src, lowerLayer(t))
	var buf bytes.Buffer
	must(t, Diff(context.Background(), empty, src, &buf))
	mustApply(t, dst, buf.Bytes())
	if d := diffSnapshots(snapshot(t, src), snapshot(t, dst), "."); len(d) > 0 {
		t.Fatalf("copy differs:\n%s", strings.Join(d, "\n"))
	}
}

func TestDiffOverlayUpper(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	l1, l2, upper := filepath.Join(dir, "l1"), filepath.Join(dir, "l2"), filepath.Join(dir, "upper")
	for _, d := range []string{l1, l2, upper} {
		must(t, os.Mkdir(d, 0o755))
	}
	t0 := time.Unix(1500000000, 0)
	// l2 (bottom): a/x, b/y, c, keep/k; l1 (top): d/.
	mustApply(t, l2, buildTar(t,
		entry{Name: "a/", Type: tar.TypeDir, MTime: t0},
		entry{Name: "a/x", Data: "x"},
		entry{Name: "b/", Type: tar.TypeDir, MTime: t0},
		entry{Name: "b/y", Data: "y"},
		entry{Name: "c", Data: "c"},
		entry{Name: "keep/", Type: tar.TypeDir, MTime: t0},
		entry{Name: "keep/k", Data: "k"},
	))
	mustApply(t, l1, buildTar(t, entry{Name: "d/", Type: tar.TypeDir, MTime: t0}))
	// upper: a copied up only to hold a/new; b opaque; c deleted; e new;
	// keep with a new mode; d/sub new below a lower directory.
	mustApply(t, upper, buildTar(t,
		entry{Name: "a/", Type: tar.TypeDir, MTime: t0},
		entry{Name: "a/new", Data: "new"},
		entry{Name: "b/", Type: tar.TypeDir, MTime: t0, Mode: 0o700},
		entry{Name: "b/.wh..wh..opq"},
		entry{Name: "b/z/", Type: tar.TypeDir, MTime: t0},
		entry{Name: ".wh.c"},
		entry{Name: "e", Data: "e"},
		entry{Name: "keep/", Type: tar.TypeDir, Mode: 0o711, MTime: t0},
		entry{Name: "d/", Type: tar.TypeDir, MTime: t0},
		entry{Name: "d/sub/", Type: tar.TypeDir, MTime: t0},
	), WithOverlayWhiteouts())
	// Directories whose content changed keep their old times above, as a
	// copy-up followed by a chmod-free change to a file's content would.
	must(t, unix.Lsetxattr(filepath.Join(upper, "a"), "trusted.overlay.origin", []byte("o"), 0))
	var buf bytes.Buffer
	must(t, DiffOverlayUpper(context.Background(), upper, []string{l1, l2}, &buf))
	names := tarNames(t, buf.Bytes())
	want := []string{"a/new", "b/", "b/.wh..wh..opq", "b/z/", ".wh.c", "d/sub/", "e", "keep/"}
	if !slices.Equal(names, want) {
		t.Fatalf("entries\n got %v\nwant %v", names, want)
	}

	// Applied natively onto the merged lower layers, it gives the merged
	// view of the overlay.
	merged, expect := t.TempDir(), t.TempDir()
	for _, d := range []string{merged, expect} {
		var full bytes.Buffer
		must(t, Diff(context.Background(), t.TempDir(), l2, &full))
		mustApply(t, d, full.Bytes())
		full.Reset()
		must(t, Diff(context.Background(), t.TempDir(), l1, &full))
		mustApply(t, d, full.Bytes())
	}
	mustApply(t, merged, buf.Bytes())
	mustApply(t, expect, buildTar(t,
		entry{Name: "a/new", Data: "new"},
		entry{Name: "b/", Type: tar.TypeDir, MTime: t0, Mode: 0o700},
		entry{Name: "b/.wh..wh..opq"},
		entry{Name: "b/z/", Type: tar.TypeDir, MTime: t0},
		entry{Name: ".wh.c"},
		entry{Name: "d/sub/", Type: tar.TypeDir, MTime: t0},
		entry{Name: "e", Data: "e"},
		entry{Name: "keep/", Type: tar.TypeDir, Mode: 0o711, MTime: t0},
	))
	if d := diffSnapshots(snapshot(t, expect), snapshot(t, merged), "."); len(d) > 0 {
		t.Fatalf("merged view differs:\n%s", strings.Join(d, "\n"))
	}
}

func TestDiffOverlayUpperMetacopy(t *testing.T) {
	requireRoot(t)
	upper := t.TempDir()
	must(t, os.WriteFile(filepath.Join(upper, "f"), nil, 0o644))
	must(t, unix.Lsetxattr(filepath.Join(upper, "f"), "trusted.overlay.metacopy", nil, 0))
	err := DiffOverlayUpper(context.Background(), upper, nil, io.Discard)
	if !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Fatalf("got %v", err)
	}
}

// TestDiffOverlayReal changes files through a real overlay mount and checks
// that DiffOverlayUpper of its upper directory, and Diff of the mounted
// tree, both turn the lower tree into the merged one; and that Apply's
// overlay whiteouts mean to overlayfs what they should.
func TestDiffOverlayReal(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	lower, upper, work, mnt := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "mnt")
	for _, d := range []string{lower, upper, work, mnt} {
		must(t, os.Mkdir(d, 0o755))
	}
	mustApply(t, lower, lowerLayer(t))
	// A layer applied into the upper directory, as the walking applier
	// does.
	mustApply(t, upper, buildTar(t,
		entry{Name: ".wh.base"},
		entry{Name: "dir/", Type: tar.TypeDir, Mode: 0o700},
		entry{Name: "dir/.wh..wh..opq"},
		entry{Name: "dir/only", Data: "only"},
	), WithOverlayWhiteouts(), WithParents(lower))
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work + ",metacopy=off,redirect_dir=off,index=off"
	if err := unix.Mount("overlay", mnt, "overlay", 0, opts); err != nil {
		t.Fatalf("cannot mount overlay (hull needs it on this kernel): %v", err)
	}
	mounted := true
	unmount := func() {
		if mounted {
			must(t, unix.Unmount(mnt, 0))
			mounted = false
		}
	}
	defer unmount()
	if _, err := os.Lstat(filepath.Join(mnt, "base")); !os.IsNotExist(err) {
		t.Fatalf("whiteout does not hide base: %v", err)
	}
	if names, _ := os.ReadDir(filepath.Join(mnt, "dir")); len(names) != 1 {
		t.Fatalf("opaque dir shows %v", names)
	}
	changeUpper(t, mnt)
	must(t, os.RemoveAll(filepath.Join(mnt, "dmeta")))
	must(t, os.Mkdir(filepath.Join(mnt, "dmeta"), 0o700)) // opaque now
	merged := snapshot(t, mnt)
	delete(merged, "sock")
	n := merged["xat"]
	n.Xattrs = xattrString(map[string]string{"user.new": "v"})
	merged["xat"] = n
	// Writing "linked" copied it up alone (index=off): "linked2" still
	// shows the lower inode's two links.
	n = merged["linked2"]
	n.LinkGroup = ""
	merged["linked2"] = n
	var viaMount bytes.Buffer
	must(t, Diff(context.Background(), lower, mnt, &viaMount))
	unmount()

	var viaUpper bytes.Buffer
	must(t, DiffOverlayUpper(context.Background(), upper, []string{lower}, &viaUpper))
	for name, layer := range map[string][]byte{"DiffOverlayUpper": viaUpper.Bytes(), "Diff of the mount": viaMount.Bytes()} {
		target := t.TempDir()
		mustApply(t, target, lowerLayer(t))
		mustApply(t, target, layer)
		if d := diffSnapshots(merged, snapshot(t, target), "."); len(d) > 0 {
			t.Errorf("%s applied to lower differs from the merged view:\n%s\nentries: %v", name, strings.Join(d, "\n"), tarNames(t, layer))
		}
	}
}

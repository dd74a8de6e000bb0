package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// capNetRaw is a security.capability value (VFS_CAP_REVISION_2, effective)
// granting CAP_NET_RAW.
var capNetRaw = string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

func TestApplyRoundTrip(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	t1 := time.Unix(1500000000, 111)
	t2 := time.Unix(1400000000, 222)
	data := buildTar(t,
		entry{Name: "./", Type: tar.TypeDir, Mode: 0o711, MTime: t2},
		entry{Name: "bin/", Type: tar.TypeDir, Mode: 0o755, Uid: 1, Gid: 2, MTime: t1},
		entry{Name: "bin/ping", Mode: 0o4755, Data: "ping binary", Xattrs: map[string]string{"security.capability": capNetRaw}},
		entry{Name: "bin/sgid", Mode: 0o2711, Uid: 1000, Gid: 1001, Data: "x"},
		entry{Name: "bin/hard", Type: tar.TypeLink, Link: "bin/ping"},
		entry{Name: "bin/sh", Type: tar.TypeSymlink, Link: "busybox", Uid: 7, Gid: 8, MTime: t1},
		entry{Name: "etc/", Type: tar.TypeDir, Mode: 0o700, Xattrs: map[string]string{"user.dir": "d", "trusted.t": "tv"}},
		entry{Name: "etc/passwd", Mode: 0o600, Data: strings.Repeat("root:x:0:0\n", 1000), ATime: t2, MTime: t1,
			Xattrs: map[string]string{"user.a": "1", "trusted.b": "\x00bin\xff"}},
		entry{Name: "etc/abs", Type: tar.TypeSymlink, Link: "/etc/passwd"},
		entry{Name: "etc/dangling", Type: tar.TypeSymlink, Link: "../../../nowhere"},
		entry{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
		entry{Name: "dev/", Type: tar.TypeDir},
		entry{Name: "dev/null", Type: tar.TypeChar, Mode: 0o666, Major: 1, Minor: 3},
		entry{Name: "dev/loop0", Type: tar.TypeBlock, Mode: 0o660, Gid: 6, Major: 7, Minor: 0},
		entry{Name: "dev/fifo", Type: tar.TypeFifo, Mode: 0o620},
		entry{Name: "implicit/parent/file", Data: "deep"},
		entry{Name: "/abs/file", Data: "rooted"},
		entry{Name: "pax/" + strings.Repeat("long", 40) + "/name", Data: "long name"},
	)
	n, err := Apply(context.Background(), root, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 || n > int64(len(data)) {
		t.Fatalf("Apply returned %d bytes read of %d", n, len(data))
	}
	// atime before anything reads the file.
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(root, "etc/passwd"), &st))
	if st.Atim.Nano() != t2.UnixNano() {
		t.Errorf("etc/passwd atime %v, want %v", time.Unix(0, st.Atim.Nano()), t2)
	}
	got := snapshot(t, root)
	sum := func(s string) string { return snapshotData(t, s) }
	tt := testTime.UnixNano()
	want := map[string]node{
		".":                                 {Type: "dir", Mode: 0o711, MTime: t2.UnixNano()},
		"bin":                               {Type: "dir", Mode: 0o755, Uid: 1, Gid: 2, MTime: t1.UnixNano()},
		"bin/ping":                          {Type: "reg", Mode: 0o4755, MTime: tt, Size: 11, Data: sum("ping binary"), Xattrs: xattrString(map[string]string{"security.capability": capNetRaw}), LinkGroup: "bin/hard"},
		"bin/hard":                          {Type: "reg", Mode: 0o4755, MTime: tt, Size: 11, Data: sum("ping binary"), Xattrs: xattrString(map[string]string{"security.capability": capNetRaw}), LinkGroup: "bin/hard"},
		"bin/sgid":                          {Type: "reg", Mode: 0o2711, Uid: 1000, Gid: 1001, MTime: tt, Size: 1, Data: sum("x")},
		"bin/sh":                            {Type: "symlink", Uid: 7, Gid: 8, MTime: t1.UnixNano(), Link: "busybox"},
		"etc":                               {Type: "dir", Mode: 0o700, MTime: tt, Xattrs: xattrString(map[string]string{"user.dir": "d", "trusted.t": "tv"})},
		"etc/passwd":                        {Type: "reg", Mode: 0o600, MTime: t1.UnixNano(), Size: 11000, Data: sum(strings.Repeat("root:x:0:0\n", 1000)), Xattrs: xattrString(map[string]string{"user.a": "1", "trusted.b": "\x00bin\xff"})},
		"etc/abs":                           {Type: "symlink", MTime: tt, Link: "/etc/passwd"},
		"etc/dangling":                      {Type: "symlink", MTime: tt, Link: "../../../nowhere"},
		"tmp":                               {Type: "dir", Mode: 0o1777, MTime: tt},
		"dev":                               {Type: "dir", Mode: 0o755, MTime: tt},
		"dev/null":                          {Type: "char", Mode: 0o666, MTime: tt, Rdev: unix.Mkdev(1, 3)},
		"dev/loop0":                         {Type: "block", Mode: 0o660, Gid: 6, MTime: tt, Rdev: unix.Mkdev(7, 0)},
		"dev/fifo":                          {Type: "fifo", Mode: 0o620, MTime: tt},
		"implicit":                          {Type: "dir", Mode: 0o755},
		"implicit/parent":                   {Type: "dir", Mode: 0o755},
		"implicit/parent/file":              {Type: "reg", Mode: 0o644, MTime: tt, Size: 4, Data: sum("deep")},
		"abs":                               {Type: "dir", Mode: 0o755},
		"abs/file":                          {Type: "reg", Mode: 0o644, MTime: tt, Size: 6, Data: sum("rooted")},
		"pax":                               {Type: "dir", Mode: 0o755},
		"pax/" + strings.Repeat("long", 40): {Type: "dir", Mode: 0o755},
		"pax/" + strings.Repeat("long", 40) + "/name": {Type: "reg", Mode: 0o644, MTime: tt, Size: 9, Data: sum("long name")},
	}
	// Directories the layer does not list get the current time.
	for p, n := range want {
		if n.MTime == 0 {
			n.MTime = got[p].MTime
			want[p] = n
		}
	}
	// The hard link is the first name of the inode in walk order.
	for _, p := range []string{"bin/ping", "bin/hard"} {
		n := want[p]
		n.LinkGroup = got["bin/ping"].LinkGroup
		want[p] = n
	}
	if d := diffSnapshots(want, got); len(d) > 0 {
		t.Fatalf("applied tree differs:\n%s", strings.Join(d, "\n"))
	}
	var a, b unix.Stat_t
	must(t, unix.Lstat(filepath.Join(root, "bin/ping"), &a))
	must(t, unix.Lstat(filepath.Join(root, "bin/hard"), &b))
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Fatalf("hard link: inodes %d and %d, %d links", a.Ino, b.Ino, a.Nlink)
	}
}

func snapshotData(t testing.TB, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(p, []byte(s), 0o644))
	return snapshot(t, filepath.Dir(p))["f"].Data
}

// TestApplyReplaces checks that entries replace what is in their way and
// that an existing directory is kept with its content and new metadata.
func TestApplyReplaces(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	mustApply(t, root, buildTar(t,
		entry{Name: "d/", Type: tar.TypeDir, Mode: 0o700},
		entry{Name: "d/keep", Data: "keep"},
		entry{Name: "filetodir", Data: "f"},
		entry{Name: "dirtofile/", Type: tar.TypeDir},
		entry{Name: "dirtofile/x/y", Data: "y"},
		entry{Name: "linktofile", Type: tar.TypeSymlink, Link: "d"},
		entry{Name: "same", Data: "old"},
	))
	mustApply(t, root, buildTar(t,
		entry{Name: "d/", Type: tar.TypeDir, Mode: 0o750, Uid: 3},
		entry{Name: "filetodir/", Type: tar.TypeDir},
		entry{Name: "dirtofile", Data: "now a file"},
		entry{Name: "linktofile", Data: "not a link"},
		entry{Name: "same", Data: "new!"},
		entry{Name: "same2", Type: tar.TypeLink, Link: "same"},
		entry{Name: "same2", Type: tar.TypeLink, Link: "same"}, // already that file
	))
	got := snapshot(t, root)
	check := func(p, typ string, mode uint32) {
		t.Helper()
		if got[p].Type != typ || got[p].Mode != mode {
			t.Errorf("%s: %s", p, fmtNode(got[p]))
		}
	}
	check("d", "dir", 0o750)
	check("d/keep", "reg", 0o644)
	check("filetodir", "dir", 0o755)
	check("dirtofile", "reg", 0o644)
	check("linktofile", "reg", 0o644)
	if _, ok := got["dirtofile/x"]; ok {
		t.Error("dirtofile's old content is still there")
	}
	if got["d"].Uid != 3 {
		t.Errorf("d owner %d", got["d"].Uid)
	}
	if got["same"].LinkGroup == "" || got["same"].LinkGroup != got["same2"].LinkGroup {
		t.Errorf("same and same2 are not one inode: %v %v", got["same"], got["same2"])
	}
}

// TestApplyReplacesEveryType checks that an entry of each type replaces
// what is in its way, from an earlier layer or earlier in its own, and
// that a dangling symbolic link in the way is replaced, never followed.
func TestApplyReplacesEveryType(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	mustApply(t, root, buildTar(t,
		entry{Name: "target", Data: "target"},
		entry{Name: "f2sym", Data: "f"},
		entry{Name: "f2link", Data: "f"},
		entry{Name: "f2fifo", Data: "f"},
		entry{Name: "dangling", Type: tar.TypeSymlink, Link: "nowhere"},
		entry{Name: "dangdir", Type: tar.TypeSymlink, Link: "nowhere2"},
	))
	mustApply(t, root, buildTar(t,
		entry{Name: "f2sym", Type: tar.TypeSymlink, Link: "target"},
		entry{Name: "f2link", Type: tar.TypeLink, Link: "target"},
		entry{Name: "f2fifo", Type: tar.TypeFifo},
		entry{Name: "dangling", Data: "a file now"},
		entry{Name: "dangdir/", Type: tar.TypeDir},
		entry{Name: "twice", Data: "first"},
		entry{Name: "twice", Data: "second"},
		entry{Name: "twicedir/", Type: tar.TypeDir, Mode: 0o700},
		entry{Name: "twicedir/keep", Data: "k"},
		entry{Name: "twicedir/", Type: tar.TypeDir, Mode: 0o750},
	))
	got := snapshot(t, root)
	for p, typ := range map[string]string{"f2sym": "symlink", "f2link": "reg", "f2fifo": "fifo", "dangling": "reg", "dangdir": "dir", "twice": "reg", "twicedir": "dir", "twicedir/keep": "reg"} {
		if got[p].Type != typ {
			t.Errorf("%s: %s, want a %s", p, fmtNode(got[p]), typ)
		}
	}
	if got["f2link"].LinkGroup == "" || got["f2link"].LinkGroup != got["target"].LinkGroup {
		t.Errorf("f2link is not target's inode: %v %v", got["f2link"], got["target"])
	}
	if got["twice"].Size != int64(len("second")) {
		t.Errorf("twice: %s, want the second entry's content", fmtNode(got["twice"]))
	}
	if got["twicedir"].Mode != 0o750 {
		t.Errorf("twicedir: %s, want the second entry's mode", fmtNode(got["twicedir"]))
	}
	for _, p := range []string{"nowhere", "nowhere2"} {
		if _, ok := got[p]; ok {
			t.Errorf("%s made through a dangling link", p)
		}
	}
}

// TestApplyDirTimesAfterContent checks that a directory's time is its
// entry's even when its content comes later, also when the layer leaves
// and reenters it, and that directories the layer only writes into keep
// their times.
func TestApplyDirTimesAfterContent(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	old := time.Unix(1000000000, 5)
	must(t, os.Mkdir(filepath.Join(root, "existing"), 0o755))
	must(t, os.Chtimes(filepath.Join(root, "existing"), old, old))
	must(t, os.Chtimes(root, old, old))
	t1 := time.Unix(1300000000, 7)
	mustApply(t, root, buildTar(t,
		entry{Name: "a/", Type: tar.TypeDir, MTime: t1},
		entry{Name: "a/b/", Type: tar.TypeDir, MTime: t1},
		entry{Name: "a/b/f", Data: "f"},
		entry{Name: "a/g", Data: "g"},
		entry{Name: "z", Data: "z"},
		entry{Name: "a/late", Data: "back in a"},
		entry{Name: "existing/new", Data: "n"},
	))
	got := snapshot(t, root)
	for p, want := range map[string]time.Time{"a": t1, "a/b": t1, "existing": old, ".": old} {
		if got[p].MTime != want.UnixNano() {
			t.Errorf("%s: mtime %v, want %v", p, time.Unix(0, got[p].MTime), want)
		}
	}
}

func TestApplyOverlayWhiteouts(t *testing.T) {
	requireRoot(t)
	upper := t.TempDir()
	mustApply(t, upper, buildTar(t,
		entry{Name: "etc/", Type: tar.TypeDir},
		entry{Name: "etc/.wh.gone"},
		entry{Name: "opq/", Type: tar.TypeDir, Mode: 0o750},
		entry{Name: "opq/.wh..wh..opq"},
		entry{Name: "opq/new", Data: "n"},
		entry{Name: ".wh.topdir"},
		entry{Name: ".wh..wh.plnk/", Type: tar.TypeDir}, // aufs bookkeeping: skipped
		entry{Name: "nodir/.wh.x"},
		entry{Name: "trusted/", Type: tar.TypeDir, Xattrs: map[string]string{"trusted.overlay.redirect": "/etc", "user.ok": "1"}},
	), WithOverlayWhiteouts())
	got := snapshot(t, upper)
	for _, p := range []string{"etc/gone", "topdir", "nodir/x"} {
		n := got[p]
		if n.Type != "char" || n.Rdev != 0 {
			t.Errorf("%s is not a whiteout: %s", p, fmtNode(n))
		}
	}
	if x := got["opq"].Xattrs; x != xattrString(map[string]string{overlayOpaqueXattr: "y"}) {
		t.Errorf("opq xattrs %q", x)
	}
	if got["opq"].Mode != 0o750 || got["opq/new"].Type != "reg" {
		t.Errorf("opq: %v, opq/new: %v", got["opq"], got["opq/new"])
	}
	if x := got["trusted"].Xattrs; x != xattrString(map[string]string{"user.ok": "1"}) {
		t.Errorf("a layer set overlayfs xattrs: %q", x)
	}
	for p := range got {
		if strings.Contains(p, ".wh.") {
			t.Errorf("whiteout entry %s was written as a file", p)
		}
	}
}

func TestApplyNativeWhiteouts(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	mustApply(t, root, buildTar(t,
		entry{Name: "gone", Data: "g"},
		entry{Name: "gonedir/sub/f", Data: "f"},
		entry{Name: "opq/", Type: tar.TypeDir},
		entry{Name: "opq/old", Data: "o"},
		entry{Name: "opq/olddir/f", Data: "f"},
		entry{Name: "opq/kept/old", Data: "o"},
		entry{Name: "keep", Data: "k"},
	))
	mustApply(t, root, buildTar(t,
		entry{Name: ".wh.gone"},
		entry{Name: ".wh.gonedir"},
		entry{Name: ".wh.missing"},
		entry{Name: "opq/", Type: tar.TypeDir, Mode: 0o700},
		entry{Name: "opq/.wh..wh..opq"},
		entry{Name: "opq/kept/", Type: tar.TypeDir},
		entry{Name: "opq/kept/new", Data: "n"},
		entry{Name: "opq/new", Data: "n"},
		entry{Name: "fresh/", Type: tar.TypeDir},
		entry{Name: "fresh/a", Data: "a"},
		entry{Name: "fresh/.wh..wh..opq"}, // new in this layer: keeps its content
	))
	got := snapshot(t, root)
	var names []string
	for p := range got {
		names = append(names, p)
	}
	want := []string{".", "fresh", "fresh/a", "keep", "opq", "opq/kept", "opq/kept/new", "opq/new"}
	if strings.Join(sorted(names), " ") != strings.Join(want, " ") {
		t.Fatalf("tree %v, want %v", sorted(names), want)
	}
	if got["opq"].Mode != 0o700 {
		t.Errorf("opq mode %#o", got["opq"].Mode)
	}
	if got["opq"].Xattrs != "" {
		t.Errorf("native opaque directory got xattrs %q", got["opq"].Xattrs)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestApplyNativeOpaqueLate checks the one ordering Apply refuses: an
// opaque whiteout after the layer's own entries in a directory that
// existed before.
func TestApplyNativeOpaqueLate(t *testing.T) {
	requireRoot(t)
	for _, layer := range [][]entry{
		{{Name: "d/new", Data: "n"}, {Name: "d/.wh..wh..opq"}},
		{{Name: "d/new", Data: "n"}, {Name: "x", Data: "x"}, {Name: "d/.wh..wh..opq"}},
	} {
		root := t.TempDir()
		mustApply(t, root, buildTar(t, entry{Name: "d/old", Data: "o"}))
		err := apply(t, root, buildTar(t, layer...))
		if err == nil || !strings.Contains(err.Error(), "d/.wh..wh..opq") {
			t.Errorf("late opaque whiteout: %v", err)
		}
		if _, err := os.Stat(filepath.Join(root, "d/old")); err != nil {
			t.Errorf("d/old removed: %v", err)
		}
	}
}

func TestApplyParents(t *testing.T) {
	requireRoot(t)
	lower1, lower2, upper := t.TempDir(), t.TempDir(), t.TempDir()
	old := time.Unix(1111111111, 0)
	must(t, os.Mkdir(filepath.Join(lower2, "tmp"), 0o755))
	must(t, unix.Chmod(filepath.Join(lower2, "tmp"), 0o1777))
	must(t, os.Lchown(filepath.Join(lower2, "tmp"), 5, 6))
	must(t, unix.Lsetxattr(filepath.Join(lower2, "tmp"), "user.x", []byte("1"), 0))
	must(t, unix.Lsetxattr(filepath.Join(lower2, "tmp"), overlayOpaqueXattr, []byte("y"), 0))
	must(t, os.Chtimes(filepath.Join(lower2, "tmp"), old, old))
	// A whiteout in the upper lower layer hides lower2's "gone".
	must(t, os.Mkdir(filepath.Join(lower2, "gone"), 0o700))
	must(t, unix.Mknod(filepath.Join(lower1, "gone"), unix.S_IFCHR, 0))
	mustApply(t, upper, buildTar(t,
		entry{Name: "tmp/x", Data: "x"},
		entry{Name: "gone/y", Data: "y"},
	), WithOverlayWhiteouts(), WithParents(lower1, lower2))
	got := snapshot(t, upper)
	tmp := got["tmp"]
	if tmp.Mode != 0o1777 || tmp.Uid != 5 || tmp.Gid != 6 || tmp.MTime != old.UnixNano() || tmp.Xattrs != xattrString(map[string]string{"user.x": "1"}) {
		t.Errorf("tmp not copied from the parent layer: %s", fmtNode(tmp))
	}
	if got["gone"].Mode != 0o755 {
		t.Errorf("gone copied from a hidden layer: %s", fmtNode(got["gone"]))
	}
}

func TestApplyErrors(t *testing.T) {
	requireRoot(t)
	valid := buildTar(t, entry{Name: "a", Data: strings.Repeat("x", 5000)}, entry{Name: "b", Data: "b"})
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"truncated in data":   {valid[:1024+100], "unexpected EOF"},
		"truncated in header": {valid[:300], "unexpected EOF"},
		"unknown type":        {buildTar(t, entry{Name: "x", Type: 'Z'}), `unsupported entry type 'Z'`},
		"root as file":        {buildTar(t, entry{Name: ".", Data: "x"}), "replace the root"},
		"empty whiteout":      {buildTar(t, entry{Name: "d/.wh."}), `whiteout of ""`},
		"hard link to dir":    {buildTar(t, entry{Name: "d/", Type: tar.TypeDir}, entry{Name: "h", Type: tar.TypeLink, Link: "d"}), "is a directory"},
		"hard link missing":   {buildTar(t, entry{Name: "h", Type: tar.TypeLink, Link: "nothing"}), "no such file"},
		"hard link to root":   {buildTar(t, entry{Name: "h", Type: tar.TypeLink, Link: "/"}), "root directory"},
	} {
		t.Run(name, func(t *testing.T) {
			err := apply(t, t.TempDir(), tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestApplyHugeSize(t *testing.T) {
	requireRoot(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 50}))
	tw.Write(make([]byte, 4096))
	// No Close: the stream ends 2^50 bytes early.
	root := t.TempDir()
	start := time.Now()
	err := apply(t, root, buf.Bytes())
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), `"huge"`) {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
}

func TestApplyCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, t.TempDir(), bytes.NewReader(buildTar(t, entry{Name: "a"})))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"a":                 "a",
		"./a/":              "a",
		"/":                 ".",
		"./":                ".",
		"/abs/../../escape": "escape",
		"///a//b/../c":      "a/c",
		"a/../b":            "b",
		"../a":              "",
		"..":                "",
		"a/../../b":         "",
		"":                  "",
		"a\x00b":            "",
	} {
		got, err := cleanName(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// rawHeader makes a tar header block by hand, for entries archive/tar
// will not write.
func rawHeader(name string, typeflag byte, size int64, gnu bool) []byte {
	b := make([]byte, 512)
	copy(b, name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "00000000000\x00")
	b[156] = typeflag
	if gnu {
		copy(b[257:], "ustar  \x00")
	} else {
		copy(b[257:], "ustar\x0000")
	}
	copy(b[148:], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func pad(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

func paxRecord(k, v string) string {
	rec := " " + k + "=" + v + "\n"
	n := len(rec)
	for len(strconv.Itoa(n+len(strconv.Itoa(n)))) != len(strconv.Itoa(n)) {
		n++
	}
	n += len(strconv.Itoa(n))
	return strconv.Itoa(n) + rec
}

// TestApplySparse checks that sparse files, whose few bytes of map can
// stand for petabytes of zeros, are refused.
func TestApplySparse(t *testing.T) {
	requireRoot(t)
	var pax string
	for _, kv := range [][2]string{
		{"GNU.sparse.major", "0"}, {"GNU.sparse.minor", "1"}, {"GNU.sparse.numblocks", "1"},
		{"GNU.sparse.map", "0,1"}, {"GNU.sparse.size", "1000000000000000"}, {"GNU.sparse.name", "s"},
	} {
		pax += paxRecord(kv[0], kv[1])
	}
	var paxTar []byte
	paxTar = append(paxTar, rawHeader("PaxHeaders/s", 'x', int64(len(pax)), false)...)
	paxTar = append(paxTar, pad([]byte(pax))...)
	paxTar = append(paxTar, rawHeader("s", '0', 1, false)...)
	paxTar = append(paxTar, pad([]byte("x"))...)
	paxTar = append(paxTar, make([]byte, 1024)...)

	gnuTar := append(rawHeader("s", 'S', 0, true), make([]byte, 1024)...)
	for name, data := range map[string][]byte{"pax": paxTar, "gnu": gnuTar} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			err := apply(t, root, data)
			if err == nil {
				t.Fatal("sparse file applied")
			}
			t.Log(err)
			if names, _ := os.ReadDir(root); len(names) != 0 {
				t.Fatalf("wrote %v", names)
			}
		})
	}
}

func TestApplyNoSameOwner(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	mustApply(t, root, buildTar(t,
		entry{Name: "d/", Type: tar.TypeDir, Uid: 5, Gid: 6},
		entry{Name: "d/f", Uid: 7, Gid: 8, Mode: 0o4755, Data: "f"},
		entry{Name: "d/l", Type: tar.TypeSymlink, Link: "f", Uid: 9, Gid: 9},
	), WithNoSameOwner())
	for p, n := range snapshot(t, root) {
		if n.Uid != 0 || n.Gid != 0 {
			t.Errorf("%s owned by %d:%d", p, n.Uid, n.Gid)
		}
		if p == "d/f" && n.Mode != 0o4755 {
			t.Errorf("d/f mode %#o", n.Mode)
		}
	}
}

// TestApplyDetachedUpper checks that a detached apply writes what an
// apply into the upper directory of an overlay over the layers below
// writes, and refuses the layers that need those layers' content.
func TestApplyDetachedUpper(t *testing.T) {
	requireRoot(t)
	lower := t.TempDir()
	mustApply(t, lower, buildTar(t,
		entry{Name: "d/", Type: tar.TypeDir, Mode: 0o1777},
		entry{Name: "d/old", Data: "old"},
		entry{Name: "o/", Type: tar.TypeDir},
		entry{Name: "o/x", Data: "x"},
	))
	layer := buildTar(t,
		entry{Name: "d/", Type: tar.TypeDir, Mode: 0o1777},
		entry{Name: "d/.wh.old"},
		entry{Name: "d/new", Data: "new"},
		entry{Name: "d/hard", Type: tar.TypeLink, Link: "d/new"},
		entry{Name: "o/", Type: tar.TypeDir},
		entry{Name: "o/.wh..wh..opq"},
	)
	chained, detached := t.TempDir(), t.TempDir()
	mustApply(t, chained, layer, WithOverlayWhiteouts(), WithParents(lower))
	mustApply(t, detached, layer, WithDetachedUpper())
	want, got := snapshot(t, chained), snapshot(t, detached)
	if d := diffSnapshots(want, got, ".", "d/old"); len(d) > 0 {
		t.Errorf("detached apply differs from the chained one: %v", d)
	}
	if n := got["d/old"]; n.Type != "char" || n.Rdev != 0 {
		t.Errorf("whiteout of d/old: %+v", n)
	}
	// A directory the layer writes into without listing it gets its
	// metadata from the lowers once they are there.
	implicit := buildTar(t,
		entry{Name: "d/x", Data: "x"},
		entry{Name: "o/.wh.x"},
	)
	chained, detached = t.TempDir(), t.TempDir()
	mustApply(t, chained, implicit, WithOverlayWhiteouts(), WithParents(lower))
	mustApply(t, detached, implicit, WithDetachedUpper())
	if n := snapshot(t, detached)["d"]; n.Mode != 0o755 {
		t.Errorf("implicit d before FixImplicitParents: %+v", n)
	}
	if err := FixImplicitParents(detached, lower); err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(snapshot(t, chained), snapshot(t, detached), ".", "o/x"); len(d) > 0 {
		t.Errorf("detached apply and FixImplicitParents differ from the chained apply: %v", d)
	}
	if x := allXattrs(t, detached); len(x) > 0 {
		t.Errorf("root keeps extended attributes: %v", x)
	}
	if err := FixImplicitParents(detached, lower); err != nil {
		t.Errorf("second FixImplicitParents: %v", err)
	}
	for name, l := range map[string][]byte{
		"hard link to a lower": buildTar(t, entry{Name: "d/", Type: tar.TypeDir}, entry{Name: "d/h", Type: tar.TypeLink, Link: "d/old"}),
		"hard link in a lower": buildTar(t, entry{Name: "h", Type: tar.TypeLink, Link: "o/x"}),
		"parent named late":    buildTar(t, entry{Name: "d/x", Data: "x"}, entry{Name: "d/", Type: tar.TypeDir}),
	} {
		if err := apply(t, t.TempDir(), l, WithDetachedUpper()); !errors.Is(err, ErrNeedsLower) {
			t.Errorf("%s: %v, want ErrNeedsLower", name, err)
		}
	}
	// A layer cannot forge the record.
	forged := buildTar(t, entry{Name: "./", Type: tar.TypeDir, Xattrs: map[string]string{"trusted.hull.implicit-parents": "d"}})
	root := t.TempDir()
	mustApply(t, root, forged)
	if x := allXattrs(t, root); len(x) > 0 {
		t.Errorf("a layer set %v", x)
	}
}

// TestHardlinkToLowerLayerIsCopiedUp: a layer applied to an overlay upper
// directory may link to a file only a lower layer has; as overlayfs does
// for a link made through a mounted overlay, the file is copied up (with
// its metadata) and then linked, and directories on the way get the
// lowers' metadata.
func TestHardlinkToLowerLayerIsCopiedUp(t *testing.T) {
	requireRoot(t)
	lower, upper := t.TempDir(), t.TempDir()
	mustApply(t, lower, buildTar(t,
		entry{Name: "usr", Type: tar.TypeDir, Mode: 0o750, Uid: 3, Gid: 4},
		entry{Name: "usr/lib", Type: tar.TypeDir, Mode: 0o751},
		entry{Name: "usr/lib/libx.so", Data: "library", Mode: 0o640, Uid: 5, Gid: 6, Xattrs: map[string]string{"user.origin": "lower"}},
		entry{Name: "gone", Data: "hidden by a whiteout below"},
	))
	mustApply(t, upper, buildTar(t,
		entry{Name: "bin", Type: tar.TypeDir},
		entry{Name: "bin/libx-link", Type: tar.TypeLink, Link: "usr/lib/libx.so"},
	), WithOverlayWhiteouts(), WithParents(lower))
	var a, b unix.Stat_t
	must(t, unix.Stat(upper+"/usr/lib/libx.so", &a))
	must(t, unix.Stat(upper+"/bin/libx-link", &b))
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Fatalf("link and copied-up target are not one file: ino %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	if a.Mode&0o7777 != 0o640 || a.Uid != 5 || a.Gid != 6 {
		t.Fatalf("copied-up file: mode %o owner %d:%d, want 640 5:6", a.Mode&0o7777, a.Uid, a.Gid)
	}
	if data, _ := os.ReadFile(upper + "/bin/libx-link"); string(data) != "library" {
		t.Fatalf("content %q", data)
	}
	if v := allXattrs(t, upper+"/usr/lib/libx.so")["user.origin"]; v != "lower" {
		t.Fatalf("xattr user.origin = %q", v)
	}
	var d unix.Stat_t
	must(t, unix.Stat(upper+"/usr", &d))
	if d.Mode&0o7777 != 0o750 || d.Uid != 3 || d.Gid != 4 {
		t.Fatalf("created parent usr: mode %o owner %d:%d, want the lower's 750 3:4", d.Mode&0o7777, d.Uid, d.Gid)
	}
	// A target nobody has is still an error naming it.
	err := apply(t, upper, buildTar(t, entry{Name: "bin/none", Type: tar.TypeLink, Link: "usr/lib/none.so"}),
		WithOverlayWhiteouts(), WithParents(lower))
	if err == nil || !strings.Contains(err.Error(), "usr/lib/none.so") {
		t.Fatalf("link to a missing target: %v", err)
	}
}

// Files are created with their final mode only when the umask leaves it
// whole; under a strict umask they are chmodded, and both ways every mode
// comes out as the layer says.
func TestApplyModesWhateverTheUmask(t *testing.T) {
	requireRoot(t)
	for _, umask := range []int{0o022, 0o077, 0o000} {
		old := syscall.Umask(umask)
		if got := ProcessUmask(); got != uint32(umask) {
			syscall.Umask(old)
			t.Fatalf("ProcessUmask() = %#o, want %#o", got, umask)
		}
		modes := []int64{0o644, 0o755, 0o666, 0o777, 0o400, 0o4755, 0o2711, 0o1777} // (0 means 0o644 to buildTar)
		var entries []entry
		for i, m := range modes {
			entries = append(entries, entry{Name: fmt.Sprintf("f%d", i), Data: "x", Mode: m, Uid: 7, Gid: 8})
		}
		// Read by Apply, and told with WithUmask.
		read, told := t.TempDir(), t.TempDir()
		mustApply(t, read, buildTar(t, entries...))
		mustApply(t, told, buildTar(t, entries...), WithUmask(uint32(umask)))
		syscall.Umask(old)
		for _, root := range []string{read, told} {
			for i, m := range modes {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(root, fmt.Sprintf("f%d", i)), &st); err != nil {
					t.Fatal(err)
				}
				if st.Mode&0o7777 != uint32(m) || st.Uid != 7 || st.Gid != 8 {
					t.Errorf("umask %#o (%s): f%d has mode %#o owner %d:%d, want %#o 7:8", umask, root, i, st.Mode&0o7777, st.Uid, st.Gid, m)
				}
			}
		}
	}
}

// WithUmask is taken at its word: Apply does not read the umask again, so
// a caller that names a wrong one gets the kernel's masking on files that
// Apply believed needed no chmod.
func TestApplyTakesTheUmaskItIsTold(t *testing.T) {
	requireRoot(t)
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	root := t.TempDir()
	mustApply(t, root, buildTar(t, entry{Name: "f", Data: "x", Mode: 0o666}), WithUmask(0))
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(root, "f"), &st))
	if st.Mode&0o7777 != 0o644 {
		t.Fatalf("told umask 0 under umask 022: mode %#o, want 0644 (created with 0666, masked, not chmodded)", st.Mode&0o7777)
	}
}

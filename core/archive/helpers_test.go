package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown, mknod, trusted.* xattrs")
	}
}

// entry is one tar entry to build; Size defaults to len(Data).
type entry struct {
	Name     string
	Type     byte
	Mode     int64
	Uid, Gid int
	Link     string
	Data     string
	Xattrs   map[string]string
	MTime    time.Time
	ATime    time.Time
	Major    int64
	Minor    int64
}

var testTime = time.Unix(1600000000, 123456789)

func (e entry) header() *tar.Header {
	h := &tar.Header{
		Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Uid: e.Uid, Gid: e.Gid,
		Linkname: e.Link, ModTime: e.MTime, AccessTime: e.ATime,
		Devmajor: e.Major, Devminor: e.Minor, Format: tar.FormatPAX,
	}
	if h.Typeflag == 0 {
		h.Typeflag = tar.TypeReg
	}
	if h.ModTime.IsZero() {
		h.ModTime = testTime
	}
	if h.Mode == 0 {
		h.Mode = 0o644
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
	}
	if h.Typeflag == tar.TypeReg {
		h.Size = int64(len(e.Data))
	}
	for k, v := range e.Xattrs {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[paxXattrPrefix+k] = v
	}
	return h
}

// buildTar writes entries as a tar.
func buildTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.header()
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("write header %s: %v", e.Name, err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, e.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func apply(t testing.TB, root string, data []byte, opts ...ApplyOpt) error {
	t.Helper()
	n, err := Apply(context.Background(), root, bytes.NewReader(data), opts...)
	if err == nil && n > int64(len(data)) {
		t.Fatalf("Apply read %d bytes of %d", n, len(data))
	}
	return err
}

func mustApply(t testing.TB, root string, data []byte, opts ...ApplyOpt) {
	t.Helper()
	if err := apply(t, root, data, opts...); err != nil {
		t.Fatal(err)
	}
}

// node is what a test compares of one file.
type node struct {
	Type      string
	Mode      uint32 // permission bits with setuid, setgid, sticky
	Uid, Gid  uint32
	MTime     int64 // ns
	ATime     int64 // ns; only set by snapshotTimes
	Size      int64
	Data      string // sha256 of a regular file's content
	Link      string
	Rdev      uint64
	Xattrs    string // xattrString of all extended attributes
	LinkGroup string // first path (in walk order) of an inode with several names
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFREG:
		return "reg"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "char"
	case unix.S_IFBLK:
		return "block"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "?"
}

// snapshot describes every file below root (root itself as "."), with all
// extended attributes (also those Apply and Diff skip).
func snapshot(t testing.TB, root string) map[string]node {
	t.Helper()
	out := map[string]node{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := node{
			Type: typeName(st.Mode), Mode: st.Mode & 0o7777, Uid: st.Uid, Gid: st.Gid,
			MTime: st.Mtim.Nano(), Rdev: st.Rdev,
		}
		if n.Type == "symlink" {
			n.Mode = 0
		}
		n.Xattrs = xattrString(allXattrs(t, p))
		switch n.Type {
		case "reg":
			n.Size = st.Size
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			n.Data = hex.EncodeToString(sum[:8])
		case "symlink":
			n.Link, _ = os.Readlink(p)
		}
		if n.Type != "dir" && st.Nlink > 1 {
			if first, ok := inodes[st.Ino]; ok {
				n.LinkGroup = first
			} else {
				inodes[st.Ino] = rel
				n.LinkGroup = rel
			}
		}
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func allXattrs(t testing.TB, p string) map[string]string {
	t.Helper()
	size, err := unix.Llistxattr(p, nil)
	if err != nil || size == 0 {
		return nil
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	out := map[string]string{}
	for name := range strings.SplitSeq(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 4096)
		n, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		out[name] = string(v[:n])
	}
	return out
}

// diffSnapshots reports how got differs from want, ignoring the paths in
// ignore.
func diffSnapshots(want, got map[string]node, ignore ...string) []string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(want)) {
		if slices.Contains(ignore, p) {
			continue
		}
		g, ok := got[p]
		if !ok {
			out = append(out, "missing "+p)
			continue
		}
		w := want[p]
		if !nodeEqual(w, g) {
			out = append(out, p+": want "+fmtNode(w)+"\n\tgot  "+fmtNode(g))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[p]; !ok && !slices.Contains(ignore, p) {
			out = append(out, "unexpected "+p+": "+fmtNode(got[p]))
		}
	}
	return out
}

func nodeEqual(a, b node) bool { return a == b }

// xattrString formats extended attributes comparably.
func xattrString(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s=%x ", k, m[k])
	}
	return b.String()
}

func fmtNode(n node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s mode=%#o owner=%d:%d mtime=%s", n.Type, n.Mode, n.Uid, n.Gid, time.Unix(0, n.MTime).UTC().Format(time.RFC3339Nano))
	if n.ATime != 0 {
		fmt.Fprintf(&b, " atime=%s", time.Unix(0, n.ATime).UTC().Format(time.RFC3339Nano))
	}
	if n.Type == "reg" {
		fmt.Fprintf(&b, " size=%d data=%s", n.Size, n.Data)
	}
	if n.Link != "" {
		fmt.Fprintf(&b, " link=%s", n.Link)
	}
	if n.Rdev != 0 {
		fmt.Fprintf(&b, " rdev=%d", n.Rdev)
	}
	if n.LinkGroup != "" {
		fmt.Fprintf(&b, " linkgroup=%s", n.LinkGroup)
	}
	if n.Xattrs != "" {
		fmt.Fprintf(&b, " xattrs=%s", n.Xattrs)
	}
	return b.String()
}

// sentinel is a directory beside a root that no layer may touch.
type sentinel struct {
	base, root, dir string
	before          map[string]node
}

// newSentinel makes base/root (empty) and base/outside holding a file
// "secret", a file "target", a directory "dir" and a file in it, all owned
// by 4242:4242 with unusual modes.
func newSentinel(t testing.TB) *sentinel {
	t.Helper()
	base := t.TempDir()
	s := &sentinel{base: base, root: filepath.Join(base, "root"), dir: filepath.Join(base, "outside")}
	must(t, os.Mkdir(s.root, 0o755))
	must(t, os.Mkdir(s.dir, 0o751))
	must(t, os.WriteFile(filepath.Join(s.dir, "secret"), []byte("secret"), 0o600))
	must(t, os.WriteFile(filepath.Join(s.dir, "target"), []byte("target"), 0o640))
	must(t, os.Mkdir(filepath.Join(s.dir, "dir"), 0o710))
	must(t, os.WriteFile(filepath.Join(s.dir, "dir", "f"), []byte("f"), 0o604))
	for _, p := range []string{"", "secret", "target", "dir", "dir/f"} {
		must(t, os.Lchown(filepath.Join(s.dir, p), 4242, 4242))
		must(t, os.Chtimes(filepath.Join(s.dir, p), testTime, testTime))
	}
	s.before = snapshot(t, base)
	return s
}

// check fails t if anything beside root changed: new files next to root or
// in the sentinel directory, or changed modes, owners, times, content or
// link counts of the sentinel's files.
func (s *sentinel) check(t testing.TB) {
	t.Helper()
	after := snapshot(t, s.base)
	var ignore []string
	for p := range after {
		if p == "root" || strings.HasPrefix(p, "root/") {
			ignore = append(ignore, p)
		}
	}
	for p := range s.before {
		if p == "root" || strings.HasPrefix(p, "root/") {
			ignore = append(ignore, p)
		}
	}
	// base itself changes only if something was created or removed beside
	// root, which the comparison of its entries catches; its atime and
	// mtime are noise from TempDir.
	ignore = append(ignore, ".")
	if d := diffSnapshots(s.before, after, ignore...); len(d) > 0 {
		t.Fatalf("outside root changed:\n%s", strings.Join(d, "\n"))
	}
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(s.dir, "secret"), &st))
	if st.Nlink != 1 {
		t.Fatalf("sentinel secret has %d links", st.Nlink)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

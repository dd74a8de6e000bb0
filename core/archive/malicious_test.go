package archive

import (
	"archive/tar"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// maliciousCase is a layer that tries to reach outside root. Entries may
// name the sentinel directory's absolute host path as "$OUT".
type maliciousCase struct {
	name    string
	entries []entry
	// wantErr is the entry an error must name; "" means Apply succeeds.
	wantErr string
	// check, if set, inspects root afterwards.
	check func(t *testing.T, root, out string)
}

func maliciousCorpus() []maliciousCase {
	isType := func(p, typ string) func(t *testing.T, root, out string) {
		return func(t *testing.T, root, out string) {
			t.Helper()
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(root, strings.ReplaceAll(p, "$OUT", out)), &st); err != nil {
				t.Fatal(err)
			}
			if got := typeName(st.Mode); got != typ {
				t.Fatalf("%s is a %s, want a %s", p, got, typ)
			}
		}
	}
	return []maliciousCase{
		{name: "dotdot", entries: []entry{{Name: "../escape", Data: "x"}}, wantErr: "../escape"},
		{name: "dotdot into sentinel", entries: []entry{{Name: "../outside/evil", Data: "x"}}, wantErr: "../outside/evil"},
		{name: "dotdot deep", entries: []entry{{Name: "a/b/../../../outside/evil", Data: "x"}}, wantErr: "a/b/../../../outside/evil"},
		{name: "dotdot dir", entries: []entry{{Name: "../outside/", Type: tar.TypeDir, Mode: 0o777}}, wantErr: "../outside/"},
		{name: "absolute dotdot is rooted", entries: []entry{{Name: "/abs/../../escape", Data: "x"}, {Name: "/../outside/evil", Data: "x"}},
			check: func(t *testing.T, root, out string) {
				isType("escape", "reg")(t, root, out)
				isType("outside/evil", "reg")(t, root, out)
			}},
		{name: "absolute host path is rooted", entries: []entry{{Name: "$OUT/evil", Data: "x"}},
			check: isType("$OUT/evil", "reg")},
		{name: "symlink parent relative", entries: []entry{{Name: "link", Type: tar.TypeSymlink, Link: "../outside"}, {Name: "link/evil", Data: "x"}}, wantErr: "link/evil"},
		{name: "symlink parent brief", entries: []entry{{Name: "link", Type: tar.TypeSymlink, Link: "../../outside"}, {Name: "link/evil", Data: "x"}}, wantErr: "link/evil"},
		{name: "symlink parent absolute", entries: []entry{{Name: "link", Type: tar.TypeSymlink, Link: "$OUT"}, {Name: "link/evil", Data: "x"}}, wantErr: "link/evil"},
		{name: "symlink parent dir entry", entries: []entry{{Name: "link", Type: tar.TypeSymlink, Link: "../outside"}, {Name: "link/sub/", Type: tar.TypeDir}}, wantErr: "link/sub/"},
		{name: "symlink parent to file", entries: []entry{{Name: "f", Type: tar.TypeSymlink, Link: "../outside/secret"}, {Name: "f/x", Data: "x"}}, wantErr: "f/x"},
		{name: "symlink parent climbing resolves in root", entries: []entry{
			{Name: "up", Type: tar.TypeSymlink, Link: "../../../../../../.."},
			{Name: "up/outside/evil", Data: "x"},
		}, check: isType("outside/evil", "reg")},
		{name: "symlink chain", entries: []entry{
			{Name: "a", Type: tar.TypeSymlink, Link: "b"},
			{Name: "b", Type: tar.TypeSymlink, Link: "$OUT"},
			{Name: "a/evil", Data: "x"},
		}, wantErr: "a/evil"},
		{name: "symlink chain relative", entries: []entry{
			{Name: "a", Type: tar.TypeSymlink, Link: "b/c"},
			{Name: "b/", Type: tar.TypeDir},
			{Name: "b/c", Type: tar.TypeSymlink, Link: "../../outside"},
			{Name: "a/evil", Data: "x"},
		}, wantErr: "a/evil"},
		{name: "symlink chain resolves in root", entries: []entry{
			{Name: "a", Type: tar.TypeSymlink, Link: "b"},
			{Name: "b", Type: tar.TypeSymlink, Link: "/inside"},
			{Name: "inside/", Type: tar.TypeDir},
			{Name: "a/ok", Data: "x"},
		}, check: isType("inside/ok", "reg")},
		{name: "dir replaced by symlink", entries: []entry{
			{Name: "d/", Type: tar.TypeDir},
			{Name: "d", Type: tar.TypeSymlink, Link: "../outside"},
			{Name: "d/evil", Data: "x"},
		}, wantErr: "d/evil"},
		{name: "hardlink dotdot", entries: []entry{{Name: "h", Type: tar.TypeLink, Link: "../../outside/secret"}}, wantErr: `"h"`},
		{name: "hardlink dotdot into sentinel", entries: []entry{{Name: "h", Type: tar.TypeLink, Link: "../outside/secret"}}, wantErr: `"h"`},
		{name: "hardlink absolute", entries: []entry{{Name: "h", Type: tar.TypeLink, Link: "$OUT/secret"}}, wantErr: `"h"`},
		{name: "hardlink through symlink", entries: []entry{
			{Name: "o", Type: tar.TypeSymlink, Link: "../outside"},
			{Name: "h", Type: tar.TypeLink, Link: "o/secret"},
		}, wantErr: `"h"`},
		{name: "hardlink through absolute symlink", entries: []entry{
			{Name: "o", Type: tar.TypeSymlink, Link: "$OUT"},
			{Name: "h", Type: tar.TypeLink, Link: "o/secret"},
		}, wantErr: `"h"`},
		{name: "hardlink to symlink", entries: []entry{
			{Name: "s", Type: tar.TypeSymlink, Link: "../outside/secret"},
			{Name: "h", Type: tar.TypeLink, Link: "s"},
		}, check: func(t *testing.T, root, out string) {
			isType("h", "symlink")(t, root, out)
			var a, b unix.Stat_t
			must(t, unix.Lstat(filepath.Join(root, "s"), &a))
			must(t, unix.Lstat(filepath.Join(root, "h"), &b))
			if a.Ino != b.Ino {
				t.Fatal("h is not a link to the symbolic link s")
			}
		}},
		{name: "hardlink then overwrite", entries: []entry{
			{Name: "a", Data: "original"},
			{Name: "h", Type: tar.TypeLink, Link: "a"},
			{Name: "h", Data: "overwritten"},
		}, check: func(t *testing.T, root, out string) {
			if b, _ := os.ReadFile(filepath.Join(root, "a")); string(b) != "original" {
				t.Fatalf("a written through its hard link: %q", b)
			}
		}},
		{name: "whiteout dotdot", entries: []entry{{Name: ".wh..."}}, wantErr: ".wh..."},
		{name: "whiteout dot", entries: []entry{{Name: ".wh.."}}, wantErr: ".wh.."},
		{name: "whiteout dotdot in dir", entries: []entry{{Name: "a/.wh..."}}, wantErr: "a/.wh..."},
		{name: "whiteout through symlink", entries: []entry{
			{Name: "l", Type: tar.TypeSymlink, Link: "../outside"},
			{Name: "l/.wh.secret"},
		}, wantErr: "l/.wh.secret"},
		{name: "whiteout through absolute symlink", entries: []entry{
			{Name: "l", Type: tar.TypeSymlink, Link: "$OUT"},
			{Name: "l/.wh.secret"},
		}, wantErr: "l/.wh.secret"},
		{name: "whiteout of symlink removes the link", entries: []entry{
			{Name: "l", Type: tar.TypeSymlink, Link: "../outside/secret"},
			{Name: ".wh.l"},
		}},
		{name: "opaque through symlink", entries: []entry{
			{Name: "l", Type: tar.TypeSymlink, Link: "../outside"},
			{Name: "l/.wh..wh..opq"},
		}, wantErr: "l/.wh..wh..opq"},
		{name: "opaque dotdot", entries: []entry{{Name: "../outside/.wh..wh..opq"}}, wantErr: "../outside/.wh..wh..opq"},
		{name: "file over symlink", entries: []entry{
			{Name: "s", Type: tar.TypeSymlink, Link: "$OUT/target"},
			{Name: "s", Mode: 0o777, Uid: 1, Gid: 1, Data: "replaced", Xattrs: map[string]string{"trusted.x": "1"}},
		}, check: isType("s", "reg")},
		{name: "file over relative symlink", entries: []entry{
			{Name: "s", Type: tar.TypeSymlink, Link: "../outside/target"},
			{Name: "s", Mode: 0o4777, Uid: 1, Gid: 1, Data: "replaced"},
		}, check: isType("s", "reg")},
		{name: "dir over symlink", entries: []entry{
			{Name: "d", Type: tar.TypeSymlink, Link: "../outside/dir"},
			{Name: "d/", Type: tar.TypeDir, Mode: 0o777, Uid: 1, Gid: 1, Xattrs: map[string]string{"user.x": "1"}},
			{Name: "d/f", Mode: 0o777, Data: "inside"},
		}, check: isType("d", "dir")},
		{name: "device over symlink", entries: []entry{
			{Name: "s", Type: tar.TypeSymlink, Link: "../outside/target"},
			{Name: "s", Type: tar.TypeFifo, Mode: 0o777, Uid: 1},
		}, check: isType("s", "fifo")},
		{name: "symlink over symlink with xattrs", entries: []entry{
			{Name: "s", Type: tar.TypeSymlink, Link: "../outside/target"},
			{Name: "s", Type: tar.TypeSymlink, Link: "../outside/secret", Uid: 3, Xattrs: map[string]string{"trusted.x": "1"}},
		}, check: isType("s", "symlink")},
		{name: "root as symlink", entries: []entry{{Name: ".", Type: tar.TypeSymlink, Link: "../outside"}}, wantErr: `"."`},
		{name: "root entry", entries: []entry{{Name: "./", Type: tar.TypeDir, Mode: 0o700}}},
	}
}

func (c maliciousCase) tar(t testing.TB, s *sentinel) []byte {
	out := make([]entry, len(c.entries))
	for i, e := range c.entries {
		e.Name = strings.ReplaceAll(e.Name, "$OUT", s.dir)
		e.Link = strings.ReplaceAll(e.Link, "$OUT", s.dir)
		out[i] = e
	}
	return buildTar(t, out...)
}

func TestApplyMalicious(t *testing.T) {
	requireRoot(t)
	for _, mode := range []struct {
		name string
		opts []ApplyOpt
	}{{"native", nil}, {"overlay", []ApplyOpt{WithOverlayWhiteouts()}}} {
		for _, c := range maliciousCorpus() {
			t.Run(mode.name+"/"+c.name, func(t *testing.T) {
				s := newSentinel(t)
				err := apply(t, s.root, c.tar(t, s), mode.opts...)
				s.check(t)
				if c.wantErr == "" && err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), strings.ReplaceAll(c.wantErr, "$OUT", s.dir))) {
					t.Fatalf("got error %v, want one naming %s", err, c.wantErr)
				}
				if c.check != nil {
					c.check(t, s.root, s.dir)
				}
			})
		}
	}
}

// TestApplyTruncated feeds every prefix length class of a valid layer:
// Apply must fail (or succeed on a clean entry boundary) without writing
// outside root.
func TestApplyTruncated(t *testing.T) {
	requireRoot(t)
	s := newSentinel(t)
	data := buildTar(t,
		entry{Name: "d/", Type: tar.TypeDir},
		entry{Name: "d/f", Data: strings.Repeat("y", 3000)},
		entry{Name: "l", Type: tar.TypeSymlink, Link: "../outside"},
		entry{Name: "h", Type: tar.TypeLink, Link: "d/f"},
	)
	for _, n := range []int{1, 511, 512, 513, 1024, 1500, 2048, 4000, 4608, 5119, 5120, 5632} {
		if n >= len(data) {
			continue
		}
		root := filepath.Join(s.root, "t"+strconv.Itoa(n))
		must(t, os.Mkdir(root, 0o755))
		err := apply(t, root, data[:n])
		if err == nil && n%512 != 0 {
			t.Errorf("prefix of %d bytes applied without error", n)
		}
	}
	s.check(t)
}

package integration

import (
	"archive/tar"
	"bufio"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
)

// layeredImage has three layers exercising what unpack must get right:
// modes, owners, xattrs, hardlinks, symlinks, a fifo, a whiteout of a file
// from a lower layer and an opaque directory.
func layeredImage() *testimage.Image {
	return testimage.New([]string{"/bin/tool"}, layeredFiles()...)
}

// layeredFiles are the layers of layeredImage.
func layeredFiles() [][]testimage.File {
	l1 := []testimage.File{
		{Name: "etc/", Type: tar.TypeDir},
		{Name: "etc/config", Data: []byte("v1")},
		{Name: "etc/removed", Data: []byte("to be whited out")},
		{Name: "opaque/", Type: tar.TypeDir},
		{Name: "opaque/old", Data: []byte("hidden by the opaque dir above")},
		{Name: "bin/", Type: tar.TypeDir},
		{Name: "bin/tool", Mode: 0o4755, Data: []byte("#!/bin/sh\n")},
	}
	l2 := []testimage.File{
		{Name: "etc/config", Data: []byte("v2"), Mode: 0o600},
		{Name: "etc/.wh.removed"},
		{Name: "opaque/", Type: tar.TypeDir},
		{Name: "opaque/.wh..wh..opq"},
		{Name: "opaque/new", Data: []byte("new")},
		{Name: "data/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "data/file", Data: []byte("payload")},
		{Name: "data/hard", Type: tar.TypeLink, Linkname: "data/file"},
		{Name: "data/soft", Type: tar.TypeSymlink, Linkname: "../etc/config"},
	}
	l3 := []testimage.File{
		{Name: "data/fifo", Type: tar.TypeFifo, Mode: 0o644},
		{Name: "owned", Data: []byte("x")},
	}
	return [][]testimage.File{l1, l2, l3}
}

// layeredImage4 is layeredImage with a fourth layer whose whiteout,
// opaque directory and hard link hullctl's parallel unpack writes as an
// overlay upper directory without its lowers (l2 and l3 write into
// directories they do not list, which get their metadata from below at
// commit).
func layeredImage4() *testimage.Image {
	l4 := []testimage.File{
		{Name: "etc/", Type: tar.TypeDir},
		{Name: "etc/.wh.config"},
		{Name: "etc/l4", Data: []byte("l4")},
		{Name: "bin/", Type: tar.TypeDir, Mode: 0o750},
		{Name: "bin/.wh..wh..opq"},
		{Name: "bin/new", Mode: 0o755, Data: []byte("#!/bin/sh\n")},
		// Its mode is its target's, as tar writers write it: containerd
		// (not hull) gives the inode a link entry's mode.
		{Name: "bin/newhard", Type: tar.TypeLink, Linkname: "bin/new", Mode: 0o755},
	}
	return testimage.New([]string{"/bin/tool"}, append(layeredFiles(), l4)...)
}

// treeOf describes every entry under root: path, type, mode, owner, size,
// link target, content for small files, and xattrs.
func treeOf(t *testing.T, root string) []string {
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %v %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %q nlink=%d", data, st.Nlink)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			buf := make([]byte, 4096)
			if n, err := unix.Llistxattr(p, buf); err == nil && n > 0 {
				names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
				sort.Strings(names)
				line += " xattrs=" + strings.Join(names, ",")
			}
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mountedTree(t *testing.T, d interface {
	Ctr(testing.TB, []byte, ...string) string
}, ref string) []string {
	target := t.TempDir()
	d.Ctr(t, nil, "images", "mount", ref, target)
	defer d.Ctr(t, nil, "images", "unmount", target)
	return treeOf(t, target)
}

func TestCtrPullUnpackMountAndGC(t *testing.T) {
	hulltest.RequireCtr(t)
	reg := registrytest.Start(t, registrytest.Options{})
	img := layeredImage()
	reg.Push(t, "unpack/app", "1", img)
	d := hulltest.Start(t, hulltest.Options{})
	ref := reg.Host() + "/unpack/app:1"
	// ctr pulls and unpacks client-side through hull's snapshots and diff.
	d.Ctr(t, nil, "images", "pull", "--plain-http", ref)
	ls := d.Ctr(t, nil, "snapshots", "ls")
	if strings.Count(ls, "Committed") != 3 {
		t.Fatalf("snapshots ls after unpacking 3 layers:\n%s", ls)
	}
	tree := d.Ctr(t, nil, "snapshots", "tree")
	if !strings.Contains(tree, "sha256:") {
		t.Fatalf("snapshots tree:\n%s", tree)
	}
	d.Ctr(t, nil, "snapshots", "usage")
	got := strings.Join(mountedTree(t, d, ref), "\n")
	for _, want := range []string{
		`etc/config -rw------- 0:0 "v2"`,
		`opaque/new -rw-r--r-- 0:0 "new"`,
		`data/soft Lrwxrwxrwx 0:0 -> ../etc/config`,
		`data/hard -rw-r--r-- 0:0 "payload" nlink=2`,
		`bin/tool urwxr-xr-x`,
		`data/fifo prw-r--r--`,
		`data dtrwxrwxrwx`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("mounted image lacks %q:\n%s", want, got)
		}
	}
	for _, gone := range []string{"etc/removed", "opaque/old"} {
		if strings.Contains(got, gone+" ") {
			t.Errorf("mounted image still has %s:\n%s", gone, got)
		}
	}
	// Removing the image frees its snapshots once gc runs.
	for _, id := range strings.Fields(d.Ctr(t, nil, "leases", "ls", "-q")) {
		d.Ctr(t, nil, "leases", "rm", id)
	}
	d.Ctr(t, nil, "images", "rm", "--sync", ref)
	if ls := d.Ctr(t, nil, "snapshots", "ls"); strings.Contains(ls, "Committed") {
		t.Fatalf("snapshots left after the image was removed:\n%s", ls)
	}
	dirs, _ := filepath.Glob(filepath.Join(d.Root, "io.containerd.snapshotter.v1.overlayfs", "snapshots", "*"))
	if len(dirs) != 0 {
		t.Fatalf("snapshot directories left on disk: %v", dirs)
	}
}

// namespacedCtr runs ctr against a hulld in namespace ns.
type namespacedCtr struct {
	d  *hulltest.Daemon
	ns string
}

func (n namespacedCtr) Ctr(t testing.TB, stdin []byte, args ...string) string {
	return n.d.Ctr(t, stdin, append([]string{"--namespace", n.ns}, args...)...)
}

// TestUnpackMatchesContainerd unpacks the same image with hull and with
// Debian's containerd and compares the trees entry by entry: pulled through
// hulld by Debian's ctr (which unpacks one layer after another) and by
// hullctl (which applies layers in parallel with overlayfs).
func TestUnpackMatchesContainerd(t *testing.T) {
	hulltest.RequireCtr(t)
	if _, err := exec.LookPath("containerd"); err != nil {
		t.Fatalf("containerd not found (make test installs it): %v", err)
	}
	reg := registrytest.Start(t, registrytest.Options{})
	img := layeredImage4()
	reg.Push(t, "unpack/cmp", "1", img)
	ref := reg.Host() + "/unpack/cmp:1"
	d := hulltest.Start(t, hulltest.Options{})
	d.Ctr(t, nil, "images", "pull", "--plain-http", ref)
	hull := mountedTree(t, d, ref)
	c := hulltest.StartContainerd(t, "")
	c.Ctr(t, nil, "images", "pull", "--plain-http", ref)
	ctrd := mountedTree(t, c, ref)
	if strings.Join(hull, "\n") != strings.Join(ctrd, "\n") {
		t.Fatalf("trees differ\nhull:\n%s\ncontainerd:\n%s", strings.Join(hull, "\n"), strings.Join(ctrd, "\n"))
	}
	// A hulld of its own, so that no layer is linked from the first.
	d2 := hulltest.Start(t, hulltest.Options{})
	if out := d2.Ctr(t, nil, "plugins", "ls", "-d", "id==overlayfs"); !strings.Contains(out, "parallel_unpack") {
		t.Fatalf("overlayfs does not export parallel_unpack:\n%s", out)
	}
	h := newHullctl(t, d2)
	h.ok(t, "images", "pull", "--plain", "--plain-http", ref)
	parallel := mountedTree(t, d2, ref)
	if strings.Join(parallel, "\n") != strings.Join(ctrd, "\n") {
		t.Fatalf("trees differ\nhullctl (parallel unpack):\n%s\ncontainerd:\n%s", strings.Join(parallel, "\n"), strings.Join(ctrd, "\n"))
	}
	// Another namespace unpacks the image again, in parallel too: each
	// layer is linked to the first namespace's snapshot, from the bottom
	// up, and none is applied again.
	h.ok(t, "-n", "other", "images", "pull", "--plain", "--plain-http", "--skip-unpack", ref)
	out := h.ok(t, "-n", "other", "images", "unpack", ref)
	for i, want := range []string{"exists", "exists", "exists", "exists"} {
		var got []string
		for _, line := range strings.Split(out, "\n") {
			if rest, ok := strings.CutPrefix(line, fmt.Sprintf("unpack layer-%s: ", img.Layers[i].Desc.Digest)); ok {
				got = append(got, strings.Fields(rest)[0])
			}
		}
		if strings.Join(got, " ") != want {
			t.Errorf("layer %d: %q, want %q:\n%s", i+1, got, want, out)
		}
	}
	other := mountedTree(t, namespacedCtr{d2, "other"}, ref)
	if strings.Join(other, "\n") != strings.Join(ctrd, "\n") {
		t.Fatalf("trees differ\nhullctl in another namespace:\n%s\ncontainerd:\n%s", strings.Join(other, "\n"), strings.Join(ctrd, "\n"))
	}
}

// TestKilledUnpackResumes kills hulld while it applies a layer and checks
// that no half-applied snapshot is committed and that unpacking again after
// a restart completes the image.
func TestKilledUnpackResumes(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	var layers []testimage.BuiltLayer
	for i := 0; i < 4; i++ {
		data := make([]byte, 16<<20)
		rand.Read(data)
		layers = append(layers, testimage.MakeLayer([]testimage.File{{Name: fmt.Sprintf("f%d", i), Data: data}}, testimage.Uncompressed))
	}
	reg.Push(t, "unpack/big", "1", testimage.NewLayers(testimage.HostPlatform(), []string{"/x"}, layers...))
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	ref := reg.Host() + "/unpack/big:1"
	h.ok(t, "images", "pull", "--plain", "--plain-http", "--skip-unpack", ref)
	cmd := exec.Command(h.bin, "--address", d.Address, "images", "unpack", ref)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	applying := 0
	for sc.Scan() {
		if strings.Contains(sc.Text(), ": applying") {
			if applying++; applying == 2 {
				d.Kill()
				break
			}
		}
	}
	// The client would wait for hulld to come back, and give up only
	// after minutes; the test is about what hulld left behind.
	cmd.Process.Kill()
	cmd.Wait()
	d2 := hulltest.Start(t, hulltest.Options{Dir: filepath.Dir(d.Root)})
	h2 := newHullctl(t, d2)
	committed := 0
	for _, l := range strings.Split(h2.ok(t, "snapshots", "ls"), "\n") {
		if strings.HasSuffix(l, "Committed") {
			committed++
		}
	}
	if committed > 1 {
		t.Fatalf("%d layers committed, but hulld was killed while applying the second:\n%s", committed, h2.ok(t, "snapshots", "ls"))
	}
	h2.ok(t, "images", "unpack", ref)
	target := t.TempDir()
	h2.ok(t, "images", "mount", ref, target)
	defer h2.ok(t, "images", "unmount", target)
	for i := 0; i < 4; i++ {
		fi, err := os.Stat(filepath.Join(target, fmt.Sprintf("f%d", i)))
		if err != nil || fi.Size() != 16<<20 {
			t.Fatalf("layer %d after the resumed unpack: %v %v", i, fi, err)
		}
	}
}

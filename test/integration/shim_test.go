package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

const shimRuntime = "io.containerd.hull.v2"

// shimFixture is Debian's containerd with hull's shim on its PATH and the
// busybox test image imported.
type shimFixture struct {
	c     *hulltest.Containerd
	image string
	dir   string
}

func newShimFixture(t *testing.T) *shimFixture {
	t.Helper()
	hulltest.RequireCtr(t)
	if os.Geteuid() != 0 {
		t.Skip("the shim tests run containers: root only")
	}
	for _, b := range []string{"runc", "containerd"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed: %v", b, err)
		}
	}
	shim := hulltest.Build(t, "containerd-shim-hull-v2", "github.com/hullrt/hull/cmd/containerd-shim-hull-v2")
	dir := t.TempDir()
	c := hulltest.StartContainerdWith(t, dir, hulltest.ContainerdOptions{PathDirs: []string{filepath.Dir(shim)}, Debug: true})
	files, err := testimage.BusyboxFiles()
	if err != nil {
		t.Skipf("busybox-static: %v", err)
	}
	img := testimage.New([]string{"sh"}, files)
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, "example.test/busybox:1", img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "busybox.tar")
	if err := os.WriteFile(path, archive.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Ctr(t, nil, "images", "import", path)
	f := &shimFixture{c: c, image: "example.test/busybox:1", dir: dir}
	t.Cleanup(func() { f.checkClean(t) })
	return f
}

// ctr runs ctr against the fixture's containerd and returns its combined
// output and error.
func (f *shimFixture) ctr(stdin []byte, args ...string) (string, error) {
	cmd := exec.Command("ctr", append([]string{"--address", f.c.Address}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (f *shimFixture) mustCtr(t *testing.T, args ...string) string {
	t.Helper()
	out, err := f.ctr(nil, args...)
	if err != nil {
		t.Fatalf("ctr %v: %v\n%s", args, err, out)
	}
	return out
}

// checkClean fails the test if a shim process, a mount or a FIFO under the
// test's directory outlives it.
func (f *shimFixture) checkClean(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := f.leftovers()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind:\n%s", strings.Join(left, "\n"))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *shimFixture) leftovers() []string {
	var left []string
	// Shims serving this containerd (their -address names its socket).
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "containerd-shim-hull-v2") && strings.Contains(cmd, f.c.Address) {
			left = append(left, "shim: "+p+": "+cmd)
		}
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(mi), "\n") {
			if fs := strings.Fields(l); len(fs) > 4 && strings.HasPrefix(fs[4], f.dir) {
				left = append(left, "mount: "+fs[4])
			}
		}
	}
	filepath.Walk(f.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeNamedPipe != 0 && !strings.HasSuffix(p, "/log") {
			left = append(left, "fifo: "+p)
		}
		return nil
	})
	return left
}

func TestShimCtrRunEcho(t *testing.T) {
	f := newShimFixture(t)
	out := f.mustCtr(t, "run", "--rm", "--runtime", shimRuntime, f.image, "echo1", "echo", "hi")
	if out != "hi\n" {
		t.Fatalf("ctr run echo hi printed %q", out)
	}
	if out := f.mustCtr(t, "containers", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("containers left after --rm: %q", out)
	}
}

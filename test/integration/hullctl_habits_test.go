package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
	"github.com/hullrt/hull/internal/testimage"
)

// habitsFixture is one hulld and a plain-http registry holding busybox as
// test/busybox:1, which nothing has pulled yet.
type habitsFixture struct {
	t   *testing.T
	d   *hulltest.Daemon
	h   hullctlRunner
	reg *registrytest.Registry
	ref string
}

func newHabitsFixture(t *testing.T) *habitsFixture {
	hullctlRuntimes(t) // builds hull's shim, the default runtime
	reg := registrytest.Start(t, registrytest.Options{})
	reg.Push(t, "test/busybox", "1", busyboxImage(t))
	d := startForTasks(t, hulltest.Options{})
	return &habitsFixture{t: t, d: d, h: newHullctl(t, d), reg: reg, ref: reg.Host() + "/test/busybox:1"}
}

// run runs hullctl in namespace hh; stdout and stderr apart.
func (f *habitsFixture) run(env []string, args ...string) (stdout, stderr string, code int) {
	f.t.Helper()
	cmd := exec.Command(f.h.bin, append([]string{"--address", f.d.Address, "-n", "hh"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatalf("hullctl %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

func (f *habitsFixture) ok(args ...string) string {
	f.t.Helper()
	out, errs, code := f.run(nil, args...)
	if code != 0 {
		f.t.Fatalf("hullctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// fails expects exit 1 and a stderr that mentions each of wants; it
// returns stderr.
func (f *habitsFixture) fails(wants []string, args ...string) string {
	f.t.Helper()
	out, errs, code := f.run(nil, args...)
	if code != 1 {
		f.t.Fatalf("hullctl %s: exit %d, want 1\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	for _, w := range wants {
		if !strings.Contains(errs, w) {
			f.t.Errorf("hullctl %s: stderr does not mention %q:\n%s", strings.Join(args, " "), w, errs)
		}
	}
	return errs
}

// TestHullctlHabitsRunPullsLogsPsRm: nerdctl's form of run pulls a missing
// image, makes up an id without --name, keeps a detached container's
// output in a log file under hulld's state that logs reads (and -f
// follows to the exit), ps lists it, exec runs in it, rm removes it and
// its log; --pull=never fails as ctr does.
func TestHullctlHabitsRunPullsLogsPsRm(t *testing.T) {
	f := newHabitsFixture(t)
	f.fails([]string{f.ref, "not found", "pull or import it first"}, "run", "--rm", "--pull=never", f.ref, "true")
	if out := f.ok("run", "--rm", "--plain-http", f.ref, "echo", "hi"); out != "hi\n" {
		t.Fatalf("run IMAGE echo hi printed %q", out)
	}
	if out := f.ok("images", "-q"); out != f.ref+"\n" {
		t.Fatalf("images -q after run pulled: %q", out)
	}
	// Pulled once: now --pull=never finds it, and the flags of run reach
	// the container (-e, -v, -w).
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f.txt"), []byte("from the host\n"), 0o644)
	out := f.ok("run", "--rm", "--pull=never", "-e", "A=1", "-v", dir+":/data:ro", "-w", "/data", f.ref, "sh", "-c", "echo $A; pwd; cat f.txt; touch x 2>/dev/null || echo read-only")
	if out != "1\n/data\nfrom the host\nread-only\n" {
		t.Fatalf("run -e -v -w printed %q", out)
	}
	f.fails([]string{"-p 8080:80", "not supported", "--net-host"}, "run", "--rm", "-p", "8080:80", f.ref, "true")
	f.fails([]string{"--pull \"sometimes\""}, "run", "--pull=sometimes", f.ref, "true")

	// Detached: the id is made up, the output kept.
	id := strings.TrimSpace(f.ok("run", "-d", f.ref, "sh", "-c", "echo first; sleep 600"))
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(id) {
		t.Fatalf("run -d without --name printed %q, want a 12-digit id", id)
	}
	logFile := filepath.Join(f.d.State, "logs", "hh", id+".log")
	hulltest.Eventually(t, 10*time.Second, "first line in hullctl logs", func() error {
		if out := f.ok("logs", id); out != "first\n" {
			return fmt.Errorf("logs printed %q", out)
		}
		return nil
	})
	if _, err := os.Stat(logFile); err != nil {
		t.Fatalf("the log is not where the docs say: %v", err)
	}
	if out := f.ok("exec", id, "echo", "in", "it"); out != "in it\n" {
		t.Fatalf("exec printed %q", out)
	}
	if r := habitsRow(t, f.ok("ps"), id); r[len(r)-1] != "running" {
		t.Fatalf("ps row %v", r)
	}
	// A container that ends: logs -f follows it to its end.
	f.ok("run", "-d", "--name", "short", f.ref, "sh", "-c", "echo a; sleep 1; echo b")
	if out := f.ok("logs", "-f", "short"); out != "a\nb\n" {
		t.Fatalf("logs -f printed %q", out)
	}
	if got := f.ok("ps", "-q"); got != id+"\n" {
		t.Fatalf("ps -q lists %q, want only the running %s", got, id)
	}
	if r := habitsRow(t, f.ok("ps", "-a"), "short"); r[len(r)-2] != "exited" || r[len(r)-1] != "(0)" {
		t.Fatalf("ps -a row %v", r)
	}
	f.fails([]string{`"short"`, "--force"}, "rm", "short")
	f.ok("tasks", "rm", "short")
	f.ok("rm", "short")
	f.ok("rm", "-f", id)
	if _, err := os.Stat(logFile); !os.IsNotExist(err) {
		t.Fatalf("rm left the log %s: %v", logFile, err)
	}
	f.fails([]string{`"nolog"`, "not found"}, "logs", "nolog")
	f.ok("containers", "create", f.ref, "nolog", "true")
	f.fails([]string{`"nolog"`, "no log file", "run -d"}, "logs", "nolog")
	f.ok("rm", "nolog")
	if got := f.ok("rmi", f.ref); got != f.ref+"\n" {
		t.Fatalf("rmi printed %q", got)
	}
}

// habitsRow returns the fields of the line of table whose first field is key.
func habitsRow(t *testing.T, table, key string) []string {
	t.Helper()
	for _, l := range strings.Split(table, "\n") {
		if fl := strings.Fields(l); len(fl) > 0 && fl[0] == key {
			return fl
		}
	}
	t.Fatalf("no row %q in\n%s", key, table)
	return nil
}

// TestHullctlHabitsAliasesAndAddress: ctr's aliases mean what they mean
// in ctr, top-level pull and images work, $CONTAINERD_ADDRESS is read
// after $HULL_ADDRESS, and an unknown command is named once with the
// nearest one.
func TestHullctlHabitsAliasesAndAddress(t *testing.T) {
	f := newHabitsFixture(t)
	f.ok("pull", "--plain", "--plain-http", f.ref)
	f.ok("containers", "create", f.ref, "made", "true")
	for _, args := range [][]string{{"c", "ls", "-q"}, {"container", "ls", "-q"}} {
		if got := f.ok(args...); got != "made\n" {
			t.Errorf("%v: %q, want the container", args, got)
		}
	}
	for _, args := range [][]string{{"i", "ls", "-q"}, {"images", "-q"}, {"image", "ls", "-q"}} {
		if got := f.ok(args...); got != f.ref+"\n" {
			t.Errorf("%v: %q, want the image", args, got)
		}
	}
	f.ok("t", "ls")
	for _, alias := range []string{"snapshot", "s"} {
		if got := f.ok(alias, "ls", "-q"); !strings.Contains(got, "made\n") {
			t.Errorf("%s ls: %q, want the container's snapshot", alias, got)
		}
	}
	if got := f.ok("content", "ls", "-q"); !strings.HasPrefix(got, "sha256:") {
		t.Errorf("content ls: %q", got)
	}
	f.ok("rm", "made")

	// The address from the environment: HULL_ADDRESS first.
	none := filepath.Join(t.TempDir(), "none.sock")
	cmd := func(env ...string) (string, int) {
		c := exec.Command(f.h.bin, "--connect-timeout", "0", "-n", "hh", "images", "-q")
		c.Env = append(os.Environ(), env...)
		out, err := c.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		return string(out), 0
	}
	if out, code := cmd("HULL_ADDRESS=", "CONTAINERD_ADDRESS="+f.d.Address); code != 0 || out != f.ref+"\n" {
		t.Errorf("with $CONTAINERD_ADDRESS: exit %d, %q", code, out)
	}
	out, code := cmd("HULL_ADDRESS="+none, "CONTAINERD_ADDRESS="+f.d.Address)
	if want := "hullctl: hulld is not answering on " + none + " (no such file or directory): is it running? see systemctl status hull\n"; code != 1 || out != want {
		t.Errorf("$HULL_ADDRESS before $CONTAINERD_ADDRESS: exit %d, %q; want %q", code, out, want)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"imgaes"}, `hullctl: unknown command "imgaes": did you mean "images"? (see hullctl --help)` + "\n"},
		{[]string{"lgos", "x"}, `hullctl: unknown command "lgos": did you mean "logs"? (see hullctl --help)` + "\n"},
		{[]string{"images", "tga"}, `hullctl: images: unknown command "tga": did you mean "tag"? (see hullctl images --help)` + "\n"},
		{[]string{"xyzzy"}, `hullctl: unknown command "xyzzy" (see hullctl --help)` + "\n"},
	} {
		if _, errs, code := f.run(nil, tc.args...); code != 1 || errs != tc.want {
			t.Errorf("hullctl %v: exit %d, stderr %q; want %q", tc.args, code, errs, tc.want)
		}
	}
}

// TestHullctlHabitsRegistryErrors: a registry that speaks plain http
// without --plain-http is told to use it, and a missing repository or tag
// is named by its reference.
func TestHullctlHabitsRegistryErrors(t *testing.T) {
	f := newHabitsFixture(t)
	f.fails([]string{f.ref, "--plain-http"}, "pull", "--plain", f.ref)
	f.fails([]string{f.ref, "--plain-http"}, "run", "--rm", f.ref, "true")
	noTag := f.reg.Host() + "/test/busybox:2"
	errs := f.fails([]string{noTag, "not found"}, "pull", "--plain", "--plain-http", noTag)
	if strings.Contains(errs, "/v2") {
		t.Errorf("a missing tag is told as a URL:\n%s", errs)
	}
	noRepo := f.reg.Host() + "/test/nothing:1"
	errs = f.fails([]string{noRepo, "not found"}, "run", "--rm", "--plain-http", noRepo, "true")
	if strings.Contains(errs, "/v2") {
		t.Errorf("a missing repository is told as a URL:\n%s", errs)
	}
}

// TestHullctlHabitsRuncErrorOnce: a command that does not exist in the
// image is reported once, under hull's shim and runc's, by run and exec.
func TestHullctlHabitsRuncErrorOnce(t *testing.T) {
	f := newHabitsFixture(t)
	f.ok("pull", "--plain", "--plain-http", f.ref)
	for _, rt := range hullctlRuntimes(t) {
		_, errs, code := f.run(nil, "run", "--rm", "--runtime", rt, f.ref, "/nonexistent")
		if code == 0 || strings.Count(errs, "/nonexistent: no such file or directory") != 1 {
			t.Errorf("%s: run of a missing command: exit %d, stderr:\n%s", rt, code, errs)
		}
		f.ok("run", "-d", "--runtime", rt, "--name", "x", f.ref, "sleep", "600")
		_, errs, code = f.run(nil, "exec", "x", "/nope")
		if code == 0 || strings.Count(errs, "/nope: no such file or directory") != 1 || strings.Count(errs, "exec failed") != 2 {
			t.Errorf("%s: exec of a missing command: exit %d, stderr:\n%s", rt, code, errs)
		}
		f.ok("rm", "-f", "x")
	}
}

// TestHullctlHabitsMultiPlatformSize: images ls shows the size of a
// multi-platform image pulled for this host alone as ctr shows it.
func TestHullctlHabitsMultiPlatformSize(t *testing.T) {
	f := newHabitsFixture(t)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	host := testimage.New([]string{"/bin/sh"}, []testimage.File{{Name: "a", Data: []byte(strings.Repeat("a", 5000))}})
	foreign := testimage.NewFor(ocispec.Platform{OS: "linux", Architecture: other}, []string{"/bin/sh"}, []testimage.File{{Name: "b", Data: []byte("b")}})
	f.reg.PushIndex(t, "test/multi", "1", testimage.NewIndex(host, foreign))
	ref := f.reg.Host() + "/test/multi:1"
	f.ok("pull", "--plain", "--plain-http", ref)
	size := habitsRow(t, f.ok("images", "ls"), ref)[3:5]
	if size[0] == "-" {
		t.Fatalf("images ls shows no size: %v", size)
	}
	ctrRow := habitsRow(t, f.d.Ctr(t, nil, "-n", "hh", "images", "ls"), ref)
	if want := ctrRow[3:5]; strings.Join(size, " ") != strings.Join(want, " ") {
		t.Fatalf("images ls SIZE %v, ctr's %v", size, want)
	}
}

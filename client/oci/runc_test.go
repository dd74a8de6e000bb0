package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/hulltest"
)

// bindSnapshotter is a snapshotter whose every snapshot is a bind mount of
// one directory; only Mounts is implemented, the rest panics.
type bindSnapshotter struct {
	snapshots.Snapshotter
	dir string
}

func (b bindSnapshotter) Mounts(context.Context, string) ([]mount.Mount, error) {
	return []mount.Mount{{Type: "bind", Source: b.dir, Options: []string{"rbind", "rw"}}}, nil
}

type bindClient struct{ dir string }

func (c bindClient) SnapshotService(string) snapshots.Snapshotter { return bindSnapshotter{dir: c.dir} }

// runcEnv is a runc state directory and a busybox root filesystem.
type runcEnv struct {
	t      *testing.T
	runc   string
	state  string
	rootfs string
}

var runcSeq atomic.Int64

func newRuncEnv(t *testing.T) *runcEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run runc")
	}
	hulltest.RequireTools(t, "runc")
	runc, _ := exec.LookPath("runc")
	busybox := "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Fatalf("static busybox not installed (make test installs busybox-static): %v", err)
	}
	dir := t.TempDir()
	// The bundle and state must be reachable by the container's root;
	// t.TempDir is 0700 but the container runs as root until it execs.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "cat", "id", "echo", "ls", "stat", "touch", "true", "unshare", "mount"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/tmp:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:1000:app\ntwo:x:2000:app\nthree:x:3000:other,app\nunrelated:x:4000:other\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(dir, "runc-state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	return &runcEnv{t: t, runc: runc, state: state, rootfs: rootfs}
}

// run generates a spec for a new container over the rootfs (resolving users
// through a bind-mounted fake snapshot), runs args in it with runc and
// returns the output and the exit error, deleting the container after.
func (e *runcEnv) run(opts []SpecOpts, args ...string) (string, error) {
	t := e.t
	t.Helper()
	id := fmt.Sprintf("hull-oci-%d-%d", os.Getpid(), runcSeq.Add(1))
	c := &containers.Container{ID: id, Snapshotter: "fake", SnapshotKey: "k-" + id}
	all := append([]SpecOpts{WithProcessArgs(args...)}, opts...)
	s, err := GenerateSpec(testCtx(), bindClient{dir: e.rootfs}, c, all...)
	if err != nil {
		t.Fatalf("generate spec: %v", err)
	}
	s.Root.Path = e.rootfs
	if err := Validate(s); err != nil {
		t.Fatalf("validate: %v", err)
	}
	bundle := t.TempDir()
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		out, err := exec.Command(e.runc, "--root", e.state, "delete", "--force", id).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "does not exist") {
			t.Logf("runc delete %s: %v: %s", id, err, out)
		}
	})
	cmd := exec.Command(e.runc, "--root", e.state, "run", "--bundle", bundle, id)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if err != nil {
		if strings.Contains(stderr.String(), "container_linux.go") || strings.Contains(stderr.String(), "runc run failed") {
			// runc itself failed, not the command: that is a test
			// failure of its own.
			t.Fatalf("runc run %v: %v: %s", args, err, stderr.String())
		}
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

func statusField(t *testing.T, status, name string) string {
	t.Helper()
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == name {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in status:\n%s", name, status)
	return ""
}

// capMask is the /proc/<pid>/status bitmask of the default capabilities.
func capMask(t *testing.T) string {
	bits := map[string]uint{
		"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
		"CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13,
		"CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
	}
	var m uint64
	for _, c := range defaultCapabilities() {
		b, ok := bits[c]
		if !ok {
			t.Fatalf("no bit for %s", c)
		}
		m |= 1 << b
	}
	return fmt.Sprintf("%016x", m)
}

func TestRuncDefaults(t *testing.T) {
	e := newRuncEnv(t)
	const zero = "0000000000000000"

	t.Run("user app", func(t *testing.T) {
		e.t = t
		out, err := e.run([]SpecOpts{WithUser("app")}, "/bin/cat", "/proc/self/status")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got := statusField(t, out, "Uid"); strings.Fields(got)[0] != "1000" {
			t.Errorf("Uid %q", got)
		}
		if got := statusField(t, out, "Gid"); strings.Fields(got)[0] != "1000" {
			t.Errorf("Gid %q", got)
		}
		groups := strings.Fields(statusField(t, out, "Groups"))
		for _, g := range []string{"2000", "3000"} {
			if !contains(groups, g) {
				t.Errorf("Groups %v lacks %s", groups, g)
			}
		}
		if contains(groups, "4000") || contains(groups, "0") {
			t.Errorf("Groups %v has a group app is not in", groups)
		}
		// Nothing inheritable or ambient, so the exec as uid 1000
		// leaves no effective capabilities; the bounding set is
		// the default one.
		for _, f := range []string{"CapInh", "CapAmb", "CapEff", "CapPrm"} {
			if got := statusField(t, out, f); got != zero {
				t.Errorf("%s = %s, want 0", f, got)
			}
		}
		if got := statusField(t, out, "CapBnd"); got != capMask(t) {
			t.Errorf("CapBnd = %s, want %s", got, capMask(t))
		}
		if got := statusField(t, out, "NoNewPrivs"); got != "0" {
			t.Errorf("NoNewPrivs = %s", got)
		}
		if got := statusField(t, out, "Seccomp"); got != "0" {
			t.Errorf("Seccomp = %s without WithSeccompDefault", got)
		}
	})

	t.Run("root", func(t *testing.T) {
		e.t = t
		out, err := e.run(nil, "/bin/cat", "/proc/self/status")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for f, want := range map[string]string{"CapEff": capMask(t), "CapPrm": capMask(t), "CapBnd": capMask(t), "CapInh": zero, "CapAmb": zero} {
			if got := statusField(t, out, f); got != want {
				t.Errorf("%s = %s, want %s", f, got, want)
			}
		}
	})

	t.Run("masked", func(t *testing.T) {
		e.t = t
		// Masked files are covered by /dev/null: a character device
		// 1:3 that reads empty. runc masks only what exists, so
		// check the files this kernel has (kcore is missing on some,
		// e.g. Firecracker guests).
		checked := 0
		for _, p := range defaultMaskedPaths() {
			st, err := os.Stat(p)
			if err != nil || st.IsDir() {
				continue
			}
			checked++
			out, err := e.run(nil, "/bin/stat", "-c", "%F %t:%T", p)
			if err != nil || strings.TrimSpace(out) != "character special file 1:3" {
				t.Errorf("stat %s: %v: %q", p, err, out)
			}
			out, err = e.run(nil, "/bin/cat", p)
			if err != nil || out != "" {
				t.Errorf("cat %s: %v: read %d bytes", p, err, len(out))
			}
		}
		if _, err := os.Stat("/proc/kcore"); err != nil {
			t.Logf("/proc/kcore is not on this host; checked %d other masked files", checked)
		}
		if checked == 0 {
			t.Error("no masked file exists on this host to check")
		}
		var out string
		var err error
		out, err = e.run(nil, "/bin/sh", "-c", "ls -A /sys/firmware")
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("ls /sys/firmware: %v: %q", err, out)
		}
		out, err = e.run(nil, "/bin/sh", "-c", "echo x > /proc/sys/kernel/hostname")
		if err == nil {
			t.Errorf("/proc/sys writable: %q", out)
		}
	})

	t.Run("network", func(t *testing.T) {
		e.t = t
		out, err := e.run(nil, "/bin/cat", "/proc/net/dev")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		var ifaces []string
		for _, line := range strings.Split(out, "\n") {
			if name, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(name, "|") {
				ifaces = append(ifaces, strings.TrimSpace(name))
			}
		}
		if len(ifaces) != 1 || ifaces[0] != "lo" {
			t.Errorf("interfaces %v, want only lo", ifaces)
		}
	})

	t.Run("hostname", func(t *testing.T) {
		e.t = t
		out, err := e.run(nil, "/bin/cat", "/proc/sys/kernel/hostname")
		if err != nil || !strings.HasPrefix(strings.TrimSpace(out), "hull-oci-") {
			t.Errorf("hostname: %v: %q", err, out)
		}
	})

	t.Run("readonly rootfs", func(t *testing.T) {
		e.t = t
		out, err := e.run([]SpecOpts{WithReadonlyRootfs}, "/bin/touch", "/x")
		if err == nil || !strings.Contains(out, "Read-only file system") {
			t.Errorf("touch / on a read-only root: %v: %q", err, out)
		}
		out, err = e.run(nil, "/bin/touch", "/tmp/x")
		if err != nil {
			t.Errorf("touch on a writable root: %v: %q", err, out)
		}
	})

	t.Run("seccomp", func(t *testing.T) {
		e.t = t
		sec := []SpecOpts{WithSeccompDefault}
		out, err := e.run(sec, "/bin/echo", "hi")
		if err != nil || out != "hi\n" {
			t.Fatalf("echo hi under seccomp: %v: %q", err, out)
		}
		out, err = e.run(sec, "/bin/sh", "-c", "id -u; cat /proc/self/status; ls / >/dev/null")
		if err != nil {
			t.Fatalf("shell under seccomp: %v: %q", err, out)
		}
		if got := statusField(t, out, "Seccomp"); got != "2" {
			t.Errorf("Seccomp = %s, want 2 (filter)", got)
		}
		// unshare(CLONE_NEWUSER) needs no capability, so only the
		// filter stops it; compare with an unfiltered run.
		ctl, ctlErr := e.run(nil, "/bin/unshare", "-U", "/bin/true")
		out, err = e.run(sec, "/bin/unshare", "-U", "/bin/true")
		if err == nil || !strings.Contains(out, "Operation not permitted") {
			t.Errorf("unshare -U under seccomp: %v: %q", err, out)
		}
		if ctlErr != nil {
			t.Logf("unshare -U fails without seccomp too (%v: %q); the host forbids user namespaces", ctlErr, ctl)
		}
		out, err = e.run(sec, "/bin/mount", "-t", "tmpfs", "none", "/tmp")
		if err == nil || !strings.Contains(out, "Operation not permitted") && !strings.Contains(out, "ermission denied") {
			t.Errorf("mount under seccomp: %v: %q", err, out)
		}
	})

	t.Run("no new privileges", func(t *testing.T) {
		e.t = t
		out, err := e.run([]SpecOpts{WithNoNewPrivileges}, "/bin/cat", "/proc/self/status")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got := statusField(t, out, "NoNewPrivs"); got != "1" {
			t.Errorf("NoNewPrivs = %s", got)
		}
	})

	t.Run("rlimit", func(t *testing.T) {
		e.t = t
		out, err := e.run([]SpecOpts{WithRlimit("RLIMIT_NOFILE", 512, 256)}, "/bin/sh", "-c", "ulimit -n; ulimit -H -n")
		if err != nil || strings.Fields(out)[0] != "256" || strings.Fields(out)[1] != "512" {
			t.Errorf("ulimit: %v: %q", err, out)
		}
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

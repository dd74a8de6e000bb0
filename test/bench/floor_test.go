package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runcPodFloor times what no runtime built on runc's CLI can skip when it
// starts a pod of one container: runc create and runc start of a pause
// process in new network, IPC and UTS namespaces, then runc create and
// runc start of a container joining them, one after the other, with
// bundles prepared beforehand (a static busybox as root filesystem, no
// daemon, no shim, no image, no network setup). A runtime's pod start
// over containerd's shows how far above this floor each one is.
type runcPodFloor struct {
	runc, dir, root string
	pause, ctr      string // bundles
	n               int
}

// newRuncPodFloor prepares the two bundles under a new temporary directory,
// with Debian's runc, the one both daemons run.
func newRuncPodFloor(b *testing.B) *runcPodFloor {
	b.Helper()
	runc, err := exec.LookPath("runc")
	if err != nil {
		b.Fatalf("runc: %v", err)
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		b.Fatalf("busybox (Debian's busybox-static): %v", err)
	}
	f := &runcPodFloor{runc: runc, dir: b.TempDir()}
	f.root = filepath.Join(f.dir, "runc")
	f.pause, f.ctr = filepath.Join(f.dir, "pause"), filepath.Join(f.dir, "ctr")
	for _, bundle := range []string{f.pause, f.ctr} {
		bin := filepath.Join(bundle, "rootfs", "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			b.Fatal(err)
		}
		data, err := os.ReadFile(bb)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
			b.Fatal(err)
		}
		if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
			b.Fatalf("runc spec: %v %s", err, out)
		}
	}
	return f
}

// writeSpec writes bundle's config.json from runc's default spec, running
// sleep (or args), with namespaces changed by edit.
func (f *runcPodFloor) writeSpec(bundle string, edit func(ns []specs.LinuxNamespace) []specs.LinuxNamespace, args ...string) error {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	s.Process.Terminal = false
	s.Process.Args = []string{"/bin/busybox", "sleep", "3600"}
	if len(args) > 0 {
		s.Process.Args = args
	}
	s.Root.Readonly = false
	s.Linux.Namespaces = edit(s.Linux.Namespaces)
	if data, err = json.Marshal(&s); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// run runs runc with args on the floor's root. runc's errors go to a log
// file: its stdio become the container's (create's above all), so nothing
// may wait for them to close.
func (f *runcPodFloor) run(args ...string) error {
	logFile := filepath.Join(f.dir, "runc.log")
	os.Remove(logFile)
	if err := exec.Command(f.runc, append([]string{"--root", f.root, "--log", logFile}, args...)...).Run(); err != nil {
		out, _ := os.ReadFile(logFile)
		return fmt.Errorf("runc %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// round runs one pod's four runc commands and returns their time; the
// containers are deleted afterwards, untimed.
func (f *runcPodFloor) round() (took time.Duration, err error) {
	f.n++
	pauseID, ctrID := fmt.Sprintf("floor-pause-%d", f.n), fmt.Sprintf("floor-ctr-%d", f.n)
	defer func() {
		for _, id := range []string{ctrID, pauseID} {
			exec.Command(f.runc, "--root", f.root, "delete", "--force", id).Run()
		}
	}()
	pidFile := filepath.Join(f.dir, "pause.pid")
	joined := map[specs.LinuxNamespaceType]bool{specs.NetworkNamespace: true, specs.IPCNamespace: true, specs.UTSNamespace: true}
	err = f.writeSpec(f.pause, func(ns []specs.LinuxNamespace) []specs.LinuxNamespace {
		out := []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}
		for _, n := range ns {
			if n.Type != specs.NetworkNamespace {
				out = append(out, n)
			}
		}
		return out
	})
	if err != nil {
		return 0, err
	}
	run := f.run
	begin := time.Now()
	if err := run("create", "--bundle", f.pause, "--pid-file", pidFile, pauseID); err != nil {
		return 0, err
	}
	if err := run("start", pauseID); err != nil {
		return 0, err
	}
	// Writing the second spec needs the pause process's PID, as a
	// runtime's does; it is a file write, next to nothing.
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("pause pid file: %q", data)
	}
	err = f.writeSpec(f.ctr, func(ns []specs.LinuxNamespace) []specs.LinuxNamespace {
		var out []specs.LinuxNamespace
		for _, n := range ns {
			if !joined[n.Type] {
				out = append(out, n)
			}
		}
		for t := range joined {
			name := map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts"}[t]
			out = append(out, specs.LinuxNamespace{Type: t, Path: fmt.Sprintf("/proc/%d/ns/%s", pid, name)})
		}
		return out
	})
	if err != nil {
		return 0, err
	}
	if err := run("create", "--bundle", f.ctr, ctrID); err != nil {
		return 0, err
	}
	if err := run("start", ctrID); err != nil {
		return 0, err
	}
	return time.Since(begin), nil
}

// once times runc creating, starting and, after its process exits,
// deleting one container of the ctr bundle running args: the runc commands
// every shim runs for a container's life.
func (f *runcPodFloor) once(id string, args ...string) (time.Duration, error) {
	if err := f.writeSpec(f.ctr, func(ns []specs.LinuxNamespace) []specs.LinuxNamespace { return ns }, args...); err != nil {
		return 0, err
	}
	run := f.run
	defer exec.Command(f.runc, "--root", f.root, "delete", "--force", id).Run()
	pidFile := filepath.Join(f.dir, "once.pid")
	begin := time.Now()
	if err := run("create", "--bundle", f.ctr, "--pid-file", pidFile, id); err != nil {
		return 0, err
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, err
	}
	pid := strings.TrimSpace(string(data))
	if err := run("start", id); err != nil {
		return 0, err
	}
	// The exit, as a shim's reaper would see it, without asking runc:
	// the process is gone or a zombie.
	for deadline := time.Now().Add(10 * time.Second); ; {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			break
		}
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("container %s (pid %s) did not exit within 10s", id, pid)
		}
		time.Sleep(100 * time.Microsecond)
	}
	if err := run("delete", id); err != nil {
		return 0, err
	}
	return time.Since(begin), nil
}

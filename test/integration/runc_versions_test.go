package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runc/options"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/internal/hulltest"
)

// runc152 is where scripts/deps.sh (run by make test) builds upstream runc
// v1.5.2, the newer of the two runcs hull supports; Debian's is on PATH.
const runc152 = "/usr/local/lib/hull-test/runc-1.5.2/runc"

// TestShimUnderEachRunc runs a container's whole life (create, start,
// exec, kill, delete) through hull's shim under each runc hull supports,
// chosen with the BinaryName runtime option, once as it is and once
// behind a wrapper that logs every call, so the test sees that start and
// delete went through runc's own commands (the shim never reads runc's
// private state to spare them).
func TestShimUnderEachRunc(t *testing.T) {
	d := newDirectShim(t)
	hulltest.RequireTools(t, "runc")
	debian, err := exec.LookPath("runc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(runc152); err != nil {
		t.Fatalf("runc 1.5.2 (built by scripts/deps.sh, which make test runs): %v", err)
	}
	for _, rc := range []struct{ name, bin, version string }{
		{"debian", debian, "1.1.5"},
		{"1.5.2", runc152, "1.5.2"},
	} {
		out, err := runcOutput(rc.bin, "--version")
		if err != nil || !strings.HasPrefix(out, "runc version "+rc.version) {
			t.Fatalf("%s --version: %v %q, want %s", rc.bin, err, out, rc.version)
		}
		for _, mode := range []string{"logged", "plain"} {
			t.Run(rc.name+"/"+mode, func(t *testing.T) {
				bin, log := rc.bin, ""
				if mode != "plain" {
					bin, log = runcWrapper(t, rc.bin)
				}
				id := strings.ReplaceAll("v-"+rc.name+"-"+mode, ".", "")
				runcLifecycle(t, d, id, bin)
				if log == "" {
					return
				}
				calls := runcCommands(t, log)
				started, deleted := contains(calls, "start"), contains(calls, "delete")
				if !started || !deleted {
					t.Errorf("runc ran start=%v delete=%v, want both: %v", started, deleted, calls)
				}
			})
		}
	}
}

// runcLifecycle creates, starts, execs in, kills and deletes container id
// with runtime binary bin, and checks that runc's state of it is gone.
func runcLifecycle(t *testing.T, d *directShim, id, bin string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bundle := d.bundle(t, id, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "1000"} })
	addr := d.start(t, bundle, id)
	c := taskv3.NewTTRPCTaskClient(dialShim(t, addr))
	root := filepath.Join(filepath.Dir(d.state), "runc-"+id)
	opts, err := anypb.New(&options.Options{BinaryName: bin, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	cr, err := c.Create(ctx, &taskv3.CreateTaskRequest{ID: id, Bundle: bundle, Options: opts})
	if err != nil {
		t.Fatalf("create under %s: %v", bin, err)
	}
	if _, err := c.Start(ctx, &taskv3.StartRequest{ID: id}); err != nil {
		t.Fatalf("start: %v", err)
	}
	st, err := c.State(ctx, &taskv3.StateRequest{ID: id})
	if err != nil || st.Status.String() != "RUNNING" || st.Pid != cr.Pid {
		t.Fatalf("state after start: %v %v", st, err)
	}
	spec, _ := json.Marshal(specs.Process{Args: []string{"sh", "-c", "exit 3"}, Cwd: "/", Env: []string{"PATH=/bin"}})
	anySpec := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: spec}
	if _, err := c.Exec(ctx, &taskv3.ExecProcessRequest{ID: id, ExecID: "e1", Spec: anySpec}); err != nil {
		t.Fatalf("exec: %v", err)
	}
	if _, err := c.Start(ctx, &taskv3.StartRequest{ID: id, ExecID: "e1"}); err != nil {
		t.Fatalf("start exec: %v", err)
	}
	if wr, err := c.Wait(ctx, &taskv3.WaitRequest{ID: id, ExecID: "e1"}); err != nil || wr.ExitStatus != 3 {
		t.Fatalf("wait exec: %v %v, want 3", wr, err)
	}
	if _, err := c.Delete(ctx, &taskv3.DeleteRequest{ID: id, ExecID: "e1"}); err != nil {
		t.Fatalf("delete exec: %v", err)
	}
	if _, err := c.Kill(ctx, &taskv3.KillRequest{ID: id, Signal: 9}); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if wr, err := c.Wait(ctx, &taskv3.WaitRequest{ID: id}); err != nil || wr.ExitStatus != 137 {
		t.Fatalf("wait: %v %v, want 137", wr, err)
	}
	if _, err := c.Delete(ctx, &taskv3.DeleteRequest{ID: id}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	// runc's own view: the container is gone, state and all.
	if out, err := runcOutput(bin, "--root", filepath.Join(root, d.ns), "state", id); err == nil {
		t.Fatalf("runc still knows %s after delete:\n%s", id, out)
	}
	if _, err := os.Stat(filepath.Join(root, d.ns, id)); !os.IsNotExist(err) {
		t.Fatalf("runc state directory of %s left: %v", id, err)
	}
	c.Shutdown(ctx, &taskv3.ShutdownRequest{ID: id})
	waitGone(t, bundle, strings.TrimPrefix(addr, "unix://"))
}

// runcWrapper writes a runtime binary that logs each call's arguments and
// runs real.
func runcWrapper(t *testing.T, real string) (bin, log string) {
	t.Helper()
	dir := t.TempDir()
	bin, log = filepath.Join(dir, "runc"), filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho \"$*\" >> " + log + "\n"
	script += "exec " + real + " \"$@\"\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

// runcCommands lists the runc subcommands in a wrapper's log: the first
// argument that is not a global flag or its value.
func runcCommands(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		for i := 0; i < len(f); i++ {
			switch f[i] {
			case "--root", "--log", "--log-format":
				i++
				continue
			case "--systemd-cgroup", "--debug":
				continue
			}
			cmds = append(cmds, f[i])
			break
		}
	}
	return cmds
}

// runcOutput runs a runtime binary and returns its combined output.
func runcOutput(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

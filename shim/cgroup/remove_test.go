package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestRemoveKillsAndDeletes: a container's cgroup with a process still in
// it (runc init of a create cut short), frozen, is thawed, emptied and
// deleted.
func TestRemoveKillsAndDeletes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	path := fmt.Sprintf("/hull-remove-test-%d", os.Getpid())
	sleep := exec.Command("sleep", "1000")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sleep.Wait() }()
	t.Cleanup(func() { sleep.Process.Kill() })
	var exists func() bool
	var freeze func() error
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.NewManager("/sys/fs/cgroup", path, &cgroup2.Resources{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Delete() })
		if err := m.AddProc(uint64(sleep.Process.Pid)); err != nil {
			t.Fatal(err)
		}
		exists = func() bool { _, err := os.Stat("/sys/fs/cgroup" + path); return err == nil }
		freeze = m.Freeze
	} else {
		cg, err := cgroup1.New(cgroup1.StaticPath(path), &specs.LinuxResources{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cg.Delete() })
		if err := cg.Add(cgroup1.Process{Pid: sleep.Process.Pid}); err != nil {
			t.Fatal(err)
		}
		exists = func() bool { _, err := cgroup1.Load(cgroup1.StaticPath(path)); return err == nil }
		freeze = cg.Freeze
	}
	if !exists() {
		t.Fatal("the test cgroup was not made")
	}
	// Frozen, as a runc killed between its freeze and its thaw leaves it.
	if err := freeze(); err != nil {
		t.Fatal(err)
	}
	if err := Remove(path, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if exists() {
		t.Error("the cgroup is still there")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("the process in the cgroup still runs")
	}
	if err := Remove(path, time.Second); err != nil {
		t.Errorf("Remove of a cgroup that is gone: %v", err)
	}
	if err := Remove("system.slice:hull:x", time.Second); err != nil {
		t.Errorf("Remove of a systemd path: %v", err)
	}
}

// Package cgroup finds a container's cgroup and reads it through
// github.com/containerd/cgroups/v3, the library containerd's runc shim
// uses, so hull's shim returns the same metrics (every controller the
// library reads, in its units) and watches for OOM kills the same way.
//
// The version follows the host as in containerd: a host whose
// /sys/fs/cgroup is a cgroup2 mount (unified) gives v2 cgroups; legacy
// and hybrid hosts (v1 controllers, with or without a v2 hierarchy at
// /sys/fs/cgroup/unified beside them) give v1 cgroups, since the
// controllers there are v1 ones.
//
// Only the library's cgroup1 and cgroup2 packages are imported; the shim
// never runs their systemd or eBPF code, but it is linked: cgroup2
// imports cilium/ebpf (for device rules), whose package init keeps about
// 0.9 MB of eBPF, BTF, ELF and zstd code in the binary, and the kernel
// maps the binary in 64 KiB folios of which start-up touches nearly all,
// so that code costs each serving shim about 0.75 MiB of resident size
// (8.4 MiB measured with it, 7.7 MiB with cgroup2 left out).
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"

	"github.com/hullrt/hull/internal/pidfd"
)

// Cgroup is a container's cgroup: exactly one of v1 and v2 is set.
type Cgroup struct {
	pid int // the process it was found by, to name it in errors
	v1  cgroup1.Cgroup
	v2  *cgroup2.Manager
}

// V2 reports whether the cgroup is a unified-hierarchy (v2) one.
func (c *Cgroup) V2() bool { return c.v2 != nil }

// Load finds the cgroup pid belongs to, in the version the host runs.
func Load(pid int) (*Cgroup, error) {
	if cgroups.Mode() == cgroups.Unified {
		group, err := cgroup2.PidGroupPath(pid)
		if err != nil {
			return nil, classify(fmt.Errorf("cgroup v2 path of pid %d: %w", pid, err))
		}
		m, err := cgroup2.Load(group)
		if err != nil {
			return nil, classify(fmt.Errorf("cgroup v2 %q of pid %d: %w", group, pid, err))
		}
		return &Cgroup{pid: pid, v2: m}, nil
	}
	cg, err := cgroup1.Load(cgroup1.PidPath(pid))
	if err != nil {
		return nil, classify(fmt.Errorf("cgroup v1 of pid %d: %w", pid, err))
	}
	return &Cgroup{pid: pid, v1: cg}, nil
}

// Metrics reads the cgroup's counters: a cgroup1/stats.Metrics
// (io.containerd.cgroups.v1.Metrics) or a cgroup2/stats.Metrics
// (io.containerd.cgroups.v2.Metrics), as containerd's runc shim returns
// them.
func (c *Cgroup) Metrics() (proto.Message, error) {
	if c.v2 != nil {
		m, err := c.v2.Stat()
		if err != nil {
			return nil, classify(fmt.Errorf("cgroup v2 stats of pid %d: %w", c.pid, err))
		}
		return m, nil
	}
	// Controllers whose files a kernel lacks (no kmem or swap
	// accounting, no CFQ blkio files) are left out rather than failing
	// the whole call, as containerd does.
	m, err := c.v1.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return nil, classify(fmt.Errorf("cgroup v1 stats of pid %d: %w", c.pid, err))
	}
	return m, nil
}

// classify gives library errors an errdefs class: a cgroup that is gone
// (the container exited) is not found; anything else keeps its own class
// or none.
func classify(err error) error {
	switch {
	case errors.Is(err, cgroup1.ErrCgroupDeleted), errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	case errors.Is(err, cgroup2.ErrInvalidGroupPath):
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return err
}

// Remove deletes the cgroup at path, a spec's linux.cgroupsPath in
// cgroupfs form, after killing whatever still runs in it: the cleanup of a
// container whose runc state is gone (a create killed half way), which
// runc delete can no longer find. A cgroup that does not exist is no
// error. Systemd's "slice:prefix:name" form is left alone: systemd removes
// a scope once its processes are gone.
func Remove(path string, timeout time.Duration) error {
	if path == "" || strings.Contains(path, ":") || filepath.Clean("/"+path) == "/" {
		return nil
	}
	path = filepath.Clean("/" + path)
	var pids []int
	var remove func() error
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.Load(path)
		if err != nil {
			return nil
		}
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", path)); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		m.Thaw() // a frozen process cannot die of its SIGKILL
		if ps, err := m.Procs(true); err == nil {
			for _, p := range ps {
				pids = append(pids, int(p))
			}
		}
		remove = m.Delete
	} else {
		cg, err := cgroup1.Load(cgroup1.StaticPath(path))
		if err != nil {
			// Gone from every v1 hierarchy; a v2 one of a hybrid
			// host may remain.
			if cgroups.Mode() == cgroups.Hybrid {
				os.Remove(filepath.Join(unifiedMountpoint, path))
			}
			return nil
		}
		// A runc killed between freezing the cgroup and thawing it
		// leaves its processes frozen: SIGKILL stays pending until they
		// are thawed.
		cg.Thaw()
		for _, sub := range cg.Subsystems() {
			ps, err := cg.Processes(sub.Name(), true)
			if err != nil {
				continue
			}
			for _, p := range ps {
				pids = append(pids, p.Pid)
			}
		}
		remove = cg.Delete
	}
	pidfd.KillAndWait(pids, timeout)
	if err := remove(); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", path, err)
	}
	if cgroups.Mode() == cgroups.Hybrid {
		// runc makes the container's cgroup in the v2 hierarchy beside
		// the v1 controllers too; emptied above, it can go.
		if err := os.Remove(filepath.Join(unifiedMountpoint, path)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove cgroup %s: %w", filepath.Join(unifiedMountpoint, path), err)
		}
	}
	return nil
}

// unifiedMountpoint is where hybrid hosts mount the v2 hierarchy, as runc
// and the cgroups library expect it.
const unifiedMountpoint = "/sys/fs/cgroup/unified"

// Package cgroup finds a container's cgroup and reads it from cgroupfs
// itself, returning the metrics messages containerd's runc shim returns
// (io.containerd.cgroups.v1.Metrics and io.containerd.cgroups.v2.Metrics,
// the same files in the same units) and watching for OOM kills the same
// way.
//
// The version follows the host as in containerd: a host whose
// /sys/fs/cgroup is a cgroup2 mount (unified) gives v2 cgroups; legacy
// and hybrid hosts (v1 controllers, with or without a v2 hierarchy at
// /sys/fs/cgroup/unified beside them) give v1 cgroups, since the
// controllers there are v1 ones.
//
// Why not github.com/containerd/cgroups/v3, which the shim used before:
// the shim only reads a handful of files, but the library's cgroup1 and
// cgroup2 packages link systemd's D-Bus client and cilium/ebpf (for device
// rules) with its BTF, ELF and zstd code, 1.2 MB of the shim's 7.4 MB
// binary. The kernel maps a binary in 64 KiB folios, nearly all of which
// start-up touches, so every serving shim paid about 1.3 MiB of resident
// size for code it never ran (8.8 MiB measured with the library beside a
// pod's two containers, 7.5 MiB without). Only the library's generated
// stats messages remain.
//
// Left out, as rarely set on a node: RDMA counters, and v1 blkio device
// names (entries carry major and minor numbers).
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Cgroup is a container's cgroup: a v2 directory, or one directory per v1
// controller.
type Cgroup struct {
	pid int    // the process it was found by, to name it in errors
	dir string // v2: the cgroup's directory
	// v1: controller name (memory, cpuacct, ...) to the cgroup's
	// directory in that controller's hierarchy.
	v1 map[string]string
}

// V2 reports whether the cgroup is a unified-hierarchy (v2) one.
func (c *Cgroup) V2() bool { return c.v1 == nil }

// mode is how the host mounts cgroups.
type mode int

const (
	legacy  mode = iota // v1 controllers only
	hybrid              // v1 controllers, and a v2 hierarchy at unifiedMountpoint
	unified             // one v2 hierarchy at /sys/fs/cgroup
)

// cgroupRoot is where hosts mount their cgroup hierarchies.
const cgroupRoot = "/sys/fs/cgroup"

// unifiedMountpoint is where hybrid hosts mount the v2 hierarchy, as runc
// and containerd expect it.
const unifiedMountpoint = "/sys/fs/cgroup/unified"

// hostMode reads the filesystem types under /sys/fs/cgroup. It is asked
// per call, not cached: it costs one or two statfs calls, and the shim's
// callers are rare (a Stats call, a container start).
func hostMode() mode {
	var st unix.Statfs_t
	if unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return unified
	}
	if unix.Statfs(unifiedMountpoint, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return hybrid
	}
	return legacy
}

// Load finds the cgroup pid belongs to, in the version the host runs.
func Load(pid int) (*Cgroup, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return nil, classify(fmt.Errorf("cgroup of pid %d: %w", pid, err))
	}
	paths, err := parseProcCgroup(data)
	if err != nil {
		return nil, fmt.Errorf("/proc/%d/cgroup: %w", pid, err)
	}
	if hostMode() == unified {
		p, ok := paths[""]
		if !ok {
			return nil, fmt.Errorf("pid %d has no cgroup v2 path: %w", pid, errdefs.ErrNotFound)
		}
		dir := filepath.Join(cgroupRoot, p)
		if _, err := os.Stat(dir); err != nil {
			return nil, classify(fmt.Errorf("cgroup v2 %q of pid %d: %w", p, pid, err))
		}
		return &Cgroup{pid: pid, dir: dir}, nil
	}
	mounts, err := v1Mounts()
	if err != nil {
		return nil, err
	}
	dirs := map[string]string{}
	for ctrl, m := range mounts {
		p, ok := paths[ctrl]
		if !ok {
			continue
		}
		rel, err := filepath.Rel(m.root, p)
		if err != nil || rel == ".." || len(rel) > 2 && rel[:3] == "../" {
			continue // outside what this namespace's mount shows
		}
		dirs[ctrl] = filepath.Join(m.dir, rel)
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("pid %d is in no mounted cgroup v1 hierarchy: %w", pid, errdefs.ErrNotFound)
	}
	return &Cgroup{pid: pid, v1: dirs}, nil
}

// v1Mounts reads the v1 hierarchies from this process's mountinfo.
func v1Mounts() (map[string]v1Mount, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroup v1 hierarchies: %w", err)
	}
	return parseV1Mounts(data), nil
}

// Metrics reads the cgroup's counters: a cgroup1/stats.Metrics
// (io.containerd.cgroups.v1.Metrics) or a cgroup2/stats.Metrics
// (io.containerd.cgroups.v2.Metrics), as containerd's runc shim returns
// them. A cgroup removed meanwhile is not found.
func (c *Cgroup) Metrics() (proto.Message, error) {
	var m proto.Message
	var err error
	if c.v1 == nil {
		m, err = metricsV2(c.dir)
	} else {
		m, err = metricsV1(c.v1)
	}
	if err != nil {
		return nil, classify(fmt.Errorf("cgroup stats of pid %d: %w", c.pid, err))
	}
	return m, nil
}

// classify gives a cgroup that is gone (the container exited) the class
// not found; anything else keeps its own class or none.
func classify(err error) error {
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	}
	return err
}

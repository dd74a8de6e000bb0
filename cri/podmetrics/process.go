package podmetrics

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// processMetrics counts the processes of the container's cgroup, their
// file descriptors, sockets and (when the stats lack the pids controller)
// threads, as cadvisor does, and reports the init process's soft limits.
func (c collector) processMetrics(e *emitter, ctr Container, u *usage) {
	dir, err := c.cgroupOf(ctr.Pid, ctr.CgroupPath)
	if err != nil {
		c.log.Debug("container cgroup not found", "container", ctr.ID, "pid", ctr.Pid, "error", err)
		return
	}
	b, err := readFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		c.log.Debug("container processes unreadable", "container", ctr.ID, "cgroup", dir, "error", err)
		return
	}
	pids, err := parsePidList(bytes.NewReader(b))
	if err != nil {
		c.log.Debug("container processes unreadable", "container", ctr.ID, "cgroup", dir, "error", err)
		return
	}
	wantThreads := u == nil || u.pids == nil
	var nproc, nfd, nsock, nthread uint64
	for _, p := range pids {
		fds, socks, err := c.countFds(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // exited since cgroup.procs was read
		}
		if err != nil {
			c.log.Debug("process file descriptors unreadable", "container", ctr.ID, "pid", p, "error", err)
		}
		nproc++
		nfd += fds
		nsock += socks
		if wantThreads {
			tasks, err := os.ReadDir(c.path("proc", strconv.FormatUint(p, 10), "task"))
			if err == nil {
				nthread += uint64(len(tasks))
			}
		}
	}
	e.add(processes, nproc)
	e.add(fileDescriptors, nfd)
	e.add(sockets, nsock)
	if wantThreads {
		e.add(threads, nthread)
		if limit, ok := readPidsMax(filepath.Join(dir, "pids.max")); ok {
			e.add(threadsMax, limit)
		}
	}

	b, err = readFile(c.path("proc", strconv.FormatUint(uint64(ctr.Pid), 10), "limits"))
	if err == nil {
		var limits []ulimit
		if limits, err = parseLimits(bytes.NewReader(b)); err == nil {
			for _, l := range limits {
				e.add(ulimitsSoft, l.soft, label{keyUlimit, l.name})
			}
		}
	}
	if err != nil {
		c.log.Debug("process limits unreadable", "container", ctr.ID, "pid", ctr.Pid, "error", err)
	}
}

// countFds counts a process's open file descriptors and, among them, its
// sockets.
func (c collector) countFds(pid uint64) (fds, sockets uint64, err error) {
	dir := c.path("proc", strconv.FormatUint(pid, 10), "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, ent := range entries {
		fds++
		// A descriptor closed meanwhile is counted, not inspected.
		if target, err := os.Readlink(filepath.Join(dir, ent.Name())); err == nil && strings.HasPrefix(target, "socket:[") {
			sockets++
		}
	}
	return fds, sockets, nil
}

// readPidsMax reads a pids controller's limit, 0 for "max" as cadvisor
// reports it. ok is false when the file is not there or not understood.
func readPidsMax(file string) (uint64, bool) {
	b, err := readFile(file)
	if err != nil {
		return 0, false
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, true
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

// parsePidList parses cgroup.procs: one pid per line.
func parsePidList(r io.Reader) ([]uint64, error) {
	var out []uint64
	s := lines(r)
	for s.Scan() {
		t := strings.TrimSpace(s.Text())
		if t == "" {
			continue
		}
		p, err := strconv.ParseUint(t, 10, 32)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("cgroup.procs line %q is not a pid: %w", t, errdefs.ErrInvalidArgument)
		}
		out = append(out, p)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("cgroup.procs: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// cgroupOf returns the directory of the cgroup holding pid, in the mounted
// hierarchy that tells the most: the pids controller's (it has pids.max),
// then memory's, cpu's, any other v1 hierarchy, then the unified one. When
// cgroupsPath is set, the cgroup must be the one it names, else the pid was
// recycled by a process of another cgroup (FailedPrecondition).
func (c collector) cgroupOf(pid uint32, cgroupsPath string) (string, error) {
	b, err := readFile(c.path("proc", strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		return "", err
	}
	groups, err := parseProcCgroup(bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	if b, err = readFile(c.path("proc", "self", "mountinfo")); err != nil {
		return "", err
	}
	mounts, err := parseMountinfo(bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	slices.SortStableFunc(groups, func(a, b procCgroup) int { return hierarchyRank(a) - hierarchyRank(b) })
	for _, g := range groups {
		for _, m := range mounts {
			if !mountHolds(m, g) {
				continue
			}
			rel, ok := relativeTo(g.path, m.root)
			if !ok {
				continue
			}
			if !cgroupMatches(g.path, cgroupsPath) {
				return "", fmt.Errorf("pid %d is in cgroup %q, not in %q: %w", pid, g.path, cgroupsPath, errdefs.ErrFailedPrecondition)
			}
			return c.path(m.mountPoint, rel), nil
		}
	}
	return "", fmt.Errorf("no mounted cgroup hierarchy holds pid %d: %w", pid, errdefs.ErrNotFound)
}

func hierarchyRank(g procCgroup) int {
	switch {
	case slices.Contains(g.controllers, "pids"):
		return 0
	case slices.Contains(g.controllers, "memory"):
		return 1
	case slices.Contains(g.controllers, "cpu"), slices.Contains(g.controllers, "cpuacct"):
		return 2
	case len(g.controllers) > 0:
		return 3
	default:
		return 4
	}
}

// mountHolds tells whether a mount shows the hierarchy of a
// /proc/<pid>/cgroup line.
func mountHolds(m cgroupMount, g procCgroup) bool {
	if len(g.controllers) == 0 {
		return g.hierarchy == 0 && m.v2
	}
	if m.v2 {
		return false
	}
	for _, ctl := range g.controllers {
		if !slices.Contains(m.options, ctl) {
			return false
		}
	}
	return true
}

// relativeTo is p below a mount's root, as an absolute path.
func relativeTo(p, root string) (string, bool) {
	if root == "/" || root == "" {
		return p, true
	}
	if p == root {
		return "/", true
	}
	rest, ok := strings.CutPrefix(p, strings.TrimSuffix(root, "/")+"/")
	return "/" + rest, ok
}

// cgroupMatches tells whether the cgroup path read from /proc is the one a
// spec's linux.cgroupsPath names: for the systemd driver's
// "slice:prefix:name" the last element is runc's scope unit (prefix-name.scope);
// for a cgroupfs path the cgroup ends with it (a cgroup namespace may hide
// the start).
func cgroupMatches(found, cgroupsPath string) bool {
	if cgroupsPath == "" {
		return true
	}
	if parts := strings.SplitN(cgroupsPath, ":", 3); len(parts) == 3 {
		prefix, name := parts[1], parts[2]
		unit := name
		if !strings.HasSuffix(name, ".slice") {
			unit = name + ".scope"
			if prefix != "" {
				unit = prefix + "-" + unit
			}
		}
		return path.Base(found) == unit
	}
	found, want := path.Clean(found), path.Clean("/"+cgroupsPath)
	return found == want || strings.HasSuffix(found, want)
}

package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hullrt/hull/internal/pidfd"
)

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
	var dirs []string // the cgroup in each hierarchy it exists in
	var thaw func(dir string)
	switch hostMode() {
	case unified:
		dirs = existing(filepath.Join(cgroupRoot, path))
		// A frozen process cannot die of its SIGKILL.
		thaw = func(dir string) { os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("0"), 0) }
	default:
		mounts, err := v1Mounts()
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, m := range mounts {
			if !seen[m.dir] {
				seen[m.dir] = true
				dirs = append(dirs, existing(filepath.Join(m.dir, path))...)
			}
		}
		// runc makes the container's cgroup in a hybrid host's v2
		// hierarchy too; emptied with the rest, it can go.
		dirs = append(dirs, existing(filepath.Join(unifiedMountpoint, path))...)
		// A runc killed between freezing the cgroup and thawing it
		// leaves its processes frozen: SIGKILL stays pending until they
		// are thawed.
		thaw = func(dir string) { os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("THAWED"), 0) }
	}
	if len(dirs) == 0 {
		return nil
	}
	var pids []int
	for _, d := range dirs {
		thaw(d)
		pids = append(pids, procs(d)...)
	}
	pidfd.KillAndWait(pids, timeout)
	for _, d := range dirs {
		if err := removeTree(d, timeout); err != nil {
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return nil
}

// existing is dir alone when it exists, else nothing.
func existing(dir string) []string {
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	return []string{dir}
}

// procs lists the processes in dir and its descendants.
func procs(dir string) []int {
	var pids []int
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeTree removes dir and the cgroups below it, deepest first. The
// kernel refuses (EBUSY) while a killed process is still being released,
// so each removal is retried until timeout.
func removeTree(dir string, timeout time.Duration) error {
	var subs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			subs = append(subs, p)
		}
		return nil
	})
	deadline := time.Now().Add(timeout)
	for i := len(subs) - 1; i >= 0; i-- {
		for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
			err := os.Remove(subs[i])
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(delay)
		}
	}
	return nil
}

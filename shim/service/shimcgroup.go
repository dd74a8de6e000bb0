package service

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// cgroupRoot is where the cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// joinCgroup moves process pid into the cgroup at path (the runc option
// ShimCgroup, relative to the hierarchies' roots), as containerd's runc
// shim moves itself at start: on cgroup v2 into the one hierarchy; on v1
// (and hybrid) into every v1 hierarchy that has the cgroup, as
// containerd's cgroup1 library loads a static path. A cgroup that exists
// in no hierarchy is NotFound, which fails the task as it fails
// containerd's shim.
func joinCgroup(root, path string, pid int) error {
	clean := filepath.Clean("/" + path)
	if path == "" || clean == "/" || strings.Contains(path, "..") {
		return fmt.Errorf("shim cgroup %q: %w", path, errdefs.ErrInvalidArgument)
	}
	procs := []string{filepath.Join(root, clean, "cgroup.procs")}
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
		entries, err := os.ReadDir(root)
		if err != nil {
			return fmt.Errorf("shim cgroup %q: %w", path, err)
		}
		procs = procs[:0]
		for _, e := range entries {
			// The unified hierarchy of a hybrid host is not one of
			// the v1 controllers containerd's shim joins.
			if e.IsDir() && e.Name() != "unified" {
				procs = append(procs, filepath.Join(root, e.Name(), clean, "cgroup.procs"))
			}
		}
	}
	joined := 0
	for _, p := range procs {
		if _, err := os.Stat(filepath.Dir(p)); err != nil {
			continue
		}
		if err := os.WriteFile(p, []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("join shim cgroup %q: %w", path, err)
		}
		joined++
	}
	if joined == 0 {
		return fmt.Errorf("shim cgroup %q exists in no hierarchy under %s: %w", path, root, errdefs.ErrNotFound)
	}
	return nil
}

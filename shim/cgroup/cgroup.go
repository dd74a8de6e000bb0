// Package cgroup finds a container's cgroups and reads them, without the
// cgroups library: the shim only needs to locate the directories (from
// /proc/<pid>/cgroup and the cgroup mounts), read a handful of counters
// into containerd's generated metrics types, and watch for OOM kills.
//
// Hosts may mount cgroup v1 controllers and a v2 hierarchy side by side
// (hybrid). A container counts as v1 when its memory controller is a v1
// one, since memory is what stats and OOM notifications are about; it is
// v2 otherwise.
package cgroup

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// Cgroup is a process's cgroup directories.
type Cgroup struct {
	// V2 says the unified hierarchy holds the memory controller.
	V2 bool
	// V1 maps a v1 controller name to its directory.
	V1 map[string]string
	// Unified is the v2 directory ("" if the host has no v2 mount).
	Unified string
}

// Membership is one line of /proc/<pid>/cgroup.
type Membership struct {
	Hierarchy   int
	Controllers []string // empty for the v2 hierarchy
	Path        string
}

// ParseProcCgroup parses /proc/<pid>/cgroup: lines of
// hierarchy-ID:controller-list:path.
func ParseProcCgroup(data []byte) ([]Membership, error) {
	var out []Membership
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("cgroup line %q: %w", line, errdefs.ErrInvalidArgument)
		}
		h, err := strconv.Atoi(parts[0])
		if err != nil || h < 0 {
			return nil, fmt.Errorf("cgroup line %q: hierarchy %q: %w", line, parts[0], errdefs.ErrInvalidArgument)
		}
		if !strings.HasPrefix(parts[2], "/") {
			return nil, fmt.Errorf("cgroup line %q: path is not absolute: %w", line, errdefs.ErrInvalidArgument)
		}
		m := Membership{Hierarchy: h, Path: parts[2]}
		if parts[1] != "" {
			m.Controllers = strings.Split(parts[1], ",")
		}
		out = append(out, m)
	}
	return out, nil
}

// MountPoint is a cgroup filesystem mount from /proc/self/mountinfo.
type MountPoint struct {
	Root, Dir   string
	V2          bool
	Controllers []string // v1 only: the super options, controllers among them
}

// ParseMountinfo returns the cgroup and cgroup2 mounts listed in mountinfo
// data.
func ParseMountinfo(data []byte) ([]MountPoint, error) {
	var out []MountPoint
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i, s := range f {
			if s == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(f) < sep+4 {
			continue
		}
		fstype := f[sep+1]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		mp := MountPoint{Root: unescape(f[3]), Dir: unescape(f[4]), V2: fstype == "cgroup2"}
		if !mp.V2 {
			// The super options name the controllers, among flags.
			mp.Controllers = strings.Split(f[sep+3], ",")
		}
		out = append(out, mp)
	}
	return out, sc.Err()
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal3(s[i+1:]) {
			n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal3(s string) bool {
	if len(s) < 3 {
		return false
	}
	for _, c := range s[:3] {
		if c < '0' || c > '7' {
			return false
		}
	}
	return s[0] <= '3'
}

// Resolve joins memberships with mounts into directories.
func Resolve(members []Membership, mounts []MountPoint) *Cgroup {
	cg := &Cgroup{V1: map[string]string{}}
	for _, m := range members {
		for _, mp := range mounts {
			if m.Hierarchy == 0 && len(m.Controllers) == 0 {
				if mp.V2 {
					cg.Unified = join(mp, m.Path)
				}
				continue
			}
			if mp.V2 || !subset(m.Controllers, mp.Controllers) {
				continue
			}
			for _, c := range m.Controllers {
				cg.V1[c] = join(mp, m.Path)
			}
		}
	}
	_, hasMem := cg.V1["memory"]
	cg.V2 = !hasMem && cg.Unified != ""
	return cg
}

func join(mp MountPoint, path string) string {
	rel := path
	if mp.Root != "/" {
		// The mount shows a subtree; a path outside it is not reachable
		// through this mount, and one inside is relative to its root.
		r := strings.TrimPrefix(path, mp.Root)
		if r != path && (r == "" || r[0] == '/') {
			rel = r
		}
	}
	return filepath.Join(mp.Dir, rel)
}

// subset reports whether every controller of a is among the mount
// options b (which also hold flags such as xattr or noprefix).
func subset(a, b []string) bool {
	if len(a) == 0 {
		return false
	}
	seen := map[string]bool{}
	for _, x := range b {
		seen[x] = true
	}
	for _, x := range a {
		if !seen[x] {
			return false
		}
	}
	return true
}

// Load finds the cgroups of pid.
func Load(pid int) (*Cgroup, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	members, err := ParseProcCgroup(data)
	if err != nil {
		return nil, err
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	mounts, err := ParseMountinfo(mi)
	if err != nil {
		return nil, err
	}
	return Resolve(members, mounts), nil
}

// ParseKV parses "key value" lines (memory.stat, cpu.stat, memory.events,
// pids.events). Values that do not parse as numbers are skipped; "max" is
// read as the largest uint64.
func ParseKV(data []byte) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if v, err := parseValue(f[1]); err == nil {
			out[f[0]] = v
		}
	}
	return out
}

func parseValue(s string) (uint64, error) {
	if s == "max" {
		return ^uint64(0), nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// Negative values (memory.limit_in_bytes of -1 on some kernels)
		// mean unlimited.
		if i, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && i < 0 {
			return ^uint64(0), nil
		}
	}
	return v, err
}

// readUint reads a one-number file; a missing file reads as 0.
func readUint(dir, name string) uint64 {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0
	}
	v, _ := parseValue(strings.TrimSpace(string(b)))
	return v
}

func readKV(dir, name string) map[string]uint64 {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return map[string]uint64{}
	}
	return ParseKV(b)
}

// ParseUints parses space-separated numbers (cpuacct.usage_percpu).
func ParseUints(data []byte) []uint64 {
	var out []uint64
	for _, f := range strings.Fields(string(data)) {
		if v, err := parseValue(f); err == nil {
			out = append(out, v)
		}
	}
	return out
}

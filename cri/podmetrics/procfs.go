package podmetrics

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"

	"github.com/containerd/errdefs"
)

// maxProcFile bounds what is read of one /proc or /sys file: they are
// small, and a bound keeps a broken file from costing memory.
const maxProcFile = 4 << 20

// readFile reads a /proc or /sys file whole (their size is not known in
// advance, so os.ReadFile's stat is of no use).
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxProcFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxProcFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", path, maxProcFile, errdefs.ErrInvalidArgument)
	}
	return b, nil
}

// lines scans r line by line, with room for the longest line a /proc file
// holds.
func lines(r io.Reader) *bufio.Scanner {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 4096), 1<<20)
	return s
}

// netDev is one interface's counters from /proc/<pid>/net/dev.
type netDev struct {
	name                                    string
	rxBytes, rxPackets, rxErrors, rxDropped uint64
	txBytes, txPackets, txErrors, txDropped uint64
}

func readNetDev(path string) ([]netDev, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return parseNetDev(bytes.NewReader(b))
}

// parseNetDev parses /proc/net/dev: two header lines, then per interface
// "name: 8 receive counters 8 transmit counters" (bytes packets errs drop
// fifo frame/colls compressed multicast/carrier, ...).
func parseNetDev(r io.Reader) ([]netDev, error) {
	var out []netDev
	s := lines(r)
	for s.Scan() {
		line := s.Text()
		if strings.Contains(line, "|") || strings.TrimSpace(line) == "" {
			continue // a header
		}
		// An interface name cannot hold ':' (dev_valid_name), and old
		// kernels print no space after it.
		name, counters, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.IndexFunc(name, unicode.IsSpace) >= 0 {
			return nil, fmt.Errorf("net/dev line %q: no interface name: %w", line, errdefs.ErrInvalidArgument)
		}
		f := strings.Fields(counters)
		if len(f) < 16 {
			return nil, fmt.Errorf("net/dev line %q: %d counters, want 16: %w", line, len(f), errdefs.ErrInvalidArgument)
		}
		var v [16]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("net/dev line %q: counter %q: %w", line, f[i], errdefs.ErrInvalidArgument)
			}
			v[i] = n
		}
		out = append(out, netDev{
			name:    name,
			rxBytes: v[0], rxPackets: v[1], rxErrors: v[2], rxDropped: v[3],
			txBytes: v[8], txPackets: v[9], txErrors: v[10], txDropped: v[11],
		})
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("net/dev: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// ignoredInterface leaves out what cadvisor leaves out of a container's
// network: loopback and the host ends of veth pairs and docker bridges.
func ignoredInterface(name string) bool {
	for _, p := range []string{"lo", "veth", "docker"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func readDevName(path string) (string, error) {
	b, err := readFile(path)
	if err != nil {
		return "", err
	}
	return parseUevent(bytes.NewReader(b))
}

// parseUevent returns DEVNAME of a /sys/dev/block/M:m/uevent file ("" if
// there is none).
func parseUevent(r io.Reader) (string, error) {
	s := lines(r)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), "=")
		if ok && k == "DEVNAME" {
			return strings.TrimSpace(v), nil
		}
	}
	if err := s.Err(); err != nil {
		return "", fmt.Errorf("uevent: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return "", nil
}

// cgroupMount is a cgroup hierarchy's mount from /proc/self/mountinfo.
type cgroupMount struct {
	root       string // the cgroup the mount shows at its mount point
	mountPoint string
	v2         bool
	options    []string // super options: a v1 mount's controllers and name=
}

// parseMountinfo returns the cgroup and cgroup2 mounts of a mountinfo file:
// "id parent major:minor root mountpoint options [optional...] - fstype
// source superoptions".
func parseMountinfo(r io.Reader) ([]cgroupMount, error) {
	var out []cgroupMount
	s := lines(r)
	for s.Scan() {
		line := s.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+3 {
			return nil, fmt.Errorf("mountinfo line %q: no \" - fstype source\": %w", line, errdefs.ErrInvalidArgument)
		}
		fstype := f[sep+1]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		m := cgroupMount{root: unescapeMountinfo(f[3]), mountPoint: unescapeMountinfo(f[4]), v2: fstype == "cgroup2"}
		if len(f) > sep+3 {
			m.options = strings.Split(f[sep+3], ",")
		}
		out = append(out, m)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in mountinfo paths; anything else is kept as it is.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			n := (s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0')
			b.WriteByte(n)
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// procCgroup is one line of /proc/<pid>/cgroup.
type procCgroup struct {
	hierarchy   int
	controllers []string // empty for the unified (v2) hierarchy
	path        string
}

// parseProcCgroup parses /proc/<pid>/cgroup: "hierarchy:controllers:path"
// per line, the path possibly holding ':'.
func parseProcCgroup(r io.Reader) ([]procCgroup, error) {
	var out []procCgroup
	s := lines(r)
	for s.Scan() {
		line := s.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			return nil, fmt.Errorf("cgroup line %q: want hierarchy:controllers:/path: %w", line, errdefs.ErrInvalidArgument)
		}
		h, err := strconv.Atoi(parts[0])
		if err != nil || h < 0 {
			return nil, fmt.Errorf("cgroup line %q: hierarchy %q: %w", line, parts[0], errdefs.ErrInvalidArgument)
		}
		pc := procCgroup{hierarchy: h, path: parts[2]}
		if parts[1] != "" {
			pc.controllers = strings.Split(parts[1], ",")
		}
		out = append(out, pc)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("cgroup: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// ulimit is one soft limit of /proc/<pid>/limits.
type ulimit struct {
	name string // cadvisor's form: "Max open files" is max_open_files
	soft uint64
}

// parseLimits returns the numeric soft limits of /proc/<pid>/limits, whose
// columns the kernel prints at fixed widths: name (25), soft (20), hard
// (20), units. Unlimited ones are left out: a CRI value cannot say -1.
func parseLimits(r io.Reader) ([]ulimit, error) {
	const nameWidth = 25
	var out []ulimit
	s := lines(r)
	first := true
	for s.Scan() {
		line := s.Text()
		if first {
			first = false
			if strings.HasPrefix(line, "Limit ") {
				continue
			}
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if len(line) <= nameWidth {
			return nil, fmt.Errorf("limits line %q: no values: %w", line, errdefs.ErrInvalidArgument)
		}
		name := strings.TrimSpace(line[:nameWidth])
		f := strings.Fields(line[nameWidth:])
		if name == "" || len(f) < 2 {
			return nil, fmt.Errorf("limits line %q: want name, soft and hard limit: %w", line, errdefs.ErrInvalidArgument)
		}
		if f[0] == "unlimited" {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("limits line %q: soft limit %q: %w", line, f[0], errdefs.ErrInvalidArgument)
		}
		out = append(out, ulimit{name: strings.ToLower(strings.Join(strings.Fields(name), "_")), soft: v})
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("limits: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return out, nil
}

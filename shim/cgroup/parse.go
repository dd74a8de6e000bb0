package cgroup

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// parseProcCgroup reads /proc/<pid>/cgroup ("id:controllers:path" lines)
// into controller name to path; the v2 hierarchy (id 0, no controllers)
// is under "". A v1 line for several controllers ("cpu,cpuacct") gives
// each of them; named hierarchies ("name=systemd") keep their name.
func parseProcCgroup(data []byte) (map[string]string, error) {
	paths := map[string]string{}
	for line := range strings.SplitSeq(string(data), "\n") {
		if line == "" {
			continue
		}
		id, rest, ok1 := strings.Cut(line, ":")
		ctrls, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("line %q: want id:controllers:/path: %w", line, errdefs.ErrInvalidArgument)
		}
		if id == "0" && ctrls == "" {
			paths[""] = path
			continue
		}
		for c := range strings.SplitSeq(ctrls, ",") {
			if c != "" {
				paths[c] = path
			}
		}
	}
	return paths, nil
}

// v1Mount is where a v1 hierarchy is mounted: dir shows the hierarchy's
// root path (for a process in a cgroup namespace, its own cgroup).
type v1Mount struct {
	dir, root string
}

// parseV1Mounts reads the cgroup (v1) mounts of a mountinfo file: each
// controller named in a mount's super options to that mount. The first
// mount of a hierarchy wins, as the kernel lists mounts in order.
func parseV1Mounts(data []byte) map[string]v1Mount {
	mounts := map[string]v1Mount{}
	for line := range strings.SplitSeq(string(data), "\n") {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, p := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(p) < 3 || p[0] != "cgroup" {
			continue
		}
		m := v1Mount{dir: unescapeMountinfo(f[4]), root: unescapeMountinfo(f[3])}
		for opt := range strings.SplitSeq(p[2], ",") {
			switch opt {
			case "rw", "ro", "":
				continue
			}
			if _, seen := mounts[opt]; !seen {
				mounts[opt] = m
			}
		}
	}
	return mounts
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseValue reads a single-value cgroup file: a number, or "max" (no
// limit) as the largest uint64, as containerd reports it.
func parseValue(data []byte) (uint64, error) {
	s := string(bytes.TrimSpace(data))
	if s == "max" {
		return math.MaxUint64, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// A negative value (-1, "no limit", in some v1 files) reads
		// as 0, as containerd reads it.
		if n, err2 := strconv.ParseInt(s, 10, 64); err2 == nil && n < 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("value %q: %w", s, errdefs.ErrInvalidArgument)
	}
	return v, nil
}

// parseKV reads a flat keyed file ("key value" lines: cpu.stat,
// memory.stat, memory.events, memory.oom_control) into a map. Lines that
// are not a key and a number are skipped: a newer kernel may add keys of
// other shapes.
func parseKV(data []byte) map[string]uint64 {
	kv := make(map[string]uint64, 48)
	for line := range strings.SplitSeq(string(data), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok || k == "" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		kv[k] = n
	}
	return kv
}

// ioStat is one line of v2's io.stat: a device and its keyed counters.
type ioStat struct {
	major, minor uint64
	values       map[string]uint64
}

// parseIOStat reads v2's io.stat ("MAJ:MIN rbytes=1 wbytes=2 ..." lines),
// skipping lines that do not start with a device number and keys whose
// value is not a number.
func parseIOStat(data []byte) []ioStat {
	var out []ioStat
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 1 {
			continue
		}
		major, minor, ok := parseDevice(f[0])
		if !ok {
			continue
		}
		e := ioStat{major: major, minor: minor, values: map[string]uint64{}}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			if n, err := strconv.ParseUint(v, 10, 64); err == nil {
				e.values[k] = n
			}
		}
		out = append(out, e)
	}
	return out
}

// parseDevice reads "MAJ:MIN".
func parseDevice(s string) (major, minor uint64, ok bool) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, false
	}
	major, err1 := strconv.ParseUint(a, 10, 64)
	minor, err2 := strconv.ParseUint(b, 10, 64)
	return major, minor, err1 == nil && err2 == nil
}

// psiLine is one line of a pressure file.
type psiLine struct {
	avg10, avg60, avg300 float64
	total                uint64
}

// parsePSI reads a pressure file ("some avg10=0.00 avg60=0.00
// avg300=0.00 total=0" and a "full" line) into its some and full lines;
// a line that is missing or malformed is nil.
func parsePSI(data []byte) (some, full *psiLine) {
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var p psiLine
		ok := true
		for _, kv := range f[1:] {
			k, v, found := strings.Cut(kv, "=")
			if !found {
				ok = false
				break
			}
			var err error
			switch k {
			case "avg10":
				p.avg10, err = strconv.ParseFloat(v, 64)
			case "avg60":
				p.avg60, err = strconv.ParseFloat(v, 64)
			case "avg300":
				p.avg300, err = strconv.ParseFloat(v, 64)
			case "total":
				p.total, err = strconv.ParseUint(v, 10, 64)
			}
			if err != nil {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		switch f[0] {
		case "some":
			some = &p
		case "full":
			full = &p
		}
	}
	return some, full
}

// blkioLine is one line of a v1 blkio file.
type blkioLine struct {
	major, minor uint64
	op           string // "Read", "Write", ...; "" for files without one
	value        uint64
}

// parseBlkio reads a v1 blkio file: "MAJ:MIN Op value" lines, or
// "MAJ:MIN value" (sectors, time); "Total N" lines and malformed ones are
// skipped.
func parseBlkio(data []byte) []blkioLine {
	var out []blkioLine
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 {
			continue
		}
		major, minor, ok := parseDevice(f[0])
		if !ok {
			continue
		}
		e := blkioLine{major: major, minor: minor}
		if len(f) == 3 {
			e.op = f[1]
		}
		v, err := strconv.ParseUint(f[len(f)-1], 10, 64)
		if err != nil {
			continue
		}
		e.value = v
		out = append(out, e)
	}
	return out
}

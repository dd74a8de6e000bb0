package mount

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// IDMap maps Size consecutive ids starting at ContainerID in a user
// namespace to ids starting at HostID outside it, as a line of
// /proc/<pid>/uid_map does.
type IDMap struct {
	ContainerID, HostID, Size uint32
}

// maxIDMaps is the kernel's limit on the lines of a uid_map or gid_map.
const maxIDMaps = 340

// ParseIDMaps reads the value of a "uidmap=" or "gidmap=" mount option:
// "<container>:<host>:<size>" triples separated by commas, as containerd's
// snapshotters write them. Every triple must have a size, and neither range
// may run past the last id.
func ParseIDMaps(s string) ([]IDMap, error) {
	if s == "" {
		return nil, fmt.Errorf("id mapping is empty: %w", errdefs.ErrInvalidArgument)
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxIDMaps {
		return nil, fmt.Errorf("id mapping %.40q... has %d ranges, the kernel takes %d: %w", s, len(parts), maxIDMaps, errdefs.ErrInvalidArgument)
	}
	out := make([]IDMap, 0, len(parts))
	for _, p := range parts {
		fields := strings.Split(p, ":")
		if len(fields) != 3 {
			return nil, fmt.Errorf("id mapping %q: want <container>:<host>:<size>: %w", p, errdefs.ErrInvalidArgument)
		}
		var n [3]uint32
		for i, f := range fields {
			v, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("id mapping %q: %q is not an id: %w", p, f, errdefs.ErrInvalidArgument)
			}
			n[i] = uint32(v)
		}
		m := IDMap{ContainerID: n[0], HostID: n[1], Size: n[2]}
		if m.Size == 0 {
			return nil, fmt.Errorf("id mapping %q has size 0: %w", p, errdefs.ErrInvalidArgument)
		}
		if uint64(m.ContainerID)+uint64(m.Size) > math.MaxUint32 || uint64(m.HostID)+uint64(m.Size) > math.MaxUint32 {
			return nil, fmt.Errorf("id mapping %q runs past the last id: %w", p, errdefs.ErrInvalidArgument)
		}
		out = append(out, m)
	}
	return out, nil
}

// FormatIDMaps writes maps the way ParseIDMaps reads them.
func FormatIDMaps(maps []IDMap) string {
	var b strings.Builder
	for i, m := range maps {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d:%d:%d", m.ContainerID, m.HostID, m.Size)
	}
	return b.String()
}

// HostID returns the id outside the namespace that id inside it maps to,
// and whether maps cover id at all.
func HostID(maps []IDMap, id uint32) (uint32, bool) {
	for _, m := range maps {
		if id >= m.ContainerID && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			return m.HostID + (id - m.ContainerID), true
		}
	}
	return 0, false
}

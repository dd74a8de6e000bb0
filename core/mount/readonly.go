package mount

import "strings"

// ReadOnly reports whether m mounts read-only: its last "ro" or "rw"
// option is "ro", or it is an overlay without an upperdir (which the kernel
// can only mount read-only).
func ReadOnly(m Mount) bool {
	ro := false
	upper := false
	for _, o := range m.Options {
		switch {
		case o == "ro":
			ro = true
		case o == "rw":
			ro = false
		case strings.HasPrefix(o, "upperdir="):
			upper = true
		}
	}
	if m.Type == "overlay" && !upper {
		return true
	}
	return ro
}

package walking

import (
	"slices"
	"strings"

	"github.com/hullrt/hull/core/mount"
)

// overlayUpper returns the upperdir of an overlay mount, or "" if m is not
// an overlay with one.
func overlayUpper(m mount.Mount) string {
	if m.Type != "overlay" {
		return ""
	}
	upper := ""
	for _, o := range m.Options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			upper = v
		}
	}
	return upper
}

// overlayLowers returns the lower layers of an overlay mount, topmost
// first, and whether the mount uses overlayfs features that make its upper
// directory meaningless without the lowers mounted: with userxattr it keeps
// its opaque marks in user.overlay.*, with metacopy or redirect_dir it
// leaves data and renamed directories in the lowers.
func overlayLowers(m mount.Mount) (lower []string, needsMount bool) {
	for _, o := range m.Options {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "lowerdir":
			l, _ := mount.OverlayLayers(v)
			lower = append(lower, l...)
		case "lowerdir+":
			lower = append(lower, v)
		case "userxattr":
			needsMount = true
		case "metacopy", "redirect_dir":
			if v != "off" && v != "nofollow" {
				needsMount = true
			}
		}
	}
	return lower, needsMount
}

func needsMount(m mount.Mount) bool {
	_, needs := overlayLowers(m)
	return needs
}

func isBind(m mount.Mount) bool {
	if m.Type == "bind" || m.Type == "rbind" {
		return true
	}
	return slices.ContainsFunc(m.Options, func(o string) bool { return o == "bind" || o == "rbind" })
}

// readOnly reports whether m's last "ro" or "rw" option is "ro".
func readOnly(m mount.Mount) bool {
	ro := false
	for _, o := range m.Options {
		switch o {
		case "ro":
			ro = true
		case "rw":
			ro = false
		}
	}
	return ro
}

// lowerDirs returns the directories a read-only lower mount set shows,
// topmost first, when they can be read without mounting: none for no
// mounts, a bind mount's source, an upper-less overlay's lowerdirs.
func lowerDirs(mounts []mount.Mount) ([]string, bool) {
	switch {
	case len(mounts) == 0:
		return nil, true
	case len(mounts) > 1:
		return nil, false
	case isBind(mounts[0]):
		return []string{mounts[0].Source}, true
	case mounts[0].Type == "overlay" && overlayUpper(mounts[0]) == "":
		l, needsMount := overlayLowers(mounts[0])
		return l, !needsMount && len(l) > 0
	}
	return nil, false
}

// readOnlyMounts returns mounts changed to mount read-only. An overlay with
// an upper directory becomes one with the upper directory as its topmost
// lower layer, as containerd does: overlayfs reads the whiteouts and opaque
// directories of a lower layer the same way, and needs no work directory
// (nor takes the upper directory's lock) to mount it.
func readOnlyMounts(mounts []mount.Mount) []mount.Mount {
	out := make([]mount.Mount, len(mounts))
	for i, m := range mounts {
		upper := overlayUpper(m)
		pending := upper != "" // upper still to be put in front of the lowers
		var opts []string
		for _, o := range m.Options {
			switch {
			case o == "rw" || o == "ro":
			case upper != "" && (strings.HasPrefix(o, "upperdir=") || strings.HasPrefix(o, "workdir=") || o == "volatile"):
			case pending && strings.HasPrefix(o, "lowerdir="):
				opts = append(opts, "lowerdir="+mount.EscapeOverlayPath(upper)+":"+strings.TrimPrefix(o, "lowerdir="))
				pending = false
			case pending && strings.HasPrefix(o, "lowerdir+="):
				opts = append(opts, "lowerdir+="+upper, o)
				pending = false
			default:
				opts = append(opts, o)
			}
		}
		m.Options = append(opts, "ro")
		out[i] = m
	}
	return out
}

// Package archive turns tar layers into directory trees and back.
//
// Apply writes an uncompressed layer under a root directory. The layer is
// untrusted input: whatever its entries say, Apply creates, changes and
// removes files only inside root. Every entry is resolved against root with
// openat2(RESOLVE_IN_ROOT), so ".." and symbolic links (absolute or
// relative, chained or not) resolve as if root were "/"; the entry itself is
// then created relative to its parent directory's file descriptor without
// following it. A layer can therefore plant symbolic links pointing
// anywhere (their targets are data) but never make Apply write through one.
//
// Diff and DiffOverlayUpper produce layers: Diff from two directory trees,
// DiffOverlayUpper from an overlay upper directory, whose whiteouts and
// opaque directories it turns into the OCI ".wh." entries.
//
// Everything here is specific to Linux; on other systems the functions
// return an errdefs.ErrNotImplemented error.
package archive

import (
	"errors"
	"os"
	"strconv"
	"strings"
)

const (
	// whiteoutPrefix marks an OCI whiteout: ".wh.<name>" deletes <name>.
	whiteoutPrefix = ".wh."
	// whiteoutMetaPrefix marks aufs bookkeeping entries (".wh..wh.plnk",
	// ...), which carry nothing a layer means to apply.
	whiteoutMetaPrefix = ".wh..wh."
	// whiteoutOpaque makes its directory opaque: nothing of the layers
	// below shows through.
	whiteoutOpaque = ".wh..wh..opq"
	// overlayOpaqueXattr is how overlayfs marks an opaque upper directory.
	overlayOpaqueXattr = "trusted.overlay.opaque"
	// paxXattrPrefix prefixes the PAX records that carry extended
	// attributes, as GNU tar and every image builder write them.
	paxXattrPrefix = "SCHILY.xattr."
)

// ApplyOpt configures Apply.
type ApplyOpt func(*applyConfig)

type applyConfig struct {
	overlay     bool
	noSameOwner bool
	parents     []string
	detached    bool
	// umask, when umaskSet, is the process's umask as the caller read it.
	umask    uint32
	umaskSet bool
}

// WithUmask tells Apply the process's umask (ProcessUmask), for callers
// that apply many layers in a process that never changes it: Apply then
// does not read it from /proc for each layer, which costs more than
// applying a layer of one small file.
func WithUmask(umask uint32) ApplyOpt {
	return func(c *applyConfig) { c.umask, c.umaskSet = umask, true }
}

// WithOverlayWhiteouts makes Apply write whiteouts the way overlayfs stores
// them, for a root that is an overlay upper directory: ".wh.<name>" becomes
// a 0/0 character device <name> and ".wh..wh..opq" sets
// trusted.overlay.opaque=y on its directory. Without it, root is taken to be
// the complete tree (a mounted snapshot or a plain directory): whiteouts
// delete what they name, and an opaque directory loses the entries it had
// before this layer.
func WithOverlayWhiteouts() ApplyOpt { return func(c *applyConfig) { c.overlay = true } }

// WithNoSameOwner makes Apply leave files owned by the calling user rather
// than give them the layer's uid and gid, for callers that are not root.
func WithNoSameOwner() ApplyOpt { return func(c *applyConfig) { c.noSameOwner = true } }

// WithParents names the directories of the layers below root, topmost
// first (an overlay's lowerdirs, in the order the lowerdir option lists
// them). When an entry needs a directory the layer does not itself contain,
// Apply creates it with the mode, owner, extended attributes and times of
// the first parent that has it, rather than 0755 root: in an upper
// directory, the created directory hides the lower one's metadata, and
// /tmp must stay 1777 when a layer only adds /tmp/x.
func WithParents(roots ...string) ApplyOpt {
	return func(c *applyConfig) { c.parents = append(c.parents, roots...) }
}

// WithDetachedUpper makes Apply write root as an overlay upper directory
// (WithOverlayWhiteouts) whose lower layers exist but cannot be read yet:
// they are being applied at the same time, and root will be stacked on
// them afterwards. What would need them is handled so:
//
//   - a directory the layer writes into without containing it, which
//     WithParents would give the lower directory's mode, owner, extended
//     attributes and times, is created 0755 and its name recorded on root
//     (the trusted.hull.implicit-parents attribute), for
//     FixImplicitParents to give it the lowers' metadata once they exist;
//   - a hard link to a file the layer does not contain, a layer that names
//     such a directory after writing into it, and more recorded names
//     than fit in one attribute fail the apply with an error wrapping
//     ErrNeedsLower, and the caller applies the layer again over its
//     lowers.
//
// Every other entry is written exactly as it would be into the upper
// directory of an overlay over those lowers, which sees only the upper
// directory too.
func WithDetachedUpper() ApplyOpt {
	return func(c *applyConfig) { c.overlay, c.detached = true, true }
}

// ErrNeedsLower is what a WithDetachedUpper apply fails with when the
// layer needs the content of the layers below it.
var ErrNeedsLower = errors.New("the layer needs the layers below it")

// implicitParentsXattr, on the root of a WithDetachedUpper apply, lists the
// directories it created without metadata of their own, NUL-separated. It
// is hull's, never a layer's (skipXattr).
const implicitParentsXattr = "trusted.hull.implicit-parents"

// maxImplicitParents bounds the attribute, so that it fits in one block
// of any filesystem with extended attributes.
const maxImplicitParents = 3072

// skipXattr reports whether an extended attribute is left out of layers in
// both directions. overlayfs keeps its own state in trusted.overlay.*
// (user.overlay.* with userxattr): a layer setting those on an upper
// directory could redirect or hide lower content behind the whiteout
// rules' back, and a diff must not export them. security.selinux labels
// belong to the host that wrote the file, not to the image. trusted.hull.*
// is hull's own bookkeeping (implicitParentsXattr), which a layer must not
// forge.
func skipXattr(name string) bool {
	return hasPrefix(name, "trusted.overlay.") || hasPrefix(name, "user.overlay.") || name == "security.selinux" ||
		hasPrefix(name, "trusted.hull.")
}

func hasPrefix(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }

// ProcessUmask reads the umask without changing it (umask(2) can only be
// read by setting it, which would race with other goroutines creating
// files). Where it cannot be read (no /proc, or Linux before 4.7), every
// bit counts as masked, so that files are always chmodded.
func ProcessUmask() uint32 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0o777
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return uint32(m)
			}
		}
	}
	return 0o777
}

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

// skipXattr reports whether an extended attribute is left out of layers in
// both directions. overlayfs keeps its own state in trusted.overlay.*
// (user.overlay.* with userxattr): a layer setting those on an upper
// directory could redirect or hide lower content behind the whiteout
// rules' back, and a diff must not export them. security.selinux labels
// belong to the host that wrote the file, not to the image.
func skipXattr(name string) bool {
	return hasPrefix(name, "trusted.overlay.") || hasPrefix(name, "user.overlay.") || name == "security.selinux"
}

func hasPrefix(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }

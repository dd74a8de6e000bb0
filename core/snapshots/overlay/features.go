package overlay

import "strconv"

// Features is what New found the kernel's overlayfs supports on the
// snapshotter's root.
type Features struct {
	// IndexOff is whether the kernel accepts "index=off", which the
	// snapshotter then adds to its overlays: with the index on, overlayfs
	// ties an upper directory to the lower layers of its first mount and
	// may refuse it later over layers that are the same content in new
	// directories.
	IndexOff bool
	// UserXattr is whether overlayfs works here only with "userxattr"
	// (keeping its metadata in user.* rather than trusted.* extended
	// attributes, as it must in a user namespace), which the snapshotter
	// then adds to its overlays.
	UserXattr bool
	// UserXattrSupported is whether the kernel accepts "userxattr" at all
	// (Linux 5.11 and later).
	UserXattrSupported bool
	// LowerdirAppend is whether the kernel takes overlay layers one by one
	// through the new mount API ("lowerdir+", Linux 6.8 and later). With
	// it, core/mount mounts up to the kernel's 500 layers; without it, as
	// many as fit in a page of options relative to the snapshots directory
	// (some 400 "<id>/fs" paths).
	LowerdirAppend bool
	// IDMappedLayers is whether overlayfs takes idmapped mounts as its
	// lower layers (Linux 5.19 and later), which is how snapshots of pods
	// in user namespaces show their files with the namespace's owners
	// without copying them.
	IDMappedLayers bool
}

// Exports returns the features as plugin exports, so that `plugins ls`
// shows what the snapshotter found.
func (f Features) Exports() map[string]string {
	b := func(v bool) string { return strconv.FormatBool(v) }
	return map[string]string{
		"index_off":           b(f.IndexOff),
		"userxattr":           b(f.UserXattr),
		"userxattr_supported": b(f.UserXattrSupported),
		"lowerdir_append":     b(f.LowerdirAppend),
		"idmapped_layers":     b(f.IDMappedLayers),
	}
}

// Package mount describes and performs filesystem mounts: the one place hull
// turns a snapshotter's mount list into mounted directories and back. The
// diff applier, the tasks service and `hullctl snapshots mount` all use it.
package mount

// Mount is one mount to perform, as snapshotters return them and as the
// containerd API carries them (containerd.types.Mount).
type Mount struct {
	// Type is the filesystem type: "overlay", "bind", "tmpfs", ...
	Type string
	// Source is the device or directory mounted.
	Source string
	// Target is a path below the mount point to mount at ("" for the
	// mount point itself).
	Target string
	// Options are mount options in fstab form ("ro", "rbind",
	// "lowerdir=...", ...).
	Options []string
}

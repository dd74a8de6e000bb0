package shims

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/mount"
)

// bundle is a task's directory: config.json, the rootfs mount point, the
// shim's log FIFO and address, and hull's record of which shim runs it. Its
// work directory (under root, kept across reboots of the state tmpfs) is
// linked as "work" like containerd's, for shims that keep data there.
type bundle struct {
	Namespace, ID string
	Path          string // under state: <state>/<ns>/<id>
	Work          string // under root: <root>/<ns>/<id>
}

// shimRecord is what the manager needs to find a task's shim again after a
// restart. It is written before the shim starts (State "starting", no
// address), again once it listens, and once the shim created the task
// (State "created"): a restart finding a task still "starting" knows its
// client never heard it was created, and removes it with its shim.
type shimRecord struct {
	Runtime string `json:"runtime"`
	Binary  string `json:"binary"`
	Address string `json:"address,omitempty"`
	Version int    `json:"version,omitempty"`
	// State is recordStarting or recordCreated; records of hull releases
	// before it was written have none and were created.
	State string `json:"state,omitempty"`
}

// The states of a shimRecord.
const (
	recordStarting = "starting"
	recordCreated  = "created"
)

const recordFile = "hull-shim.json"

func bundlePaths(state, root, ns, id string) *bundle {
	return &bundle{
		Namespace: ns, ID: id,
		Path: filepath.Join(state, ns, id),
		Work: filepath.Join(root, ns, id),
	}
}

// create makes the bundle with spec as its config.json. The directories are
// private to root (CVE-2021-41103 class): bundles hold the container's
// rootfs mount and config.
func (b *bundle) create(spec []byte) (retErr error) {
	if err := mkdirIn(b.Path, true); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("bundle %s exists: a task %q is already there", b.Path, b.ID)
		}
		return err
	}
	defer func() {
		if retErr != nil {
			b.remove()
		}
	}()
	if err := mkdirIn(b.Work, false); err != nil {
		return err
	}
	if err := os.Symlink(b.Work, filepath.Join(b.Path, "work")); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(b.Path, "rootfs"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.Path, "config.json"), spec, 0o600); err != nil {
		return err
	}
	if err := unix.Mkfifo(filepath.Join(b.Path, "log"), 0o600); err != nil {
		return err
	}
	return b.openToUserns(spec)
}

// openToUserns lets the root of a container's user namespace reach its
// root filesystem: runc mounts it from inside that namespace, as a host
// uid that the private bundle directory would shut out. The bundle's group
// becomes the one the container's root group maps to, with search
// permission only, and the directories above it are traversable (but not
// listable) by anyone, as containerd has them.
func (b *bundle) openToUserns(spec []byte) error {
	var sp struct {
		Linux *struct {
			GIDMappings []struct {
				ContainerID uint32 `json:"containerID"`
				HostID      uint32 `json:"hostID"`
				Size        uint32 `json:"size"`
			} `json:"gidMappings"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(spec, &sp); err != nil || sp.Linux == nil {
		return nil
	}
	for _, m := range sp.Linux.GIDMappings {
		if m.ContainerID != 0 || m.Size == 0 {
			continue
		}
		for _, d := range []string{filepath.Dir(filepath.Dir(b.Path)), filepath.Dir(b.Path)} {
			if err := os.Chmod(d, 0o711); err != nil {
				return err
			}
		}
		if err := os.Chown(b.Path, -1, int(m.HostID)); err != nil {
			return err
		}
		return os.Chmod(b.Path, 0o710)
	}
	return nil
}

func (b *bundle) writeRecord(r shimRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	// Written and renamed, so that a crash leaves the old record or the
	// new one, never half of either. No fsync: a crash of hulld loses
	// nothing written, and a power loss takes the shims and containers
	// the record describes with it.
	tmp := filepath.Join(b.Path, recordFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(b.Path, recordFile))
}

func (b *bundle) readRecord() (shimRecord, error) {
	var r shimRecord
	data, err := os.ReadFile(filepath.Join(b.Path, recordFile))
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%s: %w", filepath.Join(b.Path, recordFile), err)
	}
	return r, nil
}

// mkdirIn makes dir, and its parent (a namespace's directory) if missing.
// With exclusive, an existing dir is ErrExist.
func mkdirIn(dir string, exclusive bool) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && (exclusive || !errors.Is(err, os.ErrExist)) {
		return err
	}
	return nil
}

// remove unmounts whatever the shim left mounted in the bundle and deletes
// the bundle and its work directory. A mount that will not go keeps the
// bundle, since deleting through it would delete the container's files.
func (b *bundle) remove() error {
	mounted, err := mount.MountedUnder(b.Path)
	if err == nil {
		for _, m := range mounted { // most recent first
			if err := mount.UnmountAll(m); err != nil {
				return fmt.Errorf("unmount %s: %w", m, err)
			}
		}
	}
	if err := os.RemoveAll(b.Work); err != nil {
		return err
	}
	if err := os.RemoveAll(b.Path); err != nil {
		return err
	}
	// The namespace's directories stay: another task's bundle may be
	// being made in them right now. load removes the empty ones at start.
	return nil
}

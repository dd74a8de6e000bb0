// Package mounts registers containerd 2.2's mount manager
// (io.containerd.mount-manager.v1.bolt, core/mount/manager over the
// metadata store's activation records) and the Mounts gRPC API over it
// (containerd.services.mounts.v1).
package mounts

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/hullrt/hull/core/mount/manager"
	"github.com/hullrt/hull/plugin"
)

// MountManagerPlugin is the plugin type of mount managers, containerd's.
const MountManagerPlugin plugin.Type = "io.containerd.mount-manager.v1"

// ManagerID is the ID of hull's mount manager, containerd's name for its own.
const ManagerID = "bolt"

// recordStore is what the manager needs of the metadata plugin.
type recordStore interface {
	Mounts() manager.Store
	SetMountRelease(func(context.Context, []manager.Record))
}

// Register adds the mount manager and its gRPC adapter to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: MountManagerPlugin, ID: ManagerID, Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := plugin.Single[recordStore](ic, plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			// Mount points live in the state directory: they do not
			// outlive a reboot, and Recover drops the records of
			// those that did not.
			m, err := manager.New(db.Mounts(), filepath.Join(ic.State, "t"), manager.Options{
				// As containerd: mkdir may create below the
				// daemon's root and state.
				AllowedRoots: []string{filepath.Dir(ic.Root), filepath.Dir(ic.State)},
				Logger:       ic.Log,
			})
			if err != nil {
				return nil, err
			}
			ctx := ic.Context
			if ctx == nil {
				ctx = context.Background()
			}
			if err := m.Recover(ctx); err != nil {
				return nil, fmt.Errorf("mount manager: recover activations: %w", err)
			}
			db.SetMountRelease(m.Release)
			return m, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "mounts", Requires: []plugin.Type{MountManagerPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			m, err := plugin.Instance[manager.Activator](ic, MountManagerPlugin, ManagerID)
			if err != nil {
				return nil, err
			}
			return &service{manager: m}, nil
		},
	})
}

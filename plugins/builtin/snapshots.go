package builtin

import (
	"context"
	"fmt"
	"runtime"
	"strconv"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/core/diff/walking"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/snapshots/native"
	"github.com/hullrt/hull/core/snapshots/overlay"
	"github.com/hullrt/hull/plugin"
)

// OverlayConfig is the configuration of the overlayfs snapshotter.
type OverlayConfig struct {
	RootPath      string   `toml:"root_path" doc:"Directory of the snapshots; empty means <root>/io.containerd.snapshotter.v1.overlayfs."`
	UpperdirLabel bool     `toml:"upperdir_label" doc:"Label each snapshot with the path of its upper directory (containerd.io/snapshot/overlay.upperdir)."`
	MountOptions  []string `toml:"mount_options" doc:"Extra options for every overlay mount, such as \"index=off\"."`
	// ParallelUnpack is exported (snapshots.ExportParallelUnpack) for the
	// clients that unpack, which is where the limit applies.
	ParallelUnpack int `toml:"parallel_unpack" doc:"How many layers of an image an unpack may apply at once, each apart from the layers below it and committed onto them in order; 1 applies them one after another; 0 means GOMAXPROCS. Not with userxattr, metacopy or redirect_dir overlays, which always unpack one layer after another."`
}

// NativeConfig is the configuration of the native snapshotter.
type NativeConfig struct {
	RootPath string `toml:"root_path" doc:"Directory of the snapshots; empty means <root>/io.containerd.snapshotter.v1.native."`
}

// differ joins an applier and a comparer into the diff plugin's instance.
type differ struct {
	diff.Applier
	diff.Comparer
}

// leaseHolder is the metadata store's hold on a lease in use
// (metadata.DB.HoldLease).
type leaseHolder interface {
	HoldLease(ctx context.Context) func()
}

// leaseHoldingApplier keeps the lease of an Apply from idle expiry while
// the layer is applied: applying a large layer calls nothing else that
// carries the lease, possibly for longer than the lease's idle period.
type leaseHoldingApplier struct {
	diff.Applier
	h leaseHolder
}

func (a leaseHoldingApplier) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, opts ...diff.ApplyOpt) (ocispec.Descriptor, error) {
	defer a.h.HoldLease(ctx)()
	return a.Applier.Apply(ctx, desc, mounts, opts...)
}

func registerSnapshotters(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.SnapshotPlugin, ID: "overlayfs",
		Config: &OverlayConfig{},
		Init: func(ic *plugin.InitContext) (any, error) {
			cfg := ic.Config.(*OverlayConfig)
			root := cfg.RootPath
			if root == "" {
				root = ic.Root
			}
			var opts []overlay.Opt
			if cfg.UpperdirLabel {
				opts = append(opts, overlay.WithUpperdirLabel())
			}
			if len(cfg.MountOptions) > 0 {
				opts = append(opts, overlay.WithMountOptions(cfg.MountOptions))
			}
			s, err := overlay.New(root, opts...)
			if err != nil {
				// No overlay here: say why and let native serve.
				return nil, fmt.Errorf("overlayfs is not usable at %s: %v: %w", root, err, plugin.ErrSkip)
			}
			ic.Meta.Exports["root"] = root
			for k, v := range s.Features().Exports() {
				ic.Meta.Exports[k] = v
			}
			// Snapshots made with id mapping labels are owned by the
			// namespace, idmapped or chowned (containerd's capability
			// name, which its clients check).
			ic.Meta.Capabilities = append(ic.Meta.Capabilities, "remap-ids")
			if cfg.ParallelUnpack < 0 {
				s.Close()
				return nil, fmt.Errorf("overlayfs parallel_unpack = %d: use 1 or more, or 0 for GOMAXPROCS: %w", cfg.ParallelUnpack, errdefs.ErrInvalidArgument)
			}
			if n := cfg.ParallelUnpack; s.CanRebase() && n != 1 {
				if n <= 0 {
					n = runtime.GOMAXPROCS(0)
				}
				ic.Meta.Exports[snapshots.ExportParallelUnpack] = strconv.Itoa(n)
			}
			return s, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.SnapshotPlugin, ID: "native",
		Config: &NativeConfig{},
		Init: func(ic *plugin.InitContext) (any, error) {
			cfg := ic.Config.(*NativeConfig)
			root := cfg.RootPath
			if root == "" {
				root = ic.Root
			}
			ic.Meta.Exports["root"] = root
			return native.New(root)
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.DiffPlugin, ID: "walking", Requires: []plugin.Type{plugin.MetadataPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			db, err := plugin.Single[interface{ Content() content.Store }](ic, plugin.MetadataPlugin)
			if err != nil {
				return nil, err
			}
			cs := db.Content()
			var a diff.Applier = walking.NewApplier(cs)
			if h, ok := db.(leaseHolder); ok {
				a = leaseHoldingApplier{a, h}
			}
			return differ{a, walking.NewComparer(cs)}, nil
		},
	})
}

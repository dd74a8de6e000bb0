// Package transfer registers containerd's Transfer service: the transfer
// plugin (io.containerd.transfer.v1.local, a core/transfer Service over
// hulld's service plugins and stream manager) and its gRPC adapter
// (containerd.services.transfer.v1.Transfer).
package transfer

import (
	"context"
	"path/filepath"

	transferapi "github.com/containerd/containerd/api/services/transfer/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/config"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/remotes/registry"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/streaming"
	coretransfer "github.com/hullrt/hull/core/transfer"
	"github.com/hullrt/hull/core/unpack"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// Transferrer runs one Transfer call: what the gRPC adapter needs.
type Transferrer interface {
	Transfer(ctx context.Context, req coretransfer.Request) error
}

// Config is the transfer plugin's section, with containerd 2.x's keys
// (io.containerd.transfer.v1.local).
type Config struct {
	MaxConcurrentDownloads      int    `toml:"max_concurrent_downloads" doc:"Blobs above 1 MiB a pull fetches at once; smaller ones are fetched up to 8 at a time beside them (a round trip each rather than bandwidth)."`
	ConcurrentLayerFetchBuffer  int64  `toml:"concurrent_layer_fetch_buffer" doc:"Above 512: a layer at least this large is fetched as ranges of this many bytes, max_concurrent_downloads at a time, where the registry serves ranges (worth it for distant registries; each range is a request); 0: one request per blob."`
	MaxConcurrentUploadedLayers int    `toml:"max_concurrent_uploaded_layers" doc:"Blobs a push uploads at once."`
	ConfigPath                  string `toml:"config_path" doc:"hosts.toml directory of pulls and pushes whose client names none; empty: hull's default, /etc/hull/certs.d."`
	MaxConcurrentUnpacks        int    `toml:"max_concurrent_unpacks" doc:"Most layers an unpack applies at once; 0: as many as the snapshotter offers (overlayfs' parallel_unpack). containerd's default file says 1, which applies layers one after another."`
	CheckPlatformSupported      bool   `toml:"check_platform_supported" doc:"Read from containerd's files and not acted on: hull unpacks for the platforms the client names, with the snapshotter it names or the default one."`
}

// Validate checks the counts and the chunk size.
func (c *Config) Validate() error {
	for _, v := range []struct {
		key string
		n   int
	}{{"max_concurrent_downloads", c.MaxConcurrentDownloads}, {"max_concurrent_uploaded_layers", c.MaxConcurrentUploadedLayers}, {"max_concurrent_unpacks", c.MaxConcurrentUnpacks}} {
		if v.n < 0 {
			return config.InvalidValue(v.n, "a count: 0 or more", v.key)
		}
	}
	if b := c.ConcurrentLayerFetchBuffer; b < 0 || (b > 0 && b <= 512) {
		return config.InvalidValue(b, "0 (one request per blob) or a chunk size above 512 bytes", "concurrent_layer_fetch_buffer")
	}
	if c.ConfigPath != "" && !filepath.IsAbs(c.ConfigPath) {
		return config.InvalidValue(c.ConfigPath, "an absolute path", "config_path")
	}
	return nil
}

// Register adds the transfer plugin and the Transfer gRPC service to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.TransferPlugin, ID: "local",
		Requires: []plugin.Type{plugin.ServicePlugin, plugin.StreamingPlugin, plugin.SnapshotPlugin},
		Config:   &Config{MaxConcurrentDownloads: 3, MaxConcurrentUploadedLayers: 3},
		Init: func(ic *plugin.InitContext) (any, error) {
			cfg := ic.Config.(*Config)
			if err := cfg.Validate(); err != nil {
				return nil, err
			}
			cs, err := plugin.Instance[content.Store](ic, plugin.ServicePlugin, services.ContentService)
			if err != nil {
				return nil, err
			}
			is, err := plugin.Instance[images.Store](ic, plugin.ServicePlugin, services.ImagesService)
			if err != nil {
				return nil, err
			}
			ls, err := plugin.Instance[leases.Manager](ic, plugin.ServicePlugin, services.LeasesService)
			if err != nil {
				return nil, err
			}
			sn, err := plugin.Instance[snapshotSource](ic, plugin.ServicePlugin, services.SnapshotsService)
			if err != nil {
				return nil, err
			}
			ap, err := plugin.Instance[diff.Applier](ic, plugin.ServicePlugin, services.DiffService)
			if err != nil {
				return nil, err
			}
			streams, err := plugin.Instance[streaming.Getter](ic, plugin.StreamingPlugin, "manager")
			if err != nil {
				return nil, err
			}
			set := ic.Plugins()
			return &coretransfer.Service{
				Content: cs, Images: is, Leases: ls, Streams: streams,
				Snapshotter: sn.Snapshotter, DefaultSnapshotter: sn.Default(), Applier: ap,
				ParallelUnpack: func(name string) int {
					for _, p := range set.All() {
						if p.Registration.Type == plugin.SnapshotPlugin && p.Registration.ID == name && p.Err == nil {
							return unpack.ParallelFromExports(p.Meta.Exports)
						}
					}
					return 1
				},
				// Pulls without --hosts-dir read config_path, else
				// hull's default hosts directory, as the client
				// library's do.
				HostsDir:               cfg.ConfigPath,
				MaxConcurrentDownloads: cfg.MaxConcurrentDownloads,
				LayerFetchChunk:        cfg.ConcurrentLayerFetchBuffer,
				MaxConcurrentUploads:   cfg.MaxConcurrentUploadedLayers,
				MaxUnpackLayers:        cfg.MaxConcurrentUnpacks,
				Transports:             registry.NewTransports(),
			}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "transfer", Requires: []plugin.Type{plugin.TransferPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			t, err := plugin.Instance[Transferrer](ic, plugin.TransferPlugin, "local")
			if err != nil {
				return nil, err
			}
			return &Server{t: t}, nil
		},
	})
}

// snapshotSource is the snapshots service plugin: namespaced snapshotters
// by name, and which one "" means.
type snapshotSource interface {
	Snapshotter(name string) (snapshots.Snapshotter, error)
	Default() string
}

// Server is the Transfer gRPC service.
type Server struct {
	transferapi.UnimplementedTransferServer
	t Transferrer
}

// RegisterGRPC registers the service on srv.
func (s *Server) RegisterGRPC(srv *grpc.Server) { transferapi.RegisterTransferServer(srv, s) }

// Transfer runs the request; an unsupported pair of objects is
// Unimplemented, naming both type URLs.
func (s *Server) Transfer(ctx context.Context, req *transferapi.TransferRequest) (*emptypb.Empty, error) {
	err := s.t.Transfer(ctx, coretransfer.Request{
		Source: req.GetSource(), Destination: req.GetDestination(), ProgressStream: req.GetOptions().GetProgressStream(),
	})
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

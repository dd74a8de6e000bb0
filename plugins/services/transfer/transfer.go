// Package transfer registers containerd's Transfer service: the transfer
// plugin (io.containerd.transfer.v1.local, a core/transfer Service over
// hulld's service plugins and stream manager) and its gRPC adapter
// (containerd.services.transfer.v1.Transfer).
package transfer

import (
	"context"

	transferapi "github.com/containerd/containerd/api/services/transfer/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/leases"
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

// Register adds the transfer plugin and the Transfer gRPC service to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.TransferPlugin, ID: "local",
		Requires: []plugin.Type{plugin.ServicePlugin, plugin.StreamingPlugin, plugin.SnapshotPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
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
				// Pulls without --hosts-dir read hull's default hosts
				// directory, as the client library's do.
				MaxConcurrentDownloads: 3,
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

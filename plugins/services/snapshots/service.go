package snapshots

import (
	"context"
	"maps"

	api "github.com/containerd/containerd/api/services/snapshots/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/protoconv"
)

// Source finds snapshotters by name; "" names the default one. The
// snapshots service plugin is hulld's Source, over its namespaced
// snapshotters.
type Source interface {
	Snapshotter(name string) (snapshots.Snapshotter, error)
}

// SnapshotsServer serves containerd's snapshots API over a Source. hulld
// serves it over its service layer; a proxy snapshotter process serves it
// over one backend.
type SnapshotsServer struct {
	api.UnimplementedSnapshotsServer
	source Source
}

// NewSnapshotsServer returns a snapshots service over source.
func NewSnapshotsServer(source Source) *SnapshotsServer {
	return &SnapshotsServer{source: source}
}

// RegisterGRPC registers the service on g.
func (s *SnapshotsServer) RegisterGRPC(g *grpc.Server) { api.RegisterSnapshotsServer(g, s) }

func (s *SnapshotsServer) get(name string) (snapshots.Snapshotter, error) {
	return s.source.Snapshotter(name)
}

func snapInfoToProto(i snapshots.Info) *api.Info {
	return &api.Info{
		Name: i.Name, Parent: i.Parent, Kind: api.Kind(i.Kind), Labels: i.Labels,
		CreatedAt: protoconv.ToTime(i.Created), UpdatedAt: protoconv.ToTime(i.Updated),
	}
}

func (s *SnapshotsServer) Prepare(ctx context.Context, req *api.PrepareSnapshotRequest) (*api.PrepareSnapshotResponse, error) {
	sn, err := s.get(req.Snapshotter)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	ms, err := sn.Prepare(ctx, req.Key, req.Parent, snapshots.WithLabels(req.Labels))
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.PrepareSnapshotResponse{Mounts: protoconv.MountsToProto(ms)}, nil
}

func (s *SnapshotsServer) View(ctx context.Context, req *api.ViewSnapshotRequest) (*api.ViewSnapshotResponse, error) {
	sn, err := s.get(req.Snapshotter)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	ms, err := sn.View(ctx, req.Key, req.Parent, snapshots.WithLabels(req.Labels))
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.ViewSnapshotResponse{Mounts: protoconv.MountsToProto(ms)}, nil
}

func (s *SnapshotsServer) Mounts(ctx context.Context, req *api.MountsRequest) (*api.MountsResponse, error) {
	sn, err := s.get(req.Snapshotter)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	ms, err := sn.Mounts(ctx, req.Key)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.MountsResponse{Mounts: protoconv.MountsToProto(ms)}, nil
}

func (s *SnapshotsServer) Commit(ctx context.Context, req *api.CommitSnapshotRequest) (*emptypb.Empty, error) {
	sn, err := s.get(req.Snapshotter)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	opts := []snapshots.Opt{snapshots.WithLabels(req.Labels)}
	if parent, ok := req.Labels[snapshots.LabelCommitParent]; ok {
		// The API has no parent field for a commit: hull's clients send
		// snapshots.WithParent as this label, which is not kept.
		lbls := maps.Clone(req.Labels)
		delete(lbls, snapshots.LabelCommitParent)
		opts = []snapshots.Opt{snapshots.WithLabels(lbls), snapshots.WithParent(parent)}
	}
	if err := sn.Commit(ctx, req.Name, req.Key, opts...); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *SnapshotsServer) Remove(ctx context.Context, req *api.RemoveSnapshotRequest) (*emptypb.Empty, error) {
	sn, err := s.get(req.Snapshotter)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if err := sn.Remove(ctx, req.Key); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *SnapshotsServer) Stat(ctx context.Context, req *api.StatSnapshotRequest) (*api.StatSnapshotResponse, error) {
	sn, err := s.get(req.Snapshotter)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	info, err := sn.Stat(ctx, req.Key)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.StatSnapshotResponse{Info: snapInfoToProto(info)}, nil
}

func (s *SnapshotsServer) Update(ctx context.Context, req *api.UpdateSnapshotRequest) (*api.UpdateSnapshotResponse, error) {
	sn, err := s.get(req.Snapshotter)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	in := req.GetInfo()
	info, err := sn.Update(ctx, snapshots.Info{Name: in.GetName(), Labels: in.GetLabels()}, req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.UpdateSnapshotResponse{Info: snapInfoToProto(info)}, nil
}

func (s *SnapshotsServer) List(req *api.ListSnapshotsRequest, srv api.Snapshots_ListServer) error {
	sn, err := s.get(req.Snapshotter)
	if err != nil {
		return errgrpc.ToGRPC(err)
	}
	const batch = 100
	var buf []*api.Info
	err = sn.Walk(srv.Context(), func(ctx context.Context, info snapshots.Info) error {
		buf = append(buf, snapInfoToProto(info))
		if len(buf) == batch {
			if err := srv.Send(&api.ListSnapshotsResponse{Info: buf}); err != nil {
				return err
			}
			buf = nil
		}
		return nil
	}, req.Filters...)
	if err != nil {
		return errgrpc.ToGRPC(err)
	}
	if len(buf) > 0 {
		return srv.Send(&api.ListSnapshotsResponse{Info: buf})
	}
	return nil
}

func (s *SnapshotsServer) Usage(ctx context.Context, req *api.UsageRequest) (*api.UsageResponse, error) {
	sn, err := s.get(req.Snapshotter)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	u, err := sn.Usage(ctx, req.Key)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.UsageResponse{Size: u.Size, Inodes: u.Inodes}, nil
}

func (s *SnapshotsServer) Cleanup(ctx context.Context, req *api.CleanupRequest) (*emptypb.Empty, error) {
	sn, err := s.get(req.Snapshotter)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if c, ok := sn.(snapshots.Cleaner); ok {
		if err := c.Cleanup(ctx); err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
	}
	return &emptypb.Empty{}, nil
}

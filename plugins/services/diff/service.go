package diff

import (
	"context"

	api "github.com/containerd/containerd/api/services/diff/v1"
	"google.golang.org/grpc"

	corediff "github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/protoconv"
)

// Differ is what the diff service provides: both directions.
type Differ interface {
	corediff.Applier
	corediff.Comparer
}

type diffService struct {
	api.UnimplementedDiffServer
	differ Differ
}

func (s *diffService) RegisterGRPC(g *grpc.Server) { api.RegisterDiffServer(g, s) }

func (s *diffService) Apply(ctx context.Context, req *api.ApplyRequest) (*api.ApplyResponse, error) {
	var opts []corediff.ApplyOpt
	if _, ok := req.Payloads[corediff.PayloadDetached]; ok {
		opts = append(opts, corediff.WithDetached())
	}
	applied, err := s.differ.Apply(ctx, protoconv.DescFromProto(req.Diff), protoconv.MountsFromProto(req.Mounts), opts...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.ApplyResponse{Applied: protoconv.DescToProto(applied)}, nil
}

func (s *diffService) Diff(ctx context.Context, req *api.DiffRequest) (*api.DiffResponse, error) {
	var opts []corediff.CompareOpt
	if req.MediaType != "" {
		opts = append(opts, corediff.WithMediaType(req.MediaType))
	}
	if req.Ref != "" {
		opts = append(opts, corediff.WithReference(req.Ref))
	}
	if req.Labels != nil {
		opts = append(opts, corediff.WithLabels(req.Labels))
	}
	d, err := s.differ.Compare(ctx, protoconv.MountsFromProto(req.Left), protoconv.MountsFromProto(req.Right), opts...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.DiffResponse{Diff: protoconv.DescToProto(d)}, nil
}

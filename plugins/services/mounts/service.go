package mounts

import (
	"context"

	api "github.com/containerd/containerd/api/services/mounts/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/mount/manager"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/protoconv"
)

// service is the Mounts gRPC API over a mount manager.
type service struct {
	api.UnimplementedMountsServer
	manager manager.Activator
}

func (s *service) RegisterGRPC(g *grpc.Server) { api.RegisterMountsServer(g, s) }

func infoToProto(info manager.ActivationInfo) *types.ActivationInfo {
	out := &types.ActivationInfo{Name: info.Name, System: protoconv.MountsToProto(info.System), Labels: info.Labels}
	for _, a := range info.Active {
		out.Active = append(out.Active, &types.ActiveMount{
			Mount:      protoconv.MountsToProto([]mount.Mount{a.Mount})[0],
			MountedAt:  protoconv.ToTime(a.MountedAt),
			MountPoint: a.MountPoint,
			Data:       a.Data,
		})
	}
	return out
}

func (s *service) Activate(ctx context.Context, req *api.ActivateRequest) (*api.ActivateResponse, error) {
	opts := []manager.ActivateOpt{manager.WithLabels(req.Labels)}
	if req.Temporary {
		opts = append(opts, manager.WithTemporary)
	}
	info, err := s.manager.Activate(ctx, req.Name, protoconv.MountsFromProto(req.Mounts), opts...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.ActivateResponse{Info: infoToProto(info)}, nil
}

func (s *service) Deactivate(ctx context.Context, req *api.DeactivateRequest) (*emptypb.Empty, error) {
	if err := s.manager.Deactivate(ctx, req.Name); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Info(ctx context.Context, req *api.InfoRequest) (*api.InfoResponse, error) {
	info, err := s.manager.Info(ctx, req.Name)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.InfoResponse{Info: infoToProto(info)}, nil
}

func (s *service) Update(ctx context.Context, req *api.UpdateRequest) (*api.UpdateResponse, error) {
	in := manager.ActivationInfo{Name: req.GetInfo().GetName(), Labels: req.GetInfo().GetLabels()}
	info, err := s.manager.Update(ctx, in, req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.UpdateResponse{Info: infoToProto(info)}, nil
}

func (s *service) List(req *api.ListRequest, stream api.Mounts_ListServer) error {
	infos, err := s.manager.List(stream.Context(), req.Filters...)
	if err != nil {
		return errgrpc.ToGRPC(err)
	}
	for _, info := range infos {
		if err := stream.Send(&api.ListMessage{Info: infoToProto(info)}); err != nil {
			return err
		}
	}
	return nil
}

package leases

import (
	"context"

	api "github.com/containerd/containerd/api/services/leases/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	coreleases "github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/protoconv"
)

type leasesService struct {
	api.UnimplementedLeasesServer
	manager coreleases.Manager
}

func (s *leasesService) RegisterGRPC(g *grpc.Server) { api.RegisterLeasesServer(g, s) }

func leaseToProto(l coreleases.Lease) *api.Lease {
	return &api.Lease{ID: l.ID, CreatedAt: protoconv.ToTime(l.CreatedAt), Labels: l.Labels}
}

func (s *leasesService) Create(ctx context.Context, req *api.CreateRequest) (*api.CreateResponse, error) {
	// The service plugin gives a lease without an ID a random one.
	l, err := s.manager.Create(ctx, req.ID, req.Labels)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.CreateResponse{Lease: leaseToProto(l)}, nil
}

func (s *leasesService) Delete(ctx context.Context, req *api.DeleteRequest) (*emptypb.Empty, error) {
	if err := s.manager.Delete(ctx, req.ID, req.Sync); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *leasesService) List(ctx context.Context, req *api.ListRequest) (*api.ListResponse, error) {
	ls, err := s.manager.List(ctx, req.Filters...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp := &api.ListResponse{}
	for _, l := range ls {
		resp.Leases = append(resp.Leases, leaseToProto(l))
	}
	return resp, nil
}

func (s *leasesService) AddResource(ctx context.Context, req *api.AddResourceRequest) (*emptypb.Empty, error) {
	r := req.GetResource()
	if err := s.manager.AddResource(ctx, req.ID, coreleases.Resource{ID: r.GetID(), Type: r.GetType()}); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *leasesService) DeleteResource(ctx context.Context, req *api.DeleteResourceRequest) (*emptypb.Empty, error) {
	r := req.GetResource()
	if err := s.manager.DeleteResource(ctx, req.ID, coreleases.Resource{ID: r.GetID(), Type: r.GetType()}); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *leasesService) ListResources(ctx context.Context, req *api.ListResourcesRequest) (*api.ListResourcesResponse, error) {
	rs, err := s.manager.ListResources(ctx, req.ID)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp := &api.ListResourcesResponse{}
	for _, r := range rs {
		resp.Resources = append(resp.Resources, &api.Resource{ID: r.ID, Type: r.Type})
	}
	return resp, nil
}

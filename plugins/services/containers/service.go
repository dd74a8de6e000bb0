package containers

import (
	"context"

	api "github.com/containerd/containerd/api/services/containers/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	corecontainers "github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/protoconv"
)

// containersService is containerd.services.containers.v1.Containers over
// the metadata store's containers. The store publishes the
// /containers/create, /containers/update and /containers/delete events
// after each commit.
type containersService struct {
	api.UnimplementedContainersServer
	store corecontainers.Store
}

func (s *containersService) RegisterGRPC(g *grpc.Server) { api.RegisterContainersServer(g, s) }

func (s *containersService) Get(ctx context.Context, req *api.GetContainerRequest) (*api.GetContainerResponse, error) {
	c, err := s.store.Get(ctx, req.GetID())
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.GetContainerResponse{Container: protoconv.ContainerToProto(c)}, nil
}

func (s *containersService) List(ctx context.Context, req *api.ListContainersRequest) (*api.ListContainersResponse, error) {
	cs, err := s.store.List(ctx, req.GetFilters()...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp := &api.ListContainersResponse{Containers: make([]*api.Container, 0, len(cs))}
	for _, c := range cs {
		resp.Containers = append(resp.Containers, protoconv.ContainerToProto(c))
	}
	return resp, nil
}

// ListStream sends one container per message, so that a listing larger
// than the message size limit still reaches the client.
func (s *containersService) ListStream(req *api.ListContainersRequest, stream api.Containers_ListStreamServer) error {
	cs, err := s.store.List(stream.Context(), req.GetFilters()...)
	if err != nil {
		return errgrpc.ToGRPC(err)
	}
	for _, c := range cs {
		if err := stream.Send(&api.ListContainerMessage{Container: protoconv.ContainerToProto(c)}); err != nil {
			return err
		}
	}
	return nil
}

func (s *containersService) Create(ctx context.Context, req *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	c, err := s.store.Create(ctx, protoconv.ContainerFromProto(req.GetContainer()))
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.CreateContainerResponse{Container: protoconv.ContainerToProto(c)}, nil
}

func (s *containersService) Update(ctx context.Context, req *api.UpdateContainerRequest) (*api.UpdateContainerResponse, error) {
	c, err := s.store.Update(ctx, protoconv.ContainerFromProto(req.GetContainer()), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.UpdateContainerResponse{Container: protoconv.ContainerToProto(c)}, nil
}

func (s *containersService) Delete(ctx context.Context, req *api.DeleteContainerRequest) (*emptypb.Empty, error) {
	if err := s.store.Delete(ctx, req.GetID()); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

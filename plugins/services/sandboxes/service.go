package sandboxes

import (
	"context"

	api "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc"

	coresandboxes "github.com/hullrt/hull/core/sandboxes"
	"github.com/hullrt/hull/internal/errgrpc"
)

// storeService is containerd.services.sandbox.v1.Store over the metadata
// store's sandboxes. The store publishes the /sandboxes/create,
// /sandboxes/update and /sandboxes/delete events after each commit.
type storeService struct {
	api.UnimplementedStoreServer
	store coresandboxes.Store
}

func (s *storeService) RegisterGRPC(g *grpc.Server) { api.RegisterStoreServer(g, s) }

func (s *storeService) Create(ctx context.Context, req *api.StoreCreateRequest) (*api.StoreCreateResponse, error) {
	sb, err := s.store.Create(ctx, coresandboxes.FromProto(req.GetSandbox()))
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.StoreCreateResponse{Sandbox: coresandboxes.ToProto(sb)}, nil
}

func (s *storeService) Update(ctx context.Context, req *api.StoreUpdateRequest) (*api.StoreUpdateResponse, error) {
	sb, err := s.store.Update(ctx, coresandboxes.FromProto(req.GetSandbox()), req.GetFields()...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.StoreUpdateResponse{Sandbox: coresandboxes.ToProto(sb)}, nil
}

func (s *storeService) Get(ctx context.Context, req *api.StoreGetRequest) (*api.StoreGetResponse, error) {
	sb, err := s.store.Get(ctx, req.GetSandboxID())
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.StoreGetResponse{Sandbox: coresandboxes.ToProto(sb)}, nil
}

func (s *storeService) List(ctx context.Context, req *api.StoreListRequest) (*api.StoreListResponse, error) {
	sbs, err := s.store.List(ctx, req.GetFilters()...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp := &api.StoreListResponse{List: make([]*types.Sandbox, 0, len(sbs))}
	for _, sb := range sbs {
		resp.List = append(resp.List, coresandboxes.ToProto(sb))
	}
	return resp, nil
}

func (s *storeService) Delete(ctx context.Context, req *api.StoreDeleteRequest) (*api.StoreDeleteResponse, error) {
	if err := s.store.Delete(ctx, req.GetSandboxID()); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.StoreDeleteResponse{}, nil
}

package namespaces

import (
	"context"
	"fmt"
	"github.com/containerd/errdefs"
	"strings"

	api "github.com/containerd/containerd/api/services/namespaces/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/core/labels"
	corenamespaces "github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/internal/errgrpc"
)

type namespacesService struct {
	api.UnimplementedNamespacesServer
	store corenamespaces.Store
}

func (s *namespacesService) RegisterGRPC(g *grpc.Server) { api.RegisterNamespacesServer(g, s) }

func (s *namespacesService) Get(ctx context.Context, req *api.GetNamespaceRequest) (*api.GetNamespaceResponse, error) {
	lbls, err := s.store.Labels(ctx, req.Name)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.GetNamespaceResponse{Namespace: &api.Namespace{Name: req.Name, Labels: lbls}}, nil
}

func (s *namespacesService) List(ctx context.Context, req *api.ListNamespacesRequest) (*api.ListNamespacesResponse, error) {
	names, err := s.store.List(ctx)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp := &api.ListNamespacesResponse{}
	for _, n := range names {
		lbls, err := s.store.Labels(ctx, n)
		if err != nil {
			continue // deleted meanwhile
		}
		resp.Namespaces = append(resp.Namespaces, &api.Namespace{Name: n, Labels: lbls})
	}
	return resp, nil
}

func (s *namespacesService) Create(ctx context.Context, req *api.CreateNamespaceRequest) (*api.CreateNamespaceResponse, error) {
	ns := req.GetNamespace()
	if err := s.store.Create(ctx, ns.GetName(), ns.GetLabels()); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.CreateNamespaceResponse{Namespace: ns}, nil
}

func (s *namespacesService) Update(ctx context.Context, req *api.UpdateNamespaceRequest) (*api.UpdateNamespaceResponse, error) {
	ns := req.GetNamespace()
	name := ns.GetName()
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		// No mask: the labels become exactly the request's.
		old, err := s.store.Labels(ctx, name)
		if err != nil {
			return nil, errgrpc.ToGRPC(err)
		}
		for k := range old {
			if _, ok := ns.GetLabels()[k]; !ok {
				paths = append(paths, "labels."+k)
			}
		}
		for k := range ns.GetLabels() {
			paths = append(paths, "labels."+k)
		}
	}
	for _, p := range paths {
		if p != "labels" && !strings.HasPrefix(p, "labels.") {
			return nil, errgrpc.ToGRPC(invalidField("namespace", name, p, "labels, labels.<key>"))
		}
		if err := labels.Validate(strings.TrimPrefix(p, "labels."), ns.GetLabels()[strings.TrimPrefix(p, "labels.")]); err != nil && p != "labels" {
			return nil, errgrpc.ToGRPC(err)
		}
	}
	if err := labels.ValidateAll(ns.GetLabels()); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	for _, p := range paths {
		switch {
		case p == "labels":
			old, err := s.store.Labels(ctx, name)
			if err != nil {
				return nil, errgrpc.ToGRPC(err)
			}
			for k := range old {
				if err := s.store.SetLabel(ctx, name, k, ns.GetLabels()[k]); err != nil {
					return nil, errgrpc.ToGRPC(err)
				}
			}
			for k, v := range ns.GetLabels() {
				if err := s.store.SetLabel(ctx, name, k, v); err != nil {
					return nil, errgrpc.ToGRPC(err)
				}
			}
		case len(p) > len("labels.") && p[:len("labels.")] == "labels.":
			k := p[len("labels."):]
			if err := s.store.SetLabel(ctx, name, k, ns.GetLabels()[k]); err != nil {
				return nil, errgrpc.ToGRPC(err)
			}
		}
	}
	lbls, err := s.store.Labels(ctx, name)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.UpdateNamespaceResponse{Namespace: &api.Namespace{Name: name, Labels: lbls}}, nil
}

func (s *namespacesService) Delete(ctx context.Context, req *api.DeleteNamespaceRequest) (*emptypb.Empty, error) {
	if err := s.store.Delete(ctx, req.Name); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func invalidField(kind, name, path, valid string) error {
	return fmt.Errorf("%s %q: cannot update field %q: the fields are %s: %w", kind, name, path, valid, errdefs.ErrInvalidArgument)
}

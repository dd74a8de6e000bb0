package namespaces

import (
	"context"
	"fmt"
	"strings"

	api "github.com/containerd/containerd/api/services/namespaces/v1"
	"github.com/containerd/errdefs"
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

// Update sets the labels the mask names ("labels" for all of them, or
// "labels.<key>"; no mask means all). A namespace that does not exist is
// created, as containerd 2.x does, but only under a valid name: containerd
// would create one no request could name afterwards.
func (s *namespacesService) Update(ctx context.Context, req *api.UpdateNamespaceRequest) (*api.UpdateNamespaceResponse, error) {
	ns := req.GetNamespace()
	name := ns.GetName()
	if err := corenamespaces.Validate(name); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	old, err := s.store.Labels(ctx, name)
	missing := errdefs.IsNotFound(err)
	if err != nil && !missing {
		return nil, errgrpc.ToGRPC(err)
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		// No mask: the labels become exactly the request's.
		paths = []string{"labels"}
	}
	// Everything is checked before anything is written, so that a refused
	// update neither creates the namespace nor changes half its labels.
	for _, p := range paths {
		if p != "labels" && !strings.HasPrefix(p, "labels.") {
			return nil, errgrpc.ToGRPC(invalidField("namespace", name, p, "labels, labels.<key>"))
		}
		if k := strings.TrimPrefix(p, "labels."); p != "labels" {
			if err := labels.Validate(k, ns.GetLabels()[k]); err != nil {
				return nil, errgrpc.ToGRPC(err)
			}
		}
	}
	if err := labels.ValidateAll(ns.GetLabels()); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	if missing {
		// Another caller may create it meanwhile; either way it exists.
		if err := s.store.Create(ctx, name, nil); err != nil && !errdefs.IsAlreadyExists(err) {
			return nil, errgrpc.ToGRPC(err)
		}
	}
	set := map[string]string{}
	for _, p := range paths {
		if p == "labels" {
			for k := range old {
				set[k] = ""
			}
			for k, v := range ns.GetLabels() {
				set[k] = v
			}
			continue
		}
		k := strings.TrimPrefix(p, "labels.")
		set[k] = ns.GetLabels()[k]
	}
	for k, v := range set {
		if old[k] == v {
			continue
		}
		if err := s.store.SetLabel(ctx, name, k, v); err != nil {
			return nil, errgrpc.ToGRPC(err)
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

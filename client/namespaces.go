package client

import (
	"context"

	api "github.com/containerd/containerd/api/services/namespaces/v1"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/hullrt/hull/core/namespaces"
)

// NamespaceService returns the daemon's namespace store.
func (c *Client) NamespaceService() namespaces.Store {
	return c.services.Namespaces
}

type namespaceStore struct {
	client api.NamespacesClient
}

func (s *namespaceStore) Create(ctx context.Context, name string, labels map[string]string) error {
	_, err := s.client.Create(ctx, &api.CreateNamespaceRequest{Namespace: &api.Namespace{Name: name, Labels: labels}})
	return err
}

func (s *namespaceStore) Labels(ctx context.Context, name string) (map[string]string, error) {
	resp, err := s.client.Get(ctx, &api.GetNamespaceRequest{Name: name})
	if err != nil {
		return nil, err
	}
	if resp.Namespace.GetLabels() == nil {
		return map[string]string{}, nil
	}
	return resp.Namespace.GetLabels(), nil
}

// SetLabel updates just "labels.<key>", so concurrent changes to other
// labels are kept; an empty value removes the label.
func (s *namespaceStore) SetLabel(ctx context.Context, name, key, value string) error {
	ns := &api.Namespace{Name: name}
	if value != "" {
		ns.Labels = map[string]string{key: value}
	}
	_, err := s.client.Update(ctx, &api.UpdateNamespaceRequest{
		Namespace: ns, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels." + key}},
	})
	return err
}

func (s *namespaceStore) List(ctx context.Context) ([]string, error) {
	resp, err := s.client.List(ctx, &api.ListNamespacesRequest{})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(resp.Namespaces))
	for _, ns := range resp.Namespaces {
		out = append(out, ns.Name)
	}
	return out, nil
}

func (s *namespaceStore) Delete(ctx context.Context, name string) error {
	_, err := s.client.Delete(ctx, &api.DeleteNamespaceRequest{Name: name})
	return err
}

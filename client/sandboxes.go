package client

import (
	"context"
	"fmt"

	api "github.com/containerd/containerd/api/services/sandbox/v1"
	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/sandboxes"
)

// SandboxStore returns the daemon's sandbox store (containerd's Sandbox
// store API, which `ctr sandboxes ls` reads) for the namespace of each
// call's context. A daemon without that API (containerd before 2.0)
// answers every call with NotImplemented.
func (c *Client) SandboxStore() sandboxes.Store {
	if c.services.Sandboxes == nil {
		// Services made by hand (NewWithServices) may leave it out.
		return noSandboxes{}
	}
	return c.services.Sandboxes
}

// sandboxStore is the sandbox store over gRPC; the client's interceptors
// turn the daemon's errors back into errdefs classes.
type sandboxStore struct {
	client api.StoreClient
}

func (s *sandboxStore) Create(ctx context.Context, sb sandboxes.Sandbox) (sandboxes.Sandbox, error) {
	resp, err := s.client.Create(ctx, &api.StoreCreateRequest{Sandbox: sandboxes.ToProto(sb)})
	if err != nil {
		return sandboxes.Sandbox{}, err
	}
	return sandboxes.FromProto(resp.GetSandbox()), nil
}

func (s *sandboxStore) Update(ctx context.Context, sb sandboxes.Sandbox, fieldpaths ...string) (sandboxes.Sandbox, error) {
	resp, err := s.client.Update(ctx, &api.StoreUpdateRequest{Sandbox: sandboxes.ToProto(sb), Fields: fieldpaths})
	if err != nil {
		return sandboxes.Sandbox{}, err
	}
	return sandboxes.FromProto(resp.GetSandbox()), nil
}

func (s *sandboxStore) Get(ctx context.Context, id string) (sandboxes.Sandbox, error) {
	resp, err := s.client.Get(ctx, &api.StoreGetRequest{SandboxID: id})
	if err != nil {
		return sandboxes.Sandbox{}, err
	}
	return sandboxes.FromProto(resp.GetSandbox()), nil
}

func (s *sandboxStore) List(ctx context.Context, filters ...string) ([]sandboxes.Sandbox, error) {
	resp, err := s.client.List(ctx, &api.StoreListRequest{Filters: filters})
	if err != nil {
		return nil, err
	}
	out := make([]sandboxes.Sandbox, 0, len(resp.GetList()))
	for _, sb := range resp.GetList() {
		out = append(out, sandboxes.FromProto(sb))
	}
	return out, nil
}

func (s *sandboxStore) Delete(ctx context.Context, id string) error {
	_, err := s.client.Delete(ctx, &api.StoreDeleteRequest{SandboxID: id})
	return err
}

// noSandboxes is the store of a client whose services have none.
type noSandboxes struct{}

func errNoSandboxes(what string) error {
	return fmt.Errorf("sandbox %s: the client's services have no sandbox store: %w", what, errdefs.ErrNotImplemented)
}

func (noSandboxes) Create(_ context.Context, sb sandboxes.Sandbox) (sandboxes.Sandbox, error) {
	return sandboxes.Sandbox{}, errNoSandboxes(fmt.Sprintf("%q", sb.ID))
}

func (noSandboxes) Update(_ context.Context, sb sandboxes.Sandbox, _ ...string) (sandboxes.Sandbox, error) {
	return sandboxes.Sandbox{}, errNoSandboxes(fmt.Sprintf("%q", sb.ID))
}

func (noSandboxes) Get(_ context.Context, id string) (sandboxes.Sandbox, error) {
	return sandboxes.Sandbox{}, errNoSandboxes(fmt.Sprintf("%q", id))
}

func (noSandboxes) List(_ context.Context, filters ...string) ([]sandboxes.Sandbox, error) {
	return nil, errNoSandboxes(fmt.Sprintf("list %q", filters))
}

func (noSandboxes) Delete(_ context.Context, id string) error {
	return errNoSandboxes(fmt.Sprintf("%q", id))
}

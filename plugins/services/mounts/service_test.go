package mounts

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	api "github.com/containerd/containerd/api/services/mounts/v1"
	"github.com/containerd/containerd/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/hullrt/hull/internal/servicetest"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// newClient builds the mount manager and its adapter by their
// registrations, over a metadata store, as hulld does.
func newClient(t *testing.T) api.MountsClient {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("mounting needs root")
	}
	set := &plugin.Set{}
	set.Add(servicetest.Dep(plugin.MetadataPlugin, "bolt", servicetest.OpenDB(t)))
	reg := &plugin.Registry{}
	Register(reg)
	dir := t.TempDir()
	var svc services.GRPCService
	for _, r := range reg.Graph(nil) {
		p := set.Init(r, &plugin.InitContext{Context: t.Context(), Root: filepath.Join(dir, "root", r.URI()), State: filepath.Join(dir, "state", r.URI())})
		if p.Err != nil {
			t.Fatal(p.Err)
		}
		if s, ok := p.Instance.(services.GRPCService); ok {
			svc = s
		}
	}
	return api.NewMountsClient(servicetest.Serve(t, svc))
}

func TestMountsService(t *testing.T) {
	c := newClient(t)
	ctx := servicetest.ClientCtx(t, "ns1")
	tmpfs := []*types.Mount{{Type: "tmpfs", Source: "tmpfs"}}

	_, err := c.Activate(ctx, &api.ActivateRequest{Name: "plain", Mounts: tmpfs})
	servicetest.WantCode(t, err, codes.Unimplemented, `"plain"`)
	_, err = c.Activate(ctx, &api.ActivateRequest{Name: "bad", Mounts: []*types.Mount{{Type: "nosuchfs"}}, Temporary: true})
	servicetest.WantCode(t, err, codes.InvalidArgument, `"nosuchfs"`)
	_, err = c.Activate(ctx, &api.ActivateRequest{Name: "idx", Mounts: []*types.Mount{{Type: "format/bind", Source: "{{ mount 0 }}"}}})
	servicetest.WantCode(t, err, codes.InvalidArgument, "index 0")

	ar, err := c.Activate(ctx, &api.ActivateRequest{Name: "m1", Mounts: tmpfs, Temporary: true, Labels: map[string]string{"a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	info := ar.Info
	if info.Name != "m1" || len(info.Active) != 1 || info.Active[0].MountPoint == "" || info.Active[0].MountedAt == nil ||
		len(info.System) != 1 || info.System[0].Source != info.Active[0].MountPoint || info.Labels["a"] != "1" {
		t.Fatalf("activation %v", info)
	}
	_, err = c.Activate(ctx, &api.ActivateRequest{Name: "m1", Mounts: tmpfs, Temporary: true})
	servicetest.WantCode(t, err, codes.AlreadyExists, `"m1"`)

	ir, err := c.Info(ctx, &api.InfoRequest{Name: "m1"})
	if err != nil || ir.Info.Active[0].MountPoint != info.Active[0].MountPoint {
		t.Errorf("info %v %v", ir, err)
	}
	_, err = c.Info(ctx, &api.InfoRequest{Name: "nosuch"})
	servicetest.WantCode(t, err, codes.NotFound, `"nosuch"`)
	_, err = c.Info(servicetest.ClientCtx(t, "ns2"), &api.InfoRequest{Name: "m1"})
	servicetest.WantCode(t, err, codes.NotFound, `"m1"`)

	ur, err := c.Update(ctx, &api.UpdateRequest{Info: &types.ActivationInfo{Name: "m1", Labels: map[string]string{"b": "2"}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels.b"}}})
	if err != nil || ur.Info.Labels["a"] != "1" || ur.Info.Labels["b"] != "2" {
		t.Errorf("update %v %v", ur, err)
	}

	list := func(filters ...string) []string {
		t.Helper()
		st, err := c.List(ctx, &api.ListRequest{Filters: filters})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for {
			m, err := st.Recv()
			if err == io.EOF {
				return names
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, m.Info.Name)
		}
	}
	if got := list(); len(got) != 1 || got[0] != "m1" {
		t.Errorf("list %v", got)
	}
	if got := list("labels.b==3"); len(got) != 0 {
		t.Errorf("list with a filter nothing matches: %v", got)
	}
	if _, err := c.Deactivate(ctx, &api.DeactivateRequest{Name: "m1"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Deactivate(ctx, &api.DeactivateRequest{Name: "m1"})
	servicetest.WantCode(t, err, codes.NotFound, `"m1"`)
}

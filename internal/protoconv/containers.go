package protoconv

import (
	api "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/core/containers"
)

// AnyFromProto returns a as a typeurl.Any; nil stays an untyped nil, so
// that "no value" checks on the result work.
func AnyFromProto(a *anypb.Any) typeurl.Any {
	if a == nil {
		return nil
	}
	return a
}

// ContainerToProto converts a container record.
func ContainerToProto(c containers.Container) *api.Container {
	out := &api.Container{
		ID: c.ID, Labels: c.Labels, Image: c.Image,
		Runtime:     &api.Container_Runtime{Name: c.Runtime.Name, Options: typeurl.MarshalProto(c.Runtime.Options)},
		Spec:        typeurl.MarshalProto(c.Spec),
		Snapshotter: c.Snapshotter, SnapshotKey: c.SnapshotKey,
		CreatedAt: ToTime(c.CreatedAt), UpdatedAt: ToTime(c.UpdatedAt),
		Sandbox: c.SandboxID,
	}
	if len(c.Extensions) > 0 {
		out.Extensions = make(map[string]*anypb.Any, len(c.Extensions))
		for k, v := range c.Extensions {
			out.Extensions[k] = typeurl.MarshalProto(v)
		}
	}
	return out
}

// ContainerFromProto converts a container record; nil is the zero record.
func ContainerFromProto(c *api.Container) containers.Container {
	out := containers.Container{
		ID: c.GetID(), Labels: c.GetLabels(), Image: c.GetImage(),
		Runtime: containers.RuntimeInfo{
			Name: c.GetRuntime().GetName(), Options: AnyFromProto(c.GetRuntime().GetOptions()),
		},
		Spec:        AnyFromProto(c.GetSpec()),
		Snapshotter: c.GetSnapshotter(), SnapshotKey: c.GetSnapshotKey(),
		CreatedAt: FromTime(c.GetCreatedAt()), UpdatedAt: FromTime(c.GetUpdatedAt()),
		SandboxID: c.GetSandbox(),
	}
	if len(c.GetExtensions()) > 0 {
		out.Extensions = make(map[string]typeurl.Any, len(c.GetExtensions()))
		for k, v := range c.GetExtensions() {
			out.Extensions[k] = AnyFromProto(v)
		}
	}
	return out
}

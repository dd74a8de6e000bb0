package sandboxes

import (
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The conversions live with the type, as containerd keeps them with its
// sandbox type: the service adapter and the client library share them.

// ToProto converts a record to containerd's API type; zero times travel as
// no timestamp.
func ToProto(s Sandbox) *types.Sandbox {
	out := &types.Sandbox{
		SandboxID: s.ID,
		Runtime:   &types.Sandbox_Runtime{Name: s.Runtime.Name, Options: typeurl.MarshalProto(s.Runtime.Options)},
		Spec:      typeurl.MarshalProto(s.Spec),
		Labels:    s.Labels,
		Sandboxer: s.Sandboxer,
	}
	if !s.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(s.CreatedAt)
	}
	if !s.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(s.UpdatedAt)
	}
	if len(s.Extensions) > 0 {
		out.Extensions = make(map[string]*anypb.Any, len(s.Extensions))
		for k, v := range s.Extensions {
			out.Extensions[k] = typeurl.MarshalProto(v)
		}
	}
	return out
}

// FromProto converts containerd's API type to a record; nil is the zero
// record, and absent Any values stay untyped nils, so that "no value"
// checks on the result work.
func FromProto(s *types.Sandbox) Sandbox {
	out := Sandbox{
		ID:        s.GetSandboxID(),
		Labels:    s.GetLabels(),
		Runtime:   RuntimeInfo{Name: s.GetRuntime().GetName(), Options: anyFromProto(s.GetRuntime().GetOptions())},
		Spec:      anyFromProto(s.GetSpec()),
		Sandboxer: s.GetSandboxer(),
	}
	if t := s.GetCreatedAt(); t != nil {
		out.CreatedAt = t.AsTime()
	}
	if t := s.GetUpdatedAt(); t != nil {
		out.UpdatedAt = t.AsTime()
	}
	if len(s.GetExtensions()) > 0 {
		out.Extensions = make(map[string]typeurl.Any, len(s.GetExtensions()))
		for k, v := range s.GetExtensions() {
			out.Extensions[k] = anyFromProto(v)
		}
	}
	return out
}

func anyFromProto(a *anypb.Any) typeurl.Any {
	if a == nil {
		return nil
	}
	return a
}

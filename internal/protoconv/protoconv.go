// Package protoconv converts between hull's core types and the containerd
// API's protobuf types: the one copy of these conversions, shared by the
// server adapters (plugins/services/...) and the client library.
package protoconv

import (
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hullrt/hull/core/mount"
)

// ToTime converts t; the zero time travels as no timestamp.
func ToTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// FromTime converts t; no timestamp is the zero time.
func FromTime(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

// DescToProto converts a descriptor.
func DescToProto(d ocispec.Descriptor) *types.Descriptor {
	return &types.Descriptor{MediaType: d.MediaType, Digest: d.Digest.String(), Size: d.Size, Annotations: d.Annotations}
}

// DescFromProto converts a descriptor; nil is the zero descriptor.
func DescFromProto(d *types.Descriptor) ocispec.Descriptor {
	if d == nil {
		return ocispec.Descriptor{}
	}
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: digest.Digest(d.Digest), Size: d.Size, Annotations: d.Annotations}
}

// MountsToProto converts mounts.
func MountsToProto(ms []mount.Mount) []*types.Mount {
	out := make([]*types.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out
}

// MountsFromProto converts mounts.
func MountsFromProto(ms []*types.Mount) []mount.Mount {
	out := make([]mount.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, mount.Mount{Type: m.GetType(), Source: m.GetSource(), Target: m.GetTarget(), Options: m.GetOptions()})
	}
	return out
}

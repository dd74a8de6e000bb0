// Package grpcapi holds hulld's gRPC service adapters for containerd's v1 API
// and the plugin registrations that wire them to the core. An adapter decodes
// a request, calls the core, and encodes the result or maps the error with
// errgrpc: nothing else happens here.
package grpcapi

import (
	"fmt"

	"github.com/containerd/errdefs"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Service is what a gRPC plugin's instance provides: it registers itself on
// the daemon's server.
type Service interface {
	RegisterGRPC(*grpc.Server)
}

func toProtoTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func fromProtoTime(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func descToProto(d ocispec.Descriptor) *types.Descriptor {
	return &types.Descriptor{
		MediaType:   d.MediaType,
		Digest:      d.Digest.String(),
		Size:        d.Size,
		Annotations: d.Annotations,
	}
}

func descFromProto(d *types.Descriptor) ocispec.Descriptor {
	if d == nil {
		return ocispec.Descriptor{}
	}
	return ocispec.Descriptor{
		MediaType:   d.MediaType,
		Digest:      digest.Digest(d.Digest),
		Size:        d.Size,
		Annotations: d.Annotations,
	}
}

func invalidField(kind, name, path, valid string) error {
	return fmt.Errorf("%s %q: cannot update field %q: the fields are %s: %w", kind, name, path, valid, errdefs.ErrInvalidArgument)
}

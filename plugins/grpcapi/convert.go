// Package grpcapi holds hulld's gRPC service adapters for containerd's v1 API
// and the plugin registrations that wire them to the core. An adapter decodes
// a request, calls the core, and encodes the result or maps the error with
// errgrpc: nothing else happens here.
package grpcapi

import (
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
)

// Service is what a gRPC plugin's instance provides: it registers itself on
// the daemon's server.
type Service interface {
	RegisterGRPC(*grpc.Server)
}

func invalidField(kind, name, path, valid string) error {
	return fmt.Errorf("%s %q: cannot update field %q: the fields are %s: %w", kind, name, path, valid, errdefs.ErrInvalidArgument)
}

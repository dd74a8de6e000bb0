// Package version serves containerd's version service: hulld's version and
// revision.
package version

import (
	"context"

	api "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/internal/version"
	"github.com/hullrt/hull/plugin"
)

type versionService struct {
	api.UnimplementedVersionServer
}

func (versionService) RegisterGRPC(g *grpc.Server) { api.RegisterVersionServer(g, versionService{}) }

func (versionService) Version(context.Context, *emptypb.Empty) (*api.VersionResponse, error) {
	return &api.VersionResponse{Version: version.Version, Revision: version.Revision}, nil
}

// Register adds the version service to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "version",
		Init: func(ic *plugin.InitContext) (any, error) { return versionService{}, nil },
	})
}

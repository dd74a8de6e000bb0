// Package services names hulld's service layer and what its gRPC and ttrpc
// adapters provide.
//
// Every core service is a plugin of type io.containerd.service.v1
// ("containers-service", "content-service", ...): an in-process
// implementation of the same Go interface the client library hands out
// (containers.Store, content.Store, images.Store, namespaces.Store,
// leases.Manager, a snapshotter source, the diff Applier and Comparer,
// containerd's TasksClient and IntrospectionClient). The gRPC plugins
// (io.containerd.grpc.v1) are thin adapters over those: decode, call, encode,
// map the error. An in-daemon consumer, such as the CRI plugin, builds the
// client library over the service plugins (see ClientServices) and so runs
// the very code hullctl runs, without a socket hop.
//
// Each service has its own package under plugins/services, which registers
// both its service plugin and its gRPC plugin.
package services

import (
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc"
)

// The IDs of the service plugins (type plugin.ServicePlugin), containerd's.
const (
	ContainersService    = "containers-service"
	ContentService       = "content-service"
	ImagesService        = "images-service"
	NamespacesService    = "namespaces-service"
	SnapshotsService     = "snapshots-service"
	DiffService          = "diff-service"
	LeasesService        = "leases-service"
	TasksService         = "tasks-service"
	IntrospectionService = "introspection-service"
	SandboxesService     = "sandboxes-service"
)

// GRPCService is what a gRPC plugin's instance provides: it registers itself
// on the daemon's server.
type GRPCService interface {
	RegisterGRPC(*grpc.Server)
}

// TTRPCService is what a ttrpc plugin's instance provides: it registers
// itself on the daemon's ttrpc server, where shims call back.
type TTRPCService interface {
	RegisterTTRPC(*ttrpc.Server) error
}

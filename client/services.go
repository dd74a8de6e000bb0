package client

import (
	"context"
	"fmt"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	diffapi "github.com/containerd/containerd/api/services/diff/v1"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	sandboxapi "github.com/containerd/containerd/api/services/sandbox/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/remotes/registry"
	"github.com/hullrt/hull/core/sandboxes"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/proxy"
	"github.com/hullrt/hull/internal/version"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
)

// Services are what a Client calls. New fills them with clients of a
// daemon's socket; NewInProcess takes hulld's service plugins themselves,
// so that code inside hulld (the CRI plugin) runs the very client code
// hullctl runs, without a socket hop.
type Services struct {
	Content    content.Store
	Images     images.Store
	Containers containers.Store
	Namespaces namespaces.Store
	Leases     leases.Manager
	// Snapshotters finds a snapshotter by name; "" is the daemon's
	// default.
	Snapshotters SnapshotterSource
	Diff         DiffService
	// Tasks and Introspection are containerd's gRPC client interfaces,
	// which hulld's tasks and introspection service plugins implement in
	// process.
	Tasks         tasksapi.TasksClient
	Introspection introspectionapi.IntrospectionClient
	Events        EventService
	// Sandboxes is the sandbox store (containerd's Sandbox store API).
	Sandboxes sandboxes.Store
}

// SnapshotterSource finds snapshotters by name.
type SnapshotterSource interface {
	Snapshotter(name string) (snapshots.Snapshotter, error)
}

// DiffService applies layers onto mounts and makes layers from mount
// differences.
type DiffService interface {
	diff.Applier
	diff.Comparer
}

// remoteServices are the services of the daemon on conn.
func remoteServices(conn *grpc.ClientConn) Services {
	return Services{
		Content:       proxy.NewContentStore(conn),
		Images:        &imageStore{client: imagesapi.NewImagesClient(conn)},
		Containers:    &containerStore{client: containersapi.NewContainersClient(conn)},
		Namespaces:    &namespaceStore{client: namespacesapi.NewNamespacesClient(conn)},
		Leases:        &leaseManager{client: leasesapi.NewLeasesClient(conn)},
		Snapshotters:  remoteSnapshotters{conn},
		Diff:          remoteDiffer{diffapi.NewDiffClient(conn)},
		Tasks:         tasksapi.NewTasksClient(conn),
		Introspection: introspectionapi.NewIntrospectionClient(conn),
		Events:        &eventService{client: eventsapi.NewEventsClient(conn)},
		Sandboxes:     &sandboxStore{client: sandboxapi.NewStoreClient(conn)},
	}
}

// remoteSnapshotters are the daemon's snapshotters over its snapshots API,
// which resolves "" to its default.
type remoteSnapshotters struct{ conn *grpc.ClientConn }

func (r remoteSnapshotters) Snapshotter(name string) (snapshots.Snapshotter, error) {
	return proxy.NewSnapshotter(r.conn, name, nil), nil
}

// check reports the first service s lacks.
func (s Services) check() error {
	for name, missing := range map[string]bool{
		"Content": s.Content == nil, "Images": s.Images == nil, "Containers": s.Containers == nil,
		"Namespaces": s.Namespaces == nil, "Leases": s.Leases == nil, "Snapshotters": s.Snapshotters == nil,
		"Diff": s.Diff == nil, "Tasks": s.Tasks == nil, "Introspection": s.Introspection == nil, "Events": s.Events == nil,
	} {
		if missing {
			return fmt.Errorf("client services: %s is not set: %w", name, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// PluginSource is where NewInProcess finds hulld's plugins: the daemon's
// plugin set, or the InitContext of a plugin that requires the service
// plugins.
type PluginSource interface {
	GetByID(t plugin.Type, id string) (any, error)
	GetSingle(t plugin.Type) (any, error)
}

// ServicesFromPlugins gathers the service plugins (io.containerd.service.v1)
// and the event exchange of a running hulld.
func ServicesFromPlugins(p PluginSource) (Services, error) {
	var s Services
	var err error
	get := func(id string, into func(any) bool) {
		if err != nil {
			return
		}
		var inst any
		if inst, err = p.GetByID(plugin.ServicePlugin, id); err != nil {
			err = fmt.Errorf("service plugin %s: %w", id, err)
			return
		}
		if !into(inst) {
			err = fmt.Errorf("service plugin %s is a %T, which is not what the client calls: %w", id, inst, errdefs.ErrFailedPrecondition)
		}
	}
	get(services.ContentService, func(v any) (ok bool) { s.Content, ok = v.(content.Store); return })
	get(services.ImagesService, func(v any) (ok bool) { s.Images, ok = v.(images.Store); return })
	get(services.ContainersService, func(v any) (ok bool) { s.Containers, ok = v.(containers.Store); return })
	get(services.NamespacesService, func(v any) (ok bool) { s.Namespaces, ok = v.(namespaces.Store); return })
	get(services.LeasesService, func(v any) (ok bool) { s.Leases, ok = v.(leases.Manager); return })
	get(services.SnapshotsService, func(v any) (ok bool) { s.Snapshotters, ok = v.(SnapshotterSource); return })
	get(services.DiffService, func(v any) (ok bool) { s.Diff, ok = v.(DiffService); return })
	get(services.TasksService, func(v any) (ok bool) { s.Tasks, ok = v.(tasksapi.TasksClient); return })
	get(services.SandboxesService, func(v any) (ok bool) { s.Sandboxes, ok = v.(sandboxes.Store); return })
	get(services.IntrospectionService, func(v any) (ok bool) {
		s.Introspection, ok = v.(introspectionapi.IntrospectionClient)
		return
	})
	if err != nil {
		return Services{}, err
	}
	ev, err := p.GetSingle(plugin.EventPlugin)
	if err != nil {
		return Services{}, fmt.Errorf("event plugin: %w", err)
	}
	bus, ok := ev.(EventService)
	if !ok {
		return Services{}, fmt.Errorf("event plugin is a %T, which does not publish, forward and subscribe: %w", ev, errdefs.ErrFailedPrecondition)
	}
	s.Events = bus
	return s, nil
}

// NewInProcess returns a client over hulld's own service plugins, for code
// running inside hulld. Calls take their namespace from the context only
// (WithDefaultNamespace is ignored for them, as there is no connection to
// add it to), and their errors are errdefs classes as with New.
func NewInProcess(p PluginSource, opts ...Opt) (*Client, error) {
	s, err := ServicesFromPlugins(p)
	if err != nil {
		return nil, err
	}
	return NewWithServices(s, opts...)
}

// NewWithServices returns a client over s.
func NewWithServices(s Services, opts ...Opt) (*Client, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	c := &Client{services: s, defaultRuntime: o.defaultRuntime, version: localVersion{}, transports: registry.NewTransports()}
	if c.defaultRuntime == "" {
		c.defaultRuntime = DefaultRuntime
	}
	return c, nil
}

// versionClient is what Version calls.
type versionClient interface {
	Version(ctx context.Context, in *emptypb.Empty, opts ...grpc.CallOption) (*versionapi.VersionResponse, error)
}

// localVersion answers Version in process: the daemon is this binary.
type localVersion struct{}

func (localVersion) Version(context.Context, *emptypb.Empty, ...grpc.CallOption) (*versionapi.VersionResponse, error) {
	return &versionapi.VersionResponse{Version: version.Version, Revision: version.Revision}, nil
}

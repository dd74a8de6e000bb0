package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	api "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/protoconv"
)

// DefaultRuntime is the runtime of containers made without WithRuntime,
// unless the client was made WithDefaultRuntime: hull's own shim,
// containerd-shim-hull-v2.
const DefaultRuntime = "io.containerd.hull.v2"

// WithDefaultRuntime sets the runtime of containers made without
// WithRuntime, e.g. "io.containerd.runc.v2" against containerd.
func WithDefaultRuntime(name string) Opt {
	return func(o *options) { o.defaultRuntime = name }
}

// ContainerService returns the daemon's container store for the namespace
// of each call's context: the records themselves, with no snapshot or task
// handling (Container adds those).
func (c *Client) ContainerService() containers.Store {
	return c.services.Containers
}

type containerStore struct {
	client api.ContainersClient
}

func (s *containerStore) Get(ctx context.Context, id string) (containers.Container, error) {
	resp, err := s.client.Get(ctx, &api.GetContainerRequest{ID: id})
	if err != nil {
		return containers.Container{}, err
	}
	return protoconv.ContainerFromProto(resp.Container), nil
}

// List uses the streaming call, so that a namespace with more containers
// than fit in one message still lists; a daemon without it (containerd
// before 1.5) gets the unary call.
func (s *containerStore) List(ctx context.Context, filters ...string) ([]containers.Container, error) {
	stream, err := s.client.ListStream(ctx, &api.ListContainersRequest{Filters: filters})
	if err == nil {
		var out []containers.Container
		for {
			m, rerr := stream.Recv()
			if rerr != nil {
				if errors.Is(rerr, io.EOF) {
					return out, nil
				}
				err = rerr
				break
			}
			out = append(out, protoconv.ContainerFromProto(m.Container))
		}
	}
	if !errdefs.IsNotImplemented(err) {
		return nil, err
	}
	resp, err := s.client.List(ctx, &api.ListContainersRequest{Filters: filters})
	if err != nil {
		return nil, err
	}
	out := make([]containers.Container, 0, len(resp.Containers))
	for _, c := range resp.Containers {
		out = append(out, protoconv.ContainerFromProto(c))
	}
	return out, nil
}

func (s *containerStore) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	resp, err := s.client.Create(ctx, &api.CreateContainerRequest{Container: protoconv.ContainerToProto(c)})
	if err != nil {
		return containers.Container{}, err
	}
	return protoconv.ContainerFromProto(resp.Container), nil
}

func (s *containerStore) Update(ctx context.Context, c containers.Container, fieldpaths ...string) (containers.Container, error) {
	req := &api.UpdateContainerRequest{Container: protoconv.ContainerToProto(c)}
	if len(fieldpaths) > 0 {
		req.UpdateMask = &fieldmaskpb.FieldMask{Paths: fieldpaths}
	}
	resp, err := s.client.Update(ctx, req)
	if err != nil {
		return containers.Container{}, err
	}
	return protoconv.ContainerFromProto(resp.Container), nil
}

func (s *containerStore) Delete(ctx context.Context, id string) error {
	_, err := s.client.Delete(ctx, &api.DeleteContainerRequest{ID: id})
	return err
}

// NewContainerOpts sets up the record of a container NewContainer makes.
// Options run in order, so one that reads the record (WithNewSpec reading
// the snapshot, say) goes after those that fill it in.
type NewContainerOpts func(ctx context.Context, client *Client, c *containers.Container) error

// UpdateContainerOpts changes the record of an existing container.
type UpdateContainerOpts func(ctx context.Context, client *Client, c *containers.Container) error

// DeleteOpts runs before a container's record is deleted, to release what
// the container held.
type DeleteOpts func(ctx context.Context, client *Client, c containers.Container) error

// WithImage records img as the container's image.
func WithImage(img *Image) NewContainerOpts {
	return func(_ context.Context, _ *Client, c *containers.Container) error {
		c.Image = img.Name()
		return nil
	}
}

// WithImageName records name as the container's image, without checking
// that it exists.
func WithImageName(name string) NewContainerOpts {
	return func(_ context.Context, _ *Client, c *containers.Container) error {
		c.Image = name
		return nil
	}
}

// WithContainerSnapshotter sets the snapshotter of the container's root
// filesystem; without it the daemon's default is used. (WithSnapshotter is
// the name of the Unpack option.)
func WithContainerSnapshotter(name string) NewContainerOpts {
	return func(_ context.Context, _ *Client, c *containers.Container) error {
		c.Snapshotter = name
		return nil
	}
}

// WithNewSnapshot prepares an active snapshot key on img's unpacked layers
// as the container's root filesystem, unpacking img first if it is not.
// NewContainer holds a lease over the preparation, and from then on the
// container record keeps the snapshot from garbage collection; deleting
// the container WithSnapshotCleanup removes it.
func WithNewSnapshot(key string, img *Image, opts ...snapshots.Opt) NewContainerOpts {
	return func(ctx context.Context, client *Client, c *containers.Container) error {
		sn, err := client.resolveSnapshotter(ctx, c.Snapshotter)
		if err != nil {
			return err
		}
		unpacked, err := img.IsUnpacked(ctx, sn)
		if err != nil {
			return err
		}
		if !unpacked {
			if _, err := img.Unpack(ctx, sn); err != nil {
				return err
			}
		}
		parent, err := img.ChainID(ctx)
		if err != nil {
			return err
		}
		if _, err := client.SnapshotService(sn).Prepare(ctx, key, parent.String(), opts...); err != nil {
			return fmt.Errorf("container %q: root filesystem: %w", c.ID, err)
		}
		if p, ok := ctx.Value(preparedKey{}).(*[]preparedSnapshot); ok {
			*p = append(*p, preparedSnapshot{snapshotter: sn, key: key})
		}
		c.Snapshotter, c.SnapshotKey = sn, key
		return nil
	}
}

// WithNewSnapshotFromParent prepares a new snapshot key over parent (an
// unpacked image's chain ID) as the container's root filesystem, for
// callers that know the chain ID already and need not read the image
// again. Like WithNewSnapshot, the snapshot goes if the creation fails.
func WithNewSnapshotFromParent(key, parent string, opts ...snapshots.Opt) NewContainerOpts {
	return func(ctx context.Context, client *Client, c *containers.Container) error {
		sn, err := client.resolveSnapshotter(ctx, c.Snapshotter)
		if err != nil {
			return err
		}
		if _, err := client.SnapshotService(sn).Prepare(ctx, key, parent, opts...); err != nil {
			return fmt.Errorf("container %q: root filesystem: %w", c.ID, err)
		}
		if p, ok := ctx.Value(preparedKey{}).(*[]preparedSnapshot); ok {
			*p = append(*p, preparedSnapshot{snapshotter: sn, key: key})
		}
		c.Snapshotter, c.SnapshotKey = sn, key
		return nil
	}
}

// WithSnapshot uses the existing snapshot key as the container's root
// filesystem.
func WithSnapshot(key string) NewContainerOpts {
	return func(ctx context.Context, client *Client, c *containers.Container) error {
		sn, err := client.resolveSnapshotter(ctx, c.Snapshotter)
		if err != nil {
			return err
		}
		if _, err := client.SnapshotService(sn).Stat(ctx, key); err != nil {
			return fmt.Errorf("container %q: root filesystem: %w", c.ID, err)
		}
		c.Snapshotter, c.SnapshotKey = sn, key
		return nil
	}
}

// WithRuntime sets the runtime of the container's tasks and its options
// (nil for none; a typeurl.Any is sent as is, anything else is encoded
// with typeurl, such as runc's *options.Options).
func WithRuntime(name string, options any) NewContainerOpts {
	return func(_ context.Context, _ *Client, c *containers.Container) error {
		opts, err := toAny(options)
		if err != nil {
			return fmt.Errorf("container %q: runtime %q options: %w", c.ID, name, err)
		}
		c.Runtime = containers.RuntimeInfo{Name: name, Options: opts}
		return nil
	}
}

// WithContainerLabels sets the container's labels, replacing any set
// before.
func WithContainerLabels(labels map[string]string) NewContainerOpts {
	return func(_ context.Context, _ *Client, c *containers.Container) error {
		c.Labels = make(map[string]string, len(labels))
		for k, v := range labels {
			c.Labels[k] = v
		}
		return nil
	}
}

// WithSpec sets the container's OCI runtime spec to s after applying opts
// to it.
func WithSpec(s *specs.Spec, opts ...oci.SpecOpts) NewContainerOpts {
	return func(ctx context.Context, client *Client, c *containers.Container) error {
		if s == nil {
			return fmt.Errorf("container %q: nil spec: %w", c.ID, errdefs.ErrInvalidArgument)
		}
		if err := oci.ApplyOpts(ctx, client, c, s, opts...); err != nil {
			return err
		}
		a, err := typeurl.MarshalAny(s)
		if err != nil {
			return fmt.Errorf("container %q: encode spec: %w", c.ID, err)
		}
		c.Spec = a
		return nil
	}
}

// WithNewSpec generates the container's spec: oci's defaults with opts
// applied. Options that read the root filesystem (users, image config)
// need the snapshot set first, by WithNewSnapshot or WithSnapshot.
func WithNewSpec(opts ...oci.SpecOpts) NewContainerOpts {
	return func(ctx context.Context, client *Client, c *containers.Container) error {
		s, err := oci.GenerateSpec(ctx, client, c, opts...)
		if err != nil {
			return err
		}
		return WithSpec(s)(ctx, client, c)
	}
}

// WithContainerExtension keeps ext with the container under name, for
// clients to find later (Container.Extensions). A typeurl.Any is kept as
// is; anything else is encoded with typeurl and must be registered.
func WithContainerExtension(name string, ext any) NewContainerOpts {
	return func(_ context.Context, _ *Client, c *containers.Container) error {
		if name == "" {
			return fmt.Errorf("container %q: extension name must not be empty: %w", c.ID, errdefs.ErrInvalidArgument)
		}
		a, err := toAny(ext)
		if err != nil {
			return fmt.Errorf("container %q: extension %q: %w", c.ID, name, err)
		}
		if a == nil {
			return fmt.Errorf("container %q: extension %q has no value: %w", c.ID, name, errdefs.ErrInvalidArgument)
		}
		if c.Extensions == nil {
			c.Extensions = map[string]typeurl.Any{}
		}
		c.Extensions[name] = a
		return nil
	}
}

// WithSandbox puts the container in sandbox id.
func WithSandbox(id string) NewContainerOpts {
	return func(_ context.Context, _ *Client, c *containers.Container) error {
		c.SandboxID = id
		return nil
	}
}

// toAny encodes v as a typed Any: nil stays nil and an Any is kept.
func toAny(v any) (typeurl.Any, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case typeurl.Any:
		return t, nil
	}
	a, err := typeurl.MarshalAny(v)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	return a, nil
}

// preparedKey carries, through NewContainer's options, the snapshots they
// prepare.
type preparedKey struct{}

type preparedSnapshot struct{ snapshotter, key string }

// NewContainer creates the container id from opts. The runtime is the
// client's default runtime unless WithRuntime says otherwise; a spec is
// required (WithSpec or WithNewSpec). Snapshots the options prepare are
// held by a lease until the record exists, so that a failed creation
// leaves nothing that garbage collection would not remove.
func (c *Client) NewContainer(ctx context.Context, id string, opts ...NewContainerOpts) (*Container, error) {
	if err := containers.ValidateID(id); err != nil {
		return nil, err
	}
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return nil, err
	}
	defer done(context.WithoutCancel(ctx))
	// Snapshots prepared for this container go at once when its creation
	// fails, rather than at the next garbage collection: an id retried
	// right away must not find its snapshot key taken.
	var prepared []preparedSnapshot
	ctx = context.WithValue(ctx, preparedKey{}, &prepared)
	cleanup := func() {
		for _, p := range prepared {
			c.SnapshotService(p.snapshotter).Remove(context.WithoutCancel(ctx), p.key)
		}
	}
	rec := containers.Container{ID: id, Runtime: containers.RuntimeInfo{Name: c.defaultRuntime}}
	for _, o := range opts {
		if err := o(ctx, c, &rec); err != nil {
			cleanup()
			return nil, err
		}
	}
	created, err := c.ContainerService().Create(ctx, rec)
	if err != nil {
		cleanup()
		return nil, err
	}
	return &Container{client: c, id: created.ID}, nil
}

// LoadContainer returns the existing container id.
func (c *Client) LoadContainer(ctx context.Context, id string) (*Container, error) {
	rec, err := c.ContainerService().Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return &Container{client: c, id: rec.ID}, nil
}

// Containers lists the containers matching any of filters (fields "id",
// "image", "runtime.name", "snapshotter", "snapshotkey", "sandbox",
// "labels.<key>"; none lists all).
func (c *Client) Containers(ctx context.Context, filters ...string) ([]*Container, error) {
	recs, err := c.ContainerService().List(ctx, filters...)
	if err != nil {
		return nil, err
	}
	out := make([]*Container, 0, len(recs))
	for _, r := range recs {
		out = append(out, &Container{client: c, id: r.ID})
	}
	return out, nil
}

// Container is a container of the daemon: its record, its root filesystem
// and its task. Methods read the record afresh from the daemon, since
// other clients may change it.
type Container struct {
	client *Client
	id     string
}

// ID is the container's id.
func (ct *Container) ID() string { return ct.id }

// Info returns the container's record as the daemon has it now.
func (ct *Container) Info(ctx context.Context) (containers.Container, error) {
	rec, err := ct.client.ContainerService().Get(ctx, ct.id)
	if err != nil {
		return containers.Container{}, err
	}
	return rec, nil
}

// Spec decodes the container's OCI runtime spec.
func (ct *Container) Spec(ctx context.Context) (*specs.Spec, error) {
	rec, err := ct.Info(ctx)
	if err != nil {
		return nil, err
	}
	if rec.Spec == nil {
		return nil, fmt.Errorf("container %q has no spec: %w", ct.id, errdefs.ErrNotFound)
	}
	if rec.Spec.GetTypeUrl() != containers.SpecTypeURL {
		return nil, fmt.Errorf("container %q: spec has type %q, not %q: %w", ct.id, rec.Spec.GetTypeUrl(), containers.SpecTypeURL, errdefs.ErrInvalidArgument)
	}
	var s specs.Spec
	if err := json.Unmarshal(rec.Spec.GetValue(), &s); err != nil {
		return nil, fmt.Errorf("container %q: decode spec: %v: %w", ct.id, err, errdefs.ErrInvalidArgument)
	}
	return &s, nil
}

// Labels returns the container's labels.
func (ct *Container) Labels(ctx context.Context) (map[string]string, error) {
	rec, err := ct.Info(ctx)
	if err != nil {
		return nil, err
	}
	return rec.Labels, nil
}

// SetLabels sets (or, with an empty value, removes) the given labels and
// leaves the others alone; it returns all the labels afterwards.
func (ct *Container) SetLabels(ctx context.Context, labels map[string]string) (map[string]string, error) {
	paths := make([]string, 0, len(labels))
	for k := range labels {
		paths = append(paths, "labels."+k)
	}
	if len(paths) == 0 {
		return ct.Labels(ctx)
	}
	rec, err := ct.client.ContainerService().Update(ctx, containers.Container{ID: ct.id, Labels: labels}, paths...)
	if err != nil {
		return nil, err
	}
	return rec.Labels, nil
}

// Extensions returns the container's extensions, still encoded.
func (ct *Container) Extensions(ctx context.Context) (map[string]typeurl.Any, error) {
	rec, err := ct.Info(ctx)
	if err != nil {
		return nil, err
	}
	return rec.Extensions, nil
}

// Image returns the image the container was made from; NotFound if it
// names none or the image is gone.
func (ct *Container) Image(ctx context.Context) (*Image, error) {
	rec, err := ct.Info(ctx)
	if err != nil {
		return nil, err
	}
	if rec.Image == "" {
		return nil, fmt.Errorf("container %q was not made from an image: %w", ct.id, errdefs.ErrNotFound)
	}
	return ct.client.GetImage(ctx, rec.Image)
}

// Update applies opts to the container's record and stores every mutable
// field of the result.
func (ct *Container) Update(ctx context.Context, opts ...UpdateContainerOpts) error {
	rec, err := ct.Info(ctx)
	if err != nil {
		return err
	}
	for _, o := range opts {
		if err := o(ctx, ct.client, &rec); err != nil {
			return err
		}
	}
	_, err = ct.client.ContainerService().Update(ctx, rec)
	return err
}

// WithSnapshotCleanup removes the container's root filesystem snapshot
// when the container is deleted; one that is gone already is no error.
func WithSnapshotCleanup(ctx context.Context, client *Client, c containers.Container) error {
	if c.SnapshotKey == "" || c.Snapshotter == "" {
		return nil
	}
	if err := client.SnapshotService(c.Snapshotter).Remove(ctx, c.SnapshotKey); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("container %q: remove snapshot %q: %w", c.ID, c.SnapshotKey, err)
	}
	return nil
}

// Delete deletes the container, after running opts (WithSnapshotCleanup).
// A container with a task cannot be deleted (FailedPrecondition): delete
// the task first. A daemon without a tasks service has no tasks.
func (ct *Container) Delete(ctx context.Context, opts ...DeleteOpts) error {
	rec, err := ct.Info(ctx)
	if err != nil {
		return err
	}
	if _, err := ct.client.getTask(ctx, ct.id, ""); err == nil {
		return fmt.Errorf("container %q has a task: delete it first: %w", ct.id, errdefs.ErrFailedPrecondition)
	} else if !errdefs.IsNotFound(err) && !errdefs.IsNotImplemented(err) {
		return err
	}
	for _, o := range opts {
		if err := o(ctx, ct.client, rec); err != nil {
			return err
		}
	}
	return ct.client.ContainerService().Delete(ctx, ct.id)
}

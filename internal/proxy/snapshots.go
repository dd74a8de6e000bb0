package proxy

import (
	"context"
	"errors"
	"io"
	"maps"

	api "github.com/containerd/containerd/api/services/snapshots/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/protoconv"
)

// Snapshotter is a snapshotter reached over containerd's snapshots gRPC
// API: hulld's snapshotters from the client library, and hulld's proxy
// snapshotters (served by another process) from hulld itself.
type Snapshotter struct {
	client api.SnapshotsClient
	closer io.Closer
	name   string
}

var _ snapshots.Snapshotter = (*Snapshotter)(nil)

// NewSnapshotter returns the snapshotter name served on conn. Close closes
// closer, if not nil: the connection, when the snapshotter owns it.
func NewSnapshotter(conn grpc.ClientConnInterface, name string, closer io.Closer) *Snapshotter {
	return &Snapshotter{client: api.NewSnapshotsClient(conn), closer: closer, name: name}
}

func snapInfoFromProto(i *api.Info) snapshots.Info {
	return snapshots.Info{
		Kind: snapshots.Kind(i.GetKind()), Name: i.GetName(), Parent: i.GetParent(), Labels: i.GetLabels(),
		Created: i.GetCreatedAt().AsTime(), Updated: i.GetUpdatedAt().AsTime(),
	}
}

// Stat implements snapshots.Snapshotter.
func (s *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	resp, err := s.client.Stat(ctx, &api.StatSnapshotRequest{Snapshotter: s.name, Key: key})
	if err != nil {
		return snapshots.Info{}, errgrpc.ToNative(err)
	}
	return snapInfoFromProto(resp.Info), nil
}

// Update implements snapshots.Snapshotter.
func (s *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	resp, err := s.client.Update(ctx, &api.UpdateSnapshotRequest{
		Snapshotter: s.name, Info: &api.Info{Name: info.Name, Labels: info.Labels},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: fieldpaths},
	})
	if err != nil {
		return snapshots.Info{}, errgrpc.ToNative(err)
	}
	return snapInfoFromProto(resp.Info), nil
}

// Usage implements snapshots.Snapshotter.
func (s *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	resp, err := s.client.Usage(ctx, &api.UsageRequest{Snapshotter: s.name, Key: key})
	if err != nil {
		return snapshots.Usage{}, errgrpc.ToNative(err)
	}
	return snapshots.Usage{Size: resp.Size, Inodes: resp.Inodes}, nil
}

// Mounts implements snapshots.Snapshotter.
func (s *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	resp, err := s.client.Mounts(ctx, &api.MountsRequest{Snapshotter: s.name, Key: key})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	return protoconv.MountsFromProto(resp.Mounts), nil
}

// Prepare implements snapshots.Snapshotter.
func (s *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	labels, err := snapshots.LabelsOf(opts)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Prepare(ctx, &api.PrepareSnapshotRequest{Snapshotter: s.name, Key: key, Parent: parent, Labels: labels})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	return protoconv.MountsFromProto(resp.Mounts), nil
}

// View implements snapshots.Snapshotter.
func (s *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	labels, err := snapshots.LabelsOf(opts)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.View(ctx, &api.ViewSnapshotRequest{Snapshotter: s.name, Key: key, Parent: parent, Labels: labels})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	return protoconv.MountsFromProto(resp.Mounts), nil
}

// Commit implements snapshots.Snapshotter. snapshots.WithParent travels as
// the label snapshots.LabelCommitParent, which only hulld's snapshots
// service understands.
func (s *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	labels, err := snapshots.LabelsOf(opts)
	if err != nil {
		return err
	}
	if parent, _ := snapshots.ParentOf(opts); parent != "" {
		labels = maps.Clone(labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[snapshots.LabelCommitParent] = parent
	}
	_, err = s.client.Commit(ctx, &api.CommitSnapshotRequest{Snapshotter: s.name, Name: name, Key: key, Labels: labels})
	return errgrpc.ToNative(err)
}

// Remove implements snapshots.Snapshotter.
func (s *Snapshotter) Remove(ctx context.Context, key string) error {
	_, err := s.client.Remove(ctx, &api.RemoveSnapshotRequest{Snapshotter: s.name, Key: key})
	return errgrpc.ToNative(err)
}

// Walk implements snapshots.Snapshotter.
func (s *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.client.List(ctx, &api.ListSnapshotsRequest{Snapshotter: s.name, Filters: filters})
	if err != nil {
		return errgrpc.ToNative(err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errgrpc.ToNative(err)
		}
		for _, i := range resp.Info {
			if err := fn(ctx, snapInfoFromProto(i)); err != nil {
				return err
			}
		}
	}
}

// Cleanup implements snapshots.Cleaner.
func (s *Snapshotter) Cleanup(ctx context.Context) error {
	_, err := s.client.Cleanup(ctx, &api.CleanupRequest{Snapshotter: s.name})
	return errgrpc.ToNative(err)
}

// Close closes the connection if the snapshotter owns it.
func (s *Snapshotter) Close() error {
	if s.closer != nil {
		return s.closer.Close()
	}
	return nil
}

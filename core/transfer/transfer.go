// Package transfer implements containerd's Transfer operations over hull's
// stores: an object moves from a source to a destination, both given as
// the typed messages of containerd's transfer API
// (github.com/containerd/containerd/api/types/transfer), and the pair
// decides the operation:
//
//	OCIRegistry       -> ImageStore          pull (and unpack)
//	ImageStore        -> OCIRegistry         push
//	ImageImportStream -> ImageStore          import an archive
//	ImageStore        -> ImageExportStream   export an archive
//	ImageStore        -> ImageStore          tag
//	ImageImportStream -> ImageExportStream   echo the bytes back
//
// Any other pair is NotImplemented, naming both type URLs. Byte streams,
// progress and registry credentials travel over streams the client opened
// with the Streaming API (core/streaming), found by the names the messages
// carry. Pull and push run hull's one pull and push path (core/pull,
// core/push) with its hosts.toml handling; archives are read and written by
// core/imagearchive.
//
// Every operation runs under its own lease: what a failed transfer stored
// is collected, and images are recorded only once all their content is in.
package transfer

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/api/types"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/remotes/registry"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/streaming"
)

// Progress is one progress event, as containerd's clients show them: an
// Event with no Name is a status line; with a Name it is the state of one
// job (a blob) with Progress of Total bytes.
type Progress struct {
	Event    string
	Name     string
	Parents  []string
	Progress int64
	Total    int64
	Desc     *ocispec.Descriptor
}

// Service runs transfers. The stores and managers are required; the rest
// have defaults.
type Service struct {
	Content content.Store
	Images  images.Store
	Leases  leases.Manager
	Streams streaming.Getter
	// Snapshotter returns the namespaced snapshotter name ("" the
	// default) for unpacking pulled and imported images.
	Snapshotter func(name string) (snapshots.Snapshotter, error)
	// DefaultSnapshotter names the snapshotter "" means.
	DefaultSnapshotter string
	Applier            diff.Applier
	// ParallelUnpack says how many layers an unpack into a snapshotter
	// may apply at once; nil: one.
	ParallelUnpack func(snapshotter string) int
	// HostsDir is the hosts.toml directory of pulls and pushes that name
	// none ("" hull's default).
	HostsDir string
	// MaxConcurrentDownloads bounds parallel blob fetches of a pull.
	MaxConcurrentDownloads int
	// LayerFetchChunk, when positive, fetches a large layer as ranges of
	// that many bytes, MaxConcurrentDownloads at a time, where the
	// registry serves ranges (containerd's concurrent_layer_fetch_buffer);
	// 0 fetches each blob as one request, as containerd does by default.
	LayerFetchChunk int64
	// MaxConcurrentUploads bounds parallel blob uploads of a push; 0: 3.
	MaxConcurrentUploads int
	// MaxUnpackLayers, when positive, bounds ParallelUnpack (containerd's
	// max_concurrent_unpacks); 0 leaves it to the snapshotter.
	MaxUnpackLayers int
	// WindowTimeout fails an export whose client grants no window for
	// that long; 0 means one minute.
	WindowTimeout time.Duration
	// Transports are the registry clients the transfers share, so that a
	// pull reuses the connections of the transfers before it; nil gives
	// each transfer clients of its own.
	Transports *registry.Transports
}

// Request is one Transfer call.
type Request struct {
	Source, Destination *anypb.Any
	// ProgressStream names the client's stream for Progress messages; ""
	// for none.
	ProgressStream string
}

// Transfer runs req.
func (s *Service) Transfer(ctx context.Context, req Request) error {
	src, err := decode(req.Source)
	if err != nil {
		return s.unimplemented(req, err)
	}
	dst, err := decode(req.Destination)
	if err != nil {
		return s.unimplemented(req, err)
	}
	progress := func(Progress) {}
	if req.ProgressStream != "" {
		ps, err := s.Streams.Get(ctx, req.ProgressStream)
		if err != nil {
			return fmt.Errorf("progress stream: %w", err)
		}
		// Closing it ends the client's progress reader, before the call
		// returns.
		defer ps.Close()
		c := newCoalescer(progressSender(ps), progressInterval)
		// Before the stream closes: the last state of every job
		// reaches the client.
		defer c.close()
		progress = c.add
	}
	ctx, done, err := s.withLease(ctx)
	if err != nil {
		return err
	}
	defer done()
	switch src := src.(type) {
	case *transfertypes.OCIRegistry:
		if dst, ok := dst.(*transfertypes.ImageStore); ok {
			return s.pull(ctx, src, dst, progress)
		}
	case *transfertypes.ImageStore:
		switch dst := dst.(type) {
		case *transfertypes.OCIRegistry:
			return s.push(ctx, src, dst, progress)
		case *transfertypes.ImageExportStream:
			return s.export(ctx, src, dst, progress)
		case *transfertypes.ImageStore:
			return s.tag(ctx, src, dst)
		}
	case *transfertypes.ImageImportStream:
		switch dst := dst.(type) {
		case *transfertypes.ImageStore:
			return s.importArchive(ctx, src, dst, progress)
		case *transfertypes.ImageExportStream:
			return s.echo(ctx, src, dst)
		}
	}
	return s.unimplemented(req, nil)
}

func (s *Service) unimplemented(req Request, why error) error {
	msg := fmt.Sprintf("method Transfer not implemented for %s to %s", req.Source.GetTypeUrl(), req.Destination.GetTypeUrl())
	if why != nil {
		msg += " (" + why.Error() + ")"
	}
	return fmt.Errorf("%s: %w", msg, errdefs.ErrNotImplemented)
}

func decode(a *anypb.Any) (any, error) {
	if a == nil {
		return nil, fmt.Errorf("no object given")
	}
	return typeurl.UnmarshalAny(a)
}

// withLease holds everything a transfer stores until it returns: a lease
// the caller gave, or one of its own, deleted at the end.
func (s *Service) withLease(ctx context.Context) (context.Context, func(), error) {
	if _, ok := leases.FromContext(ctx); ok {
		return ctx, func() {}, nil
	}
	l, err := s.Leases.Create(ctx, fmt.Sprintf("transfer-%d", time.Now().UnixNano()), map[string]string{
		leases.ExpireLabel: time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339),
	})
	if err != nil {
		return nil, nil, err
	}
	return leases.WithLease(ctx, l.ID), func() { s.Leases.Delete(context.WithoutCancel(ctx), l.ID, false) }, nil
}

// progressSender sends progress events over the client's stream; a client
// that stops listening loses events, not the transfer.
func progressSender(ps streaming.Stream) func(Progress) {
	return func(p Progress) {
		m := &transfertypes.Progress{Event: p.Event, Name: p.Name, Parents: p.Parents, Progress: p.Progress, Total: p.Total}
		if p.Desc != nil {
			m.Desc = &types.Descriptor{MediaType: p.Desc.MediaType, Digest: p.Desc.Digest.String(), Size: p.Desc.Size, Annotations: p.Desc.Annotations}
		}
		a, err := typeurl.MarshalAny(m)
		if err != nil {
			return
		}
		_ = ps.Send(a)
	}
}

func (s *Service) windowTimeout() time.Duration {
	if s.WindowTimeout > 0 {
		return s.WindowTimeout
	}
	return time.Minute
}

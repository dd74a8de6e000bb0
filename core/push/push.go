// Package push uploads an image from the content store to a registry: the
// one push path behind the client library and hullctl.
//
// Blobs go before the manifests that name them and manifests before the
// index, so that a registry never holds a manifest whose blobs are missing.
// Blobs the registry has already are skipped; a blob that was pulled from
// another repository of the same registry is mounted from there rather than
// uploaded, when the registry allows it.
package push

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/pull"
	"github.com/hullrt/hull/core/remotes"
)

// AnnotationMountFrom on a descriptor given to a Pusher names a repository
// of the same registry that holds the blob, for a cross-repository mount.
const AnnotationMountFrom = "hull.io/distribution.source.repository"

// Options configure a push.
type Options struct {
	Resolver remotes.Resolver
	Content  content.Store
	// Platform picks the manifests of an index to push; default: all that
	// are present in the store (an index needs them to be valid).
	Platform platforms.MatchComparer
	// MaxConcurrentUploads bounds parallel blob uploads; default 3.
	MaxConcurrentUploads int
	// Progress, if set, is called (from several goroutines) as blobs move;
	// statuses are pull's: waiting, downloading (here: uploading), done,
	// exists.
	Progress func(pull.Progress)
}

// Push uploads the image whose target is desc to ref.
func Push(ctx context.Context, ref string, desc ocispec.Descriptor, o Options) error {
	if o.Resolver == nil || o.Content == nil {
		return fmt.Errorf("push %s: resolver and content store are required: %w", ref, errdefs.ErrInvalidArgument)
	}
	if o.MaxConcurrentUploads <= 0 {
		o.MaxConcurrentUploads = 3
	}
	pusher, err := o.Resolver.Pusher(ctx, ref)
	if err != nil {
		return err
	}
	host, _, _ := strings.Cut(ref, "/")
	p := &uploader{o: o, pusher: pusher, host: host, sem: make(chan struct{}, o.MaxConcurrentUploads)}
	if err := p.pushTree(ctx, desc); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

type uploader struct {
	o      Options
	pusher remotes.Pusher
	host   string
	sem    chan struct{}
}

func (p *uploader) progress(desc ocispec.Descriptor, st pull.Status, n int64) {
	if p.o.Progress != nil {
		p.o.Progress(pull.Progress{Desc: desc, Status: st, Offset: n})
	}
}

func (p *uploader) pushTree(ctx context.Context, desc ocispec.Descriptor) error {
	if images.IsIndex(desc.MediaType) || images.IsManifest(desc.MediaType) {
		data, err := images.ReadManifest(ctx, p.o.Content, desc)
		if err != nil {
			return err
		}
		children, _, err := images.ParseChildren(desc, data)
		if err != nil {
			return err
		}
		var todo []ocispec.Descriptor
		for _, ch := range children {
			if images.IsIndex(desc.MediaType) {
				if ch.Platform != nil && p.o.Platform != nil && !p.o.Platform.Match(*ch.Platform) {
					continue
				}
				if _, err := p.o.Content.Info(ctx, ch.Digest); errdefs.IsNotFound(err) {
					if p.o.Platform != nil {
						return fmt.Errorf("manifest %s of platform %s is not in the store: pull it first: %w", ch.Digest, platformOf(ch), err)
					}
					return fmt.Errorf("manifest %s (%s) of index %s is not in the store: pull all platforms first, or push one platform: %w", ch.Digest, platformOf(ch), desc.Digest, err)
				}
			}
			p.progress(ch, pull.StatusWaiting, 0)
			todo = append(todo, ch)
		}
		if err := images.EachConcurrently(todo, func(ch ocispec.Descriptor) error { return p.pushTree(ctx, ch) }); err != nil {
			return err
		}
	}
	return p.pushBlob(ctx, desc)
}

func platformOf(d ocispec.Descriptor) string {
	if d.Platform == nil {
		return "unknown platform"
	}
	return platforms.Format(*d.Platform)
}

func (p *uploader) pushBlob(ctx context.Context, desc ocispec.Descriptor) error {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.sem }()
	info, err := p.o.Content.Info(ctx, desc.Digest)
	if err != nil {
		return err
	}
	if repo := images.DistributionSource(info.Labels, p.host); repo != "" {
		desc.Annotations = map[string]string{AnnotationMountFrom: strings.Split(repo, ",")[0]}
	}
	w, err := p.pusher.Push(ctx, desc)
	if errdefs.IsAlreadyExists(err) {
		p.progress(desc, pull.StatusExists, desc.Size)
		return nil
	}
	if err != nil {
		return err
	}
	defer w.Close()
	p.progress(desc, pull.StatusDownloading, 0)
	ra, err := p.o.Content.ReaderAt(ctx, desc)
	if err != nil {
		return err
	}
	defer ra.Close()
	if _, err := io.Copy(w, io.NewSectionReader(ra, 0, ra.Size())); err != nil {
		return fmt.Errorf("upload %s: %w", desc.Digest, err)
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("upload %s: %w", desc.Digest, err)
	}
	p.progress(desc, pull.StatusDone, desc.Size)
	return nil
}

package transfer

import (
	"context"
	"fmt"
	"io"
	"sync"

	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/imagearchive"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/pull"
	"github.com/hullrt/hull/core/push"
	"github.com/hullrt/hull/core/remotes/credentials"
	"github.com/hullrt/hull/core/remotes/registry"
	"github.com/hullrt/hull/core/streaming"
	"github.com/hullrt/hull/core/unpack"
)

func registryString(r *transfertypes.OCIRegistry) string {
	return fmt.Sprintf("OCI Registry (%s)", r.GetReference())
}

// resolver builds the registry client an OCIRegistry describes: its hosts
// directory (or the service's), plain http for "http", and credentials
// asked over its auth stream.
func (s *Service) resolver(ctx context.Context, r *transfertypes.OCIRegistry) (*registry.Resolver, error) {
	cfg := registry.Config{HostsDir: s.HostsDir, Transports: s.Transports}
	if res := r.GetResolver(); res != nil {
		if res.GetHostDir() != "" {
			cfg.HostsDir = res.GetHostDir()
		}
		switch res.GetDefaultScheme() {
		case "", "https":
		case "http":
			cfg.PlainHTTP = true
		default:
			return nil, fmt.Errorf("registry scheme %q: %w", res.GetDefaultScheme(), errdefs.ErrInvalidArgument)
		}
		if id := res.GetAuthStream(); id != "" {
			st, err := s.Streams.Get(ctx, id)
			if err != nil {
				return nil, fmt.Errorf("auth stream: %w", err)
			}
			cfg.Credentials = &streamCredentials{s: st, ref: r.GetReference()}
		}
	}
	return registry.NewFromConfig(cfg), nil
}

// streamCredentials asks the client for a host's credentials over its auth
// stream, one question at a time.
type streamCredentials struct {
	mu  sync.Mutex
	s   streaming.Stream
	ref string
}

func (c *streamCredentials) Get(_ context.Context, host string) (credentials.Credentials, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := typeurl.MarshalAny(&transfertypes.AuthRequest{Host: host, Reference: c.ref})
	if err != nil {
		return credentials.Credentials{}, err
	}
	if err := c.s.Send(a); err != nil {
		return credentials.Credentials{}, fmt.Errorf("ask credentials for %s: %w", host, err)
	}
	resp, err := c.s.Recv()
	if err != nil {
		return credentials.Credentials{}, fmt.Errorf("credentials for %s: %w", host, err)
	}
	var ar transfertypes.AuthResponse
	if err := typeurl.UnmarshalTo(resp, &ar); err != nil {
		return credentials.Credentials{}, fmt.Errorf("credentials for %s: %v: %w", host, err, errdefs.ErrInvalidArgument)
	}
	switch ar.GetAuthType() {
	case transfertypes.AuthType_CREDENTIALS:
		return credentials.Credentials{Username: ar.GetUsername(), Secret: ar.GetSecret()}, nil
	case transfertypes.AuthType_REFRESH:
		return credentials.Credentials{IdentityToken: ar.GetSecret()}, nil
	case transfertypes.AuthType_NONE:
		return credentials.Credentials{}, nil
	}
	return credentials.Credentials{}, fmt.Errorf("credentials for %s: auth type %s: %w", host, ar.GetAuthType(), errdefs.ErrNotImplemented)
}

// capture is an images.Store that records nothing: the pull path stores
// its image through it, and the transfer names the result by its own
// rules afterwards.
type capture struct {
	images.Store
	target ocispec.Descriptor
}

func (c *capture) Create(_ context.Context, img images.Image) (images.Image, error) {
	c.target = img.Target
	return img, nil
}

func (c *capture) Update(_ context.Context, img images.Image, _ ...string) (images.Image, error) {
	c.target = img.Target
	return img, nil
}

// blobProgress turns the pull path's blob states into containerd's job
// events.
func blobProgress(progress func(Progress), verb string, tree *progressTree) func(pull.Progress) {
	return func(p pull.Progress) {
		name := refKey(p.Desc)
		ev := Progress{Name: name, Progress: p.Offset, Total: p.Desc.Size, Desc: &p.Desc, Parents: tree.parents(p)}
		switch p.Status {
		case pull.StatusWaiting:
			ev.Event = eventWaiting
		case pull.StatusDownloading, pull.StatusLocked, pull.StatusRetrying:
			ev.Event = verb
		case pull.StatusDone:
			ev.Event, ev.Progress = eventComplete, p.Desc.Size
		case pull.StatusExists:
			ev.Event, ev.Progress = "already exists", p.Desc.Size
		default:
			return
		}
		progress(ev)
	}
}

// progressTree gives a pull's events the parents containerd's clients draw
// their tree from: the reference for what it resolved to, the index or
// manifest that named each other blob. A nil tree gives none (a push's
// events, flat as containerd's).
type progressTree struct {
	root     string
	parentOf sync.Map // digest -> its parent's name, for the unpack's events
}

func (t *progressTree) parents(p pull.Progress) []string {
	if t == nil {
		return nil
	}
	name := t.root
	if p.Parent != nil {
		name = refKey(*p.Parent)
	}
	t.parentOf.Store(p.Desc.Digest, name)
	return []string{name}
}

// parentsOf returns the parents a blob's earlier events had.
func (t *progressTree) parentsOf(d digest.Digest) []string {
	if t == nil {
		return nil
	}
	if name, ok := t.parentOf.Load(d); ok {
		return []string{name.(string)}
	}
	return nil
}

// refKey names a blob's job as containerd's clients expect.
func refKey(d ocispec.Descriptor) string {
	switch {
	case images.IsIndex(d.MediaType):
		return "index-" + d.Digest.String()
	case images.IsManifest(d.MediaType):
		return "manifest-" + d.Digest.String()
	case d.MediaType == ocispec.MediaTypeImageConfig || d.MediaType == images.MediaTypeDockerConfig:
		return "config-" + d.Digest.String()
	}
	return "layer-" + d.Digest.String()
}

func (s *Service) pull(ctx context.Context, src *transfertypes.OCIRegistry, dst *transfertypes.ImageStore, progress func(Progress)) error {
	progress(Progress{Event: "Resolving from " + registryString(src)})
	res, err := s.resolver(ctx, src)
	if err != nil {
		return err
	}
	match, all := platformMatcher(dst.GetPlatforms())
	c := &capture{Store: s.Images}
	progress(Progress{Event: "Pulling from " + registryString(src)})
	tree := &progressTree{root: src.GetReference()}
	po := pull.Options{
		Resolver: res, Content: s.Content, Images: c, Leases: s.Leases,
		Platform: match, AllPlatforms: all, MaxConcurrentDownloads: s.MaxConcurrentDownloads,
		Progress: blobProgress(progress, eventDownloading, tree),
		// One request per blob unless chunked fetches are configured:
		// ranges cost the registry a request each.
		ParallelChunks: 1,
		OnResolved: func(_ string, desc ocispec.Descriptor) {
			progress(Progress{Event: "fetching image content", Name: tree.root, Desc: &desc})
		},
	}
	unpacks := dst.GetUnpacks()
	var ov *unpack.Overlap
	if len(unpacks) == 1 && !all {
		// The one unpack applies layers as they arrive, while later ones
		// download, if the pull reads its platform's manifest.
		p, uo, err := s.unpackOptions(unpacks[0], progress, tree)
		if err != nil {
			return err
		}
		want := platforms.Only(p)
		ov = unpack.NewOverlap(ctx, uo)
		blobs := po.Progress
		po.Progress = func(p pull.Progress) {
			if p.Status == pull.StatusDone || p.Status == pull.StatusExists {
				ov.Stored(p.Desc.Digest)
			}
			blobs(p)
		}
		po.OnManifest = func(_ context.Context, desc ocispec.Descriptor, m ocispec.Manifest) {
			if desc.Platform == nil || want.Match(*desc.Platform) {
				ov.Start(m)
			}
		}
	}
	if s.LayerFetchChunk > 0 {
		po.ChunkSize, po.ParallelChunks, po.ParallelThreshold = s.LayerFetchChunk, max(s.MaxConcurrentDownloads, 1), s.LayerFetchChunk
	}
	_, err = pull.Pull(ctx, src.GetReference(), po)
	if ov != nil {
		started, uerr := ov.Wait(err != nil)
		if err == nil && uerr != nil {
			return fmt.Errorf("unpack %s: %w", c.target.Digest, uerr)
		}
		if started {
			unpacks = nil
		}
	}
	if err != nil {
		return err
	}
	if err := s.unpackAll(ctx, c.target, unpacks, progress, tree); err != nil {
		return err
	}
	imgs, err := s.record(ctx, Names(dst, c.target, false))
	if err != nil {
		return err
	}
	for _, img := range imgs {
		progress(Progress{Event: "saved", Name: img.Name, Desc: &img.Target})
	}
	progress(Progress{Event: "Completed pull from " + registryString(src)})
	return nil
}

// unpackOptions are the platform and the options of unpack configuration
// u: its snapshotter (the default one when it names none) and the layer
// progress reported as containerd's "extracted" events.
func (s *Service) unpackOptions(u *transfertypes.UnpackConfiguration, progress func(Progress), tree *progressTree) (ocispec.Platform, unpack.Options, error) {
	p := platforms.DefaultSpec()
	if u.GetPlatform() != nil {
		p = ociPlatform(u.GetPlatform())
	}
	name := u.GetSnapshotter()
	if name == "" {
		name = s.DefaultSnapshotter
	}
	sn, err := s.Snapshotter(name)
	if err != nil {
		return p, unpack.Options{}, fmt.Errorf("unpack into %s: %w", name, err)
	}
	parallel := 1
	if s.ParallelUnpack != nil {
		parallel = s.ParallelUnpack(name)
	}
	if s.MaxUnpackLayers > 0 {
		parallel = min(parallel, s.MaxUnpackLayers)
	}
	return p, unpack.Options{
		Content: s.Content, Snapshotter: sn, SnapshotterName: name, Applier: s.Applier,
		ParallelLayers: parallel, Leases: s.Leases,
		Progress: func(layer ocispec.Descriptor, _ digest.Digest, status string) {
			if status == "applied" {
				progress(Progress{Event: "extracted", Name: refKey(layer), Progress: layer.Size, Total: layer.Size, Desc: &layer, Parents: tree.parentsOf(layer.Digest)})
			}
		},
	}, nil
}

// unpackAll unpacks target's manifest for each unpack configuration.
func (s *Service) unpackAll(ctx context.Context, target ocispec.Descriptor, unpacks []*transfertypes.UnpackConfiguration, progress func(Progress), tree *progressTree) error {
	for _, u := range unpacks {
		p, uo, err := s.unpackOptions(u, progress, tree)
		if err != nil {
			return err
		}
		m, err := s.platformManifest(ctx, target, platforms.Only(p))
		if errdefs.IsNotFound(err) {
			continue // containerd skips what it cannot unpack
		}
		if err != nil {
			return err
		}
		if _, err := unpack.Unpack(ctx, m, uo); err != nil {
			return fmt.Errorf("unpack %s into %s: %w", m.Digest, uo.SnapshotterName, err)
		}
	}
	return nil
}

// platformManifest returns target when it is a manifest, else the best
// match of the index (NotFound when none matches or is present).
func (s *Service) platformManifest(ctx context.Context, target ocispec.Descriptor, match platforms.MatchComparer) (ocispec.Descriptor, error) {
	if images.IsManifest(target.MediaType) {
		return target, nil
	}
	if !images.IsIndex(target.MediaType) {
		return ocispec.Descriptor{}, fmt.Errorf("%s has media type %q: %w", target.Digest, target.MediaType, errdefs.ErrNotFound)
	}
	data, err := images.ReadManifest(ctx, s.Content, target)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	children, _, err := images.ParseChildren(target, data)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	best := -1
	for i, ch := range children {
		if images.IsIndex(ch.MediaType) {
			if m, err := s.platformManifest(ctx, ch, match); err == nil {
				return m, nil
			}
			continue
		}
		if ch.Platform == nil || !match.Match(*ch.Platform) {
			continue
		}
		if _, err := s.Content.Info(ctx, ch.Digest); err != nil {
			continue
		}
		if best < 0 || match.Less(*ch.Platform, *children[best].Platform) {
			best = i
		}
	}
	if best < 0 {
		return ocispec.Descriptor{}, fmt.Errorf("index %s has no manifest for the platform asked for: %w", target.Digest, errdefs.ErrNotFound)
	}
	return children[best], nil
}

func (s *Service) push(ctx context.Context, src *transfertypes.ImageStore, dst *transfertypes.OCIRegistry, progress func(Progress)) error {
	imgs, err := s.lookup(ctx, src)
	if err != nil {
		return err
	}
	res, err := s.resolver(ctx, dst)
	if err != nil {
		return err
	}
	var match platforms.MatchComparer
	if len(src.GetPlatforms()) > 0 {
		match, _ = platformMatcher(src.GetPlatforms())
	}
	progress(Progress{Event: "Pushing to " + registryString(dst)})
	if err := push.Push(ctx, dst.GetReference(), imgs[0].Target, push.Options{
		Resolver: res, Content: s.Content, Platform: match, MaxConcurrentUploads: s.MaxConcurrentUploads,
		Progress: blobProgress(progress, eventUploading, nil),
	}); err != nil {
		return err
	}
	progress(Progress{Event: "Completed push to " + registryString(dst)})
	return nil
}

func (s *Service) tag(ctx context.Context, src, dst *transfertypes.ImageStore) error {
	imgs, err := s.lookup(ctx, src)
	if err != nil {
		return err
	}
	_, err = s.record(ctx, Names(dst, imgs[0].Target, false))
	return err
}

func (s *Service) export(ctx context.Context, src *transfertypes.ImageStore, dst *transfertypes.ImageExportStream, progress func(Progress)) error {
	st, err := s.Streams.Get(ctx, dst.GetStream())
	if err != nil {
		return fmt.Errorf("export stream: %w", err)
	}
	w := streaming.NewWriter(ctx, st, s.windowTimeout())
	// The client's archive ends when the stream does: close it before
	// answering, also on failure.
	defer w.Close()
	progress(Progress{Event: "Exporting"})
	imgs, err := s.lookup(ctx, src)
	if err != nil {
		return err
	}
	o := imagearchive.WriteOptions{AllPlatforms: dst.GetAllPlatforms(), SkipDockerManifest: dst.GetSkipCompatibilityManifest()}
	if len(dst.GetPlatforms()) > 0 {
		o.Platform, _ = platformMatcher(dst.GetPlatforms())
	}
	if err := imagearchive.Write(ctx, s.Content, w, imgs, o); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	progress(Progress{Event: "Completed export"})
	return nil
}

func (s *Service) echo(ctx context.Context, src *transfertypes.ImageImportStream, dst *transfertypes.ImageExportStream) error {
	in, err := s.Streams.Get(ctx, src.GetStream())
	if err != nil {
		return fmt.Errorf("import stream: %w", err)
	}
	r := streaming.NewReader(in)
	defer r.Close()
	out, err := s.Streams.Get(ctx, dst.GetStream())
	if err != nil {
		return fmt.Errorf("export stream: %w", err)
	}
	w := streaming.NewWriter(ctx, out, s.windowTimeout())
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		return err
	}
	return w.Close()
}

package images

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/pull"
)

// PullImage pulls the image, unpacks it into the snapshotter and records its
// names (see the package documentation). The response's image_ref is the
// image id.
func (s *Service) PullImage(ctx context.Context, r *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	img, err := s.pull(ctx, r.GetImage().GetImage(), r.GetAuth())
	if err != nil {
		return nil, err
	}
	return &runtime.PullImageResponse{ImageRef: img.ID}, nil
}

// EnsurePulled resolves ref, pulling it (with auth, which may be nil) when
// absent, and makes sure it is unpacked into the configured snapshotter.
func (s *Service) EnsurePulled(ctx context.Context, ref string, auth *runtime.AuthConfig) (Image, error) {
	img, err := s.Resolve(ctx, ref)
	if errdefs.IsNotFound(err) {
		return s.pull(ctx, ref, auth)
	}
	if err != nil {
		return Image{}, err
	}
	if err := s.ensureUnpacked(ctx, img); err != nil {
		return Image{}, err
	}
	return img, nil
}

// ensureUnpacked unpacks img into the snapshotter unless its top snapshot
// is there already.
func (s *Service) ensureUnpacked(ctx context.Context, img Image) error {
	if img.ChainID == "" {
		return nil
	}
	ctx = s.nsCtx(ctx)
	sn, err := s.snapshotterName(ctx)
	if err != nil {
		return err
	}
	if _, err := s.c.SnapshotService(sn).Stat(ctx, img.ChainID.String()); err == nil {
		return nil
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("image %s: snapshot %s: %w", img.Name, img.ChainID, err)
	}
	if _, err := s.c.Unpack(ctx, img.Name, client.WithSnapshotter(sn)); err != nil {
		return fmt.Errorf("unpack image %s into %s: %w", img.Name, sn, err)
	}
	return nil
}

// pull fetches ref and records it.
func (s *Service) pull(ctx context.Context, ref string, auth *runtime.AuthConfig) (Image, error) {
	named, err := normalizeRef(ref)
	if err != nil {
		return Image{}, err
	}
	name := named.String()
	creds, note, err := authCredentials(auth, reference.Domain(named))
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q: %w", ref, err)
	}
	ctx = s.nsCtx(ctx)
	log := s.log.With("image", name)
	if note != "" {
		log.WarnContext(ctx, note)
	}
	sn, err := s.snapshotterName(ctx)
	if err != nil {
		return Image{}, err
	}

	w := newWatchdog(ctx, s.cfg.PullProgressTimeout)
	defer w.stop()
	opts := []client.RemoteOpt{
		client.WithMaxConcurrentDownloads(s.cfg.MaxConcurrentDownloads),
		client.WithPullUnpack(sn, nil),
		client.WithProgress(w.progress),
	}
	if creds != nil {
		opts = append(opts, client.WithCredentials(creds))
	}
	if s.cfg.RegistryConfigPath != "" {
		opts = append(opts, client.WithHostsDir(s.cfg.RegistryConfigPath))
	}
	start := time.Now()
	rec, err := s.c.Pull(w.ctx, name, opts...)
	if err != nil {
		if cause := w.err(); cause != nil {
			// The pull's own error is the cancellation the watchdog caused.
			return Image{}, fmt.Errorf("pull image %q: %w (%v)", ref, cause, err)
		}
		return Image{}, fmt.Errorf("pull image %q: %w", ref, err)
	}
	w.stop()

	cimg := s.c.NewImage(rec)
	m, err := cimg.Manifest(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q: %w", ref, err)
	}
	id := m.Config.Digest
	if err := s.recordNames(ctx, named, rec.Target, id); err != nil {
		return Image{}, fmt.Errorf("pull image %q: %w", ref, err)
	}
	log.InfoContext(ctx, "pulled image", "id", id, "target", rec.Target.Digest, "snapshotter", sn, "took", time.Since(start).Round(time.Millisecond))

	v, err := s.load(ctx)
	if err != nil {
		return Image{}, err
	}
	e := v.get(id)
	if e == nil {
		// Removed between the pull and now: what was pulled is gone.
		return Image{}, fmt.Errorf("pull image %q: image %s was removed while it was pulled: %w", ref, id, errdefs.ErrNotFound)
	}
	return v.image(e, name), nil
}

// recordNames points the CRI's names of a pulled image at target: the
// reference pulled (recorded by the pull itself), the repo digest and the
// id, each labelled as the CRI's.
func (s *Service) recordNames(ctx context.Context, pulled reference.Named, target ocispec.Descriptor, id digest.Digest) error {
	names := []string{pulled.String()}
	if c, err := reference.WithDigest(reference.TrimNamed(pulled), target.Digest); err == nil && c.String() != pulled.String() {
		names = append(names, c.String())
	}
	names = append(names, id.String())
	for _, n := range names {
		if err := s.putName(ctx, n, target); err != nil {
			return err
		}
	}
	return nil
}

// putName makes the record name point at target with the CRI's label,
// creating it or updating what is there (a name re-pulled to a new target,
// or recorded before by another tool).
func (s *Service) putName(ctx context.Context, name string, target ocispec.Descriptor) error {
	is := s.c.ImageService()
	img := images.Image{Name: name, Target: target, Labels: map[string]string{ManagedLabel: ManagedValue}}
	_, err := is.Create(ctx, img)
	if err == nil {
		return nil
	}
	if !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("record image name %q: %w", name, err)
	}
	old, err := is.Get(ctx, name)
	if err == nil && old.Target.Digest == target.Digest && isManaged(old) {
		return nil
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("record image name %q: %w", name, err)
	}
	if _, err := is.Update(ctx, img, "target", "labels."+ManagedLabel); err != nil {
		if errdefs.IsNotFound(err) {
			// Deleted in between: create it after all.
			if _, err := is.Create(ctx, img); err == nil || errdefs.IsAlreadyExists(err) {
				return nil
			}
		}
		return fmt.Errorf("record image name %q: %w", name, err)
	}
	return nil
}

// watchdog fails a pull whose downloads stop moving: ctx is cancelled with
// an error saying so when no progress was reported for timeout while a
// blob (or the resolution of the reference, before any blob) is under way.
// Unpacking after the last download is local work and is not timed.
type watchdog struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	timeout time.Duration

	mu       sync.Mutex
	timer    *time.Timer
	last     time.Time
	inflight map[digest.Digest]bool
	seen     bool
	stopped  bool
	fired    error
}

func newWatchdog(ctx context.Context, timeout time.Duration) *watchdog {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{ctx: ctx, cancel: cancel, timeout: timeout, last: time.Now(), inflight: map[digest.Digest]bool{}}
	if timeout > 0 {
		w.timer = time.AfterFunc(timeout, w.check)
	}
	return w
}

// progress notes a blob's progress; the pull calls it from several
// goroutines.
func (w *watchdog) progress(p pull.Progress) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last, w.seen = time.Now(), true
	switch p.Status {
	case pull.StatusDone, pull.StatusExists:
		delete(w.inflight, p.Desc.Digest)
	default:
		w.inflight[p.Desc.Digest] = true
	}
	if w.timer != nil && !w.stopped {
		w.timer.Reset(w.timeout)
	}
}

// check runs when the timer fires: it fails the pull if it is still
// stalled, and otherwise waits again for the rest of the period (progress
// may have come just as the timer fired).
func (w *watchdog) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if w.seen && len(w.inflight) == 0 {
		// Between downloads (all done so far): nothing to wait for
		// from the registry; the next blob's progress re-arms it.
		return
	}
	if idle := time.Since(w.last); idle < w.timeout {
		w.timer.Reset(w.timeout - idle)
		return
	}
	w.fired = fmt.Errorf("no progress for %v: %w", w.timeout, errdefs.ErrUnavailable)
	w.cancel(w.fired)
}

// err is the watchdog's error if it stopped the pull.
func (w *watchdog) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fired != nil && errors.Is(context.Cause(w.ctx), w.fired) {
		return w.fired
	}
	return nil
}

// stop ends the watchdog and releases its context; it may be called more
// than once.
func (w *watchdog) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	w.cancel(nil)
}

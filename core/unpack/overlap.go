package unpack

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Overlap unpacks the manifest a pull reads while the pull goes on: each
// layer waits until the pull has stored its blob, so layers are applied
// while later ones download. The pull reports each stored blob with
// Stored and the first platform manifest it reads with Start; Wait
// returns the unpack's result.
type Overlap struct {
	o       Options
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	stored  map[digest.Digest]chan struct{}
	started bool
	done    chan error
}

// NewOverlap returns an Overlap that unpacks with o, within ctx.
func NewOverlap(ctx context.Context, o Options) *Overlap {
	ctx, cancel := context.WithCancel(ctx)
	return &Overlap{o: o, ctx: ctx, cancel: cancel, stored: map[digest.Digest]chan struct{}{}, done: make(chan error, 1)}
}

func (ov *Overlap) ch(d digest.Digest) chan struct{} {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	ch, ok := ov.stored[d]
	if !ok {
		ch = make(chan struct{})
		ov.stored[d] = ch
	}
	return ch
}

// Stored notes that blob d is in the content store.
func (ov *Overlap) Stored(d digest.Digest) {
	ch := ov.ch(d)
	ov.mu.Lock()
	defer ov.mu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// Start begins unpacking m; only the first call does anything.
func (ov *Overlap) Start(m ocispec.Manifest) {
	ov.mu.Lock()
	if ov.started {
		ov.mu.Unlock()
		return
	}
	ov.started = true
	ov.mu.Unlock()
	go func() {
		ready := func(ctx context.Context, d digest.Digest) error {
			select {
			case <-ov.ch(d):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		_, err := UnpackManifest(ov.ctx, m, ov.o, ready)
		ov.done <- err
	}()
}

// Wait returns whether an unpack started and, once it has ended, its
// result; after a failed pull it stops the unpack first.
func (ov *Overlap) Wait(pullFailed bool) (started bool, err error) {
	if pullFailed {
		ov.cancel()
	}
	defer ov.cancel()
	ov.mu.Lock()
	started = ov.started
	ov.mu.Unlock()
	if !started {
		return false, nil
	}
	return true, <-ov.done
}

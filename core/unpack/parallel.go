package unpack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
)

// detached is the outcome of applying one layer apart from the layers
// below it.
type detached struct {
	// key is the active snapshot holding the applied layer, to be
	// committed onto its parent; "" when there is none.
	key string
	// exists is set when the layer's snapshot was there already.
	exists bool
	// err is why the layer could not be applied apart: the committer then
	// applies it on its parent, which reports the error again if it is
	// the layer's own (a corrupt blob) rather than the detached apply's.
	err error
}

// prepared is a layer's snapshot, made before its blob is there.
type prepared struct {
	key    string
	mounts []mount.Mount
	// exists is set when the layer's snapshot was there already.
	exists bool
	err    error
}

// prepareAll prepares, for each layer not yet unpacked, the snapshot
// without parent that its detached apply will fill, all at once rather
// than each when its blob arrives: the metadata store and the snapshotter
// then record them in one transaction each (snapshots.PrepareMany), not
// one each, and the work is done while the first blobs download. Each
// layer gets exactly one result; the first layer's is first when that is
// not nil.
func prepareAll(ctx context.Context, o Options, layers []ocispec.Descriptor, chains []digest.Digest, first *prepared) []chan prepared {
	out := make([]chan prepared, len(layers))
	for i := range out {
		out[i] = make(chan prepared, 1)
	}
	go func() {
		var (
			reqs []snapshots.PrepareRequest
			idx  []int
		)
		for i := range layers {
			if i == 0 && first != nil {
				out[0] <- *first
				continue
			}
			if err := ctx.Err(); err != nil {
				out[i] <- prepared{err: err}
				continue
			}
			switch ok, err := o.exists(ctx, chains[i]); {
			case err != nil:
				out[i] <- prepared{err: err}
				continue
			case ok:
				out[i] <- prepared{exists: true}
				continue
			}
			reqs = append(reqs, snapshots.PrepareRequest{Key: extractKey(chains[i]), Opts: layerOpts(chains[i])})
			idx = append(idx, i)
		}
		for k, r := range snapshots.PrepareMany(ctx, o.Snapshotter, reqs) {
			out[idx[k]] <- preparedOf(layers[idx[k]], reqs[k].Key, r.Mounts, r.Err)
		}
	}()
	return out
}

// linkShared takes the bottom of the chain as an unpack one layer after
// another would, before anything is prepared apart: the layers this
// namespace has, and those another namespace has, which the snapshotter
// links in when asked for a layer on its parent (LabelSnapshotRef).
// Prepared apart, such a layer would be applied, and the result dropped
// when its commit links it. It returns how many layers it took, which of
// them it linked and, when it prepared the first layer's snapshot (the
// same apart or in chain), that snapshot. It links from the first layer up
// only: above layers this namespace has, it stops rather than prepare on
// the parent a snapshot that a detached apply cannot use.
func linkShared(ctx context.Context, o Options, layers []ocispec.Descriptor, chains []digest.Digest) (int, []int, *prepared, error) {
	var linked []int
	for n, layer := range layers {
		chain := chains[n]
		var parent string
		if n > 0 {
			parent = chains[n-1].String()
			if len(linked) == 0 {
				// Only what this namespace has is below: stop at the
				// first layer it lacks, without preparing it on parent.
				if ok, err := o.exists(ctx, chain); err != nil || !ok {
					return n, nil, nil, err
				}
				o.progress(layer, chain, "exists")
				continue
			}
		}
		p, found := prepareLayer(ctx, o, layer, chain, parent)
		switch {
		case p.err != nil:
			return n, linked, nil, p.err
		case p.exists:
			if found {
				linked = append(linked, n)
			}
			o.progress(layer, chain, "exists")
		case n == 0:
			return 0, nil, &p, nil
		default:
			// Made on its parent: the layer is applied apart after all.
			if err := o.Snapshotter.Remove(context.WithoutCancel(ctx), p.key); err != nil && !errdefs.IsNotFound(err) {
				return n, linked, nil, fmt.Errorf("remove snapshot %s: %w", p.key, err)
			}
			return n, linked, nil, nil
		}
	}
	return len(layers), linked, nil, nil
}

// labelLinked labels the blobs of the linked layers with their diffIDs,
// as applied layers' are, once the pull has stored them all
// (labelLayers); the returned function waits for that and gives the
// first error.
func labelLinked(ctx context.Context, o Options, layers []ocispec.Descriptor, diffIDs []digest.Digest, linked []int, wait func(digest.Digest) error) func() error {
	done := make(chan error, 1)
	go func() {
		for _, i := range linked {
			if err := wait(layers[i].Digest); err != nil {
				done <- err
				return
			}
		}
		done <- labelLayers(ctx, o, layers, diffIDs, linked)
	}()
	return func() error { return <-done }
}

// unpackParallel applies layers up to o.ParallelLayers at once, each into a
// snapshot without parent, and commits them in chain order, each onto the
// one below (snapshots.WithParent). Layer 0 has no parent anyway and is
// applied the ordinary way. A layer whose detached apply fails, or whose
// commit the snapshotter refuses, is applied again on its parent: the
// result is the same chain of snapshots an unpack one layer after another
// makes, with the same content in each. The bottom of the chain that is
// there already, here or in another namespace, is taken first
// (linkShared); the snapshots of the others are prepared ahead of the
// applies (prepareAll).
func unpackParallel(ctx context.Context, o Options, layers []ocispec.Descriptor, diffIDs, chains []digest.Digest, wait func(digest.Digest) error) (digest.Digest, error) {
	if fn := o.Progress; fn != nil {
		// Callers write progress lines; they need not lock.
		var mu sync.Mutex
		o.Progress = func(layer ocispec.Descriptor, chain digest.Digest, status string) {
			mu.Lock()
			defer mu.Unlock()
			fn(layer, chain, status)
		}
	}
	n, linked, first, err := linkShared(ctx, o, layers, chains)
	labelled := labelLinked(ctx, o, layers, diffIDs, linked, wait)
	if err != nil {
		labelled()
		return "", err
	}
	if n == len(layers) {
		return chains[n-1], labelled()
	}
	var base digest.Digest
	if n > 0 {
		base = chains[n-1]
	}
	layers, diffIDs, chains = layers[n:], diffIDs[n:], chains[n:]
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Each layer gets exactly one result: from its apply, or the
	// dispatcher's cancellation error for those never started.
	results := make([]chan detached, len(layers))
	for i := range results {
		results[i] = make(chan detached, 1)
	}
	var wg sync.WaitGroup
	preps := prepareAll(ctx, o, layers, chains, first)
	// The dispatcher starts applies in layer order, never more than
	// ParallelLayers at once, so that the layer the committer waits for
	// is never queued behind later ones.
	slots := make(chan struct{}, o.ParallelLayers)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range layers {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				for j := i; j < len(layers); j++ {
					results[j] <- detached{err: ctx.Err()}
					// Its snapshot may be made even so.
					if p := <-preps[j]; p.key != "" {
						o.Snapshotter.Remove(context.WithoutCancel(ctx), p.key)
					}
				}
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := applyDetached(ctx, o, layers[i], diffIDs[i], chains[i], base != "" || i > 0, wait, <-preps[i])
				<-slots
				results[i] <- r
			}()
		}
	}()
	top, err := commitApplied(ctx, o, base, layers, diffIDs, chains, results, wait, func() {
		cancel()
		wg.Wait()
	})
	if lerr := labelled(); err == nil && lerr != nil {
		return "", lerr
	}
	return top, err
}

// commitApplied commits the layers' snapshots in chain order onto base
// (the committed chain below the first layer, "" for none), as their
// detached applies deliver them in results (exactly one each), applying on
// its parent a layer that could not be applied apart. Before it returns,
// it calls stop, which must end the applies still running, and removes
// the snapshots of the layers it did not commit.
func commitApplied(ctx context.Context, o Options, base digest.Digest, layers []ocispec.Descriptor, diffIDs, chains []digest.Digest, results []chan detached, wait func(digest.Digest) error, stop func()) (digest.Digest, error) {
	// got holds the results the committer has taken from results. It
	// waits for every layer's apply before it commits: the layers
	// applied apart, up to one that is not, go as one chain, one
	// transaction in each store. Committing each run of layers as it
	// became ready took a dozen chains for 40 small layers, each two
	// transactions, and bought nothing: the pull needs the top of the
	// chain, and an unpack that stops drops what it applied anyway.
	got := make([]*detached, len(layers))
	take := func(i int) *detached {
		if got[i] == nil {
			r := <-results[i]
			got[i] = &r
		}
		return got[i]
	}
	next := 0 // the first layer the committer has not dealt with
	// The committed layers' blobs are labelled with their uncompressed
	// digests all at once, when the chain is done (labelLayers): no
	// commit needs a label, and one written after each commit took a
	// transaction of its own, as the commits rarely overlapped them.
	var committed []int
	labelled := false
	defer func() {
		// Stop what is still applying and drop the snapshots of layers
		// applied but never committed (an error below stopped the
		// unpack).
		stop()
		if !labelled {
			labelLayers(context.WithoutCancel(ctx), o, layers, diffIDs, committed)
		}
		for ; next < len(layers); next++ {
			if r := take(next); r.key != "" {
				o.Snapshotter.Remove(context.WithoutCancel(ctx), r.key)
			}
		}
	}()

	parent := base
	for next < len(layers) {
		i := next
		layer, chain := layers[i], chains[i]
		r := take(i)
		inChain := r.err
		switch {
		case r.exists:
			o.progress(layer, chain, "exists")
		case r.err == nil:
			// This layer and the ones after it applied apart: one
			// chain, committed at once.
			links := []snapshots.CommitLink{{Name: chain.String(), Key: r.key}}
			for j := i + 1; j < len(layers); j++ {
				rj := take(j)
				if rj.err != nil || rj.exists {
					break
				}
				links = append(links, snapshots.CommitLink{Name: chains[j].String(), Key: rj.key})
			}
			n, err := snapshots.CommitChain(ctx, o.Snapshotter, parent.String(), links)
			if err == nil && n < len(links) {
				err = fmt.Errorf("snapshotter %s committed %d of a chain of %d and gave no error: %w", o.SnapshotterName, n, len(links), errdefs.ErrInternal)
			}
			for k := range n {
				got[i+k].key = "" // committed: no longer the unpack's to remove
				committed = append(committed, i+k)
				o.progress(layers[i+k], chains[i+k], "applied")
			}
			if n > 0 {
				next, parent = i+n, chains[i+n-1]
				if err == nil {
					continue
				}
				i, layer, chain, r = next, layers[next], chains[next], got[next]
			}
			// err is links[n]'s: layer i's.
			key := r.key
			r.key = ""
			o.Snapshotter.Remove(context.WithoutCancel(ctx), key)
			switch {
			case errdefs.IsAlreadyExists(err):
				o.progress(layer, chain, "exists")
			case errdefs.IsNotImplemented(err):
				inChain = err
			default:
				return "", fmt.Errorf("commit snapshot %s of layer %s: %w", chain, layer.Digest, err)
			}
		}
		next = i + 1
		if inChain != nil {
			if err := ctx.Err(); err != nil {
				return "", err
			}
			slog.DebugContext(ctx, "unpack: applying layer on its parent", "layer", layer.Digest, "chain", chain, "reason", inChain)
			if err := wait(layer.Digest); err != nil {
				return "", err
			}
			if err := unpackLayer(ctx, o, layer, diffIDs[i], chain, parent); err != nil {
				return "", err
			}
		}
		parent = chain
	}
	labelled = true
	if err := labelLayers(ctx, o, layers, diffIDs, committed); err != nil {
		return "", err
	}
	return parent, nil
}

// labelLayers labels the blobs of the layers at idx with their diffIDs:
// in one write when the content store takes many updates at once
// (content.ManyUpdater), otherwise all at once, and returns the first
// error.
func labelLayers(ctx context.Context, o Options, layers []ocispec.Descriptor, diffIDs []digest.Digest, idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	if u, ok := o.Content.(content.ManyUpdater); ok {
		infos := make([]content.Info, len(idx))
		for k, i := range idx {
			infos[k] = content.Info{Digest: layers[i].Digest, Labels: map[string]string{LabelUncompressed: diffIDs[i].String()}}
		}
		return u.UpdateMany(ctx, infos, "labels."+LabelUncompressed)
	}
	errs := make(chan error, len(idx))
	for _, i := range idx {
		go func() { errs <- o.labelUncompressed(ctx, layers[i], diffIDs[i]) }()
	}
	var first error
	for range idx {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// applyDetached applies layer into p, its snapshot prepared without
// parent, as an upper directory to be stacked on its parent when rebase is
// set (the layer has one).
func applyDetached(ctx context.Context, o Options, layer ocispec.Descriptor, diffID, chain digest.Digest, rebase bool, wait func(digest.Digest) error, p prepared) detached {
	switch {
	case p.err != nil:
		return detached{err: p.err}
	case p.exists:
		return detached{exists: true}
	}
	remove := func(err error) error {
		if rerr := o.Snapshotter.Remove(context.WithoutCancel(ctx), p.key); rerr != nil && !errdefs.IsNotFound(rerr) {
			err = errors.Join(err, fmt.Errorf("remove snapshot %s: %w", p.key, rerr))
		}
		return err
	}
	if err := wait(layer.Digest); err != nil {
		return detached{err: remove(err)}
	}
	o.progress(layer, chain, "applying")
	if err := applyInto(ctx, o, layer, diffID, p.mounts, rebase); err != nil {
		return detached{err: remove(fmt.Errorf("apply layer %s apart from its parent: %w", layer.Digest, err))}
	}
	return detached{key: p.key}
}

// applyInto applies layer into mounts, checking its diffID.
func applyInto(ctx context.Context, o Options, layer ocispec.Descriptor, diffID digest.Digest, mounts []mount.Mount, rebase bool) error {
	opts := []diff.ApplyOpt{diff.WithExpectedDiffID(diffID.String())}
	if rebase {
		opts = append(opts, diff.WithDetached())
	}
	applied, err := o.Applier.Apply(ctx, layer, mounts, opts...)
	if err == nil && applied.Digest != diffID {
		err = fmt.Errorf("layer %s: uncompressed digest %s, the image config says %s: %w", layer.Digest, applied.Digest, diffID, errdefs.ErrFailedPrecondition)
	}
	return err
}

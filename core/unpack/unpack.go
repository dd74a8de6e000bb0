// Package unpack turns an image's layers into snapshots: each layer is
// applied onto a snapshot of the layers below it and committed under its
// chain ID (containerd.io/snapshot.ref), so that images sharing lower layers
// share their snapshots. This is what makes a pulled image runnable.
package unpack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/labels"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/core/snapshots"
)

// Labels unpacking sets, as containerd does.
const (
	// LabelUncompressed on a layer blob records its diffID.
	LabelUncompressed = "containerd.io/uncompressed"
	// LabelSnapshotRef on a snapshot being prepared names the chain ID it
	// will be committed as.
	LabelSnapshotRef = labels.SnapshotRef
	// labelGCRefSnapshot + snapshotter, on an image config, keeps the
	// top layer's snapshot (and so its parents) alive.
	labelGCRefSnapshot = labels.GCRefSnapshot
)

// maxConfigSize bounds how much of an image config is read into memory.
const maxConfigSize = 8 << 20

// Options are what an unpack needs.
type Options struct {
	Content     content.Store
	Snapshotter snapshots.Snapshotter
	// SnapshotterName is recorded in the config's gc label.
	SnapshotterName string
	Applier         diff.Applier
	// Progress, if set, is told about each layer: "exists", "applying",
	// "applied". With ParallelLayers it is called from several goroutines,
	// one at a time, and a layer applied again in chain says "applying"
	// twice.
	Progress func(layer ocispec.Descriptor, chainID digest.Digest, status string)
	// ParallelLayers is how many layers may be applied at once. Above 1,
	// each layer is applied apart from those below it, into a snapshot
	// prepared without parent (diff.WithDetached), and committed onto its
	// parent in chain order (snapshots.WithParent); a layer that needs
	// the layers below it to apply (diff.ErrNeedsLower), or a snapshotter
	// that refuses WithParent, gets the layer applied again the ordinary
	// way. Set it only for snapshotters that honour WithParent: those
	// whose plugin exports snapshots.ExportParallelUnpack (see
	// ParallelFromExports). 0 or 1: each layer is applied on a snapshot
	// of the one below, one after another.
	ParallelLayers int
	// Leases, when set and ctx carries a lease, adds every layer snapshot
	// found already made to that lease before relying on it, so that a
	// collection cannot take it (its image being deleted meanwhile)
	// before the image's config names it.
	Leases leases.Manager
}

// exists reports whether snapshot chain is there, holding it with the
// context's lease (see Options.Leases) when it is. Most layers of a pull
// are new: they are looked up first, and only one found is leased and looked
// up again, since it may have been collected in between; a new one joins
// the lease when it is made.
func (o Options) exists(ctx context.Context, chain digest.Digest) (bool, error) {
	found, err := o.stat(ctx, chain)
	if !found || err != nil {
		return found, err
	}
	if id, ok := leases.FromContext(ctx); ok && o.Leases != nil {
		r := leases.Resource{Type: "snapshots/" + o.SnapshotterName, ID: chain.String()}
		if err := o.Leases.AddResource(ctx, id, r); err != nil {
			return false, err
		}
		return o.stat(ctx, chain)
	}
	return true, nil
}

func (o Options) stat(ctx context.Context, chain digest.Digest) (bool, error) {
	_, err := o.Snapshotter.Stat(ctx, chain.String())
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// ParallelFromExports returns the ParallelLayers a snapshotter plugin
// offers through its exports (snapshots.ExportParallelUnpack): 1 when it
// exports none or nonsense, so that snapshotters that do not honour
// snapshots.WithParent unpack one layer after another.
func ParallelFromExports(exports map[string]string) int {
	n, err := strconv.Atoi(exports[snapshots.ExportParallelUnpack])
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// Unpack applies the layers of manifest (a single-platform manifest) and
// returns the chain ID of the top layer. The caller holds a lease.
func Unpack(ctx context.Context, manifest ocispec.Descriptor, o Options) (digest.Digest, error) {
	data, err := images.ReadManifest(ctx, o.Content, manifest)
	if err != nil {
		return "", err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return "", fmt.Errorf("manifest %s: %v: %w", manifest.Digest, err, errdefs.ErrInvalidArgument)
	}
	return UnpackManifest(ctx, m, o, nil)
}

// UnpackManifest applies the layers of m, calling ready (when not nil)
// before it reads the config and before each layer: a pull that is still
// downloading blocks there until the blob is stored, so layers are applied
// while later ones download.
func UnpackManifest(ctx context.Context, m ocispec.Manifest, o Options, ready func(context.Context, digest.Digest) error) (digest.Digest, error) {
	wait := func(d digest.Digest) error {
		if ready == nil {
			return nil
		}
		return ready(ctx, d)
	}
	if m.Config.Size > maxConfigSize {
		return "", fmt.Errorf("config %s is %d bytes, more than %d: %w", m.Config.Digest, m.Config.Size, maxConfigSize, errdefs.ErrInvalidArgument)
	}
	if err := wait(m.Config.Digest); err != nil {
		return "", err
	}
	cfgData, err := readAll(ctx, o.Content, m.Config)
	if err != nil {
		return "", err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgData, &cfg); err != nil {
		return "", fmt.Errorf("config %s: %v: %w", m.Config.Digest, err, errdefs.ErrInvalidArgument)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(m.Layers) {
		return "", fmt.Errorf("image config %s lists %d layers (diff IDs) but the manifest has %d: %w", m.Config.Digest, len(diffIDs), len(m.Layers), errdefs.ErrInvalidArgument)
	}
	// Each layer's chain ID hashes the one below it: computed once here,
	// not from the bottom for each layer, which is quadratic in depth.
	chains := identity.ChainIDs(slices.Clone(diffIDs))
	var parent digest.Digest
	if o.ParallelLayers > 1 && len(m.Layers) > 1 {
		if parent, err = unpackParallel(ctx, o, m.Layers, diffIDs, chains, wait); err != nil {
			return "", err
		}
	} else {
		for i, layer := range m.Layers {
			chain := chains[i]
			if _, err := o.Snapshotter.Stat(ctx, chain.String()); err != nil {
				if err := wait(layer.Digest); err != nil {
					return "", err
				}
			}
			if err := unpackLayer(ctx, o, layer, diffIDs[i], chain, parent); err != nil {
				return "", err
			}
			parent = chain
		}
	}
	if len(m.Layers) > 0 {
		_, err := o.Content.Update(ctx, content.Info{Digest: m.Config.Digest, Labels: map[string]string{
			labelGCRefSnapshot + o.SnapshotterName: parent.String(),
		}}, "labels."+labelGCRefSnapshot+o.SnapshotterName)
		if err != nil {
			return "", err
		}
	}
	return parent, nil
}

func readAll(ctx context.Context, p content.Provider, desc ocispec.Descriptor) ([]byte, error) {
	ra, err := p.ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	if ra.Size() > maxConfigSize {
		return nil, fmt.Errorf("config %s is %d bytes, more than %d: %w", desc.Digest, ra.Size(), maxConfigSize, errdefs.ErrInvalidArgument)
	}
	buf := make([]byte, ra.Size())
	if _, err := ra.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", desc.Digest, err)
	}
	return buf, nil
}

func (o Options) progress(layer ocispec.Descriptor, chain digest.Digest, status string) {
	if o.Progress != nil {
		o.Progress(layer, chain, status)
	}
}

// extractKey is a new key for the active snapshot into which the layer of
// chain is applied, unique among concurrent unpacks of the same layer.
func extractKey(chain digest.Digest) string {
	return fmt.Sprintf("extract-%d-%s", time.Now().UnixNano(), chain.Encoded())
}

// prepareLayer prepares on parent ("" for none) the active snapshot into
// which layer is to be applied, labelled with its chain, unless the chain
// exists: in this namespace already (p.exists), or found by the Prepare
// (p.exists and found: another namespace's, now linked in, or made by
// another unpack meanwhile).
func prepareLayer(ctx context.Context, o Options, layer ocispec.Descriptor, chain digest.Digest, parent string) (p prepared, found bool) {
	if ok, err := o.exists(ctx, chain); err != nil {
		return prepared{err: err}, false
	} else if ok {
		return prepared{exists: true}, false
	}
	key := extractKey(chain)
	mounts, err := o.Snapshotter.Prepare(ctx, key, parent, layerOpts(chain)...)
	p = preparedOf(layer, key, mounts, err)
	return p, p.exists
}

// layerOpts are the options of the snapshot into which the layer of chain
// is applied: it is to be committed as chain, which the snapshotter may
// find made already, here or in another namespace.
func layerOpts(chain digest.Digest) []snapshots.Opt {
	return []snapshots.Opt{snapshots.WithLabels(map[string]string{LabelSnapshotRef: chain.String()})}
}

// preparedOf is the outcome of preparing key, the snapshot for layer: an
// AlreadyExists says that the layer's chain exists.
func preparedOf(layer ocispec.Descriptor, key string, mounts []mount.Mount, err error) prepared {
	switch {
	case errdefs.IsAlreadyExists(err):
		return prepared{exists: true}
	case err != nil:
		return prepared{err: fmt.Errorf("prepare snapshot for layer %s: %w", layer.Digest, err)}
	}
	return prepared{key: key, mounts: mounts}
}

// unpackLayer makes snapshot chain (on parent) from layer, unless it exists.
func unpackLayer(ctx context.Context, o Options, layer ocispec.Descriptor, diffID, chain, parent digest.Digest) error {
	p, _ := prepareLayer(ctx, o, layer, chain, parent.String())
	switch {
	case p.err != nil:
		return p.err
	case p.exists:
		o.progress(layer, chain, "exists")
		return nil
	}
	key, mounts := p.key, p.mounts
	o.progress(layer, chain, "applying")
	applied, err := o.Applier.Apply(ctx, layer, mounts, diff.WithExpectedDiffID(diffID.String()))
	if err == nil && applied.Digest != diffID {
		err = fmt.Errorf("layer %s: uncompressed digest %s, the image config says %s: %w", layer.Digest, applied.Digest, diffID, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		// No half-applied layer may be committed.
		if rerr := o.Snapshotter.Remove(context.WithoutCancel(ctx), key); rerr != nil && !errdefs.IsNotFound(rerr) {
			err = errors.Join(err, fmt.Errorf("remove snapshot %s: %w", key, rerr))
		}
		return fmt.Errorf("apply layer %s: %w", layer.Digest, err)
	}
	if err := o.Snapshotter.Commit(ctx, chain.String(), key); err != nil {
		if errdefs.IsAlreadyExists(err) {
			o.Snapshotter.Remove(context.WithoutCancel(ctx), key)
			o.progress(layer, chain, "exists")
			return nil
		}
		return fmt.Errorf("commit snapshot %s of layer %s: %w", chain, layer.Digest, err)
	}
	return o.committed(ctx, layer, diffID, chain)
}

// committed records, once layer's snapshot is committed, the layer's
// diffID on its blob, as containerd does.
func (o Options) committed(ctx context.Context, layer ocispec.Descriptor, diffID, chain digest.Digest) error {
	if err := o.labelUncompressed(ctx, layer, diffID); err != nil {
		return err
	}
	o.progress(layer, chain, "applied")
	return nil
}

// labelUncompressed labels layer's blob with its diffID.
func (o Options) labelUncompressed(ctx context.Context, layer ocispec.Descriptor, diffID digest.Digest) error {
	_, err := o.Content.Update(ctx, content.Info{Digest: layer.Digest, Labels: map[string]string{LabelUncompressed: diffID.String()}}, "labels."+LabelUncompressed)
	return err
}

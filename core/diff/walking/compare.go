package walking

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/archive"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/core/mount"
)

// labelUncompressed is the blob label naming a layer's diffID, the digest
// of its uncompressed tar: core/unpack's LabelUncompressed, repeated so that
// the differ does not depend on the unpacker.
const labelUncompressed = "containerd.io/uncompressed"

// NewComparer returns a diff.Comparer writing the layers it makes into cs.
//
// Compare reads an overlay's upper directory directly
// (archive.DiffOverlayUpper) when upper is a single overlay mount with an
// upperdir and lower shows exactly its lowerdirs (no mounts, the one
// lowerdir bind-mounted, or a read-only overlay of them), as a snapshotter
// prepares them. Otherwise it compares the two trees
// (archive.Diff), reading a single bind mount's source directly and
// mounting anything else read-only at a temporary directory.
//
// The layer is compressed per WithMediaType (gzip by default; zstd and
// uncompressed are the others) and committed under the WithReference ref,
// or a unique one, with the WithLabels labels and
// containerd.io/uncompressed=<diffID>.
func NewComparer(cs content.Ingester) diff.Comparer { return &comparer{cs: cs} }

type comparer struct{ cs content.Ingester }

// Compare implements diff.Comparer.
func (c *comparer) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...diff.CompareOpt) (_ ocispec.Descriptor, retErr error) {
	cfg := diff.CompareConfig{MediaType: ocispec.MediaTypeImageLayerGzip}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.MediaType == "" {
		cfg.MediaType = ocispec.MediaTypeImageLayerGzip
	}
	comp, err := layerCompression(cfg.MediaType)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compare: %w", err)
	}
	ref := cfg.Ref
	if ref == "" {
		ref = "walking-diff-" + rand.Text()
	}
	cw, err := c.cs.Writer(ctx, content.WithRef(ref))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compare: open ingest %s: %w", ref, err)
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		cw.Close()
		// A failed diff leaves nothing worth resuming.
		if ab, ok := c.cs.(interface {
			Abort(context.Context, string) error
		}); ok {
			ab.Abort(context.WithoutCancel(ctx), ref)
		}
	}()
	// A ref given by the caller may name an ingest left by an earlier try.
	if err := cw.Truncate(0); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compare: restart ingest %s: %w", ref, err)
	}

	counted := &countingWriter{w: cw}
	bw := bufio.NewWriterSize(counted, 128<<10)
	zw, err := compressor(bw, comp)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compare: %s: %w", comp, err)
	}
	digester := digest.Canonical.Digester()
	if err := c.writeDiff(ctx, lower, upper, io.MultiWriter(zw, digester.Hash())); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compare: %w", err)
	}
	if err := zw.Close(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compare: %s: %w", comp, err)
	}
	if err := bw.Flush(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compare: write layer: %w", err)
	}
	labels := maps.Clone(cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[labelUncompressed] = digester.Digest().String()
	dgst := cw.Digest()
	err = cw.Commit(ctx, counted.n, dgst, content.WithLabels(labels))
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return ocispec.Descriptor{}, fmt.Errorf("compare: commit layer %s: %w", dgst, err)
	}
	committed = true
	return ocispec.Descriptor{MediaType: cfg.MediaType, Digest: dgst, Size: counted.n}, nil
}

// writeDiff writes the uncompressed tar of the changes from lower to upper.
func (c *comparer) writeDiff(ctx context.Context, lower, upper []mount.Mount, w io.Writer) error {
	if len(upper) == 1 {
		if udir := overlayUpper(upper[0]); udir != "" {
			ulowers, needsMount := overlayLowers(upper[0])
			if l, ok := lowerDirs(lower); ok && !needsMount && slices.Equal(l, ulowers) {
				return archive.DiffOverlayUpper(ctx, udir, ulowers, w)
			}
		}
	}
	return withTree(ctx, lower, func(lroot string) error {
		return withTree(ctx, upper, func(uroot string) error {
			return archive.Diff(ctx, lroot, uroot, w)
		})
	})
}

// withTree calls fn with a directory showing mounts read-only: an empty
// one for no mounts, a single bind mount's source, or a temporary mount.
func withTree(ctx context.Context, mounts []mount.Mount, fn func(root string) error) error {
	switch {
	case len(mounts) == 0:
		dir, err := os.MkdirTemp("", "hull-empty-")
		if err != nil {
			return err
		}
		return errors.Join(fn(dir), os.Remove(dir))
	case len(mounts) == 1 && isBind(mounts[0]):
		return fn(mounts[0].Source)
	}
	return mount.WithTempMount(ctx, readOnlyMounts(mounts), fn)
}

// compressor returns a writer compressing into w; closing it flushes the
// compressed stream's end but does not close w.
func compressor(w io.Writer, comp compression) (io.WriteCloser, error) {
	switch comp {
	case gzipped:
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case zstded:
		return zstd.NewWriter(w)
	}
	return nopWriteCloser{w}, nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

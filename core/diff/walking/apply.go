// Package walking implements diff.Applier and diff.Comparer by walking
// filesystem trees: layers are applied with archive.Apply and created with
// archive.Diff (or archive.DiffOverlayUpper), reading and writing blobs in a
// content store. It is hull's counterpart of containerd's walking differ.
package walking

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

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

// compression is how a layer blob is compressed.
type compression int

const (
	uncompressed compression = iota
	gzipped
	zstded
)

func (c compression) String() string {
	switch c {
	case gzipped:
		return "gzip"
	case zstded:
		return "zstd"
	}
	return "uncompressed"
}

// magic is the start of a stream compressed with c.
func (c compression) magic() []byte {
	switch c {
	case gzipped:
		return []byte{0x1f, 0x8b}
	case zstded:
		return []byte{0x28, 0xb5, 0x2f, 0xfd}
	}
	return nil
}

// Docker's layer media types, which image-spec does not define.
const (
	mediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// layerCompression maps a layer media type to its compression; other media
// types (encrypted layers among them) are NotImplemented.
func layerCompression(mt string) (compression, error) {
	// The non-distributable types are deprecated but still in registries.
	switch mt {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerNonDistributable, mediaTypeDockerLayer:
		return uncompressed, nil
	case ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerNonDistributableGzip, mediaTypeDockerLayerGzip, mediaTypeDockerForeignLayer:
		return gzipped, nil
	case ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayerNonDistributableZstd:
		return zstded, nil
	}
	return 0, fmt.Errorf("layer media type %q: %w", mt, errdefs.ErrNotImplemented)
}

// NewApplier returns a diff.Applier reading layers from cs.
//
// Apply writes a layer straight into the directory behind the mounts when
// it can, without mounting anything, which lets a puller extract layers in
// parallel:
//
//   - a single overlay mount with an upperdir: into the upper directory,
//     whiteouts written the way overlayfs stores them, missing parent
//     directories copied from the lowerdirs (archive.WithParents); not for
//     overlays with userxattr, metacopy or redirect_dir, whose upper
//     directories follow other rules;
//   - with diff.WithDetached, a single read-write bind mount (a snapshot
//     without parent that will be committed onto its lowers): into its
//     source, as an overlay upper directory (archive.WithDetachedUpper);
//   - a single read-write bind mount: into its source;
//   - otherwise the mounts are mounted at a temporary directory
//     (mount.WithTempMount) and the layer is applied there.
//
// The uncompressed stream is read to its end, past the tar's end-of-archive
// marker, so that the returned digest (the diffID) covers all of it.
//
// The applier reads the process's umask once, at its first layer: a
// process that changes its umask afterwards needs a new applier.
func NewApplier(cs content.Provider) diff.Applier {
	return &applier{cs: cs, umask: sync.OnceValue(archive.ProcessUmask)}
}

type applier struct {
	cs content.Provider
	// umask is read once: reading it (from /proc) costs more than
	// applying a layer of one small file.
	umask func() uint32
	// chunks are the read-ahead's buffers, kept between layers: an image
	// of many small layers would otherwise allocate and zero them anew
	// for each.
	chunks chunkPool
	// gzips are gzip readers kept between layers for the same reason: a
	// new one allocates a 32 KiB window, more than a small layer holds.
	gzips sync.Pool
}

// Apply implements diff.Applier.
func (a *applier) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount, opts ...diff.ApplyOpt) (ocispec.Descriptor, error) {
	var cfg diff.ApplyConfig
	for _, o := range opts {
		o(&cfg)
	}
	comp, err := layerCompression(desc.MediaType)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: %w", desc.Digest, err)
	}
	ra, err := a.cs.ReaderAt(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	// A small layer gets a buffer of its own size rather than one of
	// 128 KiB zeroed for every layer.
	br := bufio.NewReaderSize(io.NewSectionReader(ra, 0, ra.Size()), int(min(max(ra.Size(), 16), 128<<10)))
	if err := checkMagic(br, comp, desc); err != nil {
		return ocispec.Descriptor{}, err
	}
	dec, err := a.decompress(br, comp)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: %s: %w", desc.Digest, comp, err)
	}
	defer dec.Close()

	digester := digest.Canonical.Digester()
	hr := &hashingReader{r: dec, h: digester.Hash()}
	// Decompression and hashing run a little ahead in a goroutine of
	// their own while this one writes files. The digest and size are read
	// only after the read-ahead has ended.
	ra2 := newReadAhead(hr, &a.chunks)
	defer ra2.Close()
	apply := func(root string, aopts ...archive.ApplyOpt) error {
		aopts = append(aopts, archive.WithUmask(a.umask()))
		if _, err := archive.Apply(ctx, root, ra2, aopts...); err != nil {
			return err
		}
		// The diffID is the digest of the whole uncompressed stream, also
		// what follows the end-of-archive marker; reading to the end also
		// makes the decompressor check its trailer (gzip's CRC).
		if _, err := io.Copy(io.Discard, ra2); err != nil {
			return err
		}
		return ra2.Close()
	}
	switch {
	case cfg.Detached:
		// The snapshot is an upper directory without its lowers, which
		// a parentless snapshot mounts as a bind of that directory.
		if len(mounts) != 1 || !isBind(mounts[0]) || readOnly(mounts[0]) {
			return ocispec.Descriptor{}, fmt.Errorf("apply layer %s detached: the mounts must be one writable bind mount of a snapshot without parent, not %v: %w", desc.Digest, mounts, errdefs.ErrInvalidArgument)
		}
		err = apply(mounts[0].Source, archive.WithDetachedUpper())
		if errors.Is(err, archive.ErrNeedsLower) {
			err = needsLowerError{err}
		}
	case len(mounts) == 1 && overlayUpper(mounts[0]) != "" && !needsMount(mounts[0]):
		m := mounts[0]
		lower, _ := overlayLowers(m)
		err = apply(overlayUpper(m), archive.WithOverlayWhiteouts(), archive.WithParents(lower...))
	case len(mounts) == 1 && isBind(mounts[0]) && !readOnly(mounts[0]):
		err = apply(mounts[0].Source)
	default:
		err = mount.WithTempMount(ctx, mounts, func(root string) error { return apply(root) })
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: %w", desc.Digest, err)
	}
	diffID := digester.Digest()
	if cfg.ExpectedDiffID != "" && diffID.String() != cfg.ExpectedDiffID {
		return ocispec.Descriptor{}, fmt.Errorf("apply layer %s: uncompressed digest %s, expected diffID %s: %w",
			desc.Digest, diffID, cfg.ExpectedDiffID, errdefs.ErrFailedPrecondition)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffID, Size: hr.n}, nil
}

// needsLowerError is an archive.ErrNeedsLower error as Apply's callers
// test for it: diff.ErrNeedsLower, and FailedPrecondition through gRPC.
type needsLowerError struct{ error }

func (e needsLowerError) Unwrap() error { return e.error }

func (e needsLowerError) Is(target error) bool {
	return target == diff.ErrNeedsLower || target == errdefs.ErrFailedPrecondition
}

// checkMagic checks that the blob starts the way its media type says, so
// that a mislabelled layer fails with an error that says so rather than
// with whatever the decompressor or tar reader makes of it.
func checkMagic(br *bufio.Reader, comp compression, desc ocispec.Descriptor) error {
	head, _ := br.Peek(4)
	if want := comp.magic(); want != nil {
		if !bytes.HasPrefix(head, want) {
			return fmt.Errorf("layer %s: media type %s says %s, but the blob does not start with the %s magic number (it starts %x): %w",
				desc.Digest, desc.MediaType, comp, comp, head, errdefs.ErrInvalidArgument)
		}
		return nil
	}
	for _, c := range []compression{gzipped, zstded} {
		if bytes.HasPrefix(head, c.magic()) {
			return fmt.Errorf("layer %s: media type %s says uncompressed, but the blob is %s-compressed: %w",
				desc.Digest, desc.MediaType, c, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// decompress returns a reader of r's uncompressed content. It must not be
// read once closed.
func (a *applier) decompress(r io.Reader, comp compression) (io.ReadCloser, error) {
	switch comp {
	case gzipped:
		// Multistream (the default) reads concatenated members, as gzip(1)
		// and containerd do; Reset restores it.
		z, _ := a.gzips.Get().(*gzip.Reader)
		var err error
		if z == nil {
			z, err = gzip.NewReader(r)
		} else {
			err = z.Reset(r)
		}
		if err != nil {
			return nil, err
		}
		return pooledGzip{z, &a.gzips}, nil
	case zstded:
		// One goroutine: the pull already decompresses layers in parallel.
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return zstdCloser{d}, nil
	}
	return io.NopCloser(r), nil
}

// pooledGzip returns its reader to the pool when closed.
type pooledGzip struct {
	*gzip.Reader
	pool *sync.Pool
}

func (z pooledGzip) Close() error {
	err := z.Reader.Close()
	z.pool.Put(z.Reader)
	return err
}

type zstdCloser struct{ *zstd.Decoder }

func (z zstdCloser) Close() error { z.Decoder.Close(); return nil }

// hashingReader hashes and counts what is read through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

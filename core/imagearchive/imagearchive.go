// Package imagearchive reads and writes image archives: OCI image layouts
// (oci-layout, index.json, blobs/<alg>/<hex>) and `docker save` archives
// (manifest.json), as tar streams.
//
// ReadIndex stores every file of an archive in the content store and
// returns one index that names the archive's images, as containerd's
// importer does: an OCI layout's own index.json, or, for a docker archive,
// an index written for it whose manifests carry the io.containerd.image.name
// annotation of each RepoTag. Which images to record from that index is the
// caller's choice (containerd's naming rules live in core/transfer).
//
// Write is the other way: the images given, with the blobs of the chosen
// platforms, as an OCI layout that also holds a docker manifest.json.
package imagearchive

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/reference"
)

// Annotations an archive's index puts on its manifests.
const (
	// AnnotationImageName is containerd's annotation for the full image
	// name of a manifest in an archive's index.
	AnnotationImageName = "io.containerd.image.name"
)

// Store is what reading and writing archives needs of a content store.
type Store interface {
	content.Provider
	content.Ingester
	Info(ctx context.Context, dgst digest.Digest) (content.Info, error)
	Abort(ctx context.Context, ref string) error
}

// maxMetadataSize bounds the JSON files read into memory (index.json,
// manifest.json, oci-layout).
const maxMetadataSize = 16 << 20

// dockerEntry is one image of a `docker save` manifest.json.
type dockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// Decompress returns r, or r decompressed when it starts with gzip's magic:
// containerd accepts compressed archives when the caller names no media
// type.
func Decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("archive: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		return zr, nil
	}
	return br, nil
}

// cleanName returns an archive entry's name relative to the archive's
// root; a name that leaves the root (../x, /x) is InvalidArgument, since no
// honest archive has one.
func cleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("archive entry %q is an absolute path: %w", name, errdefs.ErrInvalidArgument)
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("archive entry %q leaves the archive: %w", name, errdefs.ErrInvalidArgument)
	}
	return c, nil
}

// ReadIndex stores the files of the archive r in cs and returns the index
// that names its images (see the package doc). Files under blobs/<alg>/<hex>
// must have that digest. The caller holds a lease, so that what a failed
// read stored is collected. A malformed archive is InvalidArgument, a blob
// whose bytes are not its name's digest FailedPrecondition.
func ReadIndex(ctx context.Context, cs Store, r io.Reader) (ocispec.Descriptor, error) {
	var (
		tr       = tar.NewReader(r)
		layout   *ocispec.ImageLayout
		docker   []dockerEntry
		blobs    = map[string]ocispec.Descriptor{}
		symlinks = map[string]string{}
	)
	p, _ := cs.(content.Putter)
	puts := newPutter(p, blobs)
	defer puts.wait()
	for {
		if err := puts.failed(); err != nil {
			return ocispec.Descriptor{}, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("read archive: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		name, err := cleanName(h.Name)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			// docker save links a layer seen before to its first copy.
			target, err := cleanName(path.Join(path.Dir(name), h.Linkname))
			if err != nil {
				return ocispec.Descriptor{}, err
			}
			symlinks[name] = target
			continue
		case tar.TypeReg:
		default:
			continue
		}
		switch name {
		case ocispec.ImageLayoutFile:
			layout = &ocispec.ImageLayout{}
			if err := decodeSmall(tr, layout); err != nil {
				return ocispec.Descriptor{}, fmt.Errorf("archive %s: %w", name, err)
			}
			continue
		case "manifest.json":
			if err := decodeSmall(tr, &docker); err != nil {
				return ocispec.Descriptor{}, fmt.Errorf("archive %s: %w", name, err)
			}
			continue
		}
		// Files up to content.MaxPutSize are read whole and stored in one
		// step; most of an archive's are far smaller.
		if p != nil && h.Size <= content.MaxPutSize {
			if err := puts.put(ctx, name, h.Size, tr); err != nil {
				return ocispec.Descriptor{}, err
			}
			continue
		}
		desc, err := storeFile(ctx, cs, name, h.Size, tr)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		puts.record(name, desc)
	}
	if err := puts.wait(); err != nil {
		return ocispec.Descriptor{}, err
	}
	if layout != nil {
		if layout.Version != ocispec.ImageLayoutVersion {
			return ocispec.Descriptor{}, fmt.Errorf("archive is an OCI layout of version %q, not %s: %w", layout.Version, ocispec.ImageLayoutVersion, errdefs.ErrNotImplemented)
		}
		idx, ok := blobs[ocispec.ImageIndexFile]
		if !ok {
			return ocispec.Descriptor{}, fmt.Errorf("archive is an OCI layout without index.json: %w", errdefs.ErrInvalidArgument)
		}
		idx.MediaType = ocispec.MediaTypeImageIndex
		return idx, nil
	}
	if docker == nil {
		return ocispec.Descriptor{}, fmt.Errorf("archive has neither oci-layout nor manifest.json: %w", errdefs.ErrInvalidArgument)
	}
	for name, target := range symlinks {
		if d, ok := blobs[target]; ok {
			blobs[name] = d
		}
	}
	return dockerIndex(ctx, cs, docker, blobs)
}

func decodeSmall(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, maxMetadataSize+1))
	if err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(data) > maxMetadataSize {
		return fmt.Errorf("larger than %d bytes: %w", maxMetadataSize, errdefs.ErrInvalidArgument)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// storeFile stores one archive file through an ingest; a file named
// blobs/<alg>/<hex> must have that digest.
func storeFile(ctx context.Context, cs Store, name string, size int64, r io.Reader) (ocispec.Descriptor, error) {
	expected, err := nameDigest(name)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	dgst, err := WriteBlob(ctx, cs, fmt.Sprintf("import-%d-%s", time.Now().UnixNano(), digest.FromString(name).Encoded()[:12]), r, size, expected)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("archive entry %s: %w", name, err)
	}
	return ocispec.Descriptor{Digest: dgst, Size: size}, nil
}

// nameDigest is the digest a file named blobs/<alg>/<hex> must have; ""
// for other names.
func nameDigest(name string) (digest.Digest, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 3 || parts[0] != "blobs" {
		return "", nil
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2])
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("archive entry %s is not named by a valid digest: %w", name, errdefs.ErrInvalidArgument)
	}
	return d, nil
}

// putter stores the files read whole (content.Putter) while the archive's
// next files are read: their syncs and transactions overlap, and share
// commits. At most putsInFlight are held at once. It keeps the map of the
// files stored, whichever way they were, since its stores write it too.
type putter struct {
	p     content.Putter
	slots chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	blobs map[string]ocispec.Descriptor
	err   error
}

// putsInFlight bounds the files held in memory for their stores:
// content.MaxPutSize each.
const putsInFlight = 4

func newPutter(p content.Putter, blobs map[string]ocispec.Descriptor) *putter {
	return &putter{p: p, slots: make(chan struct{}, putsInFlight), blobs: blobs}
}

// put reads the file name (size bytes of r) and stores it in the
// background.
func (u *putter) put(ctx context.Context, name string, size int64, r io.Reader) error {
	expected, err := nameDigest(name)
	if err != nil {
		return err
	}
	data := make([]byte, size)
	if n, err := io.ReadFull(r, data); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("archive entry %s: %d of %d bytes: %w", name, n, size, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("archive entry %s: %w", name, err)
	}
	u.slots <- struct{}{}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer func() { <-u.slots }()
		dgst, err := putBlob(ctx, u.p, data, expected)
		if err != nil {
			u.fail(fmt.Errorf("archive entry %s: %w", name, err))
			return
		}
		u.record(name, ocispec.Descriptor{Digest: dgst, Size: size})
	}()
	return nil
}

// record notes a stored file in the map of stored files.
func (u *putter) record(name string, desc ocispec.Descriptor) {
	u.mu.Lock()
	u.blobs[name] = desc
	u.mu.Unlock()
}

func (u *putter) fail(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
	}
	u.mu.Unlock()
}

// failed returns the first store that failed so far.
func (u *putter) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// wait waits for the stores in flight and returns the first failure.
func (u *putter) wait() error {
	u.wg.Wait()
	return u.failed()
}

// putBlob stores data through p and returns its digest, checked as
// WriteBlob checks it.
func putBlob(ctx context.Context, p content.Putter, data []byte, expected digest.Digest) (digest.Digest, error) {
	alg := digest.Canonical
	if expected != "" {
		alg = expected.Algorithm()
	}
	got := alg.FromBytes(data)
	if expected != "" && got != expected {
		return "", fmt.Errorf("content has digest %s, not %s: %w", got, expected, errdefs.ErrFailedPrecondition)
	}
	if err := p.Put(ctx, ocispec.Descriptor{Digest: got, Size: int64(len(data))}, data); err != nil && !errdefs.IsAlreadyExists(err) {
		return "", err
	}
	return got, nil
}

// WriteBlob stores size bytes of r through the ingest ref and returns their
// digest; expected, when set, must be it (FailedPrecondition otherwise, the
// class containerd's content store gives a commit of unexpected bytes, so
// that a corrupt archive fails alike through every importer). A blob
// already stored counts as written. A failed write aborts the ingest.
func WriteBlob(ctx context.Context, cs Store, ref string, r io.Reader, size int64, expected digest.Digest) (digest.Digest, error) {
	opts := []content.WriterOpt{content.WithRef(ref)}
	if expected != "" {
		opts = append(opts, content.WithDescriptor(ocispec.Descriptor{Digest: expected, Size: size}))
	}
	w, err := cs.Writer(ctx, opts...)
	if errdefs.IsAlreadyExists(err) {
		return expected, nil
	}
	if err != nil {
		return "", err
	}
	committed := false
	defer func() {
		w.Close()
		if !committed {
			cs.Abort(context.WithoutCancel(ctx), ref)
		}
	}()
	if st, err := w.Status(); err == nil && st.Offset > 0 {
		if err := w.Truncate(0); err != nil {
			return "", err
		}
	}
	n, err := io.Copy(struct{ io.Writer }{w}, io.LimitReader(r, size))
	if err != nil {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("%d of %d bytes: %w", n, size, errdefs.ErrInvalidArgument)
	}
	got := w.Digest()
	if expected != "" && got != expected {
		return "", fmt.Errorf("content has digest %s, not %s: %w", got, expected, errdefs.ErrFailedPrecondition)
	}
	if err := w.Commit(ctx, size, got); err != nil && !errdefs.IsAlreadyExists(err) {
		return "", err
	}
	committed = true
	return got, nil
}

// dockerIndex writes a Docker schema 2 manifest for each image of a
// `docker save` manifest.json and an index naming them by their RepoTags.
func dockerIndex(ctx context.Context, cs Store, entries []dockerEntry, blobs map[string]ocispec.Descriptor) (ocispec.Descriptor, error) {
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, e := range entries {
		cfg, ok := blobs[path.Clean(e.Config)]
		if !ok {
			return ocispec.Descriptor{}, fmt.Errorf("docker archive: config %s is not in the archive: %w", e.Config, errdefs.ErrInvalidArgument)
		}
		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: images.MediaTypeDockerManifest,
			Config:    ocispec.Descriptor{MediaType: images.MediaTypeDockerConfig, Digest: cfg.Digest, Size: cfg.Size},
		}
		for _, l := range e.Layers {
			ld, ok := blobs[path.Clean(l)]
			if !ok {
				return ocispec.Descriptor{}, fmt.Errorf("docker archive: layer %s is not in the archive: %w", l, errdefs.ErrInvalidArgument)
			}
			mt, err := layerMediaType(ctx, cs, ld)
			if err != nil {
				return ocispec.Descriptor{}, err
			}
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mt, Digest: ld.Digest, Size: ld.Size})
		}
		desc, err := writeJSON(ctx, cs, m, m.MediaType)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		if p, err := configPlatform(ctx, cs, m.Config); err == nil {
			desc.Platform = &p
		}
		if len(e.RepoTags) == 0 {
			idx.Manifests = append(idx.Manifests, desc)
		}
		for _, tag := range e.RepoTags {
			ref, _, err := reference.ParseNormalized(tag)
			if err != nil {
				return ocispec.Descriptor{}, fmt.Errorf("docker archive: RepoTag %q: %w", tag, err)
			}
			d := desc
			d.Annotations = map[string]string{AnnotationImageName: ref.String(), ocispec.AnnotationRefName: RefName(ref.String())}
			idx.Manifests = append(idx.Manifests, d)
		}
	}
	return writeJSON(ctx, cs, idx, ocispec.MediaTypeImageIndex)
}

func writeJSON(ctx context.Context, cs Store, v any, mediaType string) (ocispec.Descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if _, err := WriteBlob(ctx, cs, "import-"+desc.Digest.String(), strings.NewReader(string(data)), desc.Size, desc.Digest); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

func configPlatform(ctx context.Context, cs Store, cfg ocispec.Descriptor) (ocispec.Platform, error) {
	data, err := images.ReadManifest(ctx, cs, cfg)
	if err != nil {
		return ocispec.Platform{}, err
	}
	var img ocispec.Image
	if err := json.Unmarshal(data, &img); err != nil {
		return ocispec.Platform{}, err
	}
	return platforms.Normalize(ocispec.Platform{OS: img.OS, Architecture: img.Architecture, Variant: img.Variant}), nil
}

// layerMediaType tells a gzip-compressed docker layer from a plain tar by
// its first bytes.
func layerMediaType(ctx context.Context, cs Store, desc ocispec.Descriptor) (string, error) {
	ra, err := cs.ReaderAt(ctx, desc)
	if err != nil {
		return "", err
	}
	defer ra.Close()
	magic := make([]byte, 2)
	if n, _ := ra.ReadAt(magic, 0); n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return images.MediaTypeDockerLayerGzip, nil
	}
	return "application/vnd.docker.image.rootfs.diff.tar", nil
}

// RefName returns the tag of name ("latest" for "x/y:latest", the digest
// for "x/y@sha256:..."), which the OCI ref.name annotation holds.
func RefName(name string) string {
	if i := strings.LastIndexByte(name, '@'); i >= 0 {
		return name[i+1:]
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		return name[i+1:]
	}
	return "latest"
}

package images

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/images"
)

// maxBlob bounds the manifests and configs read into memory.
const maxBlob = 8 << 20

// Image is what the runtime side needs of an image.
type Image struct {
	// ID is the config digest, "sha256:..." (the CRI image id).
	ID string
	// RepoTags are normalized, e.g. docker.io/library/busybox:latest.
	RepoTags []string
	// RepoDigests are repo@sha256:<manifest or index digest>.
	RepoDigests []string
	// Name is an image record name in the store (for the container
	// record's Image field): the one the image was resolved by when that
	// was a name, else a tag, a digest or the id record, in that order.
	Name string
	// Config is the image config (Env, Entrypoint, Cmd, User, WorkingDir,
	// Volumes, StopSignal...).
	Config ocispec.Image
	// ChainID names the unpacked snapshot to create container snapshots
	// from; "" for an image without layers.
	ChainID digest.Digest
	// Size is the sum of the sizes of the target (index or manifest), the
	// host's manifest, the config and the compressed layers, as
	// containerd reports it.
	Size uint64
	// Pinned images are never garbage-collected by the kubelet.
	Pinned bool
	// Target is what the image record named Name points at.
	Target ocispec.Descriptor
}

// targetInfo is what the content store says about one image target for the
// host's platform. It is immutable, like the content it is read from.
type targetInfo struct {
	configDigest digest.Digest
	config       ocispec.Image
	configJSON   []byte
	chainID      digest.Digest
	size         uint64
}

// info returns the targetInfo of target, from the cache or the content
// store (ctx carries the namespace).
func (s *Service) info(ctx context.Context, target ocispec.Descriptor) (*targetInfo, error) {
	s.mu.Lock()
	ti, ok := s.targets[target.Digest]
	s.mu.Unlock()
	if ok {
		return ti, nil
	}
	ti, err := s.readInfo(ctx, target)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.targets[target.Digest] = ti
	s.mu.Unlock()
	return ti, nil
}

func (s *Service) readInfo(ctx context.Context, target ocispec.Descriptor) (*targetInfo, error) {
	mdesc, err := s.c.PlatformManifest(ctx, target, platforms.Default())
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if _, err := s.readJSON(ctx, mdesc, &m); err != nil {
		return nil, err
	}
	ti := &targetInfo{configDigest: m.Config.Digest}
	if ti.configJSON, err = s.readJSON(ctx, m.Config, &ti.config); err != nil {
		return nil, err
	}
	if ids := ti.config.RootFS.DiffIDs; len(ids) > 0 {
		ti.chainID = identity.ChainID(ids)
	}
	size := mdesc.Size + m.Config.Size
	if mdesc.Digest != target.Digest {
		size += target.Size
	}
	for _, l := range m.Layers {
		size += l.Size
	}
	ti.size = uint64(max(size, 0))
	return ti, nil
}

// readJSON reads the small blob desc and decodes it into v, returning the
// bytes too.
func (s *Service) readJSON(ctx context.Context, desc ocispec.Descriptor, v any) ([]byte, error) {
	if desc.Size > maxBlob || desc.Size < 0 {
		return nil, fmt.Errorf("blob %s is %d bytes, more than %d: %w", desc.Digest, desc.Size, maxBlob, errdefs.ErrInvalidArgument)
	}
	data, err := client.ReadBlob(ctx, s.c.ContentStore(), desc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", desc.Digest, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("decode %s (%s): %v: %w", desc.Digest, desc.MediaType, err, errdefs.ErrInvalidArgument)
	}
	return data, nil
}

// record is one image record as the view keeps it.
type record struct {
	name   string
	kind   nameKind
	norm   string // normalized tag or digest reference; the id for kindID
	target ocispec.Descriptor
	labels map[string]string
}

// entry is one CRI image: the records whose targets lead to one config.
type entry struct {
	id      digest.Digest
	info    *targetInfo
	records []record // sorted by name
}

// view is the namespace's images at one moment.
type view struct {
	byID []*entry // sorted by id
	// byName maps normalized tag and digest references (including the
	// repo digests derived from tags) to the entry and the record name
	// that answers for them.
	byName map[string]nameHit
	pinned map[digest.Digest]bool
}

type nameHit struct {
	e      *entry
	record string
	kind   nameKind
}

// load reads the namespace's image records and groups them by image id.
// Records whose content cannot be read for this platform (pulled for
// another platform, or partly removed) are left out, as containerd does.
func (s *Service) load(ctx context.Context) (*view, error) {
	ctx = s.nsCtx(ctx)
	recs, err := s.c.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	var recsFound []found
	live := map[digest.Digest]bool{}
	for _, img := range recs {
		ti, err := s.info(ctx, img.Target)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s.log.DebugContext(ctx, "image left out of the CRI's view", "image", img.Name, "target", img.Target.Digest, "error", err)
			continue
		}
		live[img.Target.Digest] = true
		recsFound = append(recsFound, found{img, ti})
	}
	s.prune(live)
	return newView(recsFound, s.cfg.PinnedImages), nil
}

// found is an image record and what its target says.
type found struct {
	img  images.Image
	info *targetInfo
}

// newView groups records by image id and indexes their names; pinnedRefs
// are references whose images are pinned.
func newView(recs []found, pinnedRefs map[string]string) *view {
	entries := map[digest.Digest]*entry{}
	for _, f := range recs {
		e := entries[f.info.configDigest]
		if e == nil {
			e = &entry{id: f.info.configDigest, info: f.info}
			entries[f.info.configDigest] = e
		}
		kind, norm := classifyName(f.img.Name)
		e.records = append(e.records, record{name: f.img.Name, kind: kind, norm: norm, target: f.img.Target, labels: f.img.Labels})
	}
	v := &view{byName: map[string]nameHit{}, pinned: map[digest.Digest]bool{}}
	for _, e := range entries {
		sort.Slice(e.records, func(i, j int) bool { return e.records[i].name < e.records[j].name })
		v.byID = append(v.byID, e)
		for _, r := range e.records {
			if r.labels[PinnedLabel] == PinnedValue {
				v.pinned[e.id] = true
			}
			switch r.kind {
			case kindTag:
				v.addName(r.norm, nameHit{e: e, record: r.name, kind: kindTag})
				if d, ok := repoDigest(r.norm, r.target.Digest); ok {
					v.addName(d, nameHit{e: e, record: r.name, kind: kindDigest})
				}
			case kindDigest:
				v.addName(r.norm, nameHit{e: e, record: r.name, kind: kindDigest})
			}
		}
	}
	sort.Slice(v.byID, func(i, j int) bool { return v.byID[i].id < v.byID[j].id })
	for _, ref := range pinnedRefs {
		if named, err := normalizeRef(ref); err == nil {
			if hit, ok := v.byName[named.String()]; ok {
				v.pinned[hit.e.id] = true
			}
		}
	}
	return v
}

// addName indexes name; a record of that very name wins over a derived
// repo digest, and otherwise the first comes first.
func (v *view) addName(name string, hit nameHit) {
	if old, ok := v.byName[name]; ok && (old.record == name || hit.record != name) {
		return
	}
	v.byName[name] = hit
}

// prune forgets the cached targets no image points at any more, so that
// the cache is as large as the store, not as its history.
func (s *Service) prune(live map[digest.Digest]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range s.targets {
		if !live[d] {
			delete(s.targets, d)
		}
	}
}

// repoDigest returns repo@target for the normalized tagged reference tag.
func repoDigest(tag string, target digest.Digest) (string, bool) {
	named, err := reference.ParseNormalizedNamed(tag)
	if err != nil {
		return "", false
	}
	c, err := reference.WithDigest(reference.TrimNamed(named), target)
	if err != nil {
		return "", false
	}
	return c.String(), true
}

// resolve finds ref in the view: an image id, full or shortened (with or
// without "sha256:"), a reference (tag or digest, normalized: "busybox" is
// docker.io/library/busybox:latest) or a repo digest. It returns the entry,
// the record name that answered (the preferred one for an id) and how it
// matched.
func (v *view) resolve(ref string) (*entry, string, nameKind, error) {
	if ref == "" {
		return nil, "", 0, fmt.Errorf("image reference is empty: %w", errdefs.ErrInvalidArgument)
	}
	if d, err := digest.Parse(ref); err == nil {
		if e := v.get(d); e != nil {
			return e, e.preferredName(), kindID, nil
		}
		return nil, "", 0, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	if named, err := normalizeRef(ref); err == nil {
		if hit, ok := v.byName[named.String()]; ok {
			return hit.e, hit.record, hit.kind, nil
		}
	}
	if hex, ok := idPrefix(ref); ok {
		var found *entry
		for _, e := range v.byID {
			if strings.HasPrefix(e.id.Encoded(), hex) && e.id.Algorithm() == digest.SHA256 {
				if found != nil {
					return nil, "", 0, fmt.Errorf("image id prefix %q is ambiguous: it starts %s and %s: %w", ref, found.id, e.id, errdefs.ErrInvalidArgument)
				}
				found = e
			}
		}
		if found != nil {
			return found, found.preferredName(), kindID, nil
		}
	}
	return nil, "", 0, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

// get returns the entry with id d, or nil.
func (v *view) get(d digest.Digest) *entry {
	i, ok := slices.BinarySearchFunc(v.byID, d, func(e *entry, d digest.Digest) int { return strings.Compare(string(e.id), string(d)) })
	if !ok {
		return nil
	}
	return v.byID[i]
}

// preferredName is the record a container names its image by when the
// image was found by id: a tag, else a digest, else the id record, else
// whatever there is.
func (e *entry) preferredName() string {
	for _, k := range []nameKind{kindTag, kindDigest, kindID, kindOther} {
		for _, r := range e.records {
			if r.kind == k {
				return r.name
			}
		}
	}
	return ""
}

// image is the entry as an Image, named by the record called name.
func (v *view) image(e *entry, name string) Image {
	img := Image{
		ID: e.id.String(), Name: name, Config: e.info.config, ChainID: e.info.chainID,
		Size: e.info.size, Pinned: v.pinned[e.id],
	}
	var tags, digests []string
	for _, r := range e.records {
		if r.name == name {
			img.Target = r.target
		}
		switch r.kind {
		case kindTag:
			tags = append(tags, r.norm)
			if d, ok := repoDigest(r.norm, r.target.Digest); ok {
				digests = append(digests, d)
			}
		case kindDigest:
			digests = append(digests, r.norm)
		}
	}
	if img.Target.Digest == "" && len(e.records) > 0 {
		img.Target = e.records[0].target
	}
	slices.Sort(tags)
	slices.Sort(digests)
	img.RepoTags, img.RepoDigests = slices.Compact(tags), slices.Compact(digests)
	// The config is shared with the cache: give the caller its own copy
	// of what a caller is likely to modify.
	img.Config = cloneConfig(e.info.config)
	return img
}

// cloneConfig copies the slices and maps of an image config, so that a
// caller that appends to Env or edits Labels does not change the cache.
func cloneConfig(c ocispec.Image) ocispec.Image {
	c.Config.Env = slices.Clone(c.Config.Env)
	c.Config.Entrypoint = slices.Clone(c.Config.Entrypoint)
	c.Config.Cmd = slices.Clone(c.Config.Cmd)
	c.Config.ExposedPorts = cloneMap(c.Config.ExposedPorts)
	c.Config.Volumes = cloneMap(c.Config.Volumes)
	c.Config.Labels = cloneMap(c.Config.Labels)
	c.RootFS.DiffIDs = slices.Clone(c.RootFS.DiffIDs)
	c.History = slices.Clone(c.History)
	return c
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return nil
	}
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Resolve finds a local image by image id, full or shortened
// ("sha256:abcd..." or a unique id prefix), by reference (normalized with
// distribution/reference's ParseDockerRef: "busybox" is
// docker.io/library/busybox:latest), or by repo digest. NotFound names the
// reference.
func (s *Service) Resolve(ctx context.Context, ref string) (Image, error) {
	v, err := s.load(ctx)
	if err != nil {
		return Image{}, err
	}
	e, name, _, err := v.resolve(ref)
	if err != nil {
		return Image{}, err
	}
	return v.image(e, name), nil
}

// isManaged reports whether the record img carries the CRI's label.
func isManaged(img images.Image) bool { return img.Labels[ManagedLabel] == ManagedValue }

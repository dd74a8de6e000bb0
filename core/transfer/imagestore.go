package transfer

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/containerd/containerd/api/types"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/imagearchive"
	"github.com/hullrt/hull/core/images"
)

// annotationRefSource marks, during an import, a manifest that the
// archive's index names, so that its name comes from its annotations under
// the ImageStore's prefix rules (containerd's "ref-source" annotation).
const annotationRefSource = "io.containerd.import.ref-source"

// Names returns the images an ImageStore destination records for target,
// by containerd's rules. A descriptor from an archive's index (fromIndex)
// is named by its io.containerd.image.name or OCI ref.name annotation under
// each prefix reference: kept when it has the prefix (or, with
// allow_overwrite, whatever it is), a bare tag joined to the prefix, and
// with add_digest also "<prefix>@<digest>". Anything else (a pulled or
// tagged image, the archive's index itself) gets the store's name and its
// non-prefix references ("<name>@<digest>" for digest references).
func Names(is *transfertypes.ImageStore, target ocispec.Descriptor, fromIndex bool) []images.Image {
	var out []images.Image
	add := func(name string, labels map[string]string) {
		out = append(out, images.Image{Name: name, Target: target, Labels: labels})
	}
	extraLabels := func() map[string]string {
		if is.GetName() == "" {
			return is.GetLabels()
		}
		// Names beyond the main one are collected with it.
		l := make(map[string]string, len(is.GetLabels())+2)
		maps.Copy(l, is.GetLabels())
		l["containerd.io/gc.bref.image"] = is.GetName()
		l["containerd.io/gc.expire"] = time.Now().Format(time.RFC3339)
		return l
	}
	if fromIndex {
		for _, ref := range is.GetExtraReferences() {
			if !ref.GetIsPrefix() {
				continue
			}
			name := annotatedName(target.Annotations, ref.GetName(), ref.GetAllowOverwrite())
			if name == "" {
				if ref.GetAddDigest() {
					add(ref.GetName()+"@"+target.Digest.String(), extraLabels())
				}
				continue
			}
			add(name, extraLabels())
			if ref.GetAddDigest() && !ref.GetSkipNamedDigest() {
				add(ref.GetName()+"@"+target.Digest.String(), extraLabels())
			}
		}
		return out
	}
	if is.GetName() != "" {
		add(is.GetName(), is.GetLabels())
	}
	for _, ref := range is.GetExtraReferences() {
		if ref.GetIsPrefix() && !ref.GetAddDigest() {
			continue
		}
		name := ref.GetName()
		if ref.GetAddDigest() {
			name += "@" + target.Digest.String()
		}
		add(name, extraLabels())
	}
	return out
}

// annotatedName is the name an archive's annotations give a manifest under
// prefix: "" when it has none that fits.
func annotatedName(annotations map[string]string, prefix string, overwrite bool) string {
	translate := func(ref string) string {
		if prefix == "" {
			return ""
		}
		if strings.ContainsAny(ref, "/:@") {
			if !overwrite && !hasPrefix(ref, prefix) {
				return ""
			}
			return ref
		}
		return prefix + ":" + ref
	}
	if name := annotations[imagearchive.AnnotationImageName]; name != "" {
		if translate(name) != name {
			return ""
		}
		return name
	}
	if name := annotations[ocispec.AnnotationRefName]; name != "" {
		return translate(name)
	}
	return ""
}

// hasPrefix reports whether s is prefix or prefix followed by '/', ':' or
// '@'.
func hasPrefix(s, prefix string) bool {
	if !strings.HasPrefix(s, prefix) {
		return false
	}
	if len(s) == len(prefix) {
		return true
	}
	switch s[len(prefix)] {
	case '/', ':', '@':
		return true
	}
	return false
}

// record creates or updates imgs, as containerd's image store destination
// does: an existing name is pointed at the new target.
func (s *Service) record(ctx context.Context, imgs []images.Image) ([]images.Image, error) {
	var out []images.Image
	for _, img := range imgs {
		if img.Target.Annotations != nil {
			a := maps.Clone(img.Target.Annotations)
			delete(a, annotationRefSource)
			if len(a) == 0 {
				a = nil
			}
			img.Target.Annotations = a
		}
		got, err := s.Images.Create(ctx, img)
		if errdefs.IsAlreadyExists(err) {
			got, err = s.Images.Update(ctx, img, "target", "labels")
		}
		if err != nil {
			return out, fmt.Errorf("record image %s: %w", img.Name, err)
		}
		out = append(out, got)
	}
	return out, nil
}

// lookup returns the images an ImageStore source names: its name and its
// plain extra references.
func (s *Service) lookup(ctx context.Context, is *transfertypes.ImageStore) ([]images.Image, error) {
	var out []images.Image
	if is.GetName() != "" {
		img, err := s.Images.Get(ctx, is.GetName())
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	for _, ref := range is.GetExtraReferences() {
		if ref.GetIsPrefix() {
			return nil, fmt.Errorf("image store source with prefix %q: prefix lookup on export not implemented: %w", ref.GetName(), errdefs.ErrNotImplemented)
		}
		img, err := s.Images.Get(ctx, ref.GetName())
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("image store source names no image: %w", errdefs.ErrInvalidArgument)
	}
	return out, nil
}

func ociPlatform(p *types.Platform) ocispec.Platform {
	return platforms.Normalize(ocispec.Platform{OS: p.GetOS(), Architecture: p.GetArchitecture(), Variant: p.GetVariant(), OSVersion: p.GetOsVersion()})
}

// platformMatcher is what the store's platforms select: all when it names
// none.
func platformMatcher(ps []*types.Platform) (platforms.MatchComparer, bool) {
	if len(ps) == 0 {
		return platforms.All, true
	}
	var specs []ocispec.Platform
	for _, p := range ps {
		specs = append(specs, ociPlatform(p))
	}
	return platforms.Ordered(specs...), false
}

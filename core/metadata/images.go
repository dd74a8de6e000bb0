package metadata

import (
	"context"
	"fmt"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/filters"
	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/core/labels"
)

// Images returns the image store.
func (db *DB) Images() images.Store { return imageStore{db} }

type imageStore struct{ db *DB }

var _ images.Store = imageStore{}

type imageRecord struct {
	Labels    map[string]string  `json:"labels,omitempty"`
	Target    ocispec.Descriptor `json:"target"`
	CreatedAt time.Time          `json:"created"`
	UpdatedAt time.Time          `json:"updated"`
}

func (r *imageRecord) image(name string) images.Image {
	return images.Image{Name: name, Labels: r.Labels, Target: r.Target, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

func validateImage(img *images.Image) error {
	if img.Name == "" {
		return invalid("image name must not be empty")
	}
	if err := labels.ValidateAll(img.Labels); err != nil {
		return fmt.Errorf("image %q: %w", img.Name, err)
	}
	return validateTarget(img.Name, img.Target)
}

func validateTarget(name string, t ocispec.Descriptor) error {
	if t.MediaType == "" {
		return invalid("image %q: target media type must not be empty", name)
	}
	if err := t.Digest.Validate(); err != nil {
		return invalid("image %q: target digest %q: %v", name, t.Digest, err)
	}
	if t.Size < 0 {
		return invalid("image %q: target size %d is negative", name, t.Size)
	}
	return nil
}

func (s imageStore) Get(ctx context.Context, name string) (images.Image, error) {
	var img images.Image
	err := s.db.view(ctx, func(t *nsTx) error {
		var r imageRecord
		ok, err := getRecord(t.bucket(bucketImages), name, &r)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("image %q", name)
		}
		img = r.image(name)
		return nil
	})
	return img, err
}

func imageAdaptor(img *images.Image) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		switch fp[0] {
		case "name":
			return img.Name, true
		case "target":
			if len(fp) < 2 {
				return "", false
			}
			switch fp[1] {
			case "digest":
				return img.Target.Digest.String(), true
			case "mediatype":
				return img.Target.MediaType, true
			}
		case "labels":
			return labelField(img.Labels, fp)
		}
		return "", false
	})
}

func (s imageStore) List(ctx context.Context, fs ...string) ([]images.Image, error) {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, err
	}
	var out []images.Image
	err = s.db.view(ctx, func(t *nsTx) error {
		b := t.bucket(bucketImages)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var r imageRecord
			if err := decodeAt(string(k), v, &r); err != nil {
				return err
			}
			img := r.image(string(k))
			if filter.Match(imageAdaptor(&img)) {
				out = append(out, img)
			}
			return nil
		})
	})
	return out, err
}

func (s imageStore) Create(ctx context.Context, img images.Image) (images.Image, error) {
	if err := validateImage(&img); err != nil {
		return images.Image{}, err
	}
	err := s.db.update(ctx, func(t *nsTx) error {
		b, err := t.createBucket(bucketImages)
		if err != nil {
			return err
		}
		if b.Get([]byte(img.Name)) != nil {
			return alreadyExists("image %q", img.Name)
		}
		now := time.Now().UTC()
		if img.CreatedAt.IsZero() {
			img.CreatedAt = now
		}
		img.UpdatedAt = img.CreatedAt
		r := imageRecord{Labels: copyLabels(img.Labels), Target: img.Target, CreatedAt: img.CreatedAt, UpdatedAt: img.UpdatedAt}
		if err := putRecord(b, img.Name, &r); err != nil {
			return err
		}
		t.publish(s.db, "/images/create", &eventstypes.ImageCreate{Name: img.Name, Labels: r.Labels})
		return nil
	})
	return img, err
}

func (s imageStore) Update(ctx context.Context, img images.Image, fieldpaths ...string) (images.Image, error) {
	if img.Name == "" {
		return images.Image{}, invalid("image name must not be empty")
	}
	var out images.Image
	err := s.db.update(ctx, func(t *nsTx) error {
		b := t.bucket(bucketImages)
		var r imageRecord
		ok, err := getRecord(b, img.Name, &r)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("image %q", img.Name)
		}
		if len(fieldpaths) == 0 {
			r.Labels = copyLabels(img.Labels)
			r.Target = img.Target
		}
		for _, p := range fieldpaths {
			switch {
			case applyLabelPaths(&r.Labels, img.Labels, p):
			case p == "target":
				r.Target = img.Target
			case p == "annotations":
				r.Target.Annotations = img.Target.Annotations
			case len(p) > len("annotations.") && p[:len("annotations.")] == "annotations.":
				k := p[len("annotations."):]
				if v, ok := img.Target.Annotations[k]; ok {
					if r.Target.Annotations == nil {
						r.Target.Annotations = map[string]string{}
					}
					r.Target.Annotations[k] = v
				} else {
					delete(r.Target.Annotations, k)
				}
			default:
				return invalid("image %q: cannot update field %q: the fields are labels, labels.<key>, target, annotations, annotations.<key>", img.Name, p)
			}
		}
		out = r.image(img.Name)
		if err := validateImage(&out); err != nil {
			return err
		}
		r.UpdatedAt = time.Now().UTC()
		out.UpdatedAt = r.UpdatedAt
		if err := putRecord(b, img.Name, &r); err != nil {
			return err
		}
		t.publish(s.db, "/images/update", &eventstypes.ImageUpdate{Name: img.Name, Labels: r.Labels})
		return nil
	})
	return out, err
}

func (s imageStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	var o images.DeleteOptions
	for _, opt := range opts {
		opt(&o)
	}
	err := s.db.updateFreeing(ctx, func(t *nsTx) error {
		b := t.bucket(bucketImages)
		var r imageRecord
		ok, err := getRecord(b, name, &r)
		if err != nil {
			return err
		}
		if !ok {
			return notFound("image %q", name)
		}
		if o.Target != nil && o.Target.Digest != r.Target.Digest {
			return fmt.Errorf("image %q points at %s, not %s: %w", name, r.Target.Digest, o.Target.Digest, errdefs.ErrFailedPrecondition)
		}
		if err := b.Delete([]byte(name)); err != nil {
			return err
		}
		t.publish(s.db, "/images/delete", &eventstypes.ImageDelete{Name: name})
		return nil
	})
	if err != nil {
		return err
	}
	return s.db.collectAfterDelete(ctx, o.Synchronous)
}

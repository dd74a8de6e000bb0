package images

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/core/images"
)

// ListImages lists one entry per image id with all its repo tags and
// digests; a filter with an image spec lists only the image it resolves to.
func (s *Service) ListImages(ctx context.Context, r *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	v, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	if ref := r.GetFilter().GetImage().GetImage(); ref != "" {
		e, name, _, err := v.resolve(ref)
		if errdefs.IsNotFound(err) {
			return &runtime.ListImagesResponse{}, nil
		}
		if err != nil {
			return nil, err
		}
		return &runtime.ListImagesResponse{Images: []*runtime.Image{toCRI(v.image(e, name))}}, nil
	}
	out := make([]*runtime.Image, 0, len(v.byID))
	for _, e := range v.byID {
		out = append(out, toCRI(v.image(e, e.preferredName())))
	}
	return &runtime.ListImagesResponse{Images: out}, nil
}

// ImageStatus returns the image the spec names; a missing image is an empty
// response, not an error. Verbose adds "info": the image config, its chain
// ID and size as JSON.
func (s *Service) ImageStatus(ctx context.Context, r *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	img, err := s.Resolve(ctx, r.GetImage().GetImage())
	if errdefs.IsNotFound(err) {
		return &runtime.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtime.ImageStatusResponse{Image: toCRI(img)}
	if r.GetVerbose() {
		info, err := json.Marshal(verboseInfo{ChainID: img.ChainID, ImageSpec: img.Config, Size: img.Size, Target: img.Target})
		if err != nil {
			return nil, fmt.Errorf("image %s: encoding its verbose info: %w", img.ID, err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// verboseInfo is ImageStatus's verbose "info", in containerd's field names.
type verboseInfo struct {
	ChainID   digest.Digest      `json:"chainID"`
	ImageSpec ocispec.Image      `json:"imageSpec"`
	Size      uint64             `json:"size"`
	Target    ocispec.Descriptor `json:"target"`
}

// toCRI is img as the CRI reports it.
func toCRI(img Image) *runtime.Image {
	out := &runtime.Image{
		Id: img.ID, RepoTags: img.RepoTags, RepoDigests: img.RepoDigests, Size: img.Size,
		Spec: &runtime.ImageSpec{Image: img.ID}, Pinned: img.Pinned,
	}
	uid, username := userFromImage(img.Config.Config.User)
	if uid != nil {
		out.Uid = &runtime.Int64Value{Value: *uid}
	}
	out.Username = username
	return out
}

// RemoveImage removes the image the spec names, by every name it has: given
// an id or a digest, all of them; given a tag while the image has other
// tags, only that tag. Removing an image that is not there succeeds.
func (s *Service) RemoveImage(ctx context.Context, r *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	ref := r.GetImage().GetImage()
	v, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	e, name, kind, err := v.resolve(ref)
	if errdefs.IsNotFound(err) {
		return &runtime.RemoveImageResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	remove := e.records
	if kind == kindTag {
		tags := 0
		for _, rec := range e.records {
			if rec.kind == kindTag {
				tags++
			}
		}
		if tags > 1 {
			for _, rec := range e.records {
				if rec.name == name {
					remove = []record{rec}
				}
			}
		}
	}
	ctx = s.nsCtx(ctx)
	is := s.c.ImageService()
	for i, rec := range remove {
		target := rec.target
		opts := []images.DeleteOpt{images.DeleteTarget(&target)}
		if i == len(remove)-1 {
			// The last name goes synchronously, so that the collection it
			// triggers has freed the content when the kubelet measures.
			opts = append(opts, images.SynchronousDelete())
		}
		err := is.Delete(ctx, rec.name, opts...)
		switch {
		case err == nil, errdefs.IsNotFound(err):
		case errdefs.IsFailedPrecondition(err):
			// Re-pointed at another image since it was read: the name is
			// no longer this image's.
			s.log.InfoContext(ctx, "image name re-pointed during removal; kept", "image", rec.name, "id", e.id)
		default:
			return nil, fmt.Errorf("remove image %q: name %q: %w", ref, rec.name, err)
		}
	}
	s.log.InfoContext(ctx, "removed image", "image", ref, "id", e.id, "names", len(remove))
	return &runtime.RemoveImageResponse{}, nil
}

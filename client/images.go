package client

import (
	"context"

	api "github.com/containerd/containerd/api/services/images/v1"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/internal/protoconv"
)

// ImageService returns the daemon's image store for the namespace of each
// call's context.
func (c *Client) ImageService() images.Store {
	return c.services.Images
}

type imageStore struct {
	client api.ImagesClient
}

func imageToProto(img images.Image) *api.Image {
	return &api.Image{
		Name: img.Name, Labels: img.Labels, Target: protoconv.DescToProto(img.Target),
		CreatedAt: protoconv.ToTime(img.CreatedAt), UpdatedAt: protoconv.ToTime(img.UpdatedAt),
	}
}

func imageFromProto(img *api.Image) images.Image {
	return images.Image{
		Name: img.GetName(), Labels: img.GetLabels(), Target: protoconv.DescFromProto(img.GetTarget()),
		CreatedAt: protoconv.FromTime(img.GetCreatedAt()), UpdatedAt: protoconv.FromTime(img.GetUpdatedAt()),
	}
}

func (s *imageStore) Get(ctx context.Context, name string) (images.Image, error) {
	resp, err := s.client.Get(ctx, &api.GetImageRequest{Name: name})
	if err != nil {
		return images.Image{}, err
	}
	return imageFromProto(resp.Image), nil
}

func (s *imageStore) List(ctx context.Context, filters ...string) ([]images.Image, error) {
	resp, err := s.client.List(ctx, &api.ListImagesRequest{Filters: filters})
	if err != nil {
		return nil, err
	}
	out := make([]images.Image, 0, len(resp.Images))
	for _, img := range resp.Images {
		out = append(out, imageFromProto(img))
	}
	return out, nil
}

// Create sends image.CreatedAt, when set, as the request's source date epoch:
// that is how containerd's API lets a client choose the creation time.
func (s *imageStore) Create(ctx context.Context, image images.Image) (images.Image, error) {
	req := &api.CreateImageRequest{Image: imageToProto(image), SourceDateEpoch: protoconv.ToTime(image.CreatedAt)}
	resp, err := s.client.Create(ctx, req)
	if err != nil {
		return images.Image{}, err
	}
	return imageFromProto(resp.Image), nil
}

func (s *imageStore) Update(ctx context.Context, image images.Image, fieldpaths ...string) (images.Image, error) {
	req := &api.UpdateImageRequest{Image: imageToProto(image)}
	if len(fieldpaths) > 0 {
		req.UpdateMask = &fieldmaskpb.FieldMask{Paths: fieldpaths}
	}
	resp, err := s.client.Update(ctx, req)
	if err != nil {
		return images.Image{}, err
	}
	return imageFromProto(resp.Image), nil
}

func (s *imageStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	var o images.DeleteOptions
	for _, opt := range opts {
		opt(&o)
	}
	req := &api.DeleteImageRequest{Name: name, Sync: o.Synchronous}
	if o.Target != nil {
		req.Target = protoconv.DescToProto(*o.Target)
	}
	_, err := s.client.Delete(ctx, req)
	return err
}

package images

import (
	"context"

	api "github.com/containerd/containerd/api/services/images/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	coreimages "github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/protoconv"
)

type imagesService struct {
	api.UnimplementedImagesServer
	store coreimages.Store
}

func (s *imagesService) RegisterGRPC(g *grpc.Server) { api.RegisterImagesServer(g, s) }

func imageToProto(img coreimages.Image) *api.Image {
	return &api.Image{
		Name: img.Name, Labels: img.Labels, Target: protoconv.DescToProto(img.Target),
		CreatedAt: protoconv.ToTime(img.CreatedAt), UpdatedAt: protoconv.ToTime(img.UpdatedAt),
	}
}

func imageFromProto(img *api.Image) coreimages.Image {
	return coreimages.Image{
		Name: img.GetName(), Labels: img.GetLabels(), Target: protoconv.DescFromProto(img.GetTarget()),
		CreatedAt: protoconv.FromTime(img.GetCreatedAt()), UpdatedAt: protoconv.FromTime(img.GetUpdatedAt()),
	}
}

func (s *imagesService) Get(ctx context.Context, req *api.GetImageRequest) (*api.GetImageResponse, error) {
	img, err := s.store.Get(ctx, req.Name)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.GetImageResponse{Image: imageToProto(img)}, nil
}

func (s *imagesService) List(ctx context.Context, req *api.ListImagesRequest) (*api.ListImagesResponse, error) {
	imgs, err := s.store.List(ctx, req.Filters...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp := &api.ListImagesResponse{Images: make([]*api.Image, 0, len(imgs))}
	for _, img := range imgs {
		resp.Images = append(resp.Images, imageToProto(img))
	}
	return resp, nil
}

func (s *imagesService) Create(ctx context.Context, req *api.CreateImageRequest) (*api.CreateImageResponse, error) {
	in := imageFromProto(req.GetImage())
	in.CreatedAt = protoconv.FromTime(req.GetSourceDateEpoch())
	img, err := s.store.Create(ctx, in)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.CreateImageResponse{Image: imageToProto(img)}, nil
}

func (s *imagesService) Update(ctx context.Context, req *api.UpdateImageRequest) (*api.UpdateImageResponse, error) {
	img, err := s.store.Update(ctx, imageFromProto(req.GetImage()), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.UpdateImageResponse{Image: imageToProto(img)}, nil
}

func (s *imagesService) Delete(ctx context.Context, req *api.DeleteImageRequest) (*emptypb.Empty, error) {
	var opts []coreimages.DeleteOpt
	if req.Sync {
		opts = append(opts, coreimages.SynchronousDelete())
	}
	if req.Target != nil {
		t := protoconv.DescFromProto(req.Target)
		opts = append(opts, coreimages.DeleteTarget(&t))
	}
	if err := s.store.Delete(ctx, req.Name, opts...); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

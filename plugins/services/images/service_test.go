package images

import (
	"context"
	"fmt"
	"github.com/hullrt/hull/internal/servicetest"
	"testing"
	"time"

	api "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	coreimages "github.com/hullrt/hull/core/images"
	"github.com/hullrt/hull/plugin"
)

// newClient serves the images adapter, built by its registrations over a
// metadata store, and returns a client.
func newClient(t *testing.T) api.ImagesClient {
	t.Helper()
	db := servicetest.OpenDB(t)
	svc := servicetest.Adapter(t, Register, servicetest.Dep(plugin.MetadataPlugin, "bolt", db))
	return api.NewImagesClient(servicetest.Serve(t, svc))
}

func target(s string) *types.Descriptor {
	return &types.Descriptor{
		MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest.FromString(s).String(), Size: int64(len(s)),
		Annotations: map[string]string{"a": s},
	}
}

func image(name string) *api.Image {
	return &api.Image{Name: name, Labels: map[string]string{"l": name}, Target: target(name)}
}

// sameImage compares what the client set, leaving out the store's times.
func sameImage(t *testing.T, got, want *api.Image) {
	t.Helper()
	g := proto.Clone(got).(*api.Image)
	if g.CreatedAt == nil || g.UpdatedAt == nil {
		t.Errorf("image %s has no times", g.Name)
	}
	g.CreatedAt, g.UpdatedAt = nil, nil
	if !proto.Equal(g, want) {
		t.Errorf("image\n%v\nwant\n%v", g, want)
	}
}

func TestImages(t *testing.T) {
	c := newClient(t)
	ctx := servicetest.ClientCtx(t, "ns1")

	cr, err := c.Create(ctx, &api.CreateImageRequest{Image: image("example.com/a:1")})
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, cr.Image, image("example.com/a:1"))
	if _, err := c.Create(ctx, &api.CreateImageRequest{Image: image("example.com/b:1")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Create(ctx, &api.CreateImageRequest{Image: image("example.com/a:1")})
	servicetest.WantCode(t, err, codes.AlreadyExists, "example.com/a:1")
	_, err = c.Create(ctx, &api.CreateImageRequest{Image: &api.Image{Name: "example.com/notarget:1"}})
	servicetest.WantCode(t, err, codes.InvalidArgument, "example.com/notarget:1")

	get, err := c.Get(ctx, &api.GetImageRequest{Name: "example.com/a:1"})
	if err != nil {
		t.Fatal(err)
	}
	sameImage(t, get.Image, image("example.com/a:1"))
	_, err = c.Get(servicetest.ClientCtx(t, "ns2"), &api.GetImageRequest{Name: "example.com/a:1"})
	servicetest.WantCode(t, err, codes.NotFound, "example.com/a:1")

	list, err := c.List(ctx, &api.ListImagesRequest{Filters: []string{"name==example.com/b:1"}})
	if err != nil || len(list.Images) != 1 {
		t.Fatalf("list: %v, %v", list, err)
	}
	sameImage(t, list.Images[0], image("example.com/b:1"))
	_, err = c.List(ctx, &api.ListImagesRequest{Filters: []string{"name~=["}})
	servicetest.WantCode(t, err, codes.InvalidArgument, "name~=[")

	upd := image("example.com/a:1")
	upd.Labels = map[string]string{"l": "changed"}
	upd.Target = target("other")
	ur, err := c.Update(ctx, &api.UpdateImageRequest{Image: upd, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := image("example.com/a:1")
	want.Labels = map[string]string{"l": "changed"}
	sameImage(t, ur.Image, want)

	// Delete with a target that is not the image's is refused.
	_, err = c.Delete(ctx, &api.DeleteImageRequest{Name: "example.com/a:1", Target: target("other")})
	servicetest.WantCode(t, err, codes.FailedPrecondition, "example.com/a:1")
	if _, err := c.Delete(ctx, &api.DeleteImageRequest{Name: "example.com/a:1", Target: target("example.com/a:1"), Sync: true}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Delete(ctx, &api.DeleteImageRequest{Name: "example.com/a:1"})
	servicetest.WantCode(t, err, codes.NotFound, "example.com/a:1")
}

func TestCreateSourceDateEpoch(t *testing.T) {
	// The request's source date epoch becomes the image's creation time.
	c := newClient(t)
	epoch := time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)
	cr, err := c.Create(servicetest.ClientCtx(t, "ns1"), &api.CreateImageRequest{Image: image("example.com/e:1"), SourceDateEpoch: timestamppb.New(epoch)})
	if err != nil {
		t.Fatal(err)
	}
	if !cr.Image.CreatedAt.AsTime().Equal(epoch) {
		t.Errorf("created at %v, want the source date epoch %v", cr.Image.CreatedAt.AsTime(), epoch)
	}
}

// recordingStore fails every call with err, naming its argument, and
// records the delete options it was given.
type recordingStore struct {
	err  error
	opts coreimages.DeleteOptions
}

func (f *recordingStore) Get(ctx context.Context, name string) (coreimages.Image, error) {
	return coreimages.Image{}, fmt.Errorf("get %q: %w", name, f.err)
}
func (f *recordingStore) List(ctx context.Context, filters ...string) ([]coreimages.Image, error) {
	return nil, fmt.Errorf("list %q: %w", filters, f.err)
}
func (f *recordingStore) Create(ctx context.Context, img coreimages.Image) (coreimages.Image, error) {
	return coreimages.Image{}, fmt.Errorf("create %q: %w", img.Name, f.err)
}
func (f *recordingStore) Update(ctx context.Context, img coreimages.Image, paths ...string) (coreimages.Image, error) {
	return coreimages.Image{}, fmt.Errorf("update %q %v: %w", img.Name, paths, f.err)
}
func (f *recordingStore) Delete(ctx context.Context, name string, opts ...coreimages.DeleteOpt) error {
	for _, o := range opts {
		o(&f.opts)
	}
	return fmt.Errorf("delete %q: %w", name, f.err)
}

func TestDeleteOptions(t *testing.T) {
	s := &recordingStore{err: errdefs.ErrNotFound}
	c := api.NewImagesClient(servicetest.Serve(t, &imagesService{store: s}))
	_, _ = c.Delete(servicetest.ClientCtx(t, "ns1"), &api.DeleteImageRequest{Name: "x", Sync: true, Target: target("t")})
	if !s.opts.Synchronous || s.opts.Target == nil || s.opts.Target.Digest.String() != target("t").Digest || s.opts.Target.Size != 1 {
		t.Errorf("delete options %+v, want synchronous with the request's target", s.opts)
	}
	s.opts = coreimages.DeleteOptions{}
	_, _ = c.Delete(servicetest.ClientCtx(t, "ns1"), &api.DeleteImageRequest{Name: "x"})
	if s.opts.Synchronous || s.opts.Target != nil {
		t.Errorf("delete options %+v, want none", s.opts)
	}
}

func TestErrorCodes(t *testing.T) {
	for _, tc := range servicetest.ErrorClasses {
		t.Run(tc.Code.String(), func(t *testing.T) {
			c := api.NewImagesClient(servicetest.Serve(t, &imagesService{store: &recordingStore{err: tc.Class}}))
			ctx := servicetest.ClientCtx(t, "ns1")
			_, err := c.Get(ctx, &api.GetImageRequest{Name: "g:1"})
			servicetest.WantCode(t, err, tc.Code, `"g:1"`)
			_, err = c.List(ctx, &api.ListImagesRequest{Filters: []string{"name==l"}})
			servicetest.WantCode(t, err, tc.Code, "name==l")
			_, err = c.Create(ctx, &api.CreateImageRequest{Image: image("c:1")})
			servicetest.WantCode(t, err, tc.Code, `"c:1"`)
			_, err = c.Update(ctx, &api.UpdateImageRequest{Image: image("u:1"), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"target"}}})
			servicetest.WantCode(t, err, tc.Code, `"u:1"`, "[target]")
			_, err = c.Delete(ctx, &api.DeleteImageRequest{Name: "d:1"})
			servicetest.WantCode(t, err, tc.Code, `"d:1"`)
		})
	}
}

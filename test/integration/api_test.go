package integration

import (
	"context"
	"io"
	"strings"
	"testing"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	nsapi "github.com/containerd/containerd/api/services/namespaces/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/hullrt/hull/internal/hulltest"
)

// dial connects to d with raw containerd API clients, to check codes and
// messages exactly as they travel on the wire.
func dial(t *testing.T, d *hulltest.Daemon) *grpc.ClientConn {
	conn, err := grpc.NewClient("unix://"+d.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func nsCtx(ns string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "containerd-namespace", ns)
}

// wantCode fails unless err has code and its message contains every part.
func wantCode(t *testing.T, what string, err error, code codes.Code, parts ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("%s: got %v (%v), want %v", what, st.Code(), err, code)
		return
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Errorf("%s: message %q does not name %q", what, st.Message(), p)
		}
	}
}

func TestAPIBadInput(t *testing.T) {
	// The blob this test writes is held by nothing: keep the first
	// collection away while it reads it.
	d := hulltest.Start(t, hulltest.Options{Config: noStartupGC})
	conn := dial(t, d)
	ns := nsapi.NewNamespacesClient(conn)
	imgs := imagesapi.NewImagesClient(conn)
	cs := contentapi.NewContentClient(conn)
	ls := leasesapi.NewLeasesClient(conn)
	ctx := nsCtx("default")

	for _, bad := range []string{"-x", "x-", "a..b", "a/b", strings.Repeat("n", 77), "ünï"} {
		_, err := ns.Create(ctx, &nsapi.CreateNamespaceRequest{Namespace: &nsapi.Namespace{Name: bad}})
		wantCode(t, "namespace "+bad, err, codes.InvalidArgument, bad)
		if bad != "ünï" { // gRPC itself refuses to send that header
			_, err = imgs.List(nsCtx(bad), &imagesapi.ListImagesRequest{})
			wantCode(t, "request in namespace "+bad, err, codes.InvalidArgument, bad)
		}
	}
	_, err := imgs.List(context.Background(), &imagesapi.ListImagesRequest{})
	wantCode(t, "missing namespace", err, codes.FailedPrecondition, "namespace")

	big := strings.Repeat("v", 4096)
	_, err = ns.Create(ctx, &nsapi.CreateNamespaceRequest{Namespace: &nsapi.Namespace{Name: "biglabels", Labels: map[string]string{"k": big}}})
	wantCode(t, "label over the limit", err, codes.InvalidArgument, "4097", "4096")

	target := &types.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest.FromString("m").String(), Size: 1}
	_, err = imgs.Create(ctx, &imagesapi.CreateImageRequest{Image: &imagesapi.Image{Name: "img", Target: target, Labels: map[string]string{"x": big}}})
	wantCode(t, "image label over the limit", err, codes.InvalidArgument, "img")
	_, err = imgs.Create(ctx, &imagesapi.CreateImageRequest{Image: &imagesapi.Image{Name: "img", Target: &types.Descriptor{MediaType: "x", Digest: "sha256:nothex"}}})
	wantCode(t, "bad target digest", err, codes.InvalidArgument, "sha256:nothex")
	if _, err := imgs.Create(ctx, &imagesapi.CreateImageRequest{Image: &imagesapi.Image{Name: "img", Target: target}}); err != nil {
		t.Fatal(err)
	}
	_, err = imgs.Create(ctx, &imagesapi.CreateImageRequest{Image: &imagesapi.Image{Name: "img", Target: target}})
	wantCode(t, "duplicate image", err, codes.AlreadyExists, "img")
	_, err = imgs.Update(ctx, &imagesapi.UpdateImageRequest{Image: &imagesapi.Image{Name: "img", Target: target}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels.a", "nosuchfield"}}})
	wantCode(t, "unknown update field", err, codes.InvalidArgument, "nosuchfield")
	got, err := imgs.Get(ctx, &imagesapi.GetImageRequest{Name: "img"})
	if err != nil || len(got.Image.Labels) != 0 {
		t.Fatalf("a refused update changed the image: %v %v", got, err)
	}
	for _, f := range []string{"name==", "name=x", `labels."a`, "name~=(", ","} {
		_, err = imgs.List(ctx, &imagesapi.ListImagesRequest{Filters: []string{f}})
		wantCode(t, "filter "+f, err, codes.InvalidArgument, "filter", "offset")
	}
	_, err = imgs.Get(ctx, &imagesapi.GetImageRequest{Name: "nope"})
	wantCode(t, "missing image", err, codes.NotFound, "nope")

	_, err = ns.Delete(ctx, &nsapi.DeleteNamespaceRequest{Name: "default"})
	wantCode(t, "non-empty namespace", err, codes.FailedPrecondition, "default", "images")
	_, err = ns.Update(ctx, &nsapi.UpdateNamespaceRequest{Namespace: &nsapi.Namespace{Name: "default"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"owner"}}})
	wantCode(t, "namespace update mask", err, codes.InvalidArgument, "owner")

	_, err = ls.Create(ctx, &leasesapi.CreateRequest{ID: "l", Labels: map[string]string{"containerd.io/gc.expire": "tomorrow"}})
	wantCode(t, "bad lease expiry", err, codes.InvalidArgument, "tomorrow")
	_, err = ls.AddResource(ctx, &leasesapi.AddResourceRequest{ID: "nolease", Resource: &leasesapi.Resource{ID: digest.FromString("x").String(), Type: "content"}})
	wantCode(t, "resource on a missing lease", err, codes.NotFound, "nolease")
	if _, err := ls.Create(ctx, &leasesapi.CreateRequest{ID: "l"}); err != nil {
		t.Fatal(err)
	}
	_, err = ls.AddResource(ctx, &leasesapi.AddResourceRequest{ID: "l", Resource: &leasesapi.Resource{ID: "x", Type: "bogus"}})
	wantCode(t, "unknown resource type", err, codes.InvalidArgument, "bogus")

	// Content: reads past the end, unknown digests, invalid digests.
	data := []byte("0123456789")
	dgst := writeBlob(t, cs, ctx, "ref-a", data, len(data), digest.FromBytes(data))
	rc, err := cs.Read(ctx, &contentapi.ReadContentRequest{Digest: dgst.String(), Offset: 11})
	if err == nil {
		_, err = rc.Recv()
	}
	wantCode(t, "read past the end", err, codes.OutOfRange, "11", "10")
	if rc, err = cs.Read(ctx, &contentapi.ReadContentRequest{Digest: dgst.String(), Offset: 4, Size: 3}); err != nil {
		t.Fatalf("ranged read: %v", err)
	}
	if m, err := rc.Recv(); err != nil || string(m.Data) != "456" {
		t.Fatalf("ranged read: %q %v", m.GetData(), err)
	}
	_, err = cs.Info(ctx, &contentapi.InfoRequest{Digest: "sha256:abc"})
	wantCode(t, "invalid digest", err, codes.InvalidArgument, "sha256:abc")
	_, err = cs.Info(nsCtx("other"), &contentapi.InfoRequest{Digest: dgst.String()})
	wantCode(t, "blob of another namespace", err, codes.NotFound, dgst.String())
	_, err = cs.Update(ctx, &contentapi.UpdateRequest{Info: &contentapi.Info{Digest: dgst.String()}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"size"}}})
	wantCode(t, "content update of size", err, codes.InvalidArgument, "size")
}

// writeBlob ingests data through the Write stream and commits it with the
// given size and digest, returning the committed digest.
func writeBlob(t *testing.T, cs contentapi.ContentClient, ctx context.Context, ref string, data []byte, size int, dgst digest.Digest) digest.Digest {
	t.Helper()
	err := tryWriteBlob(cs, ctx, ref, data, size, dgst)
	if err != nil {
		t.Fatalf("write %s: %v", ref, err)
	}
	return dgst
}

func tryWriteBlob(cs contentapi.ContentClient, ctx context.Context, ref string, data []byte, size int, dgst digest.Digest) error {
	w, err := cs.Write(ctx)
	if err != nil {
		return err
	}
	defer w.CloseSend()
	if err := w.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_STAT, Ref: ref}); err != nil {
		return err
	}
	st, err := w.Recv()
	if err != nil {
		return err
	}
	if err := w.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_COMMIT, Ref: ref, Offset: st.Offset, Data: data[st.Offset:], Total: int64(size), Expected: dgst.String()}); err != nil {
		return err
	}
	_, err = w.Recv()
	return err
}

func TestAPICommitChecks(t *testing.T) {
	// The blobs this test commits are held by nothing: keep the first
	// collection away while it looks at them.
	d := hulltest.Start(t, hulltest.Options{Config: noStartupGC})
	cs := contentapi.NewContentClient(dial(t, d))
	ctx := nsCtx("default")
	data := []byte("some content")
	err := tryWriteBlob(cs, ctx, "r", data, len(data)+1, digest.FromBytes(data))
	wantCode(t, "wrong size", err, codes.FailedPrecondition, "13", "12")
	err = tryWriteBlob(cs, ctx, "r", data, len(data), digest.FromString("other"))
	wantCode(t, "wrong digest", err, codes.FailedPrecondition, digest.FromString("other").String())
	// No bad blob is visible; the ingest is still there to resume or abort.
	lc, err := cs.List(ctx, &contentapi.ListContentRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := lc.Recv(); err != io.EOF {
		t.Fatalf("a blob is listed after failed commits, or the list failed: %v %v", m, err)
	}
	st, err := cs.Status(ctx, &contentapi.StatusRequest{Ref: "r"})
	if err != nil || st.Status.Offset != int64(len(data)) {
		t.Fatalf("ingest after failed commit: %v %v", st, err)
	}
	// Resuming from where it stands commits the right content.
	writeBlob(t, cs, ctx, "r", data, len(data), digest.FromBytes(data))
	if _, err := cs.Status(ctx, &contentapi.StatusRequest{Ref: "r"}); status.Code(err) != codes.NotFound {
		t.Fatalf("ingest still there after commit: %v", err)
	}
	// The same bytes in another namespace: stored once on disk.
	writeBlob(t, cs, nsCtx("second"), "r2", data, len(data), digest.FromBytes(data))
	if _, err := cs.Info(nsCtx("second"), &contentapi.InfoRequest{Digest: digest.FromBytes(data).String()}); err != nil {
		t.Fatal(err)
	}
	// A concurrent writer of a held ref is told it is locked.
	w1, err := cs.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w1.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_STAT, Ref: "held"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w1.Recv(); err != nil {
		t.Fatal(err)
	}
	w2, err := cs.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A failed Send shows in Recv.
	w2.Send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_STAT, Ref: "held"})
	_, err = w2.Recv()
	wantCode(t, "second writer", err, codes.Unavailable, "held", "locked")
	// Closing the first writer's stream releases the ref: the server
	// ends the stream, which Recv sees as io.EOF.
	if err := w1.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := w1.Recv(); err != io.EOF {
		t.Fatalf("end of the first writer's stream: %v", err)
	}
	if _, err := cs.Abort(ctx, &contentapi.AbortRequest{Ref: "held"}); err != nil {
		t.Fatalf("abort: %v", err)
	}
}

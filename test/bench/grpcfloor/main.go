// Command grpcfloor is a measuring stick for the images-ls benchmark, not a
// part of hull: a gRPC server on the same grpc-go transport and settings as
// hulld (Go's default GOMAXPROCS, a stream worker per processor, fixed
// flow-control windows) that answers `ctr images ls` from memory with canned
// replies: no namespaces, no database, no content store. The time ctr takes against it is
// the floor that any grpc-go daemon pays on this machine for the same calls,
// so the benchmark can tell how much of hull's time is hull's own.
//
// Usage: grpcfloor SOCKET IMAGES MEDIATYPE BLOB...
//
// The first BLOB file is the manifest that the IMAGES images point at; every
// BLOB is served by Info and Read under its sha256 digest.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type contentServer struct {
	contentapi.UnimplementedContentServer
	blobs   map[string][]byte
	created *timestamppb.Timestamp
}

func (s *contentServer) Info(_ context.Context, r *contentapi.InfoRequest) (*contentapi.InfoResponse, error) {
	b, ok := s.blobs[r.Digest]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "content %s", r.Digest)
	}
	return &contentapi.InfoResponse{Info: &contentapi.Info{Digest: r.Digest, Size: int64(len(b)), CreatedAt: s.created, UpdatedAt: s.created}}, nil
}

func (s *contentServer) Read(r *contentapi.ReadContentRequest, srv contentapi.Content_ReadServer) error {
	b, ok := s.blobs[r.Digest]
	if !ok {
		return status.Errorf(codes.NotFound, "content %s", r.Digest)
	}
	if r.Offset < 0 || r.Offset > int64(len(b)) {
		return status.Errorf(codes.OutOfRange, "offset %d", r.Offset)
	}
	end := int64(len(b))
	if r.Size > 0 && r.Offset+r.Size < end {
		end = r.Offset + r.Size
	}
	return srv.Send(&contentapi.ReadContentResponse{Offset: r.Offset, Data: b[r.Offset:end]})
}

type imagesServer struct {
	imagesapi.UnimplementedImagesServer
	list []*imagesapi.Image
}

func (s *imagesServer) List(context.Context, *imagesapi.ListImagesRequest) (*imagesapi.ListImagesResponse, error) {
	return &imagesapi.ListImagesResponse{Images: s.list}, nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "grpcfloor:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 4 {
		return fmt.Errorf("usage: grpcfloor SOCKET IMAGES MEDIATYPE BLOB...")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 0 {
		return fmt.Errorf("image count %q: not a number of images", args[1])
	}
	created := timestamppb.New(time.Now())
	cs := &contentServer{blobs: map[string][]byte{}, created: created}
	var target *types.Descriptor
	for _, path := range args[3:] {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		d := digest.FromBytes(data).String()
		cs.blobs[d] = data
		if target == nil {
			target = &types.Descriptor{MediaType: args[2], Digest: d, Size: int64(len(data))}
		}
	}
	is := &imagesServer{}
	for i := range n {
		is.list = append(is.list, &imagesapi.Image{Name: fmt.Sprintf("example.test/img/%d:latest", i), Target: target, CreatedAt: created, UpdatedAt: created})
	}
	l, err := net.Listen("unix", args[0])
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))), grpc.InitialWindowSize(1<<20), grpc.InitialConnWindowSize(4<<20))
	contentapi.RegisterContentServer(srv, cs)
	imagesapi.RegisterImagesServer(srv, is)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sigs
		srv.Stop()
	}()
	return srv.Serve(l)
}

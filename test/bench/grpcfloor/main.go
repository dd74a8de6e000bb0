// Command grpcfloor is a measuring stick for the benchmarks, not a part of
// hull: a gRPC server on the same grpc-go transport and settings as hulld
// (internal/grpcserver's: a stream worker per processor, fixed flow-control
// windows, hulld's buffer pool and codec; hulld's default message size
// limits) that answers Images.List, Content.Info
// and Content.Read from memory with canned replies: no namespaces, no
// database, no content store, no interceptors. The time clients take against
// it is the floor that any grpc-go daemon pays on this machine for the same
// calls, so a benchmark can tell how much of hull's time is hull's own.
//
// Usage:
//
//	grpcfloor SOCKET IMAGES MEDIATYPE BLOB...
//	grpcfloor SOCKET --layout DIR
//	grpcfloor SOCKET --cri PODS CONTAINERS
//
// In the first form, the first BLOB file is the manifest that the IMAGES
// images (example.test/img/N:latest) point at; every BLOB is served by Info
// and Read under its sha256 digest.
//
// In the second form, DIR holds blobs/HEX files, each served under the
// digest sha256:HEX (which must be its content's), and an images file with
// one image a line: its name, its target's media type, digest and size,
// separated by blanks. Every target must be one of the blobs, with its size.
//
// In the third form, the CRI RuntimeService answers ListPodSandbox and
// ListContainers with the responses in the files PODS and CONTAINERS (each
// a marshalled runtime.v1 response, as a daemon gave them), whatever the
// filter: the floor of a kubelet's relist.
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/test/bench/internal/floor"
)

// readChunk is the largest data message Read sends, as in hulld's content
// service, so that a blob over it costs the floor as many messages as it
// costs hulld.
const readChunk = 1 << 20

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

// Read answers as hulld's content service does (a negative offset reads
// from the start, a negative size is refused), but sends slices of the blob
// in memory without copying them.
func (s *contentServer) Read(r *contentapi.ReadContentRequest, srv contentapi.Content_ReadServer) error {
	b, ok := s.blobs[r.Digest]
	if !ok {
		return status.Errorf(codes.NotFound, "content %s", r.Digest)
	}
	off := max(r.Offset, 0)
	if off > int64(len(b)) {
		return status.Errorf(codes.OutOfRange, "offset %d", r.Offset)
	}
	if r.Size < 0 {
		return status.Errorf(codes.InvalidArgument, "size %d", r.Size)
	}
	end := int64(len(b))
	if r.Size > 0 && off+r.Size < end {
		end = off + r.Size
	}
	for off < end {
		n := min(end-off, readChunk)
		if err := srv.Send(&contentapi.ReadContentResponse{Offset: off, Data: b[off : off+n]}); err != nil {
			return err
		}
		off += n
	}
	return nil
}

type imagesServer struct {
	imagesapi.UnimplementedImagesServer
	list []*imagesapi.Image
}

func (s *imagesServer) List(context.Context, *imagesapi.ListImagesRequest) (*imagesapi.ListImagesResponse, error) {
	return &imagesapi.ListImagesResponse{Images: s.list}, nil
}

// criServer answers a relist with canned responses.
type criServer struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	pods       *runtimeapi.ListPodSandboxResponse
	containers *runtimeapi.ListContainersResponse
}

func (s *criServer) ListPodSandbox(context.Context, *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return s.pods, nil
}

func (s *criServer) ListContainers(context.Context, *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return s.containers, nil
}

// loadCRI reads the two responses of the --cri form.
func loadCRI(pods, containers string) (*criServer, error) {
	s := &criServer{pods: &runtimeapi.ListPodSandboxResponse{}, containers: &runtimeapi.ListContainersResponse{}}
	for path, m := range map[string]proto.Message{pods: s.pods, containers: s.containers} {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if err := proto.Unmarshal(data, m); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return s, nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "grpcfloor:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	created := timestamppb.New(time.Now())
	cs := &contentServer{blobs: map[string][]byte{}, created: created}
	is := &imagesServer{}
	var err error
	var cri *criServer
	switch {
	case len(args) == 4 && args[1] == "--cri":
		cri, err = loadCRI(args[2], args[3])
	case len(args) == 3 && args[1] == "--layout":
		err = loadLayout(args[2], cs, is)
	case len(args) >= 4 && !strings.HasPrefix(args[1], "-"):
		err = loadCopies(args[1], args[2], args[3:], cs, is)
	default:
		err = fmt.Errorf("usage: grpcfloor SOCKET IMAGES MEDIATYPE BLOB... | grpcfloor SOCKET --layout DIR | grpcfloor SOCKET --cri PODS CONTAINERS")
	}
	if err != nil {
		return err
	}
	return serve(args[0], cs, is, cri)
}

// loadCopies fills cs with the blob files and is with count images named
// example.test/img/N:latest, all pointing at the first blob as mediaType.
func loadCopies(count, mediaType string, blobs []string, cs *contentServer, is *imagesServer) error {
	n, err := strconv.Atoi(count)
	if err != nil || n < 0 {
		return fmt.Errorf("image count %q: not a number of images", count)
	}
	var target *types.Descriptor
	for _, path := range blobs {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		d := digest.FromBytes(data).String()
		cs.blobs[d] = data
		if target == nil {
			target = &types.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
		}
	}
	for i := range n {
		is.list = append(is.list, &imagesapi.Image{Name: fmt.Sprintf("example.test/img/%d:latest", i), Target: target, CreatedAt: cs.created, UpdatedAt: cs.created})
	}
	return nil
}

// loadLayout fills cs and is from the layout directory dir (see the usage).
// It checks every blob's digest and every image's target, so that a wrong
// layout fails here rather than as a client's mismatch in the benchmark.
func loadLayout(dir string, cs *contentServer, is *imagesServer) error {
	entries, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, "blobs", e.Name()))
		if err != nil {
			return err
		}
		d := digest.FromBytes(data)
		if d.Encoded() != e.Name() {
			return fmt.Errorf("blob %s: its content's digest is %s", e.Name(), d)
		}
		cs.blobs[d.String()] = data
	}
	f, err := os.Open(filepath.Join(dir, "images"))
	if err != nil {
		return err
	}
	defer f.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 4 {
			return fmt.Errorf("images line %d: %d fields, want name, media type, digest and size", line, len(fields))
		}
		name, mediaType, dgst := fields[0], fields[1], fields[2]
		size, err := strconv.ParseInt(fields[3], 10, 64)
		if err != nil {
			return fmt.Errorf("images line %d: size: %w", line, err)
		}
		if names[name] {
			return fmt.Errorf("images line %d: image %s repeated", line, name)
		}
		names[name] = true
		if b, ok := cs.blobs[dgst]; !ok || int64(len(b)) != size {
			return fmt.Errorf("images line %d: target %s of %d bytes is not among the blobs", line, dgst, size)
		}
		is.list = append(is.list, &imagesapi.Image{Name: name, Target: &types.Descriptor{MediaType: mediaType, Digest: dgst, Size: size}, CreatedAt: cs.created, UpdatedAt: cs.created})
	}
	return sc.Err()
}

// serve serves cs and is (and cri when not nil) on the unix socket at
// path until SIGTERM or an interrupt.
func serve(path string, cs *contentServer, is *imagesServer, cri *criServer) error {
	return floor.Serve(path, func(srv *grpc.Server) {
		contentapi.RegisterContentServer(srv, cs)
		imagesapi.RegisterImagesServer(srv, is)
		if cri != nil {
			runtimeapi.RegisterRuntimeServiceServer(srv, cri)
		}
	})
}

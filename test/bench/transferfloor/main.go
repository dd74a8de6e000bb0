// Command transferfloor is a measuring stick for the benchmarks, not a part
// of hull: the least a daemon can do for containerd 2.4's `ctr images pull`
// through the Transfer service. It serves Streaming, Transfer and Leases on the
// grpc-go transport and settings of hulld (as grpcfloor does) and pulls an
// OCIRegistry source into a directory (the lease ctr takes around it is
// answered and forgotten): it fetches and stores the manifest (an index's
// entry for this host's platform), the config and the layers over plain
// HTTP, 8 blobs at a time as hull does, checks each blob's digest, writes
// each blob to a file and extracts each layer (gzip or plain tar) into a
// directory of its own, all layers at once. It keeps no database, no leases,
// no snapshots and no image record, sends no progress, syncs nothing and
// sets no owners or times. The time ctr takes against it, with the
// registry's and ctr's CPU on the same cores as in the real pulls, is the
// floor under any daemon's Transfer pull of that image on this machine.
//
// Usage:
//
//	transferfloor SOCKET DIR
//
// The Nth transfer stores into DIR/N (N from 1): blobs/HEX for each blob and
// layers/HEX/ for each layer's files. The caller removes them.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	streamingapi "github.com/containerd/containerd/api/services/streaming/v1"
	transferapi "github.com/containerd/containerd/api/services/transfer/v1"
	transfertypes "github.com/containerd/containerd/api/types/transfer"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hullrt/hull/test/bench/internal/floor"
)

// fetchers is how many blobs a pull fetches at once: hull's number for
// blobs of at most 1 MiB.
const fetchers = 8

// streams holds the open progress streams by ID, so that a transfer can
// end the stream its client named.
type streams struct {
	mu   sync.Mutex
	open map[string]chan struct{}
}

type streamingServer struct {
	streamingapi.UnimplementedStreamingServer
	s *streams
}

// Stream takes the client's StreamInit, acknowledges it and stays open
// until the transfer that uses it ends or the client goes away.
func (s *streamingServer) Stream(srv streamingapi.Streaming_StreamServer) error {
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	var init streamingapi.StreamInit
	if err := first.UnmarshalTo(&init); err != nil {
		return status.Errorf(codes.InvalidArgument, "first message %q: %v", first.GetTypeUrl(), err)
	}
	done := make(chan struct{})
	s.s.mu.Lock()
	s.s.open[init.ID] = done
	s.s.mu.Unlock()
	ack, err := anypb.New(&emptypb.Empty{})
	if err != nil {
		return err
	}
	if err := srv.Send(ack); err != nil {
		return err
	}
	select {
	case <-srv.Context().Done():
	case <-done:
	}
	s.s.mu.Lock()
	delete(s.s.open, init.ID)
	s.s.mu.Unlock()
	return nil
}

// end closes the stream named id, if it is open.
func (s *streams) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if done, ok := s.open[id]; ok {
		close(done)
		delete(s.open, id)
	}
}

// leasesServer takes the lease ctr wraps its pull in, and keeps nothing.
type leasesServer struct {
	leasesapi.UnimplementedLeasesServer
	n atomic.Int64
}

func (l *leasesServer) Create(_ context.Context, req *leasesapi.CreateRequest) (*leasesapi.CreateResponse, error) {
	id := req.ID
	if id == "" {
		id = "floor-" + strconv.FormatInt(l.n.Add(1), 10)
	}
	return &leasesapi.CreateResponse{Lease: &leasesapi.Lease{ID: id, Labels: req.Labels, CreatedAt: timestamppb.Now()}}, nil
}

func (l *leasesServer) Delete(context.Context, *leasesapi.DeleteRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

type transferServer struct {
	transferapi.UnimplementedTransferServer
	dir     string
	n       atomic.Int64
	streams *streams
	client  *http.Client
}

func (t *transferServer) Transfer(ctx context.Context, req *transferapi.TransferRequest) (*emptypb.Empty, error) {
	defer t.streams.end(req.GetOptions().GetProgressStream())
	var src transfertypes.OCIRegistry
	if req.GetSource() == nil || req.GetSource().UnmarshalTo(&src) != nil {
		return nil, status.Errorf(codes.Unimplemented, "source %q: only an OCIRegistry", req.GetSource().GetTypeUrl())
	}
	if src.GetResolver().GetDefaultScheme() != "http" {
		return nil, status.Errorf(codes.Unimplemented, "registry scheme %q: only plain http", src.GetResolver().GetDefaultScheme())
	}
	dir := filepath.Join(t.dir, strconv.FormatInt(t.n.Add(1), 10))
	if err := t.pull(ctx, src.Reference, dir); err != nil {
		return nil, status.Errorf(codes.Unknown, "pull %s: %v", src.Reference, err)
	}
	return &emptypb.Empty{}, nil
}

// pull fetches ref's manifest for this host, then its config and layers,
// storing every blob and extracting every layer under dir.
func (t *transferServer) pull(ctx context.Context, ref, dir string) error {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return err
	}
	base := "http://" + reference.Domain(named) + "/v2/" + reference.Path(named)
	object := ""
	switch r := named.(type) {
	case reference.Digested:
		object = r.Digest().String()
	case reference.Tagged:
		object = r.Tag()
	}
	for _, sub := range []string{"blobs", "layers"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	var m ocispec.Manifest
	for range 2 { // an index, then its manifest for this host
		data, mediaType, err := t.get(ctx, base+"/manifests/"+object)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "blobs", digest.SHA256.FromBytes(data).Encoded()), data, 0o644); err != nil {
			return err
		}
		if mediaType != ocispec.MediaTypeImageIndex && mediaType != "application/vnd.docker.distribution.manifest.list.v2+json" {
			if err := json.Unmarshal(data, &m); err != nil {
				return fmt.Errorf("manifest: %w", err)
			}
			break
		}
		var idx ocispec.Index
		if err := json.Unmarshal(data, &idx); err != nil {
			return fmt.Errorf("index: %w", err)
		}
		object = ""
		for _, d := range idx.Manifests {
			if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
				object = d.Digest.String()
				break
			}
		}
		if object == "" {
			return errors.New("no manifest for this host in the index")
		}
	}
	if len(m.Layers) == 0 {
		return errors.New("no layers in the manifest")
	}
	blobs := append([]ocispec.Descriptor{m.Config}, m.Layers...)
	sem := make(chan struct{}, fetchers)
	errs := make(chan error, len(blobs))
	for i, d := range blobs {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- t.blob(ctx, base, dir, d, i > 0)
		}()
	}
	var first error
	for range blobs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// blob fetches d, checks its digest and stores it, and extracts it when
// it is a layer.
func (t *transferServer) blob(ctx context.Context, base, dir string, d ocispec.Descriptor, layer bool) error {
	data, _, err := t.get(ctx, base+"/blobs/"+d.Digest.String())
	if err != nil {
		return err
	}
	if got := digest.SHA256.FromBytes(data); got != d.Digest {
		return fmt.Errorf("blob %s: fetched %s", d.Digest, got)
	}
	if err := os.WriteFile(filepath.Join(dir, "blobs", d.Digest.Encoded()), data, 0o644); err != nil {
		return err
	}
	if !layer {
		return nil
	}
	return extract(data, filepath.Join(dir, "layers", d.Digest.Encoded()))
}

// get fetches url whole, with the manifest media types a pull accepts.
func (t *transferServer) get(ctx context.Context, url string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", strings.Join([]string{ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json"}, ", "))
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return data, resp.Header.Get("Content-Type"), nil
}

// extract writes the directories, files and symbolic links of the layer
// tar in data (gzipped or not) under dir, with their modes and nothing
// else.
func extract(data []byte, dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	var r io.Reader = bytes.NewReader(data)
	if len(data) > 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		r = bufio.NewReader(zr)
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		path := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.Mkdir(path, os.FileMode(h.Mode)&os.ModePerm)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(h.Mode)&os.ModePerm); err == nil {
				_, err = io.Copy(f, tr)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, path)
		}
		if err != nil {
			return err
		}
	}
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "transferfloor:", err)
		os.Exit(1)
	}
}

// run serves on the socket args[0] until SIGTERM or an interrupt.
func run(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: transferfloor SOCKET DIR")
	}
	ss := &streams{open: map[string]chan struct{}{}}
	return floor.Serve(args[0], func(srv *grpc.Server) {
		streamingapi.RegisterStreamingServer(srv, &streamingServer{s: ss})
		leasesapi.RegisterLeasesServer(srv, &leasesServer{})
		transferapi.RegisterTransferServer(srv, &transferServer{dir: args[1], streams: ss,
			client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: fetchers}}})
	})
}

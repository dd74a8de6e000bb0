// Command transferfloor is a measuring stick for the benchmarks, not a part
// of hull: the least a daemon can do for containerd 2.4's `ctr images pull`
// through the Transfer service. It serves Streaming, Transfer and Leases on the
// grpc-go transport and settings of hulld (as grpcfloor does) and pulls an
// OCIRegistry source into a directory (the lease ctr takes around it is
// answered and forgotten): it fetches and stores the manifest (an index's
// entry for this host's platform), then the config and the layers over
// plain HTTP, 8 blobs at a time as hull fetches small ones. Each layer is
// written to a file and extracted (gzip or plain tar) into a directory of
// its own from the same stream as it arrives, all layers at once, its
// digest checked and its uncompressed content checked against the
// config's diff IDs, as a daemon's unpack must. It keeps no database, no
// leases, no snapshots and no image record, sends no progress, syncs
// nothing and sets no owners or times. The time ctr takes against it, with the
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
	"github.com/klauspost/compress/gzip"
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
	// The config is fetched with the layers; its diff IDs check the
	// layers' uncompressed content once all are in, as a daemon unpacking
	// the layers must check them.
	blobs := append([]ocispec.Descriptor{m.Config}, m.Layers...)
	diffIDs := make([]digest.Digest, len(blobs))
	var configData []byte
	sem := make(chan struct{}, fetchers)
	errs := make(chan error, len(blobs))
	for i, d := range blobs {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			data, diffID, err := t.blob(ctx, base, dir, d, i > 0)
			if i == 0 {
				configData = data
			}
			diffIDs[i] = diffID
			errs <- err
		}()
	}
	var first error
	for range blobs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return first
	}
	var config ocispec.Image
	if err := json.Unmarshal(configData, &config); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if len(config.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("config has %d diff IDs for %d layers", len(config.RootFS.DiffIDs), len(m.Layers))
	}
	for i, want := range config.RootFS.DiffIDs {
		if got := diffIDs[i+1]; got != want {
			return fmt.Errorf("layer %s: uncompressed %s, the config says %s", m.Layers[i].Digest, got, want)
		}
	}
	return nil
}

// copyBuffer is the size of the reads and writes of a blob's bytes.
const copyBuffer = 1 << 20

// blob fetches d and stores it as it arrives, checking its digest. A layer
// is extracted from the same stream, and the digest of its uncompressed
// content returned; other blobs' bytes are returned.
func (t *transferServer) blob(ctx context.Context, base, dir string, d ocispec.Descriptor, layer bool) (data []byte, diffID digest.Digest, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/blobs/"+d.Digest.String(), nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET blob %s: %s", d.Digest, resp.Status)
	}
	f, err := os.Create(filepath.Join(dir, "blobs", d.Digest.Encoded()))
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	blobHash := digest.SHA256.Digester()
	in := io.TeeReader(resp.Body, io.MultiWriter(f, blobHash.Hash()))
	if !layer {
		if data, err = io.ReadAll(in); err != nil {
			return nil, "", err
		}
	} else {
		diffHash := digest.SHA256.Digester()
		// Buffers no larger than the blob: a small layer's are allocated
		// and zeroed for every pull.
		size := int(min(max(d.Size, 16), copyBuffer))
		if err := extract(bufio.NewReaderSize(in, size), diffHash.Hash(), filepath.Join(dir, "layers", d.Digest.Encoded()), size); err != nil {
			return nil, "", fmt.Errorf("layer %s: %w", d.Digest, err)
		}
		diffID = diffHash.Digest()
		// What follows the tar's end (its padding, gzip's trailer) is
		// part of the blob.
		if _, err := io.Copy(io.Discard, in); err != nil {
			return nil, "", err
		}
	}
	if got := blobHash.Digest(); got != d.Digest {
		return nil, "", fmt.Errorf("blob %s: fetched %s", d.Digest, got)
	}
	return data, diffID, nil
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
// tar in r (gzipped or not) under dir, with their modes and nothing else,
// and writes the uncompressed tar to diff as it reads it. Files are
// written through a buffer of bufSize bytes.
func extract(r *bufio.Reader, diff io.Writer, dir string, bufSize int) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	var tarStream io.Reader = r
	if magic, err := r.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		defer zr.Close()
		tarStream = zr
	}
	tr := tar.NewReader(io.TeeReader(tarStream, diff))
	buf := make([]byte, bufSize)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			// The rest of the uncompressed stream (the tar's zero
			// blocks) is part of the diff ID.
			_, err = io.Copy(diff, tarStream)
			return err
		}
		if err != nil {
			return err
		}
		name := filepath.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		path := filepath.Join(dir, name)
		// A tar need not hold its entries' parent directories: they are
		// made when an entry's making finds one missing.
		for parents := true; ; parents = false {
			err = entry(tr, h, path, buf)
			if !parents || !errors.Is(err, os.ErrNotExist) {
				break
			}
			if err = os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				break
			}
		}
		if err != nil {
			return err
		}
	}
}

// entry makes the directory, file (its content read from tr through buf)
// or symbolic link that h describes at path; other types are skipped.
func entry(tr *tar.Reader, h *tar.Header, path string, buf []byte) error {
	switch h.Typeflag {
	case tar.TypeDir:
		return os.Mkdir(path, os.FileMode(h.Mode)&os.ModePerm)
	case tar.TypeReg:
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(h.Mode)&os.ModePerm)
		if err != nil {
			return err
		}
		// Not through f's ReadFrom, which would copy through a buffer of
		// its own, 32 KiB at a time.
		_, err = io.CopyBuffer(struct{ io.Writer }{f}, tr, buf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case tar.TypeSymlink:
		return os.Symlink(h.Linkname, path)
	}
	return nil
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

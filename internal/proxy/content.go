package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	api "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/internal/protoconv"
)

// MaxChunk bounds the data of one Write or Read message: well below the
// 4 MiB a stock containerd server accepts, and large enough that the round
// trip per message does not dominate. Callers copying into a Writer use
// buffers of this size, so that every message is full.
const MaxChunk = 1 << 20

// NewContentStore returns the content store served by containerd's content
// API on conn, acting in the namespace of each call's context. conn's
// interceptors put the namespace and lease headers on each call and map
// errors to errdefs classes (see Dial).
func NewContentStore(conn grpc.ClientConnInterface) content.Store {
	return &contentStore{client: api.NewContentClient(conn)}
}

type contentStore struct {
	client api.ContentClient
}

func infoFromProto(i *api.Info) content.Info {
	return content.Info{
		Digest: digest.Digest(i.GetDigest()), Size: i.GetSize(), Labels: i.GetLabels(),
		CreatedAt: protoconv.FromTime(i.GetCreatedAt()), UpdatedAt: protoconv.FromTime(i.GetUpdatedAt()),
	}
}

func statusFromProto(s *api.Status) content.Status {
	return content.Status{
		Ref: s.GetRef(), Offset: s.GetOffset(), Total: s.GetTotal(), Expected: digest.Digest(s.GetExpected()),
		StartedAt: protoconv.FromTime(s.GetStartedAt()), UpdatedAt: protoconv.FromTime(s.GetUpdatedAt()),
	}
}

func (s *contentStore) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	resp, err := s.client.Info(ctx, &api.InfoRequest{Digest: dgst.String()})
	if err != nil {
		return content.Info{}, err
	}
	return infoFromProto(resp.Info), nil
}

func (s *contentStore) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	req := &api.UpdateRequest{Info: &api.Info{Digest: info.Digest.String(), Labels: info.Labels}}
	if len(fieldpaths) > 0 {
		req.UpdateMask = &fieldmaskpb.FieldMask{Paths: fieldpaths}
	}
	resp, err := s.client.Update(ctx, req)
	if err != nil {
		return content.Info{}, err
	}
	return infoFromProto(resp.Info), nil
}

func (s *contentStore) Walk(ctx context.Context, fn content.WalkFunc, filters ...string) error {
	// A child context ends the stream when fn stops the walk early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.client.List(ctx, &api.ListContentRequest{Filters: filters})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, i := range resp.Info {
			if err := fn(infoFromProto(i)); err != nil {
				return err
			}
		}
	}
}

func (s *contentStore) Delete(ctx context.Context, dgst digest.Digest) error {
	_, err := s.client.Delete(ctx, &api.DeleteContentRequest{Digest: dgst.String()})
	return err
}

func (s *contentStore) Status(ctx context.Context, ref string) (content.Status, error) {
	resp, err := s.client.Status(ctx, &api.StatusRequest{Ref: ref})
	if err != nil {
		return content.Status{}, err
	}
	return statusFromProto(resp.Status), nil
}

func (s *contentStore) ListStatuses(ctx context.Context, filters ...string) ([]content.Status, error) {
	resp, err := s.client.ListStatuses(ctx, &api.ListStatusesRequest{Filters: filters})
	if err != nil {
		return nil, err
	}
	out := make([]content.Status, 0, len(resp.Statuses))
	for _, st := range resp.Statuses {
		out = append(out, statusFromProto(st))
	}
	return out, nil
}

func (s *contentStore) Abort(ctx context.Context, ref string) error {
	_, err := s.client.Abort(ctx, &api.AbortRequest{Ref: ref})
	return err
}

// ReaderAt asks for the blob's info first: that gives the size and turns a
// missing blob into NotFound here rather than at the first read.
func (s *contentStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	info, err := s.Info(ctx, desc.Digest)
	if err != nil {
		return nil, err
	}
	return &remoteReaderAt{ctx: ctx, client: s.client, digest: desc.Digest, size: info.Size}, nil
}

// ReadBlob reads the whole blob desc with one Read call: the daemon answers
// NotFound for a blob that is not there, so the Info call a ReaderAt makes
// first to learn the size is not needed when desc carries it. The blob must
// be desc.Size bytes long.
func (s *contentStore) ReadBlob(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size <= 0 {
		return nil, fmt.Errorf("read of %s: a size is needed to read in one call, got %d: %w", desc.Digest, desc.Size, errdefs.ErrInvalidArgument)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.client.Read(ctx, &api.ReadContentRequest{Digest: desc.Digest.String()})
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 0, desc.Size)
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if resp.Offset != int64(len(buf)) {
			return nil, fmt.Errorf("read %s: got data for offset %d, expected %d", desc.Digest, resp.Offset, len(buf))
		}
		if int64(len(buf)+len(resp.Data)) > desc.Size {
			return nil, fmt.Errorf("read %s: the blob is longer than the %d bytes its descriptor says: %w", desc.Digest, desc.Size, errdefs.ErrFailedPrecondition)
		}
		buf = append(buf, resp.Data...)
	}
	if int64(len(buf)) != desc.Size {
		return nil, fmt.Errorf("read %s: the blob is %d bytes, its descriptor says %d: %w", desc.Digest, len(buf), desc.Size, errdefs.ErrFailedPrecondition)
	}
	return buf, nil
}

// remoteReaderAt reads a blob with one Read call per ReadAt; it holds no
// stream between calls, so it may be used concurrently and needs no Close.
type remoteReaderAt struct {
	ctx    context.Context
	client api.ContentClient
	digest digest.Digest
	size   int64
}

func (r *remoteReaderAt) Size() int64  { return r.size }
func (r *remoteReaderAt) Close() error { return nil }

func (r *remoteReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at offset %d: negative offset: %w", r.digest, off, errdefs.ErrInvalidArgument)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), r.size-off)
	if want == 0 {
		return 0, nil
	}
	// A child context ends the stream if we stop before the server does.
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	stream, err := r.client.Read(ctx, &api.ReadContentRequest{Digest: r.digest.String(), Offset: off, Size: want})
	if err != nil {
		return 0, err
	}
	n := 0
	for int64(n) < want {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, io.ErrUnexpectedEOF
		}
		if err != nil {
			return n, err
		}
		if resp.Offset != off+int64(n) {
			return n, fmt.Errorf("read %s: got data for offset %d, expected %d", r.digest, resp.Offset, off+int64(n))
		}
		n += copy(p[n:want], resp.Data)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Writer opens the ingest opts.Ref on the daemon, creating it or resuming it;
// the returned writer's Status().Offset says where to resume. The daemon
// holds the ref for this writer until Close or Commit: another writer for it
// gets Unavailable meanwhile. If the expected digest is already stored, the
// daemon may answer AlreadyExists.
//
// The writer is bound to ctx: cancelling it aborts the stream (the ingest
// stays, resumable). It is not safe for concurrent use.
func (s *contentStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	var wo content.WriterOpts
	for _, o := range opts {
		if err := o(&wo); err != nil {
			return nil, err
		}
	}
	if wo.Ref == "" {
		return nil, fmt.Errorf("content writer: a ref is required: %w", errdefs.ErrInvalidArgument)
	}
	stream, err := s.client.Write(ctx)
	if err != nil {
		return nil, err
	}
	w := &remoteWriter{ref: wo.Ref, expected: wo.Desc.Digest, stream: stream}
	resp, err := w.send(&api.WriteContentRequest{
		Action: api.WriteAction_STAT, Ref: wo.Ref, Total: wo.Desc.Size, Expected: wo.Desc.Digest.String(),
	})
	if err != nil {
		w.Close()
		return nil, err
	}
	w.offset = resp.Offset
	return w, nil
}

// remoteWriter is one Content.Write stream: every message it sends is
// answered before the next goes, so its offset is always the daemon's.
type remoteWriter struct {
	ref      string
	expected digest.Digest
	stream   api.Content_WriteClient
	offset   int64
	digest   digest.Digest

	closeOnce sync.Once
	closeErr  error
}

// send sends one message and waits for its answer.
func (w *remoteWriter) send(req *api.WriteContentRequest) (*api.WriteContentResponse, error) {
	if err := w.stream.Send(req); err != nil {
		if errors.Is(err, io.EOF) {
			// The server ended the stream; its status is the real error.
			_, err = w.stream.Recv()
			if err == nil || errors.Is(err, io.EOF) {
				err = fmt.Errorf("ingest ref %q: the daemon closed the write stream: %w", w.ref, errdefs.ErrFailedPrecondition)
			}
		}
		return nil, err
	}
	resp, err := w.stream.Recv()
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("ingest ref %q: the daemon closed the write stream: %w", w.ref, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return nil, err
	}
	if resp.Digest != "" {
		w.digest = digest.Digest(resp.Digest)
	}
	return resp, nil
}

func (w *remoteWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		chunk := p[n:min(len(p), n+MaxChunk)]
		resp, err := w.send(&api.WriteContentRequest{Action: api.WriteAction_WRITE, Offset: w.offset, Data: chunk})
		if err != nil {
			return n, err
		}
		if want := w.offset + int64(len(chunk)); resp.Offset != want {
			// The daemon's offset is the truth; keep it so a caller can
			// look at Status and decide.
			w.offset = resp.Offset
			return n, fmt.Errorf("ingest ref %q: daemon is at offset %d after a write that should end at %d: %w", w.ref, resp.Offset, want, io.ErrShortWrite)
		}
		w.offset = resp.Offset
		n += len(chunk)
	}
	return n, nil
}

func (w *remoteWriter) Digest() digest.Digest { return w.digest }

func (w *remoteWriter) Status() (content.Status, error) {
	resp, err := w.send(&api.WriteContentRequest{Action: api.WriteAction_STAT})
	if err != nil {
		return content.Status{}, err
	}
	w.offset = resp.Offset
	return content.Status{
		Ref: w.ref, Offset: resp.Offset, Total: resp.Total, Expected: w.expected,
		StartedAt: protoconv.FromTime(resp.StartedAt), UpdatedAt: protoconv.FromTime(resp.UpdatedAt),
	}, nil
}

func (w *remoteWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.CommitOpt) (err error) {
	defer func() {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}()
	var co content.CommitOpts
	for _, o := range opts {
		if err := o(&co); err != nil {
			return err
		}
	}
	resp, err := w.send(&api.WriteContentRequest{
		Action: api.WriteAction_COMMIT, Offset: w.offset, Total: size,
		Expected: expected.String(), Labels: co.Labels,
	})
	if err != nil {
		return err
	}
	// The daemon checks both; checking again guards against a server that
	// does not.
	if size > 0 && resp.Offset != size {
		return fmt.Errorf("commit ingest ref %q: committed size %d, expected %d: %w", w.ref, resp.Offset, size, errdefs.ErrFailedPrecondition)
	}
	if expected != "" && digest.Digest(resp.Digest) != expected {
		return fmt.Errorf("commit ingest ref %q: committed digest %s, expected %s: %w", w.ref, resp.Digest, expected, errdefs.ErrFailedPrecondition)
	}
	w.offset = resp.Offset
	return nil
}

// Truncate asks the daemon to cut the ingest at size by writing nothing at
// that offset; the daemon need support only 0.
func (w *remoteWriter) Truncate(size int64) error {
	resp, err := w.send(&api.WriteContentRequest{Action: api.WriteAction_WRITE, Offset: size})
	if err != nil {
		return err
	}
	w.offset = resp.Offset
	return nil
}

// Close ends the stream and waits for the daemon to end it too, so that the
// ref is released when Close returns and a new writer can resume it at once.
func (w *remoteWriter) Close() error {
	w.closeOnce.Do(func() {
		if err := w.stream.CloseSend(); err != nil && !errors.Is(err, io.EOF) {
			w.closeErr = err
			return
		}
		for {
			if _, err := w.stream.Recv(); err != nil {
				// io.EOF is the normal end; any other error was the
				// stream's failure, already reported by the call it
				// failed, and the ingest is released either way.
				return
			}
		}
	})
	return w.closeErr
}

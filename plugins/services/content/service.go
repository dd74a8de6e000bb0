package content

import (
	"context"
	"errors"
	"fmt"
	"io"

	api "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	corecontent "github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/protoconv"
)

// readChunk is the largest data message Read sends; well under gRPC's
// default 4 MiB receive limit of containerd clients.
const readChunk = 1 << 20

type contentService struct {
	api.UnimplementedContentServer
	store corecontent.Store
}

func (s *contentService) RegisterGRPC(g *grpc.Server) { api.RegisterContentServer(g, s) }

func infoToProto(i corecontent.Info) *api.Info {
	return &api.Info{
		Digest: i.Digest.String(), Size: i.Size, Labels: i.Labels,
		CreatedAt: protoconv.ToTime(i.CreatedAt), UpdatedAt: protoconv.ToTime(i.UpdatedAt),
	}
}

func statusToProto(st corecontent.Status) *api.Status {
	return &api.Status{
		Ref: st.Ref, Offset: st.Offset, Total: st.Total, Expected: st.Expected.String(),
		StartedAt: protoconv.ToTime(st.StartedAt), UpdatedAt: protoconv.ToTime(st.UpdatedAt),
	}
}

func (s *contentService) Info(ctx context.Context, req *api.InfoRequest) (*api.InfoResponse, error) {
	info, err := s.store.Info(ctx, digest.Digest(req.Digest))
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.InfoResponse{Info: infoToProto(info)}, nil
}

func (s *contentService) Update(ctx context.Context, req *api.UpdateRequest) (*api.UpdateResponse, error) {
	in := req.GetInfo()
	info, err := s.store.Update(ctx, corecontent.Info{Digest: digest.Digest(in.GetDigest()), Labels: in.GetLabels()}, req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.UpdateResponse{Info: infoToProto(info)}, nil
}

func (s *contentService) List(req *api.ListContentRequest, srv api.Content_ListServer) error {
	const batch = 100
	var buf []*api.Info
	err := s.store.Walk(srv.Context(), func(info corecontent.Info) error {
		buf = append(buf, infoToProto(info))
		if len(buf) == batch {
			if err := srv.Send(&api.ListContentResponse{Info: buf}); err != nil {
				return err
			}
			buf = nil
		}
		return nil
	}, req.Filters...)
	if err != nil {
		return errgrpc.ToGRPC(err)
	}
	if len(buf) > 0 {
		return srv.Send(&api.ListContentResponse{Info: buf})
	}
	return nil
}

func (s *contentService) Delete(ctx context.Context, req *api.DeleteContentRequest) (*emptypb.Empty, error) {
	if err := s.store.Delete(ctx, digest.Digest(req.Digest)); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *contentService) Read(req *api.ReadContentRequest, srv api.Content_ReadServer) error {
	ctx := srv.Context()
	ra, err := s.store.ReaderAt(ctx, ocispec.Descriptor{Digest: digest.Digest(req.Digest)})
	if err != nil {
		return errgrpc.ToGRPC(err)
	}
	defer ra.Close()
	size := ra.Size()
	if req.Offset < 0 {
		req.Offset = 0 // the API reads from the start for a negative offset
	}
	if req.Offset > size {
		return errgrpc.ToGRPC(fmt.Errorf("read of %s at offset %d: the blob is %d bytes: %w", req.Digest, req.Offset, size, errdefs.ErrOutOfRange))
	}
	// Any size <= 0 reads to the end, as containerd's content service does.
	end := size
	if req.Size > 0 && req.Offset+req.Size < size {
		end = req.Offset + req.Size
	}
	if m, ok := ra.(corecontent.BytesReaderAt); ok && end > req.Offset && end-req.Offset <= readChunk {
		// A small blob in memory goes out as it is, without a copy.
		return srv.Send(&api.ReadContentResponse{Offset: req.Offset, Data: m.Bytes()[req.Offset:end]})
	}
	buf := make([]byte, min(readChunk, end-req.Offset))
	for off := req.Offset; off < end; {
		n, err := ra.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
		if n > 0 {
			if err := srv.Send(&api.ReadContentResponse{Offset: off, Data: buf[:n]}); err != nil {
				return err
			}
			off += int64(n)
		}
		if err != nil && !(errors.Is(err, io.EOF) && off >= end) {
			if errors.Is(err, io.EOF) {
				return errgrpc.ToGRPC(fmt.Errorf("read of %s: blob ended at %d: %w", req.Digest, off, errdefs.ErrOutOfRange))
			}
			return errgrpc.ToGRPC(err)
		}
	}
	return nil
}

func (s *contentService) Status(ctx context.Context, req *api.StatusRequest) (*api.StatusResponse, error) {
	st, err := s.store.Status(ctx, req.Ref)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &api.StatusResponse{Status: statusToProto(st)}, nil
}

func (s *contentService) ListStatuses(ctx context.Context, req *api.ListStatusesRequest) (*api.ListStatusesResponse, error) {
	sts, err := s.store.ListStatuses(ctx, req.Filters...)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	resp := &api.ListStatusesResponse{}
	for _, st := range sts {
		resp.Statuses = append(resp.Statuses, statusToProto(st))
	}
	return resp, nil
}

func (s *contentService) Abort(ctx context.Context, req *api.AbortRequest) (*emptypb.Empty, error) {
	if err := s.store.Abort(ctx, req.Ref); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Write serves the streaming ingest: the first message names the ref and
// opens (or resumes) the writer, which this stream holds until it ends; every
// message is answered with the ingest's state.
func (s *contentService) Write(srv api.Content_WriteServer) error {
	err := s.write(srv)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return errgrpc.ToGRPC(err)
}

func (s *contentService) write(srv api.Content_WriteServer) error {
	ctx := srv.Context()
	req, err := srv.Recv()
	if err != nil {
		return err
	}
	if req.Ref == "" {
		return fmt.Errorf("first write message must name a ref: %w", errdefs.ErrInvalidArgument)
	}
	ref := req.Ref
	var expected digest.Digest
	if req.Expected != "" {
		expected = digest.Digest(req.Expected)
	}
	total := req.Total
	w, err := s.store.Writer(ctx, corecontent.WithRef(ref), corecontent.WithDescriptor(ocispec.Descriptor{Digest: expected, Size: total}))
	if err != nil {
		return err
	}
	defer w.Close()
	for {
		if req.Ref != "" && req.Ref != ref {
			return fmt.Errorf("write stream for ref %q got a message for ref %q: %w", ref, req.Ref, errdefs.ErrInvalidArgument)
		}
		if req.Expected != "" {
			expected = digest.Digest(req.Expected)
		}
		if req.Total > 0 {
			total = req.Total
		}
		st, err := w.Status()
		if err != nil {
			return err
		}
		resp := &api.WriteContentResponse{Action: req.Action}
		switch req.Action {
		case api.WriteAction_STAT:
		case api.WriteAction_WRITE, api.WriteAction_COMMIT:
			if len(req.Data) > 0 || req.Offset != st.Offset {
				if req.Offset > st.Offset {
					return fmt.Errorf("write to ref %q at offset %d: only %d bytes are written: %w", ref, req.Offset, st.Offset, errdefs.ErrOutOfRange)
				}
				if req.Offset < st.Offset {
					if err := w.Truncate(req.Offset); err != nil {
						return err
					}
				}
				if _, err := w.Write(req.Data); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("write to ref %q: unknown action %d: %w", ref, req.Action, errdefs.ErrInvalidArgument)
		}
		if st, err = w.Status(); err != nil {
			return err
		}
		resp.Offset = st.Offset
		resp.Digest = w.Digest().String()
		if req.Action == api.WriteAction_COMMIT {
			if err := w.Commit(ctx, total, expected, corecontent.WithLabels(req.Labels)); err != nil {
				return err
			}
		}
		resp.Total = total
		resp.StartedAt = protoconv.ToTime(st.StartedAt)
		resp.UpdatedAt = protoconv.ToTime(st.UpdatedAt)
		if err := srv.Send(resp); err != nil {
			return err
		}
		if req.Action == api.WriteAction_COMMIT {
			return nil
		}
		if req, err = srv.Recv(); err != nil {
			return err
		}
	}
}

// NewServer returns containerd's content API over store, for a process
// that serves a content store of its own (a [proxy_plugins] backend).
func NewServer(store corecontent.Store) interface{ RegisterGRPC(*grpc.Server) } {
	return &contentService{store: store}
}

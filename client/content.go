package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/internal/proxy"
)

// ContentStore returns the daemon's content store for the namespace of each
// call's context.
func (c *Client) ContentStore() content.Store { return c.services.Content }

// OpenWriter opens a writer on store like store.Writer, but waits while the
// ref is held by another writer (Unavailable), retrying with backoff until
// ctx is done, as containerd's content.OpenWriter does. A daemon that
// cannot be reached (an *UnreachableError, once the client's connect
// timeout has passed) ends the wait: that Unavailable is no lock.
func OpenWriter(ctx context.Context, store content.Ingester, opts ...content.WriterOpt) (content.Writer, error) {
	delay := 10 * time.Millisecond
	for {
		w, err := store.Writer(ctx, opts...)
		var unreachable *UnreachableError
		if err == nil || !errdefs.IsUnavailable(err) || errors.As(err, &unreachable) {
			return w, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (gave up waiting: %w)", err, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// WriteBlob writes the bytes of r as the blob desc through the ingest ref,
// resuming an earlier partial ingest of the same ref: the bytes already
// written are skipped in r (by seeking if r can, by reading and discarding
// otherwise). A blob that is already stored counts as written.
func WriteBlob(ctx context.Context, store content.Ingester, ref string, r io.Reader, desc ocispec.Descriptor, opts ...content.CommitOpt) error {
	w, err := OpenWriter(ctx, store, content.WithRef(ref), content.WithDescriptor(desc))
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	defer w.Close()
	return Copy(ctx, w, r, desc.Size, desc.Digest, opts...)
}

// Copy writes r to the open writer w from the writer's current offset
// (skipping that many bytes of r) and commits with size and expected (either
// may be zero to skip its check). AlreadyExists at commit is success.
func Copy(ctx context.Context, w content.Writer, r io.Reader, size int64, expected digest.Digest, opts ...content.CommitOpt) error {
	st, err := w.Status()
	if err != nil {
		return err
	}
	if size > 0 && st.Offset > size {
		// The ingest holds more than the blob should: it cannot be a
		// prefix of it, so start over.
		if err := w.Truncate(0); err != nil {
			return err
		}
		st.Offset = 0
	}
	if st.Offset > 0 {
		if r, err = skip(r, st.Offset, size); err != nil {
			return fmt.Errorf("resume ingest ref %q at offset %d: %w", st.Ref, st.Offset, err)
		}
	}
	buf := make([]byte, proxy.MaxChunk)
	// Wrapping hides ReaderFrom/WriterTo so that every message carries a
	// full chunk rather than whatever buffer those pick.
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r}, buf); err != nil {
		return fmt.Errorf("write ingest ref %q: %w", st.Ref, err)
	}
	if err := w.Commit(ctx, size, expected, opts...); err != nil && !errdefs.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// skip returns r advanced by offset bytes.
func skip(r io.Reader, offset, size int64) (io.Reader, error) {
	if s, ok := r.(io.Seeker); ok {
		if _, err := s.Seek(offset, io.SeekCurrent); err == nil {
			return r, nil
		}
		// Not really seekable (a pipe behind *os.File): discard instead.
	}
	if ra, ok := r.(io.ReaderAt); ok && size > 0 {
		return io.NewSectionReader(ra, offset, size-offset), nil
	}
	n, err := io.CopyN(io.Discard, r, offset)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("input has only %d bytes: %w", n, errdefs.ErrFailedPrecondition)
		}
		return nil, err
	}
	return r, nil
}

// blobReader is a provider that reads a whole blob of known size in one
// call: the daemon's content store over gRPC, where a ReaderAt would first
// ask for the size.
type blobReader interface {
	ReadBlob(ctx context.Context, desc ocispec.Descriptor) ([]byte, error)
}

// ReadBlob reads the whole blob desc from provider. It is meant for small
// blobs such as manifests and configs. When desc has a size and provider is
// hulld's (or containerd's) content store, the blob comes back in one round
// trip.
func ReadBlob(ctx context.Context, provider content.Provider, desc ocispec.Descriptor) ([]byte, error) {
	if br, ok := provider.(blobReader); ok && desc.Size > 0 {
		return br.ReadBlob(ctx, desc)
	}
	ra, err := provider.ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	buf := make([]byte, ra.Size())
	n, err := ra.ReadAt(buf, 0)
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == ra.Size()) {
		return nil, err
	}
	return buf[:n], nil
}

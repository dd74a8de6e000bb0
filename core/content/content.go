// Package content defines hull's content store: immutable blobs addressed by
// their digest, and the ingests (in-progress writes) that create them.
//
// A blob is written through a Writer obtained from Ingester.Writer with a ref,
// a client-chosen name for the write. The life of a write:
//
//  1. Writer(ref) opens the ingest for ref, creating it or resuming it where an
//     earlier writer (maybe in an earlier process) left off; Status tells the
//     offset to resume from. Only one writer holds a ref at a time: a second
//     gets an Unavailable error ("ref ... locked").
//  2. Write appends bytes; Truncate(0) restarts the ingest.
//  3. Commit(size, expected) checks the size and digest of what was written
//     and moves the blob into place atomically. A mismatch fails the commit
//     and leaves no blob behind; a blob that already exists gives
//     AlreadyExists, which callers treat as success.
//  4. Close releases the ref without committing; the ingest stays on disk so a
//     later Writer with the same ref resumes it. Abort discards it.
//
// Readers (Provider) see only committed blobs. The interfaces are split by
// role, as io is, so a caller asks for no more than it needs.
package content

import (
	"context"
	"io"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Info describes a committed blob.
type Info struct {
	Digest    digest.Digest
	Size      int64
	CreatedAt time.Time
	UpdatedAt time.Time
	Labels    map[string]string
}

// Status describes an ingest in progress.
type Status struct {
	Ref       string
	Offset    int64
	Total     int64
	Expected  digest.Digest
	StartedAt time.Time
	UpdatedAt time.Time
}

// ReaderAt reads a committed blob. Size is the blob's full size.
type ReaderAt interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// BytesReaderAt is a ReaderAt whose blob is in memory already: Bytes
// returns all of it, to be read and not modified.
type BytesReaderAt interface {
	ReaderAt
	Bytes() []byte
}

// Provider opens committed blobs for reading.
type Provider interface {
	// ReaderAt opens the blob desc.Digest; NotFound if it is not there.
	ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ReaderAt, error)
}

// ManyUpdater updates many blobs in one write, where an Update each would
// be a write each: an unpack labels every layer it committed with its
// uncompressed digest. Each of infos is updated as Update would update
// it, with the same fieldpaths; if one fails (NotFound, InvalidArgument),
// none is updated.
type ManyUpdater interface {
	UpdateMany(ctx context.Context, infos []Info, fieldpaths ...string) error
}

// Putter stores a whole blob held in memory in one step, for callers that
// have all of a small blob's bytes at once (an archive's entries, a
// manifest, a small layer downloaded): no ingest is made, as nothing can
// resume or watch a write of one call, which spares an ingest's files and
// records. desc gives the blob's digest and size, which data must match
// (FailedPrecondition otherwise, as for a commit of unexpected bytes); opts
// are Commit's (the new record's labels); a blob already there gives
// AlreadyExists, as Commit does, and keeps its labels. data is not kept.
type Putter interface {
	Put(ctx context.Context, desc ocispec.Descriptor, data []byte, opts ...CommitOpt) error
}

// NameSyncer is a Putter that can leave a new blob's name to be made
// durable later, together with the names of the blobs put meanwhile: on
// most filesystems a directory's sync is a journal commit, and a pull of
// many small blobs would otherwise make one per blob. The blob's bytes are
// durable when PutUnsynced returns; its name is once a SyncNames that
// began after it returns. A record of the blob must wait for that.
type NameSyncer interface {
	Putter
	// PutUnsynced is Put (without labels) that does not sync the name.
	PutUnsynced(ctx context.Context, desc ocispec.Descriptor, data []byte) error
	// SyncNames makes the names of every blob PutUnsynced stored before
	// it was called durable.
	SyncNames() error
}

// DeferredPutter is a Putter that can store a blob at once and write its
// record behind it: what a pull of many small blobs wants, whose records
// would otherwise each take a transaction of their own, since its blobs
// arrive one at a time. Until the record is written, the blob is visible
// to Info and ReaderAt in the namespace of ctx and safe from garbage
// collection, but not yet durable: a crash loses it, as it loses any
// download in progress.
type DeferredPutter interface {
	Putter
	// PutDeferred is Put whose record is written by the next
	// FlushDeferred, by any other change to the namespace's records of
	// blobs, or shortly after on its own. A blob recorded already is
	// stored as Put stores it (AlreadyExists).
	PutDeferred(ctx context.Context, desc ocispec.Descriptor, data []byte, opts ...CommitOpt) error
	// FlushDeferred writes the records of every blob stored by
	// PutDeferred in the namespace of ctx, in one transaction, and
	// returns when they are durable.
	FlushDeferred(ctx context.Context) error
}

// MaxPutSize is the largest blob that callers read whole and store with
// Put rather than through an ingest: manifests, configs and small layers,
// for which an ingest's files and records cost more than the bytes, and
// whose writes are too short to be worth resuming or sharing between
// concurrent writers (which an ingest's ref is for).
const MaxPutSize = 1 << 20

// PutByIngest stores data as desc through the ingest ref of s, in one call:
// how a Putter stores a blob where it has no quicker way. The ingest is
// told only the size, and the commit checks the digest, so a blob already
// stored is never taken for bytes nobody checked. A write that fails
// aborts the ingest; a blob already there gives AlreadyExists, as Commit
// does.
func PutByIngest(ctx context.Context, s interface {
	Ingester
	IngestManager
}, ref string, desc ocispec.Descriptor, data []byte, opts ...CommitOpt) error {
	w, err := s.Writer(ctx, WithRef(ref), WithDescriptor(ocispec.Descriptor{Size: desc.Size}))
	if err != nil {
		return err
	}
	defer w.Close()
	if err = w.Truncate(0); err == nil {
		_, err = w.Write(data)
	}
	if err == nil {
		err = w.Commit(ctx, desc.Size, desc.Digest, opts...)
	}
	if err != nil && !errdefs.IsAlreadyExists(err) {
		s.Abort(context.WithoutCancel(ctx), ref)
	}
	return err
}

// WriterOpts are the options of Ingester.Writer.
type WriterOpts struct {
	// Ref names the ingest; required.
	Ref string
	// Desc is what the caller expects to write: Size and Digest, when known,
	// are checked at commit and reported by Status.
	Desc ocispec.Descriptor
}

// WriterOpt sets a WriterOpts field.
type WriterOpt func(*WriterOpts) error

// WithRef names the ingest.
func WithRef(ref string) WriterOpt {
	return func(o *WriterOpts) error { o.Ref = ref; return nil }
}

// WithDescriptor tells the writer the expected size and digest.
func WithDescriptor(desc ocispec.Descriptor) WriterOpt {
	return func(o *WriterOpts) error { o.Desc = desc; return nil }
}

// CommitOpts are the options of Writer.Commit.
type CommitOpts struct {
	Labels map[string]string
}

// CommitOpt sets a CommitOpts field.
type CommitOpt func(*CommitOpts) error

// WithLabels sets the labels of the committed blob.
func WithLabels(labels map[string]string) CommitOpt {
	return func(o *CommitOpts) error { o.Labels = labels; return nil }
}

// Writer writes one ingest. See the package documentation for its life.
type Writer interface {
	io.WriteCloser
	// Digest is the digest of the bytes written so far.
	Digest() digest.Digest
	// Commit checks size (if > 0) and expected (if not empty) against what
	// was written and makes the blob visible.
	Commit(ctx context.Context, size int64, expected digest.Digest, opts ...CommitOpt) error
	// Status reports the ingest's progress.
	Status() (Status, error)
	// Truncate discards the bytes after size; only 0 need be supported.
	Truncate(size int64) error
}

// Ingester opens writers.
type Ingester interface {
	Writer(ctx context.Context, opts ...WriterOpt) (Writer, error)
}

// WalkFunc is called for each blob by Manager.Walk; an error stops the walk.
type WalkFunc func(Info) error

// Manager reads and changes the metadata of committed blobs.
type Manager interface {
	Info(ctx context.Context, dgst digest.Digest) (Info, error)
	// Update changes the fields named by fieldpaths ("labels",
	// "labels.<key>"); with no fieldpaths it replaces all labels.
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	// Walk calls fn for each blob matching any of filters (containerd's
	// filter syntax; none matches all).
	Walk(ctx context.Context, fn WalkFunc, filters ...string) error
	Delete(ctx context.Context, dgst digest.Digest) error
}

// IngestManager reads and aborts ingests in progress.
type IngestManager interface {
	Status(ctx context.Context, ref string) (Status, error)
	ListStatuses(ctx context.Context, filters ...string) ([]Status, error)
	Abort(ctx context.Context, ref string) error
}

// Store is the whole content store.
type Store interface {
	Manager
	Provider
	IngestManager
	Ingester
}

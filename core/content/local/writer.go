package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
)

// Writer opens the ingest named by the WithRef option, creating it or
// resuming it at the end of the bytes already on disk, which are re-hashed so
// that Digest covers them. A descriptor given with WithDescriptor replaces any
// size and digest recorded by an earlier writer of the ref: the newest caller
// knows best what it is writing. If the descriptor's blob is already
// committed, Writer fails with AlreadyExists so the caller can skip the write.
//
// The writer holds the ref until Close or Commit; another Writer for the same
// ref on this Store gets Unavailable meanwhile.
func (s *Store) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	var wo content.WriterOpts
	for _, o := range opts {
		if err := o(&wo); err != nil {
			return nil, err
		}
	}
	if wo.Ref == "" {
		return nil, fmt.Errorf("writer: ref is required: %w", errdefs.ErrInvalidArgument)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if wo.Desc.Digest != "" {
		p, err := s.BlobPath(wo.Desc.Digest)
		if err != nil {
			return nil, err
		}
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("content %s exists: %w", wo.Desc.Digest, errdefs.ErrAlreadyExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("content %s: %w", wo.Desc.Digest, err)
		}
	}
	if err := s.lock(wo.Ref); err != nil {
		return nil, err
	}
	w, err := s.openIngest(wo.Ref, wo.Desc)
	if err != nil {
		s.unlock(wo.Ref)
		return nil, s.full(fmt.Errorf("open ingest ref %q: %w", wo.Ref, err))
	}
	return w, nil
}

// openIngest opens or creates the ingest directory of ref; the caller holds
// the ref's lock. For a new ingest the data file is created last, so that a
// crash in between leaves a directory that counts as no ingest.
func (s *Store) openIngest(ref string, desc ocispec.Descriptor) (*writer, error) {
	dir := s.ingestDir(ref)
	data := filepath.Join(dir, dataFile)
	now := time.Now()

	var m meta
	// A new ingest writes its few files in place: its data file, created
	// last, is what makes the directory an ingest, so a crash before then
	// leaves no ingest and nothing half-written in one. A resumed ingest's
	// files are replaced atomically.
	put := writeMeta
	fresh := false
	fi, err := os.Stat(data)
	switch {
	case err == nil:
		m = readMeta(dir)
		if b, err := os.ReadFile(filepath.Join(dir, refFile)); err != nil || string(b) != ref {
			if err := writeMeta(dir, refFile, ref); err != nil {
				return nil, err
			}
		}
		if m.startedAt.IsZero() {
			m.startedAt = now
			if err := writeMeta(dir, startedAtFile, formatTime(now)); err != nil {
				return nil, err
			}
		}
		if m.updatedAt.IsZero() || fi.ModTime().After(m.updatedAt) {
			m.updatedAt = fi.ModTime()
		}
		// A crash between the chmod and the rename of Commit leaves the data
		// read-only; it is still this ingest's data, so make it writable.
		if fi.Mode().Perm() != 0o600 {
			if err := os.Chmod(data, 0o600); err != nil {
				return nil, err
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		put, fresh = writeMetaInPlace, true
		made, err := makeDir(dir)
		if err != nil {
			return nil, err
		}
		if !made {
			// Values from a crashed earlier attempt must not leak into
			// this one.
			for _, name := range []string{totalFile, expectedFile, startedAtFile, updatedAtFile} {
				if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return nil, err
				}
			}
		}
		// The ref file's mtime is the ingest's start, and the data file's
		// its last update, until a Close records one.
		m = meta{startedAt: now, updatedAt: now}
		if err := put(dir, refFile, ref); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}

	if desc.Size > 0 && desc.Size != m.total {
		m.total = desc.Size
		if err := put(dir, totalFile, strconv.FormatInt(desc.Size, 10)); err != nil {
			return nil, err
		}
	}
	if desc.Digest != "" && desc.Digest != m.expected {
		m.expected = desc.Digest
		if err := put(dir, expectedFile, desc.Digest.String()); err != nil {
			return nil, err
		}
	}

	flags := os.O_RDWR | os.O_CREATE
	if fresh {
		flags |= os.O_TRUNC // a crashed attempt may have left data just now
	}
	f, err := os.OpenFile(data, flags, 0o600)
	if err != nil {
		return nil, err
	}
	w := &writer{
		s:         s,
		ref:       ref,
		dir:       dir,
		f:         f,
		total:     m.total,
		expected:  m.expected,
		startedAt: m.startedAt,
		updatedAt: m.updatedAt,
	}
	w.digester = digest.Canonical.Digester()
	w.fresh = fresh
	if fresh {
		return w, nil
	}
	// Re-hash what an earlier writer left; this also leaves the file offset
	// at the end, where writing resumes.
	n, err := s.copyBuffered(w.digester.Hash(), f)
	if err != nil {
		f.Close()
		return nil, err
	}
	w.offset = n
	return w, nil
}

// copyBuffered is io.Copy with the store's large pooled buffer.
func (s *Store) copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	return io.CopyBuffer(dst, src, *bp)
}

// writer is a content.Writer on one ingest. Its methods are serialized by mu,
// so Status and Digest may be called while another goroutine writes.
type writer struct {
	s   *Store
	ref string
	dir string

	mu        sync.Mutex
	f         *os.File // nil once closed or committed
	fresh     bool     // created by this writer: no startedat file yet
	committed bool
	broken    error // set when the in-memory state may no longer match the file
	digester  digest.Digester
	offset    int64
	total     int64
	expected  digest.Digest
	startedAt time.Time
	updatedAt time.Time
}

var _ io.ReaderFrom = (*writer)(nil)

// Write appends p to the ingest, hashing it on the way: the bytes are touched
// once in memory, never copied, and nothing is synced until Commit.
func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	return w.write(p)
}

func (w *writer) write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	// Hash exactly what reached the file, so Digest and the data agree even
	// after a short write.
	w.digester.Hash().Write(p[:n])
	w.offset += int64(n)
	w.updatedAt = time.Now()
	if err != nil {
		return n, w.s.full(fmt.Errorf("write ingest ref %q: %w", w.ref, err))
	}
	return n, nil
}

// ReadFrom lets io.Copy into a writer use the store's 1 MiB buffer instead of
// io.Copy's 32 KiB one, which costs far more syscalls on large blobs. The
// lock is taken per chunk so that Status stays responsive during a long copy.
func (w *writer) ReadFrom(r io.Reader) (int64, error) {
	bp := w.s.bufs.Get().(*[]byte)
	defer w.s.bufs.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			w.mu.Lock()
			err := w.usable()
			var m int
			if err == nil {
				m, err = w.write(buf[:n])
			}
			w.mu.Unlock()
			total += int64(m)
			if err != nil {
				return total, err
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// usable reports why the writer cannot be used, if it cannot.
func (w *writer) usable() error {
	switch {
	case w.committed:
		return fmt.Errorf("ingest ref %q already committed: %w", w.ref, errdefs.ErrFailedPrecondition)
	case w.f == nil:
		return fmt.Errorf("writer of ingest ref %q is closed: %w", w.ref, errdefs.ErrFailedPrecondition)
	case w.broken != nil:
		return fmt.Errorf("writer of ingest ref %q is unusable, reopen it to resume (%v): %w", w.ref, w.broken, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// Digest is the digest of the bytes written so far, including those an
// earlier writer of the same ref left.
func (w *writer) Digest() digest.Digest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.digester.Digest()
}

// Status reports the writer's in-memory view, which is fresher than the
// updatedat file on disk.
func (w *writer) Status() (content.Status, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return content.Status{
		Ref:       w.ref,
		Offset:    w.offset,
		Total:     w.total,
		Expected:  w.expected,
		StartedAt: w.startedAt,
		UpdatedAt: w.updatedAt,
	}, nil
}

// Truncate cuts the ingest to size bytes and continues writing from there.
// Any size up to the current offset works: the kept bytes are re-hashed,
// which for 0 costs nothing.
func (w *writer) Truncate(size int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if size < 0 || size > w.offset {
		return fmt.Errorf("truncate ingest ref %q to %d: it has %d bytes: %w", w.ref, size, w.offset, errdefs.ErrInvalidArgument)
	}
	if err := w.f.Truncate(size); err != nil {
		return fmt.Errorf("truncate ingest ref %q: %w", w.ref, err)
	}
	// From here on a failure leaves the file and the digester disagreeing.
	d := digest.Canonical.Digester()
	if _, err := w.s.copyBuffered(d.Hash(), io.NewSectionReader(w.f, 0, size)); err != nil {
		w.broken = err
		return fmt.Errorf("truncate ingest ref %q: %w", w.ref, err)
	}
	if _, err := w.f.Seek(size, io.SeekStart); err != nil {
		w.broken = err
		return fmt.Errorf("truncate ingest ref %q: %w", w.ref, err)
	}
	w.digester = d
	w.offset = size
	w.updatedAt = time.Now()
	return nil
}

// Close releases the ref and leaves the ingest on disk for a later writer to
// resume. Closing a closed or committed writer does nothing, so Close can be
// deferred unconditionally.
func (w *writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	return w.release()
}

// release closes the data file, records when the ingest was last written and
// gives up the ref.
func (w *writer) release() error {
	defer w.s.unlock(w.ref)
	err := w.f.Close()
	w.f = nil
	if !w.committed {
		// Best effort: an aborted ingest has no directory to write into, and
		// readStatus falls back on the data file's mtime anyway. A new
		// ingest's start, known to the tick from its ref file until now,
		// is recorded exactly for whoever resumes it.
		if w.fresh {
			_ = writeMeta(w.dir, startedAtFile, formatTime(w.startedAt))
		}
		_ = writeMeta(w.dir, updatedAtFile, formatTime(w.updatedAt))
	}
	if err != nil {
		return fmt.Errorf("close ingest ref %q: %w", w.ref, err)
	}
	return nil
}

// Commit checks the bytes written against size and expected, and against the
// size and digest of the writer's descriptor: every one given must match.
// Then it moves the data into blobs/ with one rename, so readers see the
// whole blob or none of it.
//
// Commit ends the writer whatever its outcome, releasing the ref. On a
// mismatch nothing is committed and the ingest stays on disk: the caller can
// open a new writer on the ref to Truncate and rewrite it, or Abort it. If
// the blob already exists the ingest is discarded and AlreadyExists returned.
// Commit labels are accepted and ignored: the metadata layer keeps them.
func (w *writer) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.CommitOpt) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil && w.f == nil {
		return err
	}
	err := w.commit(ctx, size, expected, opts)
	if w.f != nil {
		if rerr := w.release(); err == nil {
			err = rerr
		}
	}
	return w.s.full(err)
}

func (w *writer) commit(ctx context.Context, size int64, expected digest.Digest, opts []content.CommitOpt) error {
	if err := w.usable(); err != nil {
		return err
	}
	var co content.CommitOpts
	for _, o := range opts {
		if err := o(&co); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if expected != "" {
		if err := validate(expected); err != nil {
			return err
		}
	}

	for _, want := range []int64{size, w.total} {
		if want > 0 && want != w.offset {
			return fmt.Errorf("commit ingest ref %q: unexpected commit size %d, expected %d: %w", w.ref, w.offset, want, errdefs.ErrFailedPrecondition)
		}
	}
	actual := w.digester.Digest()
	target := actual
	for _, want := range []digest.Digest{w.expected, expected} {
		if want == "" {
			continue
		}
		got := actual
		if want.Algorithm() != actual.Algorithm() {
			// Rare: hash the data again in the algorithm asked for, rather
			// than hash every write in every algorithm.
			d := want.Algorithm().Digester()
			if _, err := w.s.copyBuffered(d.Hash(), io.NewSectionReader(w.f, 0, w.offset)); err != nil {
				return fmt.Errorf("commit ingest ref %q: %w", w.ref, err)
			}
			got = d.Digest()
		}
		if got != want {
			return fmt.Errorf("commit ingest ref %q: unexpected commit digest %s, expected %s: %w", w.ref, got, want, errdefs.ErrFailedPrecondition)
		}
		target = want
	}

	blob, err := w.s.BlobPath(target)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(blob); err == nil {
		w.discard()
		return fmt.Errorf("content %s exists: %w", target, errdefs.ErrAlreadyExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("commit ingest ref %q: %w", w.ref, err)
	}

	data := filepath.Join(w.dir, dataFile)
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("commit ingest ref %q: sync: %w", w.ref, err)
	}
	// The blob's mtime is its CreatedAt: make it the commit time, not the
	// last write, which for a resumed ingest may be long before.
	now := time.Now()
	if err := os.Chtimes(data, now, now); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("commit ingest ref %q: aborted: %w", w.ref, errdefs.ErrNotFound)
		}
		return fmt.Errorf("commit ingest ref %q: %w", w.ref, err)
	}
	// Read-only before the rename, so the blob is never visible writable.
	if err := w.f.Chmod(0o444); err != nil {
		return fmt.Errorf("commit ingest ref %q: %w", w.ref, err)
	}

	algDir := filepath.Dir(blob)
	made, err := makeDir(algDir)
	if err != nil {
		return fmt.Errorf("commit ingest ref %q: %w", w.ref, err)
	}
	if err := os.Rename(data, blob); err != nil {
		// Leave the ingest as it was, so a new writer can resume it.
		_ = w.f.Chmod(0o600)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("commit ingest ref %q: aborted: %w", w.ref, errdefs.ErrNotFound)
		}
		return fmt.Errorf("commit ingest ref %q: %w", w.ref, err)
	}
	w.committed = true
	w.f.Close()
	w.f = nil
	// Unlock only after the directory is gone: a new writer of the ref
	// must not create an ingest that our removal then deletes.
	defer w.s.unlock(w.ref)
	// The rename is durable only once its directory is synced; a new
	// algorithm directory also needs its parent synced.
	err = w.s.syncAlgDir(algDir, made)
	// The ingest no longer has data, so it is already gone for every reader;
	// removing the directory is only tidying.
	_ = removeIngestDir(w.dir)
	if err != nil {
		return fmt.Errorf("commit ingest ref %q: sync blob directory: %w", w.ref, err)
	}
	return nil
}

// discard closes the writer and removes its ingest; used when the blob is
// already there and the ingest has no further use.
func (w *writer) discard() {
	w.f.Close()
	w.f = nil
	w.committed = true // nothing left to close or resume
	_ = os.RemoveAll(w.dir)
	w.s.unlock(w.ref) // after RemoveAll, for the reason given in commit
}

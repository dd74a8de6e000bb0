// Package local is hull's on-disk blob store: the bottom layer of the content
// store, which knows blobs and ingests but not namespaces or labels (the
// metadata layer above it keeps those in bbolt).
//
// Layout under the root directory:
//
//	blobs/<alg>/<hex>        committed blobs, mode 0444
//	ingest/<sha256(ref)>/    one directory per ingest in progress:
//	    data                 the bytes written so far
//	    ref                  the ref, since the directory name is a hash of it
//	    startedat, updatedat RFC 3339 times
//	    total, expected      the size and digest the writer was told, if any
//
// The ingest directory is named by a hash of the ref so that any ref, however
// long or odd its characters, maps to one safe path. Ingests and blobs share a
// parent so that committing is a rename within one filesystem: a blob is
// either wholly under blobs/ or not there at all, whatever moment the process
// dies. An ingest exists exactly when its data file does; the metadata files
// are written before it, so a directory without data is the leftover of a
// crash and is treated as absent.
//
// The store assumes it is the only process using root (hulld holds a lock on
// its root); within the process, one writer per ref is enforced by each Store.
package local

import (
	"context"
	_ "crypto/sha256" // go-digest needs the hash linked in to validate digests
	_ "crypto/sha512"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/internal/durable"
	"github.com/hullrt/hull/internal/fsfull"
)

var (
	_ content.Provider      = (*Store)(nil)
	_ content.Ingester      = (*Store)(nil)
	_ content.IngestManager = (*Store)(nil)
)

// bufSize is the copy buffer size: large enough that syscall and hashing
// per-call overheads vanish next to the bytes moved.
const bufSize = 1 << 20

// Store is a content store in one directory. It is safe for concurrent use.
// Labels are not kept here, so it has no Update; the metadata layer wraps it.
type Store struct {
	root string

	mu    sync.Mutex
	locks map[string]time.Time // ref -> when its writer took it

	bufs sync.Pool // *[]byte of bufSize, shared by copies and re-hashes

	// blobsFD is the blobs directory, opened once: a read opens its blob
	// relative to it, one path component to resolve instead of every
	// component of the root's path.
	blobsFD int

	small blobCache
	// unsynced are the blob directories PutUnsynced added names to that
	// no SyncNames has synced yet; syncMu serialises SyncNames.
	unsyncedMu sync.Mutex
	unsynced   []string
	syncMu     sync.Mutex
	// syncDir syncs a directory: durable.SyncDir, or a test's spy.
	syncDir func(dir string) error
	// beforeFill, when set (by tests only), runs between a small blob's
	// read from disk and its cache fill: the window a Delete can fall in.
	beforeFill func(digest.Digest)
}

// NewStore opens the store at root, creating its directories if needed.
func NewStore(root string) (*Store, error) {
	for _, dir := range []string{root, filepath.Join(root, "blobs"), filepath.Join(root, "ingest")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create content store directory: %w", err)
		}
	}
	s := &Store{root: filepath.Clean(root), locks: make(map[string]time.Time), syncDir: durable.SyncDir}
	fd, err := unix.Open(filepath.Join(s.root, "blobs"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open content store directory %s: %w", filepath.Join(s.root, "blobs"), err)
	}
	s.blobsFD = fd
	s.bufs.New = func() any { b := make([]byte, bufSize); return &b }
	// Nothing of this process writes yet: whatever ingest cannot be
	// resumed is a leftover of the last one.
	if _, err := s.CleanupIngests(context.Background()); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s, nil
}

// full names the store's filesystem in err if err says it is full.
func (s *Store) full(err error) error { return fsfull.Wrap(err, "content store", s.root) }

// Close releases the store's handle on its blobs directory; the store must
// not be used afterwards.
func (s *Store) Close() error {
	if s.blobsFD < 0 {
		return nil
	}
	err := unix.Close(s.blobsFD)
	s.blobsFD = -1
	return err
}

// BlobPath returns where the blob dgst is or would be stored. Digests are
// validated before they become paths, so a hostile digest cannot point
// outside the store.
func (s *Store) BlobPath(dgst digest.Digest) (string, error) {
	if err := validate(dgst); err != nil {
		return "", err
	}
	// Joined by hand: the parts are clean (a validated digest has no
	// separators), and filepath.Join's cleaning showed in every read.
	return s.root + "/blobs/" + dgst.Algorithm().String() + "/" + dgst.Encoded(), nil
}

func validate(dgst digest.Digest) error { return content.ValidateDigest(dgst) }

// Info describes the blob dgst. Both times are the file's modification time,
// which Commit sets: a blob never changes after that, and the metadata layer
// keeps the times that do change.
func (s *Store) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	p, err := s.BlobPath(dgst)
	if err != nil {
		return content.Info{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return content.Info{}, blobErr(dgst, err)
	}
	return blobInfo(dgst, fi), nil
}

func blobInfo(dgst digest.Digest, fi fs.FileInfo) content.Info {
	return content.Info{Digest: dgst, Size: fi.Size(), CreatedAt: fi.ModTime(), UpdatedAt: fi.ModTime()}
}

func blobErr(dgst digest.Digest, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("content %s: %w", dgst, errdefs.ErrNotFound)
	}
	return fmt.Errorf("content %s: %w", dgst, err)
}

// Walk calls fn for every committed blob. It takes no filters: filtering is
// by labels, which live in the metadata layer. Files under blobs/ whose names
// are not valid digests are skipped rather than reported, so a stray file
// cannot break every walk.
func (s *Store) Walk(ctx context.Context, fn content.WalkFunc) error {
	blobs := filepath.Join(s.root, "blobs")
	algs, err := os.ReadDir(blobs)
	if err != nil {
		return fmt.Errorf("walk content: %w", err)
	}
	for _, alg := range algs {
		if !alg.IsDir() {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(blobs, alg.Name()))
		if err != nil {
			return fmt.Errorf("walk content: %w", err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			dgst := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name())
			if !e.Type().IsRegular() || dgst.Validate() != nil {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while we walked
			} else if err != nil {
				return fmt.Errorf("walk content: %w", err)
			}
			if err := fn(blobInfo(dgst, fi)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete removes the blob dgst. Readers that already opened it keep reading
// it: the file is unlinked, not truncated.
func (s *Store) Delete(ctx context.Context, dgst digest.Digest) error {
	p, err := s.BlobPath(dgst)
	if err != nil {
		return err
	}
	// Unlink first, then drop the cached bytes: a read that begins after
	// the drop can no longer open the file, and one that opened it before
	// has a ticket the drop invalidates (see blobCache).
	err = os.Remove(p)
	s.small.remove(dgst)
	if err != nil {
		return blobErr(dgst, err)
	}
	return nil
}

// ReaderAt opens the blob desc.Digest. Only the digest of desc is used: the
// size reported is the file's, which the digest pins down anyway.
func (s *Store) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	p, err := s.BlobPath(desc.Digest)
	if err != nil {
		return nil, err
	}
	if b, ok := s.small.get(desc.Digest); ok {
		return newMemReaderAt(b), nil
	}
	ticket := s.small.ticket()
	// Opened with open(2) directly: os.Open would also try to register the
	// regular file with the poller, a wasted system call on every read,
	// and a small blob is read whole with raw calls, without an *os.File
	// (an allocation and a finalizer) around a descriptor that lives for
	// three system calls.
	fd, err := unix.Openat(s.blobsFD, desc.Digest.Algorithm().String()+"/"+desc.Digest.Encoded(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, blobErr(desc.Digest, &os.PathError{Op: "open", Path: p, Err: err})
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, blobErr(desc.Digest, &os.PathError{Op: "fstat", Path: p, Err: err})
	}
	if size := st.Size; size <= smallBlobMax {
		// Read whole now, one read instead of the caller's, and keep it.
		b := make([]byte, size)
		n, err := readFull(fd, b)
		unix.Close(fd)
		if err != nil {
			return nil, blobErr(desc.Digest, &os.PathError{Op: "read", Path: p, Err: err})
		}
		if int64(n) != size {
			return nil, blobErr(desc.Digest, fmt.Errorf("%s: read %d of %d bytes: %w", p, n, size, io.ErrUnexpectedEOF))
		}
		if s.beforeFill != nil {
			s.beforeFill(desc.Digest)
		}
		s.small.put(desc.Digest, b, ticket)
		return newMemReaderAt(b), nil
	}
	f := os.NewFile(uintptr(fd), p)
	return &readerAt{f: f, size: st.Size}, nil
}

// readFull preads b from the start of fd until it is full or the file ends.
func readFull(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pread(fd, b[n:], int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// readerAt gives a blob file the Size a content.ReaderAt needs; the size is
// taken once at open because a committed blob never changes. The file is not
// embedded so that callers cannot reach its write methods by type assertion.
type readerAt struct {
	f    *os.File
	size int64
}

func (r *readerAt) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }
func (r *readerAt) Close() error                            { return r.f.Close() }
func (r *readerAt) Size() int64                             { return r.size }

package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/content"
)

var _ content.Putter = (*Store)(nil)

// Put stores data as the blob desc names, in one step (content.Putter).
//
// The bytes go to an unnamed file (O_TMPFILE) in the ingest directory,
// synced and read-only, which is then linked under the blob's name: the
// blob appears whole or not at all, and a crash at any point leaves
// nothing behind to clean. A filesystem without unnamed files takes the
// ingest path instead.
//
// Labels (opts) are not kept here, as for Commit.
func (s *Store) Put(ctx context.Context, desc ocispec.Descriptor, data []byte, _ ...content.CommitOpt) error {
	return s.put(ctx, desc, data, true)
}

var _ content.NameSyncer = (*Store)(nil)

// PutUnsynced is Put that leaves the new name's durability to the next
// SyncNames (content.NameSyncer). The blob's bytes are synced as Put's are.
func (s *Store) PutUnsynced(ctx context.Context, desc ocispec.Descriptor, data []byte) error {
	return s.put(ctx, desc, data, false)
}

// SyncNames syncs every blob directory that PutUnsynced added a name to
// since the last SyncNames (content.NameSyncer). Calls are serialised, so
// that one that finds nothing left to sync still returns only after the
// syncs of the names marked before it have finished.
func (s *Store) SyncNames() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.unsyncedMu.Lock()
	dirs := s.unsynced
	s.unsynced = nil
	s.unsyncedMu.Unlock()
	for i, dir := range dirs {
		if err := s.syncDir(dir); err != nil {
			s.markUnsynced(dirs[i:]...)
			return fmt.Errorf("sync blob directory: %w", err)
		}
	}
	return nil
}

// markUnsynced records blob directories with names not yet synced.
func (s *Store) markUnsynced(dirs ...string) {
	s.unsyncedMu.Lock()
	defer s.unsyncedMu.Unlock()
	for _, d := range dirs {
		if !slices.Contains(s.unsynced, d) {
			s.unsynced = append(s.unsynced, d)
		}
	}
}

// put is Put, syncing the blob's directory when sync is set and leaving
// it to SyncNames otherwise.
//
// Existence is checked by the link itself (EEXIST), not by a lookup
// first, and the algorithm's directory is made only when the link says it
// is missing: a pull puts dozens of small blobs, and each lookup is a
// system call. A blob already there costs the write of its copy, which is
// then dropped with its unnamed file.
func (s *Store) put(ctx context.Context, desc ocispec.Descriptor, data []byte, sync bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validate(desc.Digest); err != nil {
		return err
	}
	if int64(len(data)) != desc.Size {
		return fmt.Errorf("put %s: unexpected size %d, expected %d: %w", desc.Digest, len(data), desc.Size, errdefs.ErrFailedPrecondition)
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		return fmt.Errorf("put %s: unexpected digest %s: %w", desc.Digest, got, errdefs.ErrFailedPrecondition)
	}
	fd, err := unix.Open(filepath.Join(s.root, "ingest"), unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o444)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) {
		return content.PutByIngest(ctx, s, "put-"+desc.Digest.String(), desc, data)
	}
	if err != nil {
		return s.full(fmt.Errorf("put %s: %w", desc.Digest, err))
	}
	// The unnamed file is written through its descriptor: an os.File
	// would cost a system call more for each of the many small blobs a
	// pull puts.
	defer unix.Close(fd)
	if err := writeAll(fd, data); err != nil {
		return s.full(fmt.Errorf("put %s: %w", desc.Digest, err))
	}
	if err := unix.Fsync(fd); err != nil {
		return s.full(fmt.Errorf("put %s: sync: %w", desc.Digest, err))
	}
	ticket := s.small.ticket()
	// The name, relative to the blobs directory held open.
	name := desc.Digest.Algorithm().String() + "/" + desc.Digest.Encoded()
	algDir := filepath.Join(s.root, "blobs", desc.Digest.Algorithm().String())
	err = s.link(fd, name)
	made := false
	if errors.Is(err, unix.ENOENT) {
		// The first blob of its algorithm: its directory is missing.
		if made, err = makeDir(algDir); err != nil {
			return s.full(fmt.Errorf("put %s: %w", desc.Digest, err))
		}
		err = s.link(fd, name)
	}
	exists := errors.Is(err, unix.EEXIST)
	if err != nil && !exists {
		return s.full(fmt.Errorf("put %s: link: %w", desc.Digest, err))
	}
	// A blob found there may be one that PutUnsynced stored and no
	// SyncNames has synced yet, and the caller, told it exists, may record
	// it: its name is synced or marked as a new one's is. A new
	// directory's own name is synced at once: rare, and SyncNames knows
	// only the directories of blobs.
	if sync || made {
		if err := s.syncAlgDir(algDir, made); err != nil {
			return fmt.Errorf("put %s: sync blob directory: %w", desc.Digest, err)
		}
	} else {
		s.markUnsynced(algDir)
	}
	if exists {
		return fmt.Errorf("content %s exists: %w", desc.Digest, errdefs.ErrAlreadyExists)
	}
	// What was put is usually read next (an import unpacks its layers).
	if len(data) <= smallBlobMax {
		s.small.put(desc.Digest, bytes.Clone(data), ticket)
	}
	return nil
}

// link names the unnamed file fd name in the blobs directory. Linking a
// file by its descriptor needs CAP_DAC_READ_SEARCH; its /proc/self/fd
// name does not.
func (s *Store) link(fd int, name string) error {
	err := unix.Linkat(fd, "", s.blobsFD, name, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOENT) {
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), s.blobsFD, name, unix.AT_SYMLINK_FOLLOW)
	}
	return err
}

// writeAll writes data to fd, which short writes (a filling disk) do not
// end early.
func writeAll(fd int, data []byte) error {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// syncAlgDir makes a blob's new name in algDir durable, and algDir's own
// when it is new (makeDir made it).
func (s *Store) syncAlgDir(algDir string, made bool) error {
	err := s.syncDir(algDir)
	if err == nil && made {
		err = s.syncDir(filepath.Dir(algDir))
	}
	return err
}

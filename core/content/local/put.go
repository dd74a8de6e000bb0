package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/internal/durable"
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
	if err := ctx.Err(); err != nil {
		return err
	}
	blob, err := s.BlobPath(desc.Digest)
	if err != nil {
		return err
	}
	if int64(len(data)) != desc.Size {
		return fmt.Errorf("put %s: unexpected size %d, expected %d: %w", desc.Digest, len(data), desc.Size, errdefs.ErrFailedPrecondition)
	}
	if got := desc.Digest.Algorithm().FromBytes(data); got != desc.Digest {
		return fmt.Errorf("put %s: unexpected digest %s: %w", desc.Digest, got, errdefs.ErrFailedPrecondition)
	}
	if _, err := os.Lstat(blob); err == nil {
		return fmt.Errorf("content %s exists: %w", desc.Digest, errdefs.ErrAlreadyExists)
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
	algDir := filepath.Dir(blob)
	made, err := makeDir(algDir)
	if err != nil {
		return s.full(fmt.Errorf("put %s: %w", desc.Digest, err))
	}
	// Linking a file by its descriptor needs CAP_DAC_READ_SEARCH; its
	// /proc/self/fd name does not.
	err = unix.Linkat(fd, "", unix.AT_FDCWD, blob, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOENT) {
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, blob, unix.AT_SYMLINK_FOLLOW)
	}
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("content %s exists: %w", desc.Digest, errdefs.ErrAlreadyExists)
	}
	if err != nil {
		return s.full(fmt.Errorf("put %s: link: %w", desc.Digest, err))
	}
	if err := syncAlgDir(algDir, made); err != nil {
		return fmt.Errorf("put %s: sync blob directory: %w", desc.Digest, err)
	}
	// What was put is usually read next (an import unpacks its layers).
	if len(data) <= smallBlobMax {
		s.small.put(desc.Digest, bytes.Clone(data), ticket)
	}
	return nil
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
func syncAlgDir(algDir string, made bool) error {
	err := durable.SyncDir(algDir)
	if err == nil && made {
		err = durable.SyncDir(filepath.Dir(algDir))
	}
	return err
}

package metadata

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/internal/tmpfstest"
)

// openOn opens a content store and a database on the filesystem at mnt.
func openOn(t *testing.T, mnt string, reserve int64) (*DB, *local.Store) {
	t.Helper()
	backend, err := local.NewStore(filepath.Join(mnt, "content"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(filepath.Join(mnt, "meta.db"), backend, Options{GCDelay: time.Hour, ReserveSize: reserve})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(); backend.Close() })
	return db, backend
}

func freeBytes(t *testing.T, dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fillWithPull writes blobs under a lease until the disk is full, as a pull
// into a full filesystem does, and returns the error that stopped it and the
// blobs committed before.
func fillWithPull(t *testing.T, ctx context.Context, db *DB) (error, []digest.Digest) {
	t.Helper()
	var blobs []digest.Digest
	chunk := make([]byte, 256<<10)
	for i := 0; i < 1000; i++ {
		w, err := db.Content().Writer(ctx, content.WithRef(fmt.Sprintf("layer-%d", i)))
		if err != nil {
			return err, blobs
		}
		chunk[0], chunk[1] = byte(i), byte(i>>8)
		_, err = w.Write(chunk)
		if err == nil {
			err = w.Commit(ctx, 0, "")
			blobs = append(blobs, digest.FromBytes(chunk))
		}
		w.Close()
		if err != nil {
			return err, blobs
		}
	}
	t.Fatal("1000 blobs of 256 KiB fitted in the filesystem")
	return nil, nil
}

// On a full disk: the failed write says ResourceExhausted and names the
// filesystem; garbage collection still commits its deletions (through the
// reserve) and frees the space; and afterwards the reserve is back.
func TestGCWorksOnAFullDisk(t *testing.T) {
	mnt := tmpfstest.Mount(t, 8<<20)
	db, _ := openOn(t, mnt, 1<<20)
	reserve := filepath.Join(mnt, "meta.db.reserve")
	if fi, err := os.Stat(reserve); err != nil || fi.Size() != 1<<20 {
		t.Fatalf("reserve file: %v, %v", fi, err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "full")
	if _, err := db.Leases().Create(ctx, "pull", nil); err != nil {
		t.Fatal(err)
	}
	err, blobs := fillWithPull(t, leases.WithLease(ctx, "pull"), db)
	if !errdefs.IsResourceExhausted(err) || !strings.Contains(err.Error(), "no space left on device on "+mnt) {
		t.Fatalf("pull into a full disk: %v; want ResourceExhausted naming %s", err, mnt)
	}
	if len(blobs) == 0 {
		t.Fatal("nothing was written before the disk was full")
	}
	// Take every last block, as other writers on a real disk would.
	tmpfstest.Fill(t, mnt, "other")
	// Adding a record cannot use the reserve: it fails, and says where.
	_, err = db.Leases().Create(ctx, "another", map[string]string{"x": strings.Repeat("x", 4000)})
	for i := 0; err == nil && i < 200; i++ {
		_, err = db.Leases().Create(ctx, fmt.Sprintf("another-%d", i), map[string]string{"x": strings.Repeat("x", 4000)})
	}
	if !errdefs.IsResourceExhausted(err) || !strings.Contains(err.Error(), "metadata database") || !strings.Contains(err.Error(), mnt) {
		t.Fatalf("metadata write on a full disk: %v; want ResourceExhausted naming the metadata database on %s", err, mnt)
	}

	// Dropping the pull's lease and collecting must work now.
	if err := db.Leases().Delete(ctx, "pull", false); err != nil {
		t.Fatalf("delete lease on a full disk: %v", err)
	}
	st, err := db.GarbageCollect(ctx)
	if err != nil {
		t.Fatalf("gc on a full disk: %v", err)
	}
	if st.BlobsDeleted != len(blobs) {
		t.Errorf("gc deleted %d blobs, want %d", st.BlobsDeleted, len(blobs))
	}
	if free := freeBytes(t, mnt); free < int64(len(blobs))*(256<<10)/2 {
		t.Errorf("only %d bytes free after gc", free)
	}
	if fi, err := os.Stat(reserve); err != nil || fi.Size() != 1<<20 {
		t.Errorf("reserve not restored after gc freed space: %v, %v", fi, err)
	}
	// And ordinary writes work again.
	if _, err := db.Leases().Create(ctx, "after", nil); err != nil {
		t.Errorf("create lease after gc: %v", err)
	}
}

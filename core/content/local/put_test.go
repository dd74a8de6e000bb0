package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
)

func TestPut(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		put  func(*Store, ocispec.Descriptor, []byte) error
	}{
		{"unnamed file", func(s *Store, d ocispec.Descriptor, b []byte) error { return s.Put(ctx, d, b) }},
		{"ingest", func(s *Store, d ocispec.Descriptor, b []byte) error {
			return content.PutByIngest(ctx, s, "put-"+d.Digest.String(), d, b)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, root := newStore(t)
			data := randBytes(7, 3000)
			desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
			if err := tc.put(s, desc, data); err != nil {
				t.Fatal(err)
			}
			// Put keeps no reference to the caller's bytes (the cache of
			// small blobs has a copy).
			want := bytes.Clone(data)
			data[0]++
			if got := readAll(t, s, desc.Digest); !bytes.Equal(got, want) {
				t.Fatalf("read back %d bytes, not what was put", len(got))
			}
			data[0]--
			blob, _ := s.BlobPath(desc.Digest)
			if fi, err := os.Stat(blob); err != nil || fi.Mode().Perm() != 0o444 {
				t.Errorf("blob %s: %v, %v; want mode 0444", blob, fi, err)
			}
			if err := tc.put(s, desc, data); !errdefs.IsAlreadyExists(err) {
				t.Errorf("second Put = %v, want AlreadyExists", err)
			}
			// Nothing of the write is left: no ingest, no file.
			if sts, err := s.ListStatuses(ctx); err != nil || len(sts) != 0 {
				t.Errorf("ingests after Put: %v, %v", sts, err)
			}
			if left, _ := os.ReadDir(filepath.Join(root, "ingest")); len(left) != 0 {
				t.Errorf("left in the ingest directory: %v", left)
			}
		})
	}
}

func TestPutRefusesWrongBytes(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	data := []byte("the real bytes")
	good := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
	for name, c := range map[string]struct {
		desc ocispec.Descriptor
		data []byte
		is   func(error) bool
	}{
		"other bytes":      {good, []byte("other bytes, same len"), errdefs.IsFailedPrecondition},
		"short":            {good, data[:4], errdefs.IsFailedPrecondition},
		"bad digest":       {ocispec.Descriptor{Digest: "sha256:xyz", Size: good.Size}, data, errdefs.IsInvalidArgument},
		"other digest":     {ocispec.Descriptor{Digest: digest.FromString("x"), Size: good.Size}, data, errdefs.IsFailedPrecondition},
		"digest of sha512": {ocispec.Descriptor{Digest: digest.SHA512.FromBytes(data), Size: good.Size}, []byte("the fake bytes"), errdefs.IsFailedPrecondition},
	} {
		err := s.Put(ctx, c.desc, c.data)
		if !c.is(err) {
			t.Errorf("%s: Put = %v", name, err)
		}
	}
	if blobs, _ := filepath.Glob(filepath.Join(root, "blobs", "*", "*")); len(blobs) != 0 {
		t.Errorf("refused puts left blobs: %v", blobs)
	}
	if err := s.Put(ctx, good, data); err != nil {
		t.Fatal(err)
	}
	// A sha512 blob goes under its own algorithm's directory.
	d512 := ocispec.Descriptor{Digest: digest.SHA512.FromBytes(data), Size: good.Size}
	if err := s.Put(ctx, d512, data); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, d512.Digest); !bytes.Equal(got, data) {
		t.Errorf("sha512 blob read back %q", got)
	}
}

// syncSpy records the directories a store syncs, and fails the syncs of
// those in fail.
type syncSpy struct {
	mu     sync.Mutex
	synced []string
	fail   map[string]bool
}

func spyOnSyncs(s *Store) *syncSpy {
	spy := &syncSpy{fail: map[string]bool{}}
	s.syncDir = func(dir string) error {
		spy.mu.Lock()
		defer spy.mu.Unlock()
		if spy.fail[dir] {
			return fmt.Errorf("sync %s: %w", dir, syscall.EIO)
		}
		spy.synced = append(spy.synced, dir)
		return nil
	}
	return spy
}

func (spy *syncSpy) take() []string {
	spy.mu.Lock()
	defer spy.mu.Unlock()
	s := spy.synced
	spy.synced = nil
	return s
}

// PutUnsynced stores blobs whose names one SyncNames makes durable
// together, one sync of their directory for all of them; Put syncs at
// once; a directory whose sync failed is synced by the next SyncNames.
func TestPutUnsyncedSyncNames(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	spy := spyOnSyncs(s)
	sha256Dir := filepath.Join(root, "blobs", "sha256")
	sha512Dir := filepath.Join(root, "blobs", "sha512")
	var descs []ocispec.Descriptor
	for i := range 3 {
		data := randBytes(uint64(i), 100)
		desc := ocispec.Descriptor{Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := s.PutUnsynced(ctx, desc, data); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, s, desc.Digest); !bytes.Equal(got, data) {
			t.Fatalf("blob %d read back wrong", i)
		}
		descs = append(descs, desc)
	}
	// The store made blobs/sha256 with its first blob: that directory's
	// own name is synced at once, in blobs.
	if got := spy.take(); !slices.Equal(got, []string{sha256Dir, filepath.Join(root, "blobs")}) {
		t.Fatalf("syncs during PutUnsynced: %q, want the new sha256 directory and its parent only", got)
	}
	if err := s.SyncNames(); err != nil {
		t.Fatal(err)
	}
	if got := spy.take(); !slices.Equal(got, []string{sha256Dir}) {
		t.Fatalf("SyncNames synced %q, want %q once", got, sha256Dir)
	}
	if err := s.SyncNames(); err != nil || len(spy.take()) != 0 {
		t.Fatalf("a SyncNames with nothing new: %v, or it synced something", err)
	}

	// A blob already there is reported, and its directory is synced (Put)
	// or marked (PutUnsynced): the caller may record it.
	data := randBytes(0, 100)
	if err := s.PutUnsynced(ctx, descs[0], data); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("PutUnsynced of a blob there: %v", err)
	}
	if err := s.SyncNames(); err != nil {
		t.Fatal(err)
	}
	if got := spy.take(); !slices.Equal(got, []string{sha256Dir}) {
		t.Fatalf("SyncNames after an existing blob synced %q", got)
	}
	if err := s.Put(ctx, descs[0], data); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Put of a blob there: %v", err)
	}
	if got := spy.take(); !slices.Equal(got, []string{sha256Dir}) {
		t.Fatalf("Put of an existing blob synced %q", got)
	}

	// A failed sync is the caller's error, and the next SyncNames tries
	// again.
	data = randBytes(9, 100)
	d512 := ocispec.Descriptor{Digest: digest.SHA512.FromBytes(data), Size: 100}
	if err := s.PutUnsynced(ctx, d512, data); err != nil {
		t.Fatal(err)
	}
	data = randBytes(10, 100)
	if err := s.PutUnsynced(ctx, ocispec.Descriptor{Digest: digest.FromBytes(data), Size: 100}, data); err != nil {
		t.Fatal(err)
	}
	if got := spy.take(); !slices.Equal(got, []string{sha512Dir, filepath.Join(root, "blobs")}) {
		t.Fatalf("syncs of a new sha512 directory: %q", got)
	}
	spy.fail[sha256Dir] = true
	if err := s.SyncNames(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("SyncNames with a failing sync: %v", err)
	}
	delete(spy.fail, sha256Dir)
	spy.take()
	if err := s.SyncNames(); err != nil {
		t.Fatal(err)
	}
	if got := spy.take(); !slices.Contains(got, sha256Dir) {
		t.Fatalf("SyncNames after a failed one synced %q, want %s again", got, sha256Dir)
	}

	// Put syncs its own name before it returns.
	data = randBytes(11, 100)
	if err := s.Put(ctx, ocispec.Descriptor{Digest: digest.FromBytes(data), Size: 100}, data); err != nil {
		t.Fatal(err)
	}
	if got := spy.take(); !slices.Equal(got, []string{sha256Dir}) {
		t.Fatalf("Put synced %q", got)
	}
}

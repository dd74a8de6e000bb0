package local

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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

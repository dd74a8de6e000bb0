package metadata

import (
	"context"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/namespaces"
)

// Content Info is served from the cache between writes, and every write
// (an update, a delete, a collection) is seen by the next read.
func TestContentInfoCacheFollowsWrites(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "a")
	cs := db.Content()
	d := put(t, ctx, db, "blob", map[string]string{"containerd.io/gc.root": "x", "k": "v1"})
	info, err := cs.Info(ctx, d)
	if err != nil || info.Labels["k"] != "v1" {
		t.Fatalf("first Info: %+v %v", info, err)
	}
	if _, ok := db.infos.get(db.gen.Load(), infoKey{"a", d}); !ok {
		t.Fatal("a record Info read is not cached")
	}
	// A caller changing the labels it got changes nothing stored or cached.
	info.Labels["k"] = "changed by a caller"
	if again, _ := cs.Info(ctx, d); again.Labels["k"] != "v1" {
		t.Fatalf("cached labels were changed through a returned map: %v", again.Labels)
	}
	if _, err := cs.Update(ctx, content.Info{Digest: d, Labels: map[string]string{"k": "v2"}}, "labels.k"); err != nil {
		t.Fatal(err)
	}
	if info, _ := cs.Info(ctx, d); info.Labels["k"] != "v2" {
		t.Fatalf("Info after an update: %v", info.Labels)
	}
	// Another namespace never sees a blob it did not write, cached or not.
	other := namespaces.WithNamespace(context.Background(), "b")
	if _, err := cs.Info(other, d); !errdefs.IsNotFound(err) {
		t.Fatalf("Info from another namespace: %v", err)
	}
	if _, err := cs.ReaderAt(other, ocispec.Descriptor{Digest: d}); !errdefs.IsNotFound(err) {
		t.Fatalf("ReaderAt from another namespace: %v", err)
	}
	if err := cs.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Info(ctx, d); !errdefs.IsNotFound(err) {
		t.Fatalf("Info after delete: %v", err)
	}
	if _, err := cs.ReaderAt(ctx, ocispec.Descriptor{Digest: d}); !errdefs.IsNotFound(err) {
		t.Fatalf("ReaderAt after delete: %v", err)
	}
}

func TestInfoCacheBounds(t *testing.T) {
	var c infoCache
	for i := 0; i < infoCacheMax+10; i++ {
		c.put(1, infoKey{"ns", digest.FromString(fmt.Sprint(i))}, content.Info{Size: int64(i)})
	}
	if len(c.m) > infoCacheMax {
		t.Fatalf("cache holds %d entries, at most %d", len(c.m), infoCacheMax)
	}
	k := infoKey{"ns", digest.FromString("x")}
	c.put(5, k, content.Info{Size: 5})
	c.put(4, k, content.Info{Size: 4}) // an older read loses
	if info, ok := c.get(5, k); !ok || info.Size != 5 {
		t.Fatalf("after an older put: %+v %v", info, ok)
	}
	if _, ok := c.get(6, k); ok {
		t.Fatal("an entry of an older generation was returned")
	}
}

// A read looks the record up once and keeps it, so the next reads of the
// blob need no database lookup; a delete is still seen by the next read.
func TestContentReaderAtCachesPresence(t *testing.T) {
	db := openDB(t)
	ctx := namespaces.WithNamespace(context.Background(), "a")
	cs := db.Content()
	d := put(t, ctx, db, "blob", map[string]string{"containerd.io/gc.root": "x"})
	if db.infos.has(db.gen.Load(), infoKey{"a", d}) {
		t.Fatal("record cached before any read")
	}
	ra, err := cs.ReaderAt(ctx, ocispec.Descriptor{Digest: d})
	if err != nil {
		t.Fatal(err)
	}
	ra.Close()
	if !db.infos.has(db.gen.Load(), infoKey{"a", d}) {
		t.Fatal("a read did not keep the record it looked up")
	}
	if err := cs.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.ReaderAt(ctx, ocispec.Descriptor{Digest: d}); !errdefs.IsNotFound(err) {
		t.Fatalf("ReaderAt after delete: %v", err)
	}
}

package unpack

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/diff/walking"
	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/metadata"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/snapshots/native"
	"github.com/hullrt/hull/internal/testimage"
)

// openDB opens a metadata store with its content under dir, closed when t
// ends.
func openDB(t *testing.T, dir string) *metadata.DB {
	t.Helper()
	backend, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := metadata.Open(filepath.Join(dir, "meta.db"), backend, metadata.Options{GCDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func setup(t *testing.T) (context.Context, *metadata.DB, snapshots.Snapshotter, Options) {
	dir := t.TempDir()
	db := openDB(t, dir)
	n, err := native.New(filepath.Join(dir, "native"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	db.AddSnapshotter("native", n)
	sn, _ := db.Snapshotter("native")
	ctx := namespaces.WithNamespace(context.Background(), "unpack")
	return ctx, db, sn, Options{Content: db.Content(), Snapshotter: sn, SnapshotterName: "native", Applier: walking.NewApplier(db.Content())}
}

func store(t *testing.T, ctx context.Context, cs content.Store, b testimage.Blob) {
	w, err := cs.Writer(ctx, content.WithRef("t-"+b.Desc.Digest.String()), content.WithDescriptor(b.Desc))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write(b.Data)
	if err := w.Commit(ctx, b.Desc.Size, b.Desc.Digest, content.WithLabels(map[string]string{"containerd.io/gc.root": "t"})); err != nil {
		t.Fatal(err)
	}
}

func TestUnpackAndDiffIDMismatch(t *testing.T) {
	ctx, _, sn, o := setup(t)
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "a", Data: []byte("a")}}, []testimage.File{{Name: "b", Data: []byte("b")}})
	for _, b := range img.Blobs() {
		store(t, ctx, o.Content, b)
	}
	chain, err := Unpack(ctx, img.Manifest.Desc, o)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := sn.Stat(ctx, chain.String()); err != nil || info.Kind != snapshots.KindCommitted {
		t.Fatalf("top snapshot: %+v %v", info, err)
	}
	// An image whose config lies about a layer's diffID: refused, naming
	// the layer, and no snapshot of it is committed.
	var cfg ocispec.Image
	json.Unmarshal(img.Config.Data, &cfg)
	cfg.RootFS.DiffIDs[1] = digest.FromString("not the layer")
	cb, _ := json.Marshal(cfg)
	bad := testimage.Blob{Desc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cb), Size: int64(len(cb))}, Data: cb}
	store(t, ctx, o.Content, bad)
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: bad.Desc, Layers: []ocispec.Descriptor{img.Layers[0].Desc, img.Layers[1].Desc}}
	m.SchemaVersion = 2
	mb, _ := json.Marshal(m)
	md := testimage.Blob{Desc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}, Data: mb}
	store(t, ctx, o.Content, md)
	_, err = Unpack(ctx, md.Desc, o)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(img.Layers[1].Desc.Digest.String())) {
		t.Fatalf("unpack with a wrong diffID: %v", err)
	}
	var committed, active int
	sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		if i.Kind == snapshots.KindCommitted {
			committed++
		} else {
			active++
		}
		return nil
	})
	if committed != 2 || active != 0 {
		t.Fatalf("after the failed unpack: %d committed (want the 2 good ones), %d active (want 0)", committed, active)
	}
	if _, err := Unpack(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("none"), Size: 10}, o); !errdefs.IsNotFound(err) {
		t.Fatalf("missing manifest: %v", err)
	}
}

// TestUnpackLeasesSnapshotsItFinds: an unpack that finds a layer's
// snapshot made already adds it to its lease before relying on it, so that
// no collection takes it (its image deleted meanwhile) before the config
// names it.
func TestUnpackLeasesSnapshotsItFinds(t *testing.T) {
	ctx, db, sn, o := setup(t)
	o.Leases = db.Leases()
	img := testimage.New([]string{"/x"}, []testimage.File{{Name: "a", Data: []byte("a")}})
	for _, b := range img.Blobs() {
		store(t, ctx, o.Content, b)
	}
	chain, err := Unpack(ctx, img.Manifest.Desc, o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Leases().Create(ctx, "second", nil); err != nil {
		t.Fatal(err)
	}
	var saw []string
	o.Progress = func(_ ocispec.Descriptor, _ digest.Digest, status string) { saw = append(saw, status) }
	if _, err := Unpack(leases.WithLease(ctx, "second"), img.Manifest.Desc, o); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(saw, "exists") {
		t.Fatalf("the second unpack did not find the snapshot: %v", saw)
	}
	rs, err := db.Leases().ListResources(ctx, "second")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rs, leases.Resource{Type: "snapshots/native", ID: chain.String()}) {
		t.Errorf("the second unpack's lease holds %v; want the snapshot %s it found", rs, chain)
	}
	// Held by the lease only, it outlives a collection.
	if _, err := db.Content().Update(ctx, content.Info{Digest: img.Config.Desc.Digest, Labels: map[string]string{}}, "labels"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GarbageCollect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Stat(ctx, chain.String()); err != nil {
		t.Errorf("the leased snapshot was collected: %v", err)
	}
}

package walking

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/archive"
	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/diff"
	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/internal/testimage"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// labelStore is a local store that remembers commit labels, which the
// local store leaves to the metadata layer.
type labelStore struct {
	*local.Store
	mu     sync.Mutex
	labels map[digest.Digest]map[string]string
}

func newStore(t testing.TB) *labelStore {
	t.Helper()
	s, err := local.NewStore(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatal(err)
	}
	return &labelStore{Store: s, labels: map[digest.Digest]map[string]string{}}
}

func (s *labelStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	w, err := s.Store.Writer(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return &labelWriter{Writer: w, s: s}, nil
}

type labelWriter struct {
	content.Writer
	s *labelStore
}

func (w *labelWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.CommitOpt) error {
	var co content.CommitOpts
	for _, o := range opts {
		o(&co)
	}
	err := w.Writer.Commit(ctx, size, expected, opts...)
	if err == nil {
		w.s.mu.Lock()
		w.s.labels[expected] = co.Labels
		w.s.mu.Unlock()
	}
	return err
}

// ingest puts a blob into the store.
func ingest(t testing.TB, s content.Ingester, mediaType string, data []byte) ocispec.Descriptor {
	t.Helper()
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	w, err := s.Writer(context.Background(), content.WithRef("test-"+desc.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(context.Background(), desc.Size, desc.Digest); err != nil && !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	return desc
}

func bindMount(dir string) []mount.Mount {
	return []mount.Mount{{Type: "bind", Source: dir, Options: []string{"rbind", "rw"}}}
}

var layerFiles = []testimage.File{
	{Name: "etc/", Type: tar.TypeDir},
	{Name: "etc/hostname", Data: []byte("hull\n")},
	{Name: "bin/", Type: tar.TypeDir},
	{Name: "bin/tool", Mode: 0o4755, Data: []byte("#!/bin/sh\n")},
	{Name: "bin/link", Type: tar.TypeSymlink, Linkname: "tool"},
	{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
}

// tree describes the files below root: type, permissions, content or link
// target.
func tree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fs.FileMode(st.Mode & 0o777).String()
		desc += " " + string(rune('0'+st.Mode>>9&7))
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			desc = "dir " + desc
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc = "file " + desc + " " + string(b)
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			desc = "symlink -> " + l
		case unix.S_IFCHR:
			desc = "char " + desc
			if st.Rdev == 0 {
				desc = "whiteout"
			}
		default:
			desc = "other " + desc
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalTrees(t testing.TB, want, got map[string]string) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		if got[p] != w {
			diffs = append(diffs, p+": want "+w+", got "+got[p])
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, p+": unexpected "+g)
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Fatalf("trees differ:\n%s", strings.Join(diffs, "\n"))
	}
}

func uncompressedTar(t testing.TB, files []testimage.File) []byte {
	t.Helper()
	b, _ := testimage.LayerWith(files, testimage.Uncompressed)
	return b.Data
}

func TestApplyCompressions(t *testing.T) {
	requireRoot(t)
	cs := newStore(t)
	want := map[string]string{}
	{
		dir := t.TempDir()
		if _, err := archive.Apply(context.Background(), dir, bytes.NewReader(uncompressedTar(t, layerFiles))); err != nil {
			t.Fatal(err)
		}
		want = tree(t, dir)
	}
	tarLen := int64(len(uncompressedTar(t, layerFiles)))
	for _, comp := range []testimage.Compression{testimage.Gzip, testimage.Zstd, testimage.Uncompressed} {
		t.Run(comp.String(), func(t *testing.T) {
			blob, diffID := testimage.LayerWith(layerFiles, comp)
			desc := ingest(t, cs, blob.Desc.MediaType, blob.Data)
			dir := t.TempDir()
			got, err := NewApplier(cs).Apply(context.Background(), desc, bindMount(dir), diff.WithExpectedDiffID(diffID.String()))
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != diffID || got.Size != tarLen || got.MediaType != ocispec.MediaTypeImageLayer {
				t.Fatalf("descriptor %+v, want diffID %s, size %d", got, diffID, tarLen)
			}
			equalTrees(t, want, tree(t, dir))
		})
	}
	t.Run("docker", func(t *testing.T) {
		blob, diffID := testimage.LayerWith(layerFiles, testimage.Gzip)
		desc := ingest(t, cs, mediaTypeDockerLayerGzip, blob.Data)
		got, err := NewApplier(cs).Apply(context.Background(), desc, bindMount(t.TempDir()))
		if err != nil || got.Digest != diffID {
			t.Fatalf("got %v, %v", got, err)
		}
	})
}

// TestApplyTrailingData checks that the diffID covers everything after the
// tar's end-of-archive marker and that all of the blob is read.
func TestApplyTrailingData(t *testing.T) {
	requireRoot(t)
	cs := newStore(t)
	raw := append(uncompressedTar(t, layerFiles), make([]byte, 8192)...)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	for mt, data := range map[string][]byte{ocispec.MediaTypeImageLayer: raw, ocispec.MediaTypeImageLayerGzip: gz.Bytes()} {
		desc := ingest(t, cs, mt, data)
		got, err := NewApplier(cs).Apply(context.Background(), desc, bindMount(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		if got.Digest != digest.FromBytes(raw) || got.Size != int64(len(raw)) {
			t.Errorf("%s: got %v, want the digest of all %d bytes", mt, got, len(raw))
		}
	}
	// A corrupt gzip trailer is only seen at the very end.
	bad := slices.Clone(gz.Bytes())
	bad[len(bad)-6] ^= 0xff // CRC
	desc := ingest(t, cs, ocispec.MediaTypeImageLayerGzip, bad)
	if _, err := NewApplier(cs).Apply(context.Background(), desc, bindMount(t.TempDir())); err == nil {
		t.Error("corrupt gzip CRC accepted")
	}
}

// TestApplyReusesGzipReaders applies gzip layers one after another with
// one applier, which keeps its gzip readers between layers: each layer,
// good or corrupt (in its trailer, in its middle), reads as if with a
// reader of its own, and a good layer after a corrupt one is whole.
func TestApplyReusesGzipReaders(t *testing.T) {
	requireRoot(t)
	cs := newStore(t)
	good, diffID := testimage.LayerWith(layerFiles, testimage.Gzip)
	other := []testimage.File{{Name: "other", Data: bytes.Repeat([]byte("o"), 100_000)}}
	good2, diffID2 := testimage.LayerWith(other, testimage.Gzip)
	badCRC := slices.Clone(good.Data)
	badCRC[len(badCRC)-6] ^= 0xff
	badMiddle := slices.Clone(good2.Data)
	badMiddle[len(badMiddle)/2] ^= 0xff
	wantTree := func(files []testimage.File) map[string]string {
		dir := t.TempDir()
		if _, err := archive.Apply(context.Background(), dir, bytes.NewReader(uncompressedTar(t, files))); err != nil {
			t.Fatal(err)
		}
		return tree(t, dir)
	}
	want, want2 := wantTree(layerFiles), wantTree(other)
	a := NewApplier(cs)
	for i, step := range []struct {
		data   []byte
		diffID digest.Digest
		want   map[string]string
	}{
		{good.Data, diffID, want}, {badCRC, "", nil}, {good2.Data, diffID2, want2},
		{badMiddle, "", nil}, {good.Data, diffID, want}, {good2.Data, diffID2, want2},
	} {
		desc := ingest(t, cs, ocispec.MediaTypeImageLayerGzip, step.data)
		dir := t.TempDir()
		got, err := a.Apply(context.Background(), desc, bindMount(dir))
		if step.want == nil {
			if err == nil {
				t.Fatalf("step %d: a corrupt layer applied", i)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got.Digest != step.diffID {
			t.Fatalf("step %d: diffID %s, want %s", i, got.Digest, step.diffID)
		}
		equalTrees(t, step.want, tree(t, dir))
	}
}

func TestApplyDiffIDMismatch(t *testing.T) {
	requireRoot(t)
	cs := newStore(t)
	blob, diffID := testimage.LayerWith(layerFiles, testimage.Gzip)
	desc := ingest(t, cs, blob.Desc.MediaType, blob.Data)
	wrong := digest.FromString("something else")
	_, err := NewApplier(cs).Apply(context.Background(), desc, bindMount(t.TempDir()), diff.WithExpectedDiffID(wrong.String()))
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("got %v", err)
	}
	for _, s := range []string{desc.Digest.String(), wrong.String(), diffID.String()} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
}

func TestApplyMagicMismatch(t *testing.T) {
	cs := newStore(t)
	gz, _ := testimage.LayerWith(layerFiles, testimage.Gzip)
	zst, _ := testimage.LayerWith(layerFiles, testimage.Zstd)
	for name, tc := range map[string]struct {
		mt   string
		data []byte
	}{
		"gzip labelled zstd":         {ocispec.MediaTypeImageLayerZstd, gz.Data},
		"zstd labelled gzip":         {ocispec.MediaTypeImageLayerGzip, zst.Data},
		"gzip labelled uncompressed": {ocispec.MediaTypeImageLayer, gz.Data},
		"zstd labelled uncompressed": {ocispec.MediaTypeImageLayer, zst.Data},
		"tar labelled gzip":          {ocispec.MediaTypeImageLayerGzip, uncompressedTar(t, layerFiles)},
		"empty labelled gzip":        {ocispec.MediaTypeImageLayerGzip, nil},
	} {
		t.Run(name, func(t *testing.T) {
			desc := ingest(t, cs, tc.mt, tc.data)
			dir := t.TempDir()
			_, err := NewApplier(cs).Apply(context.Background(), desc, bindMount(dir))
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), desc.Digest.String()) {
				t.Fatalf("got %v", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("applied %d entries", len(entries))
			}
		})
	}
}

func TestApplyUnknownMediaType(t *testing.T) {
	cs := newStore(t)
	const mt = "application/vnd.oci.image.layer.v1.tar+lz4"
	desc := ingest(t, cs, mt, []byte("x"))
	_, err := NewApplier(cs).Apply(context.Background(), desc, bindMount(t.TempDir()))
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), mt) {
		t.Fatalf("got %v", err)
	}
}

// TestApplyOverlayUpper applies into an overlay mount's upper directory
// without mounting it.
func TestApplyOverlayUpper(t *testing.T) {
	requireRoot(t)
	cs := newStore(t)
	lower, upper := t.TempDir(), t.TempDir()
	must(t, os.Mkdir(filepath.Join(lower, "tmp"), 0o755))
	must(t, unix.Chmod(filepath.Join(lower, "tmp"), 0o1777))
	must(t, os.WriteFile(filepath.Join(lower, "gone"), nil, 0o644))
	blob, diffID := testimage.LayerWith([]testimage.File{
		{Name: ".wh.gone"},
		{Name: "tmp/x", Data: []byte("x")},
		{Name: "opq/", Type: tar.TypeDir},
		{Name: "opq/.wh..wh..opq"},
	}, testimage.Zstd)
	desc := ingest(t, cs, blob.Desc.MediaType, blob.Data)
	mounts := []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"index=off", "lowerdir=" + lower, "upperdir=" + upper, "workdir=/nonexistent",
	}}}
	got, err := NewApplier(cs).Apply(context.Background(), desc, mounts, diff.WithExpectedDiffID(diffID.String()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != diffID {
		t.Fatalf("diffID %s, want %s", got.Digest, diffID)
	}
	tr := tree(t, upper)
	if tr["gone"] != "whiteout" || tr["tmp"] != "dir -rwxrwxrwx 1" {
		t.Fatalf("upper: %v", tr)
	}
	if v, err := unix.Lgetxattr(filepath.Join(upper, "opq"), "trusted.overlay.opaque", make([]byte, 8)); err != nil || v != 1 {
		t.Fatalf("opq not opaque: %v", err)
	}
}

// TestApplyTempMount applies through a real mount: two mounts cannot be
// written directly.
func TestApplyTempMount(t *testing.T) {
	requireRoot(t)
	cs := newStore(t)
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	mounts := []mount.Mount{
		{Type: "bind", Source: dir, Options: []string{"rbind", "rw"}},
		{Type: "tmpfs", Source: "tmpfs", Target: "sub"},
	}
	blob, diffID := testimage.LayerWith([]testimage.File{{Name: "a", Data: []byte("a")}, {Name: "sub/b", Data: []byte("b")}}, testimage.Gzip)
	desc := ingest(t, cs, blob.Desc.MediaType, blob.Data)
	got, err := NewApplier(cs).Apply(context.Background(), desc, mounts, diff.WithExpectedDiffID(diffID.String()))
	if err != nil {
		if strings.Contains(err.Error(), "operation not permitted") {
			t.Fatalf("cannot mount: %v", err)
		}
		t.Fatal(err)
	}
	if got.Digest != diffID {
		t.Fatalf("diffID %s", got.Digest)
	}
	equalTrees(t, map[string]string{"a": "file -rw-r--r-- 0 a", "sub": "dir -rwxr-xr-x 0"}, tree(t, dir))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readBlob reads a committed blob.
func readBlob(t testing.TB, cs content.Provider, desc ocispec.Descriptor) []byte {
	t.Helper()
	ra, err := cs.ReaderAt(context.Background(), desc)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	b, err := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func applyFiles(t testing.TB, dir string, files []testimage.File) {
	t.Helper()
	if _, err := archive.Apply(context.Background(), dir, bytes.NewReader(uncompressedTar(t, files))); err != nil {
		t.Fatal(err)
	}
}

var lowerFiles = []testimage.File{
	{Name: "etc/", Type: tar.TypeDir},
	{Name: "etc/keep", Data: []byte("keep")},
	{Name: "etc/change", Data: []byte("old")},
	{Name: "etc/remove", Data: []byte("rm")},
	{Name: "var/", Type: tar.TypeDir},
	{Name: "var/lib/", Type: tar.TypeDir},
	{Name: "var/lib/state", Data: []byte("s")},
}

func changeTree(t testing.TB, dir string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(dir, "etc/change"), []byte("new"), 0o600))
	must(t, os.Chmod(filepath.Join(dir, "etc/change"), 0o600))
	must(t, os.Remove(filepath.Join(dir, "etc/remove")))
	must(t, os.RemoveAll(filepath.Join(dir, "var/lib")))
	must(t, os.WriteFile(filepath.Join(dir, "added"), []byte("added"), 0o644))
}

// TestCompareRoundTrip diffs two directories in every compression and
// applies the layer onto a copy of the lower one.
func TestCompareRoundTrip(t *testing.T) {
	requireRoot(t)
	cs := newStore(t)
	lower, upper := t.TempDir(), t.TempDir()
	applyFiles(t, lower, lowerFiles)
	applyFiles(t, upper, lowerFiles)
	changeTree(t, upper)
	want := tree(t, upper)
	for _, mt := range []string{"", ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayer} {
		t.Run("mt="+mt, func(t *testing.T) {
			opts := []diff.CompareOpt{diff.WithLabels(map[string]string{"x": "y"})}
			if mt != "" {
				opts = append(opts, diff.WithMediaType(mt))
			}
			lowerMounts := []mount.Mount{{Type: "bind", Source: lower, Options: []string{"rbind", "ro"}}}
			desc, err := NewComparer(cs).Compare(context.Background(), lowerMounts, bindMount(upper), opts...)
			if err != nil {
				t.Fatal(err)
			}
			wantMT := mt
			if wantMT == "" {
				wantMT = ocispec.MediaTypeImageLayerGzip
			}
			blob := readBlob(t, cs, desc)
			if desc.MediaType != wantMT || desc.Digest != digest.FromBytes(blob) || desc.Size != int64(len(blob)) {
				t.Fatalf("descriptor %+v for a %d byte blob", desc, len(blob))
			}
			labels := cs.labels[desc.Digest]
			if labels["x"] != "y" || labels[labelUncompressed] == "" {
				t.Fatalf("labels %v", labels)
			}
			if mt == ocispec.MediaTypeImageLayer && labels[labelUncompressed] != desc.Digest.String() {
				t.Fatalf("uncompressed layer's diffID label %s", labels[labelUncompressed])
			}
			target := t.TempDir()
			applyFiles(t, target, lowerFiles)
			if _, err := NewApplier(cs).Apply(context.Background(), desc, bindMount(target), diff.WithExpectedDiffID(labels[labelUncompressed])); err != nil {
				t.Fatal(err)
			}
			equalTrees(t, want, tree(t, target))
		})
	}
}

// TestCompareOverlayUpper diffs a (never mounted) overlay snapshot by
// reading its upper directory.
func TestCompareOverlayUpper(t *testing.T) {
	requireRoot(t)
	cs := newStore(t)
	lower, upper := t.TempDir(), t.TempDir()
	applyFiles(t, lower, lowerFiles)
	if _, err := archive.Apply(context.Background(), upper, bytes.NewReader(uncompressedTar(t, []testimage.File{
		{Name: "etc/change", Mode: 0o600, Data: []byte("new")},
		{Name: "etc/.wh.remove"},
		{Name: "var/.wh.lib"},
		{Name: "added", Data: []byte("added")},
	})), archive.WithOverlayWhiteouts(), archive.WithParents(lower)); err != nil {
		t.Fatal(err)
	}
	upperMounts := []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + lower, "upperdir=" + upper, "workdir=/nonexistent"}}}
	desc, err := NewComparer(cs).Compare(context.Background(), []mount.Mount{{Type: "bind", Source: lower, Options: []string{"rbind", "ro"}}}, upperMounts,
		diff.WithMediaType(ocispec.MediaTypeImageLayer), diff.WithReference("my-ref"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(bytes.NewReader(readBlob(t, cs, desc)))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		names = append(names, h.Name)
	}
	// etc and var were copied into the upper directory from the lower one
	// unchanged: they need no entries.
	if want := []string{"added", "etc/change", "etc/.wh.remove", "var/.wh.lib"}; !slices.Equal(names, want) {
		t.Fatalf("entries %v, want %v", names, want)
	}
	target := t.TempDir()
	applyFiles(t, target, lowerFiles)
	if _, err := NewApplier(cs).Apply(context.Background(), desc, bindMount(target)); err != nil {
		t.Fatal(err)
	}
	want := t.TempDir()
	applyFiles(t, want, lowerFiles)
	changeTree(t, want)
	equalTrees(t, tree(t, want), tree(t, target))
}

// TestCompareMounted diffs an overlay that must be mounted: its lowers are
// not what lower shows.
func TestCompareMounted(t *testing.T) {
	requireRoot(t)
	cs := newStore(t)
	l1, l2, upper, work := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	applyFiles(t, l2, lowerFiles)
	applyFiles(t, l1, []testimage.File{{Name: "etc/froml1", Data: []byte("1")}})
	if _, err := archive.Apply(context.Background(), upper, bytes.NewReader(uncompressedTar(t, []testimage.File{
		{Name: "etc/.wh.keep"},
		{Name: "up", Data: []byte("u")},
	})), archive.WithOverlayWhiteouts()); err != nil {
		t.Fatal(err)
	}
	upperMounts := []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + l1 + ":" + l2, "upperdir=" + upper, "workdir=" + work}}}
	desc, err := NewComparer(cs).Compare(context.Background(), nil, upperMounts, diff.WithMediaType(ocispec.MediaTypeImageLayerZstd))
	if err != nil {
		if strings.Contains(err.Error(), "operation not permitted") {
			t.Fatalf("cannot mount: %v", err)
		}
		t.Fatal(err)
	}
	target := t.TempDir()
	if _, err := NewApplier(cs).Apply(context.Background(), desc, bindMount(target)); err != nil {
		t.Fatal(err)
	}
	got := tree(t, target)
	for _, p := range []string{"etc/keep", "etc/froml1", "up", "var/lib/state"} {
		if _, ok := got[p]; ok != (p != "etc/keep") {
			t.Errorf("%s present: %v (tree %v)", p, ok, got)
		}
	}
}

func TestCompareErrors(t *testing.T) {
	cs := newStore(t)
	_, err := NewComparer(cs).Compare(context.Background(), nil, bindMount(t.TempDir()), diff.WithMediaType("application/x-nope"))
	if !errdefs.IsNotImplemented(err) {
		t.Errorf("unknown media type: %v", err)
	}
	_, err = NewComparer(cs).Compare(context.Background(), nil, bindMount(filepath.Join(t.TempDir(), "missing")), diff.WithReference("failing"))
	if err == nil {
		t.Fatal("diff of a missing directory succeeded")
	}
	if _, serr := cs.Status(context.Background(), "failing"); !errdefs.IsNotFound(serr) {
		t.Errorf("failed compare left its ingest: %v", serr)
	}
	if errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("unexpected %v", err)
	}
}

func TestMountHelpers(t *testing.T) {
	lower, data := mount.OverlayLayers(`/a\:b:/c::/d`)
	if !slices.Equal(lower, []string{"/a:b", "/c"}) || !slices.Equal(data, []string{"/d"}) {
		t.Errorf("splitLowerdir: %q %q", lower, data)
	}
	ro := readOnlyMounts([]mount.Mount{{Type: "overlay", Options: []string{"rw", "index=off", "workdir=/w", "upperdir=/u:x", "lowerdir=/l1:/l2", "volatile"}}})
	if want := []string{"index=off", `lowerdir=/u\:x:/l1:/l2`, "ro"}; !slices.Equal(ro[0].Options, want) {
		t.Errorf("readOnlyMounts: %q, want %q", ro[0].Options, want)
	}
	ro = readOnlyMounts([]mount.Mount{{Type: "bind", Source: "/s", Options: []string{"rbind", "rw"}}})
	if want := []string{"rbind", "ro"}; !slices.Equal(ro[0].Options, want) {
		t.Errorf("readOnlyMounts bind: %q", ro[0].Options)
	}
	if l, ok := lowerDirs([]mount.Mount{{Type: "overlay", Options: []string{"lowerdir=/a:/b"}}}); !ok || !slices.Equal(l, []string{"/a", "/b"}) {
		t.Errorf("lowerDirs: %v %v", l, ok)
	}
	if _, needs := overlayLowers(mount.Mount{Type: "overlay", Options: []string{"lowerdir=/a", "metacopy=on"}}); !needs {
		t.Error("metacopy=on upper read directly")
	}
}

// TestApplyDetached applies a layer apart from its lowers into a bind
// mount, with overlay whiteouts, and refuses one that needs its lowers.
func TestApplyDetached(t *testing.T) {
	requireRoot(t)
	cs := newStore(t)
	ctx := context.Background()
	good := ingest(t, cs, ocispec.MediaTypeImageLayer, uncompressedTar(t, []testimage.File{
		{Name: "d/", Type: tar.TypeDir},
		{Name: "d/.wh.gone"},
		{Name: "d/new", Data: []byte("new")},
	}))
	dir := t.TempDir()
	if _, err := NewApplier(cs).Apply(ctx, good, bindMount(dir), diff.WithDetached()); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "d/gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("whiteout of d/gone: %v %+v", err, st)
	}
	needs := ingest(t, cs, ocispec.MediaTypeImageLayer, uncompressedTar(t, []testimage.File{{Name: "h", Type: tar.TypeLink, Linkname: "below"}}))
	_, err := NewApplier(cs).Apply(ctx, needs, bindMount(t.TempDir()), diff.WithDetached())
	if !errors.Is(err, diff.ErrNeedsLower) || !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("layer with a hard link to a lower file: %v", err)
	}
	if _, err := NewApplier(cs).Apply(ctx, good, nil, diff.WithDetached()); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("detached apply without a bind mount: %v", err)
	}
}

package imagearchive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/hullrt/hull/core/content"
	"github.com/hullrt/hull/core/content/local"
	"github.com/hullrt/hull/core/images"
)

func tarOf(t testing.TB, files ...[2]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f[1]))
	}
	tw.Close()
	return buf.Bytes()
}

// TestReadIndexAndWrite runs on a store that can Put (the files are stored
// in one step each) and on one that can only ingest.
func TestReadIndexAndWrite(t *testing.T) {
	for _, ingestOnly := range []bool{false, true} {
		ls, err := local.NewStore(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		var cs Store = ls
		if ingestOnly {
			cs = struct{ Store }{ls}
		}
		if _, ok := cs.(content.Putter); ok == ingestOnly {
			t.Fatalf("the store's Put is %v, want %v", ok, !ingestOnly)
		}
		testReadIndexAndWrite(t, cs)
	}
}

func testReadIndexAndWrite(t *testing.T, cs Store) {
	ctx := context.Background()
	layer := "layer bytes"
	cfg := `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`
	m := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
		digest.FromString(cfg).String() + `","size":` + itoa(len(cfg)) + `},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` +
		digest.FromString(layer).String() + `","size":` + itoa(len(layer)) + `}]}`
	md := digest.FromString(m)
	index := `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + md.String() + `","size":` + itoa(len(m)) + `}]}`
	blob := func(s string) string { return "blobs/sha256/" + digest.FromString(s).Encoded() }
	arch := tarOf(t, [2]string{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`}, [2]string{blob(layer), layer}, [2]string{blob(cfg), cfg}, [2]string{blob(m), m}, [2]string{"index.json", index})
	idx, err := ReadIndex(ctx, cs, bytes.NewReader(arch))
	if err != nil {
		t.Fatal(err)
	}
	if idx.Digest != digest.FromString(index) || idx.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("index %+v", idx)
	}
	// Written back out, it reads again to the same manifest.
	var out bytes.Buffer
	img := images.Image{Name: "example.com/a:1", Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(m))}}
	if err := Write(ctx, cs, &out, []images.Image{img}, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out.Bytes(), []byte(`"RepoTags":["example.com/a:1"]`)) {
		t.Fatal("export has no docker manifest.json naming the image")
	}
	if _, err := ReadIndex(ctx, cs, bytes.NewReader(out.Bytes())); err != nil {
		t.Fatal(err)
	}
	// Plain ustar headers without times, as containerd's: two exports of
	// one image are the same bytes, and no entry carries a PAX header (a
	// time of now took one per entry, doubling an archive of small blobs).
	var again bytes.Buffer
	if err := Write(ctx, cs, &again, []images.Image{img}, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Fatal("two exports of one image differ")
	}
	tr := tar.NewReader(bytes.NewReader(out.Bytes()))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Format != tar.FormatUSTAR || len(h.PAXRecords) > 0 {
			t.Errorf("entry %s: format %v, PAX records %v; want plain ustar", h.Name, h.Format, h.PAXRecords)
		}
	}

	// A blob whose bytes do not match its name is FailedPrecondition, as
	// containerd's content store says of such a commit.
	if _, err := ReadIndex(ctx, cs, bytes.NewReader(tarOf(t, [2]string{blob("other"), "these bytes"}))); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("blob with the wrong bytes: %v, want FailedPrecondition", err)
	}
	// So is one among many, whose stores overlap.
	var files [][2]string
	for i := range 12 {
		data := fmtInt(i) + " bytes"
		if i == 6 {
			files = append(files, [2]string{blob("not these"), data})
			continue
		}
		files = append(files, [2]string{blob(data), data})
	}
	if _, err := ReadIndex(ctx, cs, bytes.NewReader(tarOf(t, files...))); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), blob("not these")) {
		t.Fatalf("archive with one blob of the wrong bytes among others: %v, want FailedPrecondition naming it", err)
	}
	// Names leaving the archive, and a cut archive, are InvalidArgument.
	for _, bad := range [][]byte{
		tarOf(t, [2]string{"../x", "x"}),
		tarOf(t, [2]string{"/abs", "x"}),
		arch[:len(arch)/2],
	} {
		if _, err := ReadIndex(ctx, cs, bytes.NewReader(bad)); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("bad archive: %v, want InvalidArgument", err)
		}
	}
}

func itoa(n int) string {
	return string(bytes.TrimSpace([]byte(fmtInt(n))))
}

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// FuzzReadIndex feeds ReadIndex arbitrary archives: it must return an
// index or an error, never panic or hang.
func FuzzReadIndex(f *testing.F) {
	f.Add(tarOf(f, [2]string{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`}, [2]string{"index.json", `{"schemaVersion":2,"manifests":[]}`}))
	f.Add(tarOf(f, [2]string{"manifest.json", `[{"Config":"c.json","RepoTags":["a:1"],"Layers":["l.tar"]}]`}, [2]string{"c.json", `{}`}, [2]string{"l.tar", "x"}))
	f.Add(tarOf(f, [2]string{"../evil", "x"}))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	cs, err := local.NewStore(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decompress(bytes.NewReader(data))
		if err != nil {
			return
		}
		ReadIndex(context.Background(), cs, r)
	})
}

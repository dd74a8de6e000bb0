package testimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var (
	amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

func sampleFiles() [][]File {
	return [][]File{
		{{Name: "d/", Type: tar.TypeDir}, {Name: "d/f", Data: []byte("hello\n")}},
		{{Name: "g", Data: []byte("x")}},
	}
}

// readTar returns the regular files and directories of a tar by name; it
// fails on a name that appears twice.
func readTar(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := out[h.Name]; dup {
			t.Fatalf("tar entry %s appears twice", h.Name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = b
	}
}

func checkBlob(t *testing.T, b Blob) {
	t.Helper()
	if b.Desc.Digest != digest.FromBytes(b.Data) || b.Desc.Size != int64(len(b.Data)) {
		t.Fatalf("blob %s: descriptor does not match its %d bytes", b.Desc.Digest, len(b.Data))
	}
}

func TestNewForHostIsNew(t *testing.T) {
	a := New([]string{"/bin/sh"}, sampleFiles()...)
	b := NewFor(HostPlatform(), []string{"/bin/sh"}, sampleFiles()...)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("NewFor(host) differs from New: %s vs %s", a.Manifest.Desc.Digest, b.Manifest.Desc.Digest)
	}
	c := NewLayers(ocispec.Platform{}, []string{"/bin/sh"}, MakeLayer(sampleFiles()[0], Gzip), MakeLayer(sampleFiles()[1], Gzip))
	if !reflect.DeepEqual(a, c) {
		t.Fatal("NewLayers(zero platform, gzip layers) differs from New")
	}
}

func TestDigestsStable(t *testing.T) {
	for _, c := range []Compression{Gzip, Zstd, Uncompressed} {
		l1, d1 := LayerWith(sampleFiles()[0], c)
		l2, d2 := LayerWith(sampleFiles()[0], c)
		if !reflect.DeepEqual(l1, l2) || d1 != d2 {
			t.Errorf("%v: two builds of one layer differ", c)
		}
	}
	// The uncompressed tar depends only on archive/tar and this package.
	l, diffID := LayerWith(sampleFiles()[0], Uncompressed)
	if l.Desc.Digest != diffID {
		t.Errorf("uncompressed layer digest %s != diffID %s", l.Desc.Digest, diffID)
	}
	const wantDiffID = "sha256:5d5bf5dbd86c3e9a8098238067fd3e654d4a17b42869102fa9d7e2a5f1207659"
	if diffID != wantDiffID {
		t.Errorf("diffID of the sample layer changed: %s, want %s", diffID, wantDiffID)
	}
	// This also depends on compress/gzip's output, which has long been stable;
	// it was recorded from New before NewFor existed.
	img := NewFor(amd64, []string{"/bin/sh"}, sampleFiles()...)
	const wantManifest = "sha256:277f2430a63397d816069d3be65b7fb38a5740c98261b3d9e0e8128d1b7a8f09"
	if got := img.Manifest.Desc.Digest; got != wantManifest {
		t.Errorf("manifest digest of the sample linux/amd64 image changed: %s, want %s", got, wantManifest)
	}
}

func TestLayerCompressions(t *testing.T) {
	files := sampleFiles()[0]
	_, wantDiffID := Layer(files)
	plain, _ := LayerWith(files, Uncompressed)
	for _, tc := range []struct {
		c         Compression
		mediaType string
	}{
		{Gzip, "application/vnd.oci.image.layer.v1.tar+gzip"},
		{Zstd, "application/vnd.oci.image.layer.v1.tar+zstd"},
		{Uncompressed, "application/vnd.oci.image.layer.v1.tar"},
	} {
		t.Run(tc.c.String(), func(t *testing.T) {
			l, diffID := LayerWith(files, tc.c)
			checkBlob(t, l)
			if l.Desc.MediaType != tc.mediaType || tc.c.MediaType() != tc.mediaType {
				t.Errorf("media type %s, want %s", l.Desc.MediaType, tc.mediaType)
			}
			if diffID != wantDiffID {
				t.Errorf("diffID %s, want %s", diffID, wantDiffID)
			}
			tarData, err := Uncompress(l)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tarData, plain.Data) || digest.FromBytes(tarData) != diffID {
				t.Fatal("layer does not decompress to its diffID's tar")
			}
			got := readTar(t, tarData)
			if string(got["d/f"]) != "hello\n" {
				t.Errorf("d/f = %q", got["d/f"])
			}
		})
	}
	// Decode zstd independently of Uncompress, with a streaming reader.
	l, _ := LayerWith(files, Zstd)
	zr, err := zstd.NewReader(bytes.NewReader(l.Data))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, plain.Data) {
		t.Fatal("zstd layer does not decode to the same tar")
	}
}

func TestMixedLayers(t *testing.T) {
	layers := []BuiltLayer{MakeLayer(sampleFiles()[0], Zstd), MakeLayer(sampleFiles()[1], Uncompressed), MakeLayer(ManyLayers(1)[0], Gzip)}
	img := NewLayers(arm64, []string{"/x"}, layers...)
	for _, b := range img.Blobs() {
		checkBlob(t, b)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(img.Manifest.Data, &m); err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(img.Config.Data, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 3 || len(cfg.RootFS.DiffIDs) != 3 {
		t.Fatalf("%d layers, %d diffIDs", len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	for i, l := range layers {
		if !reflect.DeepEqual(m.Layers[i], l.Blob.Desc) || cfg.RootFS.DiffIDs[i] != l.DiffID {
			t.Errorf("layer %d: manifest %v / diffID %s, want %v / %s", i, m.Layers[i], cfg.RootFS.DiffIDs[i], l.Blob.Desc, l.DiffID)
		}
	}
	if p, _ := img.Platform(); !reflect.DeepEqual(p, arm64) {
		t.Errorf("platform %+v, want %+v", p, arm64)
	}
}

func TestManyLayers(t *testing.T) {
	img := New([]string{"/x"}, ManyLayers(40)...)
	seen := map[digest.Digest]bool{}
	for _, l := range img.Layers {
		if seen[l.Desc.Digest] {
			t.Fatalf("layer %s repeats", l.Desc.Digest)
		}
		seen[l.Desc.Digest] = true
	}
	if len(seen) != 40 {
		t.Fatalf("%d layers, want 40", len(seen))
	}
}

func sampleIndex() *Index {
	shared := sampleFiles()[0] // the same layer in both images
	return NewIndex(
		NewFor(amd64, []string{"/bin/sh"}, shared, []File{{Name: "arch", Data: []byte("amd64\n")}}),
		NewFor(arm64, []string{"/bin/sh"}, shared, []File{{Name: "arch", Data: []byte("arm64\n")}}),
	)
}

func TestNewIndex(t *testing.T) {
	idx := sampleIndex()
	checkBlob(t, idx.Index)
	if idx.Index.Desc.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("index media type %s", idx.Index.Desc.MediaType)
	}
	var parsed ocispec.Index
	if err := json.Unmarshal(idx.Index.Data, &parsed); err != nil {
		t.Fatal(err)
	}
	if parsed.SchemaVersion != 2 || parsed.MediaType != ocispec.MediaTypeImageIndex || len(parsed.Manifests) != 2 {
		t.Fatalf("index %s", idx.Index.Data)
	}
	for i, want := range []ocispec.Platform{amd64, arm64} {
		d := parsed.Manifests[i]
		if d.Digest != idx.Manifests[i].Manifest.Desc.Digest || d.Size != idx.Manifests[i].Manifest.Desc.Size || d.MediaType != ocispec.MediaTypeImageManifest {
			t.Errorf("entry %d: %+v does not describe its manifest", i, d)
		}
		if d.Platform == nil || !reflect.DeepEqual(*d.Platform, want) {
			t.Errorf("entry %d: platform %+v, want %+v", i, d.Platform, want)
		}
	}
	if again := sampleIndex(); again.Index.Desc.Digest != idx.Index.Desc.Digest {
		t.Error("index digest is not stable")
	}
	// index + 2 manifests + 2 configs + 1 shared layer + 2 arch layers
	blobs := idx.Blobs()
	if len(blobs) != 8 || blobs[0].Desc.Digest != idx.Index.Desc.Digest {
		t.Fatalf("Blobs: %d blobs (want 8, index first)", len(blobs))
	}
}

func TestWriteOCIArchiveIndex(t *testing.T) {
	idx := sampleIndex()
	var buf bytes.Buffer
	if err := WriteOCIArchiveIndex(&buf, "example.test/multi:2", idx); err != nil {
		t.Fatal(err)
	}
	files := readTar(t, buf.Bytes())
	var top ocispec.Index
	if err := json.Unmarshal(files["index.json"], &top); err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 {
		t.Fatalf("index.json: %s", files["index.json"])
	}
	d := top.Manifests[0]
	if d.Digest != idx.Index.Desc.Digest || d.MediaType != ocispec.MediaTypeImageIndex ||
		d.Annotations["io.containerd.image.name"] != "example.test/multi:2" || d.Annotations[ocispec.AnnotationRefName] != "2" {
		t.Fatalf("index.json entry %+v", d)
	}
	if _, ok := files["oci-layout"]; !ok {
		t.Fatal("no oci-layout")
	}
	for _, b := range idx.Blobs() {
		got, ok := files["blobs/sha256/"+b.Desc.Digest.Encoded()]
		if !ok || digest.FromBytes(got) != b.Desc.Digest {
			t.Errorf("blob %s missing or wrong", b.Desc.Digest)
		}
	}
	if want := 2 + len(idx.Blobs()); len(files) != want {
		t.Errorf("%d entries, want %d", len(files), want)
	}
}

func TestWriteDockerArchive(t *testing.T) {
	img := NewLayers(amd64, []string{"/bin/sh"}, MakeLayer(sampleFiles()[0], Zstd), MakeLayer(sampleFiles()[1], Gzip), MakeLayer(sampleFiles()[0], Zstd))
	var buf bytes.Buffer
	if err := WriteDockerArchive(&buf, "example.test/docker:1", img); err != nil {
		t.Fatal(err)
	}
	files := readTar(t, buf.Bytes())
	var entries []DockerManifestEntry
	if err := json.Unmarshal(files["manifest.json"], &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("manifest.json: %s", files["manifest.json"])
	}
	e := entries[0]
	if !reflect.DeepEqual(e.RepoTags, []string{"example.test/docker:1"}) {
		t.Errorf("RepoTags %v", e.RepoTags)
	}
	if !bytes.Equal(files[e.Config], img.Config.Data) {
		t.Errorf("config %s is not the image config", e.Config)
	}
	var cfg ocispec.Image
	json.Unmarshal(img.Config.Data, &cfg)
	if len(e.Layers) != 3 {
		t.Fatalf("Layers %v", e.Layers)
	}
	for i, p := range e.Layers {
		data, ok := files[p]
		if !ok {
			t.Fatalf("layer %s missing", p)
		}
		if digest.FromBytes(data) != cfg.RootFS.DiffIDs[i] {
			t.Errorf("layer %s is not the uncompressed tar of diffID %s", p, cfg.RootFS.DiffIDs[i])
		}
	}
	if e.Layers[0] != e.Layers[2] {
		t.Errorf("identical layers stored apart: %v", e.Layers)
	}
	// Reproducible.
	var again bytes.Buffer
	WriteDockerArchive(&again, "example.test/docker:1", img)
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two archives of one image differ")
	}
}

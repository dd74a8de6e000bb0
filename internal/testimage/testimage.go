// Package testimage builds OCI images in memory for tests and the demo: layers
// from lists of files (or from the static busybox binary), image configs,
// manifests, and OCI image layout archives that `ctr images import` and
// `hullctl images import` read. It is the one image builder tests use.
package testimage

import (
	_ "crypto/sha256" // go-digest hashes with it

	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one entry of a layer.
type File struct {
	Name     string
	Mode     int64 // permission bits; 0 means 0644 (files) or 0755 (dirs)
	Type     byte  // tar.TypeReg (default), tar.TypeDir, tar.TypeSymlink, ...
	Linkname string
	Data     []byte
}

// Blob is a piece of content with its descriptor.
type Blob struct {
	Desc ocispec.Descriptor
	Data []byte
}

func blob(mediaType string, data []byte) Blob {
	return Blob{Desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, Data: data}
}

// epoch is the fixed mtime of every entry, so builds are reproducible.
var epoch = time.Unix(1700000000, 0)

// Layer returns a gzip-compressed tar layer of files and its diffID.
func Layer(files []File) (Blob, digest.Digest) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, Typeflag: f.Type, Linkname: f.Linkname, ModTime: epoch, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(err) // in-memory writer: only a bad File gets here
		}
		if h.Size > 0 {
			tw.Write(f.Data)
		}
	}
	tw.Close()
	diffID := digest.FromBytes(tarBuf.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarBuf.Bytes())
	zw.Close()
	return blob(ocispec.MediaTypeImageLayerGzip, gz.Bytes()), diffID
}

// BusyboxPath is where Debian's busybox-static installs the static binary.
const BusyboxPath = "/bin/busybox"

// BusyboxFiles returns the files of a minimal busybox root: the static
// binary, links for a few applets, /etc/passwd and /etc/group.
func BusyboxFiles() ([]File, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, err
	}
	files := []File{
		{Name: "bin/", Type: tar.TypeDir},
		{Name: "bin/busybox", Mode: 0o755, Data: bin},
		{Name: "etc/", Type: tar.TypeDir},
		{Name: "etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Name: "etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "root/", Type: tar.TypeDir, Mode: 0o700},
	}
	for _, applet := range []string{"sh", "echo", "cat", "ls", "sleep", "true", "false", "id", "env", "ps", "hostname"} {
		files = append(files, File{Name: "bin/" + applet, Type: tar.TypeSymlink, Linkname: "busybox"})
	}
	return files, nil
}

// Image is an image built in memory.
type Image struct {
	Manifest Blob
	Config   Blob
	Layers   []Blob
}

// Blobs returns every blob of the image, manifest first.
func (img *Image) Blobs() []Blob {
	return append([]Blob{img.Manifest, img.Config}, img.Layers...)
}

// New builds a single-platform image for this host from layers of files, with
// cmd as its default command.
func New(cmd []string, layers ...[]File) *Image {
	img := &Image{}
	cfg := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: cmd,
		},
		RootFS: ocispec.RootFS{Type: "layers"},
	}
	created := epoch
	cfg.Created = &created
	for _, files := range layers {
		l, diffID := Layer(files)
		img.Layers = append(img.Layers, l)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
	}
	cb, _ := json.Marshal(cfg)
	img.Config = blob(ocispec.MediaTypeImageConfig, cb)
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    img.Config.Desc,
	}
	for _, l := range img.Layers {
		m.Layers = append(m.Layers, l.Desc)
	}
	mb, _ := json.Marshal(m)
	img.Manifest = blob(ocispec.MediaTypeImageManifest, mb)
	return img
}

// WriteOCIArchive writes img as an OCI image layout tar whose index names the
// manifest ref (an image name such as "docker.io/library/busybox:latest",
// recorded in the org.opencontainers.image.ref.name and
// io.containerd.image.name annotations).
func WriteOCIArchive(w io.Writer, ref string, img *Image) error {
	tw := tar.NewWriter(w)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	desc := img.Manifest.Desc
	desc.Annotations = map[string]string{
		"io.containerd.image.name": ref,
		ocispec.AnnotationRefName:  refTag(ref),
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{desc}}
	ib, _ := json.Marshal(idx)
	if err := add("index.json", ib); err != nil {
		return err
	}
	for _, b := range img.Blobs() {
		if err := add("blobs/"+b.Desc.Digest.Algorithm().String()+"/"+b.Desc.Digest.Encoded(), b.Data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// refTag returns the tag of ref ("latest" for "x/y:latest"), the short name
// the OCI ref.name annotation conventionally holds.
func refTag(ref string) string {
	for i := len(ref) - 1; i >= 0; i-- {
		switch ref[i] {
		case ':':
			return ref[i+1:]
		case '/':
			return "latest"
		}
	}
	return "latest"
}

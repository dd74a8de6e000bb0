package testimage

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarFiles writes regular files and directories with fixed metadata, so
// archives are reproducible.
type tarFiles struct{ tw *tar.Writer }

func (t tarFiles) file(name string, data []byte) error {
	if err := t.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := t.tw.Write(data)
	return err
}

func (t tarFiles) dir(name string) error {
	return t.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir})
}

// WriteOCIArchiveIndex writes idx as an OCI image layout tar whose index.json
// has one entry, the image index, named ref like WriteOCIArchive names a
// single manifest (io.containerd.image.name and
// org.opencontainers.image.ref.name annotations). Blobs shared by several
// platform images are written once.
func WriteOCIArchiveIndex(w io.Writer, ref string, idx *Index) error {
	tf := tarFiles{tar.NewWriter(w)}
	if err := tf.file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	desc := idx.Index.Desc
	desc.Annotations = map[string]string{
		"io.containerd.image.name": ref,
		ocispec.AnnotationRefName:  refTag(ref),
	}
	top := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{desc}}
	ib, _ := json.Marshal(top)
	if err := tf.file("index.json", ib); err != nil {
		return err
	}
	for _, b := range idx.Blobs() {
		if err := tf.file("blobs/"+b.Desc.Digest.Algorithm().String()+"/"+b.Desc.Digest.Encoded(), b.Data); err != nil {
			return err
		}
	}
	return tf.tw.Close()
}

// DockerManifestEntry is one entry of a `docker save` archive's
// manifest.json.
type DockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// WriteDockerArchive writes img as a `docker save` style tar (the legacy
// layout `docker load` and `ctr images import` read): the config as
// <config hex>.json, each layer uncompressed as <diffID hex>/layer.tar with a
// VERSION file beside it, and manifest.json naming them with ref as the one
// RepoTag. ref is written as given (docker itself writes the familiar form,
// "busybox:latest" for docker.io/library/busybox:latest); an empty ref writes
// no RepoTags, like `docker save IMAGE-ID`. Layers of any compression are
// stored uncompressed, as docker does.
func WriteDockerArchive(w io.Writer, ref string, img *Image) error {
	var cfg ocispec.Image
	if err := json.Unmarshal(img.Config.Data, &cfg); err != nil {
		return fmt.Errorf("testimage: image config: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(img.Layers) {
		return fmt.Errorf("testimage: config lists %d diffIDs for %d layers", len(cfg.RootFS.DiffIDs), len(img.Layers))
	}
	tf := tarFiles{tar.NewWriter(w)}
	entry := DockerManifestEntry{Config: img.Config.Desc.Digest.Encoded() + ".json", Layers: []string{}}
	if ref != "" {
		entry.RepoTags = []string{ref}
	}
	written := map[string]bool{}
	for i, l := range img.Layers {
		data, err := uncompress(l)
		if err != nil {
			return err
		}
		dir := cfg.RootFS.DiffIDs[i].Encoded() + "/"
		entry.Layers = append(entry.Layers, dir+"layer.tar")
		if written[dir] {
			continue
		}
		written[dir] = true
		if err := tf.dir(dir); err != nil {
			return err
		}
		if err := tf.file(dir+"VERSION", []byte("1.0")); err != nil {
			return err
		}
		if err := tf.file(dir+"layer.tar", data); err != nil {
			return err
		}
	}
	if err := tf.file(entry.Config, img.Config.Data); err != nil {
		return err
	}
	mb, _ := json.Marshal([]DockerManifestEntry{entry})
	if err := tf.file("manifest.json", mb); err != nil {
		return err
	}
	return tf.tw.Close()
}

// ReadArchiveFile returns the regular files of the tar archive at path by
// (cleaned) name, or why it cannot be read to its end: what tests check
// exports with.
func ReadArchiveFile(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return files, fmt.Errorf("%s: %w", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				return files, fmt.Errorf("%s: %s: %w", path, h.Name, err)
			}
			files[filepath.Clean(h.Name)] = data
		}
	}
}

// WholeExport tells whether an export archive read by ReadArchiveFile
// (files, err) was written to its end: it reads to its end and holds
// index.json and manifest.json, the records hull's and containerd's
// exporters write last. ctr 2.x can exit before its export's last chunk
// reached the file.
func WholeExport(files map[string][]byte, err error) error {
	if err != nil {
		return err
	}
	for _, name := range []string{"index.json", "manifest.json"} {
		if files[name] == nil {
			return fmt.Errorf("no %s", name)
		}
	}
	return nil
}

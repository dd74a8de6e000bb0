package testimage

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Compression is how a layer's tar is compressed.
type Compression int

const (
	// Gzip is a gzip-compressed tar, application/vnd.oci.image.layer.v1.tar+gzip
	// (what Layer builds).
	Gzip Compression = iota
	// Zstd is a zstd-compressed tar, application/vnd.oci.image.layer.v1.tar+zstd.
	Zstd
	// Uncompressed is a plain tar, application/vnd.oci.image.layer.v1.tar.
	Uncompressed
)

// String names the compression ("gzip", "zstd", "uncompressed").
func (c Compression) String() string {
	switch c {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case Uncompressed:
		return "uncompressed"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// MediaType is the OCI layer media type of the compression.
func (c Compression) MediaType() string {
	switch c {
	case Zstd:
		return ocispec.MediaTypeImageLayerZstd
	case Uncompressed:
		return ocispec.MediaTypeImageLayer
	}
	return ocispec.MediaTypeImageLayerGzip
}

// LayerWith returns a tar layer of files compressed with compression, and its
// diffID (the digest of the uncompressed tar, the same for every
// compression). LayerWith(files, Gzip) is Layer(files).
func LayerWith(files []File, compression Compression) (Blob, digest.Digest) {
	gz, diffID := Layer(files)
	if compression == Gzip {
		return gz, diffID
	}
	tarData, err := uncompress(gz)
	if err != nil {
		panic(err) // Layer's own output: cannot be corrupt
	}
	switch compression {
	case Uncompressed:
		return blob(ocispec.MediaTypeImageLayer, tarData), diffID
	case Zstd:
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic(err) // only bad options get here
		}
		defer enc.Close()
		return blob(ocispec.MediaTypeImageLayerZstd, enc.EncodeAll(tarData, nil)), diffID
	}
	panic(fmt.Sprintf("testimage: unknown %v", compression))
}

// Uncompress returns the tar inside layer, decompressing it according to its
// media type (gzip, zstd or none).
func Uncompress(layer Blob) ([]byte, error) { return uncompress(layer) }

func uncompress(layer Blob) ([]byte, error) {
	switch layer.Desc.MediaType {
	case ocispec.MediaTypeImageLayer, "application/vnd.docker.image.rootfs.diff.tar":
		return layer.Data, nil
	case ocispec.MediaTypeImageLayerZstd:
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer dec.Close()
		return dec.DecodeAll(layer.Data, nil)
	case ocispec.MediaTypeImageLayerGzip, "application/vnd.docker.image.rootfs.diff.tar.gzip":
		zr, err := gzip.NewReader(bytes.NewReader(layer.Data))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	}
	return nil, fmt.Errorf("testimage: layer media type %q is not a tar layer", layer.Desc.MediaType)
}

// BuiltLayer is a layer blob with the diffID of its uncompressed tar, the
// unit NewLayers assembles images from.
type BuiltLayer struct {
	Blob   Blob
	DiffID digest.Digest
}

// MakeLayer builds a layer of files with compression.
func MakeLayer(files []File, compression Compression) BuiltLayer {
	b, d := LayerWith(files, compression)
	return BuiltLayer{Blob: b, DiffID: d}
}

// ManyLayers returns n small layers, each adding one distinct file
// (layer-0000, layer-0001, ...), for New, NewFor or MakeLayer.
func ManyLayers(n int) [][]File {
	layers := make([][]File, n)
	for i := range layers {
		name := fmt.Sprintf("layer-%04d", i)
		layers[i] = []File{{Name: name, Data: []byte(name + "\n")}}
	}
	return layers
}

// HostPlatform is the platform New builds for: linux on this GOARCH.
func HostPlatform() ocispec.Platform {
	return ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// NewFor is New for another platform: the image's config records platform
// (OS, architecture, variant, OS version and features), which NewIndex copies
// into the index.
func NewFor(platform ocispec.Platform, cmd []string, layers ...[]File) *Image {
	built := make([]BuiltLayer, len(layers))
	for i, files := range layers {
		built[i] = MakeLayer(files, Gzip)
	}
	return NewLayers(platform, cmd, built...)
}

// NewLayers builds an image for platform (the zero Platform means
// HostPlatform) from already built layers, which may mix compressions, with
// cmd as its default command. NewLayers(HostPlatform(), cmd, gzip layers...)
// is byte for byte New(cmd, files...).
func NewLayers(platform ocispec.Platform, cmd []string, layers ...BuiltLayer) *Image {
	if platform.OS == "" && platform.Architecture == "" {
		platform = HostPlatform()
	}
	img := &Image{}
	cfg := ocispec.Image{
		Platform: platform,
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: cmd,
		},
		RootFS: ocispec.RootFS{Type: "layers"},
	}
	created := epoch
	cfg.Created = &created
	for _, l := range layers {
		img.Layers = append(img.Layers, l.Blob)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
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

// Platform returns the platform recorded in the image's config.
func (img *Image) Platform() (ocispec.Platform, error) {
	var cfg ocispec.Image
	if err := json.Unmarshal(img.Config.Data, &cfg); err != nil {
		return ocispec.Platform{}, fmt.Errorf("testimage: image config: %w", err)
	}
	return cfg.Platform, nil
}

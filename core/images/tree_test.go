package images

import (
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParseChildren(t *testing.T) {
	m := []byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + digest.FromString("c").Encoded() + `","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:` + digest.FromString("l").Encoded() + `","size":2}]}`)
	ch, refs, err := ParseChildren(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest}, m)
	if err != nil || len(ch) != 2 || refs[0] != "config" || refs[1] != "l.0" {
		t.Fatalf("%v %v %v", ch, refs, err)
	}
	if _, _, err := ParseChildren(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex}, []byte("{")); err == nil {
		t.Fatal("a broken index parsed")
	}
}

// FuzzParseChildren decodes arbitrary bytes as a manifest and as an index:
// errors are fine, panics are not.
func FuzzParseChildren(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:00","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}`))
	f.Add([]byte(`{"config":{},"layers":[{},{}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, mt := range []string{ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList, "application/octet-stream"} {
			ch, refs, err := ParseChildren(ocispec.Descriptor{MediaType: mt}, data)
			if err == nil && len(ch) != len(refs) {
				t.Fatalf("%d children with %d labels", len(ch), len(refs))
			}
		}
	})
}

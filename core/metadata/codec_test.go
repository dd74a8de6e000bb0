package metadata

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func sampleImageRecord() imageRecord {
	now := time.Date(2026, 11, 26, 23, 1, 2, 345678901, time.UTC)
	return imageRecord{
		Labels: map[string]string{"a": "1", "containerd.io/gc.ref.content": "sha256:x"},
		Target: ocispec.Descriptor{
			MediaType:    ocispec.MediaTypeImageManifest,
			Digest:       "sha256:c61d936ecbc9533830e0d361fae0a5b7f2b9094dc0031f902b8c81e7421419f7",
			Size:         1234,
			URLs:         []string{"https://example.test/blob"},
			Annotations:  map[string]string{"org.opencontainers.image.ref.name": "v1"},
			Data:         []byte{0, 1, 2},
			Platform:     &ocispec.Platform{Architecture: "arm64", OS: "linux", OSVersion: "1", OSFeatures: []string{"f"}, Variant: "v8"},
			ArtifactType: "application/x-test",
		},
		CreatedAt: now,
		UpdatedAt: now.Add(time.Second),
	}
}

func TestRecordsRoundTripInBinary(t *testing.T) {
	for _, in := range []any{
		ptr(sampleImageRecord()),
		&imageRecord{}, // zero times, no labels, no platform
		&blobRecord{Size: 1 << 40, Labels: map[string]string{"k": "v"}, CreatedAt: time.Unix(5, 6).UTC(), UpdatedAt: time.Unix(7, 8).UTC()},
		&blobRecord{},
	} {
		data, err := encodeRecord(in)
		if err != nil {
			t.Fatal(err)
		}
		if data[0] != binaryMagic {
			t.Fatalf("%T was not encoded in binary: %q", in, data)
		}
		out := reflect.New(reflect.TypeOf(in).Elem()).Interface()
		if err := decodeRecord(data, out); err != nil {
			t.Fatalf("decode %T: %v", in, err)
		}
		if !reflect.DeepEqual(normalize(in), normalize(out)) {
			t.Fatalf("round trip of %T:\n in %+v\nout %+v", in, in, out)
		}
	}
}

// normalize compares times by instant and zero-ness, as the store does.
func normalize(v any) any {
	switch r := v.(type) {
	case *imageRecord:
		c := *r
		c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
		return c
	case *blobRecord:
		c := *r
		c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
		return c
	}
	return v
}

func ptr[T any](v T) *T { return &v }

// Records written as JSON by earlier versions of hull still read.
func TestJSONRecordsStillRead(t *testing.T) {
	in := sampleImageRecord()
	data, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	var out imageRecord
	if err := decodeRecord(data, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalize(&in), normalize(&out)) {
		t.Fatalf("JSON record read back as %+v", out)
	}
}

func TestCorruptBinaryRecordsAreErrors(t *testing.T) {
	good, _ := encodeRecord(ptr(sampleImageRecord()))
	for name, data := range map[string][]byte{
		"truncated":       good[:len(good)/2],
		"trailing bytes":  append(append([]byte(nil), good...), 7),
		"huge count":      {binaryMagic, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"negative size":   {binaryMagic, 1},
		"only the marker": {binaryMagic},
	} {
		var img imageRecord
		errImg := decodeRecord(data, &img)
		var blob blobRecord
		errBlob := decodeRecord(data, &blob)
		if errImg == nil && errBlob == nil {
			t.Errorf("%s: decoded without an error as both record kinds", name)
		}
	}
	var blob blobRecord
	if err := decodeRecord([]byte{binaryMagic, 1, 0, 0, 0, 0, 0}, &blob); err == nil {
		t.Error("a negative blob size decoded")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	img, _ := encodeRecord(ptr(sampleImageRecord()))
	blob, _ := encodeRecord(&blobRecord{Size: 3, Labels: map[string]string{"a": "b"}})
	f.Add(img)
	f.Add(blob)
	f.Add([]byte(`{"size":3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r imageRecord
		if decodeRecord(data, &r) == nil && len(data) > 0 && data[0] == binaryMagic {
			// What decodes re-encodes to the same bytes' meaning.
			again, err := encodeRecord(&r)
			if err != nil {
				t.Fatal(err)
			}
			var r2 imageRecord
			if err := decodeRecord(again, &r2); err != nil {
				t.Fatalf("re-encoded record does not decode: %v", err)
			}
		}
		var b blobRecord
		decodeRecord(data, &b)
	})
}

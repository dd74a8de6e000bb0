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

func sampleContainerRecord() containerRecord {
	now := time.Date(2026, 12, 3, 23, 1, 2, 345678901, time.UTC)
	return containerRecord{
		Labels: map[string]string{"io.kubernetes.pod.name": "p"}, Image: "docker.io/library/busybox:1",
		Runtime: "io.containerd.runc.v2", RuntimeOptions: &anyRecord{TypeURL: "containerd.runc.v1.Options", Value: []byte{10, 4, 'r', 'u', 'n', 'c'}},
		Spec:        &anyRecord{TypeURL: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte(`{"ociVersion":"1.2.0"}`)},
		SnapshotKey: "c1", Snapshotter: "overlayfs",
		Extensions: map[string]anyRecord{"io.cri/sandbox": {TypeURL: "x", Value: []byte("{}")}, "empty": {TypeURL: "y"}},
		SandboxID:  "s1", CreatedAt: now, UpdatedAt: now.Add(time.Second),
	}
}

func TestRecordsRoundTripInBinary(t *testing.T) {
	for _, in := range []any{
		ptr(sampleContainerRecord()),
		&containerRecord{Runtime: "r", Spec: &anyRecord{TypeURL: "t"}},
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
	case *containerRecord:
		c := *r
		c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
		return c
	}
	return v
}

func ptr[T any](v T) *T { return &v }

// Container records written as JSON by earlier versions still read.
func TestJSONContainerRecordsStillRead(t *testing.T) {
	in := sampleContainerRecord()
	data, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	var out containerRecord
	if err := decodeRecord(data, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(normalize(&in), normalize(&out)) {
		t.Fatalf("JSON record read back as %+v", out)
	}
}

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
	ctr, _ := encodeRecord(ptr(sampleContainerRecord()))
	f.Add(img)
	f.Add(blob)
	f.Add(ctr)
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
		var c containerRecord
		if decodeRecord(data, &c) == nil && len(data) > 0 && data[0] == binaryMagic {
			again, err := encodeRecord(&c)
			if err != nil {
				t.Fatal(err)
			}
			var c2 containerRecord
			if err := decodeRecord(again, &c2); err != nil || !reflect.DeepEqual(normalize(&c), normalize(&c2)) {
				t.Fatalf("re-encoded container record: %v\n%+v\n%+v", err, c, c2)
			}
		}
	})
}

// gc reads only a container's references, from either stored form.
func TestContainerRefsOfBothForms(t *testing.T) {
	in := sampleContainerRecord()
	bin, err := encodeRecord(&in)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"binary": bin, "json": js} {
		var r containerRefs
		if err := decodeRecord(data, &r); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.SnapshotKey != "c1" || r.Snapshotter != "overlayfs" || !reflect.DeepEqual(r.Labels, in.Labels) {
			t.Fatalf("%s: refs %+v", name, r)
		}
	}
	var r containerRefs
	if err := decodeRecord(bin[:len(bin)-3], &r); err == nil {
		t.Fatal("a truncated record gave references")
	}
}

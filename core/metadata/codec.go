package metadata

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Records are stored as JSON, except the ones read on every call of a hot
// path (content Info, image Get/List), which have a compact binary form:
// decoding JSON was the largest part of hulld's own work in `ctr images ls`.
// A binary record starts with binaryMagic, which no JSON text starts with,
// so records written as JSON by earlier versions still read.
const binaryMagic = 0x01

// binaryDecoder reads a record's compact encoding: a record, or a view of
// part of one.
type binaryDecoder interface {
	decodeBinary(d *decoder) error
}

// binaryRecord is a record with a compact encoding of its own.
type binaryRecord interface {
	binaryDecoder
	appendBinary(b []byte) []byte
}

// encodeRecord is the stored form of v.
func encodeRecord(v any) ([]byte, error) {
	if r, ok := v.(binaryRecord); ok {
		return r.appendBinary([]byte{binaryMagic}), nil
	}
	return json.Marshal(v)
}

// decodeRecord reads a stored record of either form into v.
func decodeRecord(data []byte, v any) error {
	if len(data) > 0 && data[0] == binaryMagic {
		r, ok := v.(binaryDecoder)
		if !ok {
			return fmt.Errorf("binary record where a %T was expected", v)
		}
		d := &decoder{buf: data[1:]}
		if err := r.decodeBinary(d); err != nil {
			return err
		}
		if d.err == nil && len(d.buf) != 0 {
			d.err = fmt.Errorf("%d bytes left over", len(d.buf))
		}
		return d.err
	}
	return json.Unmarshal(data, v)
}

func appendVarint(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// appendTime keeps seconds and nanoseconds apart: a zero time.Time has no
// UnixNano.
func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// appendMap writes nil and empty maps alike: both read back as nil, as they
// did through JSON's omitempty.
func appendMap(b []byte, m map[string]string) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	for k, v := range m {
		b = appendString(b, k)
		b = appendString(b, v)
	}
	return b
}

func appendDescriptor(b []byte, desc ocispec.Descriptor) []byte {
	b = appendString(b, desc.MediaType)
	b = appendString(b, string(desc.Digest))
	b = appendVarint(b, desc.Size)
	b = appendStrings(b, desc.URLs)
	b = appendMap(b, desc.Annotations)
	b = appendBytes(b, desc.Data)
	if p := desc.Platform; p != nil {
		b = append(b, 1)
		b = appendString(b, p.Architecture)
		b = appendString(b, p.OS)
		b = appendString(b, p.OSVersion)
		b = appendStrings(b, p.OSFeatures)
		b = appendString(b, p.Variant)
	} else {
		b = append(b, 0)
	}
	return appendString(b, desc.ArtifactType)
}

// decoder reads what the append functions wrote; the first error sticks and
// every later read returns zero values, so that callers check once.
type decoder struct {
	buf []byte
	err error
}

// zeroUnix is time.Time{}.Unix(): a zero time reads back as one (IsZero).
var zeroUnix = time.Time{}.Unix()

var errTruncated = errors.New("record is truncated")

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.buf = nil
}

func (d *decoder) uvarint() uint64 { return readVarint(d, binary.Uvarint) }
func (d *decoder) varint() int64   { return readVarint(d, binary.Varint) }

// readVarint reads one number with read (binary.Uvarint or binary.Varint).
func readVarint[T uint64 | int64](d *decoder, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.buf)
	if n <= 0 {
		d.fail(errTruncated)
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) == 0 {
		d.fail(errTruncated)
		return 0
	}
	c := d.buf[0]
	d.buf = d.buf[1:]
	return c
}

// count reads a length and checks it against what is left, each element
// taking at least min bytes, so that a corrupt length cannot make a decoder
// allocate more than the record's own size.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.buf)/min) {
		d.fail(fmt.Errorf("record claims %d elements in %d bytes", n, len(d.buf)))
		return 0
	}
	return int(n)
}

func (d *decoder) rawBytes() []byte {
	n := d.count(1)
	if d.err != nil {
		return nil
	}
	p := d.buf[:n:n]
	d.buf = d.buf[n:]
	return p
}

func (d *decoder) string() string { return string(d.rawBytes()) }

func (d *decoder) bytes() []byte {
	p := d.rawBytes()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= 1e9 {
		d.fail(fmt.Errorf("record holds a time with %d nanoseconds", nsec))
		return time.Time{}
	}
	if sec == zeroUnix && nsec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *decoder) strings() []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.string()
	}
	return ss
}

func (d *decoder) stringMap() map[string]string {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for i := 0; i < n && d.err == nil; i++ {
		k := d.string()
		m[k] = d.string()
	}
	return m
}

func (d *decoder) descriptor() ocispec.Descriptor {
	var desc ocispec.Descriptor
	desc.MediaType = d.string()
	desc.Digest = digest.Digest(d.string())
	desc.Size = d.varint()
	desc.URLs = d.strings()
	desc.Annotations = d.stringMap()
	desc.Data = d.bytes()
	switch d.byte() {
	case 0:
	case 1:
		desc.Platform = &ocispec.Platform{
			Architecture: d.string(),
			OS:           d.string(),
			OSVersion:    d.string(),
			OSFeatures:   d.strings(),
			Variant:      d.string(),
		}
	default:
		d.fail(errors.New("record holds a bad platform marker"))
	}
	desc.ArtifactType = d.string()
	return desc
}

// size reads a blob size, which is never negative.
func (d *decoder) size() int64 {
	v := d.varint()
	if v < 0 {
		d.fail(fmt.Errorf("record holds a negative size %d", v))
		return 0
	}
	return v
}

// appendStamped writes the labels and times every record ends with.
func appendStamped(b []byte, labels map[string]string, created, updated time.Time) []byte {
	b = appendMap(b, labels)
	b = appendTime(b, created)
	return appendTime(b, updated)
}

// stamped reads what appendStamped wrote.
func (d *decoder) stamped(labels *map[string]string, created, updated *time.Time) error {
	*labels = d.stringMap()
	*created = d.time()
	*updated = d.time()
	return d.err
}

func (r *blobRecord) appendBinary(b []byte) []byte {
	return appendStamped(appendVarint(b, r.Size), r.Labels, r.CreatedAt, r.UpdatedAt)
}

func (r *blobRecord) decodeBinary(d *decoder) error {
	r.Size = d.size()
	return d.stamped(&r.Labels, &r.CreatedAt, &r.UpdatedAt)
}

func (r *imageRecord) appendBinary(b []byte) []byte {
	return appendStamped(appendDescriptor(b, r.Target), r.Labels, r.CreatedAt, r.UpdatedAt)
}

func (r *imageRecord) decodeBinary(d *decoder) error {
	r.Target = d.descriptor()
	return d.stamped(&r.Labels, &r.CreatedAt, &r.UpdatedAt)
}

// Container records are read on every task create and CRI call about a
// container; their spec, a JSON document itself, would otherwise be
// base64 inside JSON.

func appendAny(b []byte, a *anyRecord) []byte {
	if a == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = appendString(b, a.TypeURL)
	return appendBytes(b, a.Value)
}

func (d *decoder) anyRecord() *anyRecord {
	switch d.byte() {
	case 0:
		return nil
	case 1:
		return &anyRecord{TypeURL: d.string(), Value: d.bytes()}
	default:
		d.fail(errors.New("record holds a bad any marker"))
		return nil
	}
}

func (r *containerRecord) appendBinary(b []byte) []byte {
	b = appendString(b, r.Image)
	b = appendString(b, r.Runtime)
	b = appendAny(b, r.RuntimeOptions)
	b = appendAny(b, r.Spec)
	b = appendString(b, r.SnapshotKey)
	b = appendString(b, r.Snapshotter)
	b = binary.AppendUvarint(b, uint64(len(r.Extensions)))
	for name, ext := range r.Extensions {
		b = appendString(b, name)
		b = appendAny(b, &ext)
	}
	b = appendString(b, r.SandboxID)
	return appendStamped(b, r.Labels, r.CreatedAt, r.UpdatedAt)
}

func (r *containerRecord) decodeBinary(d *decoder) error {
	r.Image = d.string()
	r.Runtime = d.string()
	r.RuntimeOptions = d.anyRecord()
	r.Spec = d.anyRecord()
	r.SnapshotKey = d.string()
	r.Snapshotter = d.string()
	// An extension takes at least a name length, a marker, a type URL
	// length and a value length.
	if n := d.count(4); n > 0 {
		r.Extensions = make(map[string]anyRecord, n)
		for i := 0; i < n && d.err == nil; i++ {
			name := d.string()
			a := d.anyRecord()
			if a == nil {
				d.fail(fmt.Errorf("record holds extension %q without a value", name))
				break
			}
			r.Extensions[name] = *a
		}
	}
	r.SandboxID = d.string()
	return d.stamped(&r.Labels, &r.CreatedAt, &r.UpdatedAt)
}

// containerRefs is what gc reads of a container record: the references,
// without copying the spec, in either stored form.
type containerRefs struct {
	Labels      map[string]string `json:"labels,omitempty"`
	SnapshotKey string            `json:"snapshot_key,omitempty"`
	Snapshotter string            `json:"snapshotter,omitempty"`
}

func (r *containerRefs) decodeBinary(d *decoder) error {
	d.string() // image
	d.string() // runtime
	d.skipAny()
	d.skipAny() // spec
	r.SnapshotKey = d.string()
	r.Snapshotter = d.string()
	for n := d.count(4); n > 0 && d.err == nil; n-- {
		d.rawBytes()
		d.skipAny()
	}
	d.rawBytes() // sandbox
	var created, updated time.Time
	return d.stamped(&r.Labels, &created, &updated)
}

// skipAny reads past what appendAny wrote.
func (d *decoder) skipAny() {
	switch d.byte() {
	case 0:
	case 1:
		d.rawBytes()
		d.rawBytes()
	default:
		d.fail(errors.New("record holds a bad any marker"))
	}
}

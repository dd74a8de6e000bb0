package grpcpool

import (
	"bytes"
	"testing"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// TestCodecRoundTrip encodes small and pooled messages and decodes them
// back, from one buffer and from several frames.
func TestCodecRoundTrip(t *testing.T) {
	pool := New()
	c := Codec(pool)
	if c.Name() != "proto" {
		t.Fatalf("codec name %q: containerd's peers speak proto", c.Name())
	}
	for _, size := range []int{0, 10, 33 << 10, 1<<20 + 5} {
		in := &contentapi.ReadContentResponse{Offset: 7, Data: bytes.Repeat([]byte{0xa5}, size)}
		data, err := c.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		n := data.Len()
		if size == 33<<10 {
			// The point of the pool: a message just over 32 KiB takes a
			// 64 KiB buffer, not gRPC's next tier of 1 MiB.
			if got := cap(data[0].ReadOnlyData()); got > 64<<10 {
				t.Errorf("a %d-byte message took a buffer of %d bytes", n, got)
			}
		}
		// Split as HTTP/2 frames would deliver it.
		var frames mem.BufferSlice
		whole := data.Materialize()
		for off := 0; off < len(whole); off += 16 << 10 {
			frames = append(frames, mem.SliceBuffer(whole[off:min(len(whole), off+16<<10)]))
		}
		data.Free()
		for _, src := range []mem.BufferSlice{{mem.SliceBuffer(whole)}, frames} {
			var out contentapi.ReadContentResponse
			if err := c.Unmarshal(src, &out); err != nil {
				t.Fatal(err)
			}
			if out.Offset != 7 || !bytes.Equal(out.Data, in.Data) {
				t.Fatalf("round trip of %d bytes in %d buffers: offset %d, %d bytes", size, len(src), out.Offset, len(out.Data))
			}
		}
	}
}

// TestCodecRejectsNonMessages: anything but a protobuf message is an error,
// not a panic.
func TestCodecRejectsNonMessages(t *testing.T) {
	c := Codec(New())
	if _, err := c.Marshal(struct{}{}); err == nil {
		t.Error("marshalled a struct that is not a message")
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{1})}, new(int)); err == nil {
		t.Error("unmarshalled into an int")
	}
}

// TestEncodedGoesOutAsItIs: an Encoded answer is sent byte for byte and
// decodes as the message it encodes; freeing the sent buffers leaves the
// caller's bytes alone, for the next answer.
func TestEncodedGoesOutAsItIs(t *testing.T) {
	c := Codec(New())
	in := &contentapi.ReadContentResponse{Offset: 9, Data: []byte("cached")}
	wire, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	keep := append([]byte(nil), wire...)
	for i := 0; i < 2; i++ {
		data, err := c.Marshal(Encoded(wire))
		if err != nil {
			t.Fatal(err)
		}
		if got := data.Materialize(); !bytes.Equal(got, keep) {
			t.Fatalf("sent %x, want %x", got, keep)
		}
		var out contentapi.ReadContentResponse
		if err := c.Unmarshal(data, &out); err != nil || out.Offset != 9 || string(out.Data) != "cached" {
			t.Fatalf("decoded %v, %v", &out, err)
		}
		data.Free()
		if !bytes.Equal(wire, keep) {
			t.Fatal("freeing the sent message changed the caller's bytes")
		}
	}
}

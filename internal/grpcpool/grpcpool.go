// Package grpcpool holds the buffer pool hulld's gRPC server and the client
// library encode and decode messages with, and the protobuf codec that uses
// it.
//
// gRPC's default pool has tiers of 256 B, 4 KiB, 16 KiB, 32 KiB and 1 MiB,
// and zeroes a buffer's whole capacity when it hands it out: a content Read
// reply of a 32 KiB blob (32 KiB and a few bytes) takes a 1 MiB buffer and
// clears all of it, which was a quarter of hulld's CPU with 16 clients
// reading images, and as much again in the clients. Here every power of two
// from 256 B to 1 MiB is a tier, so no message clears more than twice its
// own size; buffers are still zeroed, as gRPC's are. gRPC's own codec
// always takes the process-wide default pool, so the server and the client
// connection are given Codec instead of changing that global.
package grpcpool

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// New returns a pool with a tier for every power of two from 256 B to
// 1 MiB; larger messages get buffers of their own size.
func New() mem.BufferPool {
	var exps []uint8
	for e := uint8(8); e <= 20; e++ {
		exps = append(exps, e)
	}
	p, err := mem.NewBinaryTieredBufferPool(exps...)
	if err != nil {
		// The exponents are fixed and valid on every platform Go runs on.
		panic(fmt.Sprintf("grpcpool: %v", err))
	}
	return p
}

// Codec returns a protobuf codec (content subtype "proto", what every
// containerd client and server speaks) that encodes into and decodes from
// pool.
func Codec(pool mem.BufferPool) encoding.CodecV2 { return codec{pool} }

type codec struct{ pool mem.BufferPool }

func (codec) Name() string { return "proto" }

func messageOf(v any) (proto.Message, error) {
	switch m := v.(type) {
	case proto.Message:
		return m, nil
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(m), nil
	}
	return nil, fmt.Errorf("grpcpool: %T is not a protobuf message", v)
}

// Encoded is a message already in protobuf's wire form, which a handler
// may answer with in place of the message: Marshal sends it as it is. A
// server that keeps the encodings of what it answers over and over (the
// lists the kubelet polls every second) so encodes nothing twice. It must
// not be modified once returned.
type Encoded []byte

// Marshal encodes v; a message large enough to be worth pooling goes into a
// buffer of the pool, which gRPC returns to it once the message is sent.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(Encoded); ok {
		// A SliceBuffer's Free does nothing: the bytes stay the caller's.
		return mem.BufferSlice{mem.SliceBuffer(e)}, nil
	}
	m, err := messageOf(v)
	if err != nil {
		return nil, err
	}
	size := proto.Size(m)
	// The size was just computed, so the encoder may use the sizes it
	// cached on the way.
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := c.pool.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		c.pool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, c.pool)}, nil
}

// Unmarshal decodes data into v. A message that arrived in several frames
// is gathered into one buffer of the pool first.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, err := messageOf(v)
	if err != nil {
		return err
	}
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}

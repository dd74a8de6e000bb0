// Package grpcpool holds the buffer pool hulld's gRPC server and the client
// library encode and decode messages with.
//
// gRPC's default pool has tiers of 256 B, 4 KiB, 16 KiB, 32 KiB and 1 MiB,
// and zeroes a buffer's whole capacity when it hands it out: a content Read
// reply of a 32 KiB blob (32 KiB and a few bytes) takes a 1 MiB buffer and
// clears all of it, which was a quarter of hulld's CPU with 16 clients
// reading images. Here every power of two from 256 B to 1 MiB is a tier, so
// no message clears more than twice its own size; buffers are still zeroed,
// as gRPC's are.
package grpcpool

import (
	"fmt"

	"google.golang.org/grpc/mem"
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

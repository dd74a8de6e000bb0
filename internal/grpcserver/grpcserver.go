// Package grpcserver holds the transport settings of hulld's gRPC server,
// so that the benchmarks' floor servers run on exactly the transport hulld
// does and a change to it reaches both.
package grpcserver

import (
	"runtime"

	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"

	"github.com/hullrt/hull/internal/grpcpool"
)

// Options are the server options of hulld's transport, with messages up to
// maxRecv and maxSend bytes; hulld adds its interceptors.
func Options(maxRecv, maxSend int) []grpc.ServerOption {
	pool := grpcpool.New()
	return []grpc.ServerOption{
		// Calls run on a pool of goroutines instead of a new one each,
		// which saves the stack growth every small call paid for.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.MaxRecvMsgSize(maxRecv),
		grpc.MaxSendMsgSize(maxSend),
		// Fixed flow-control windows turn off gRPC's bandwidth-delay
		// estimation, which pings the client after nearly every call on an
		// idle-ish connection: two frames and two wake-ups more per small
		// call on each side. A local socket needs no estimate.
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(4 << 20),
		// Buffers sized to the message, not to gRPC's coarse tiers.
		experimental.BufferPool(pool),
		grpc.ForceServerCodecV2(grpcpool.Codec(pool)),
	}
}

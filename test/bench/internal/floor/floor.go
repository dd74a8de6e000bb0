// Package floor serves the benchmarks' floor servers (grpcfloor,
// transferfloor): gRPC on a unix socket with hulld's transport settings
// and message limits, less its interceptors, which are hull's work and not
// the transport's.
package floor

import (
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"

	"github.com/hullrt/hull/config"
	"github.com/hullrt/hull/internal/grpcserver"
)

// Serve serves what register registers on the unix socket at path until
// SIGTERM or an interrupt; opts come after hulld's settings, so they may
// add to them (a handler of unknown services, a codec).
func Serve(path string, register func(*grpc.Server), opts ...grpc.ServerOption) error {
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(append(grpcserver.Options(config.DefaultMaxMessageSize, config.DefaultMaxMessageSize), opts...)...)
	register(srv)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sigs
		srv.Stop()
	}()
	return srv.Serve(l)
}

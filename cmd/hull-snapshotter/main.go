// Command hull-snapshotter serves one of hull's snapshotters (native or
// overlayfs) over containerd's snapshots gRPC API on a unix socket, as an
// out-of-process snapshotter that hulld (or containerd) uses through
// [proxy_plugins]. It is the reference for writing one.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/core/snapshots/native"
	"github.com/hullrt/hull/core/snapshots/overlay"
	snapshotsservice "github.com/hullrt/hull/plugins/services/snapshots"
)

// single serves one backend whatever snapshotter name a request gives.
type single struct{ s snapshots.Snapshotter }

func (o single) Snapshotter(string) (snapshots.Snapshotter, error) { return o.s, nil }

func main() {
	root := flag.String("root", "/var/lib/hull-snapshotter", "directory of the snapshots")
	address := flag.String("address", "/run/hull-snapshotter/snapshotter.sock", "unix socket to serve on")
	kind := flag.String("type", "native", "snapshotter: native or overlayfs")
	flag.Parse()
	if err := run(*root, *address, *kind); err != nil {
		fmt.Fprintln(os.Stderr, "hull-snapshotter:", err)
		os.Exit(1)
	}
}

func run(root, address, kind string) error {
	var (
		sn  snapshots.Snapshotter
		err error
	)
	switch kind {
	case "native":
		sn, err = native.New(root)
	case "overlayfs":
		sn, err = overlay.New(root)
	default:
		return fmt.Errorf("unknown --type %q: use native or overlayfs", kind)
	}
	if err != nil {
		return err
	}
	defer sn.Close()
	if err := os.MkdirAll(filepath.Dir(address), 0o711); err != nil {
		return err
	}
	os.Remove(address)
	lis, err := net.Listen("unix", address)
	if err != nil {
		return err
	}
	if err := os.Chmod(address, 0o600); err != nil {
		return err
	}
	srv := grpc.NewServer()
	snapshotsservice.NewSnapshotsServer(single{sn}).RegisterGRPC(srv)
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); srv.GracefulStop() }()
	fmt.Fprintf(os.Stderr, "hull-snapshotter: serving %s snapshots of %s on %s\n", kind, root, address)
	return srv.Serve(lis)
}

// Package client is the Go library for talking to hulld over containerd's v1
// gRPC API. It speaks the wire protocol of containerd's own client (the
// namespace travels in the "containerd-namespace" header, a lease in
// "containerd-lease"), so it works against containerd as well, and it hands
// back hull's core interfaces (content.Store, images.Store, leases.Manager,
// namespaces.Store, the event roles) so that code written against the core
// runs unchanged on top of a remote daemon.
//
// Errors come back as errdefs classes: errdefs.IsNotFound(err) and friends
// work on anything a method of this package returns.
package client

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/core/leases"
	"github.com/hullrt/hull/core/namespaces"
	"github.com/hullrt/hull/core/remotes/registry"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/grpcpool"
	"github.com/hullrt/hull/internal/proxy"
)

// maxMsgSize matches containerd's client so that large listings (many
// images, many content infos) fit in one message either way.
const maxMsgSize = 16 << 20

// Client is a connection to hulld. It is safe for concurrent use; every
// service it hands out shares the one connection.
type Client struct {
	// conn is the daemon's socket; nil for a client over in-process
	// services.
	conn           *grpc.ClientConn
	services       Services
	version        versionClient
	defaultNS      string
	address        string
	defaultRuntime string
	// reach lets calls wait for a daemon that is down; nil for a client
	// over in-process services.
	reach *reach
	// transports are the registry clients of this client's pulls and
	// pushes, shared among them.
	transports *registry.Transports
}

type options struct {
	defaultNS         string
	defaultRuntime    string
	timeout           time.Duration
	connectTimeout    time.Duration
	connectTimeoutSet bool
	connectWait       func(ConnectWait)
	dialOpts          []grpc.DialOption
}

// Opt configures New.
type Opt func(*options)

// WithDefaultNamespace sets the namespace used by calls whose context carries
// none. Without it such calls fail with FailedPrecondition, as the daemon
// requires a namespace for namespaced objects.
func WithDefaultNamespace(ns string) Opt {
	return func(o *options) { o.defaultNS = ns }
}

// WithTimeout makes New wait up to d for the connection to be ready, so that
// a missing or dead daemon is reported by New rather than by the first call.
// Zero (the default) connects lazily.
func WithTimeout(d time.Duration) Opt {
	return func(o *options) { o.timeout = d }
}

// WithDialOpts adds gRPC dial options after the client's own, so they can
// override them (extra interceptors, message sizes, ...).
func WithDialOpts(opts ...grpc.DialOption) Opt {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// New connects to the daemon listening on the unix socket address (a path,
// optionally prefixed with "unix://").
//
// While the socket refuses connections (hulld is down or restarting),
// calls wait for it, up to DefaultConnectTimeout or WithConnectTimeout, and
// then fail with an *UnreachableError naming the socket; WithConnectWait
// tells about such waits as they happen.
func New(address string, opts ...Opt) (*Client, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.defaultNS != "" {
		if err := namespaces.Validate(o.defaultNS); err != nil {
			return nil, err
		}
	}
	path := strings.TrimPrefix(address, "unix://")
	if path == "" {
		return nil, fmt.Errorf("daemon address must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	// gRPC's unix resolver wants an absolute path after "unix://".
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if !o.connectTimeoutSet {
		o.connectTimeout = DefaultConnectTimeout
	}
	c := &Client{defaultNS: o.defaultNS, address: path, defaultRuntime: o.defaultRuntime,
		reach:      &reach{address: path, timeout: o.connectTimeout, notify: o.connectWait},
		transports: registry.NewTransports()}
	if c.defaultRuntime == "" {
		c.defaultRuntime = DefaultRuntime
	}
	pool := grpcpool.New()
	dialOpts := append(c.reach.dialOpts(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Buffers sized to the message, not to gRPC's coarse tiers.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize), grpc.ForceCodecV2(grpcpool.Codec(pool))),
		experimental.WithBufferPool(pool),
		grpc.WithChainUnaryInterceptor(c.unaryInterceptor),
		grpc.WithChainStreamInterceptor(c.streamInterceptor),
	)
	dialOpts = append(dialOpts, o.dialOpts...)
	conn, err := grpc.NewClient("unix://"+path, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", path, err)
	}
	c.conn = conn
	c.services = remoteServices(conn)
	c.version = versionapi.NewVersionClient(conn)
	if o.timeout > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		ready := c.ready(ctx)
		cancel()
		if !ready {
			conn.Close()
			return nil, &UnreachableError{Address: path, Reason: c.reach.reason(nil), Waited: o.timeout}
		}
	}
	return c, nil
}

// Close closes the connection; services obtained from the client stop
// working. A client over in-process services has nothing to close.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// Conn returns the underlying gRPC connection, for services this package
// does not wrap; nil for a client over in-process services. Calls on it get
// the namespace and lease headers and errdefs errors like the client's own.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Address is the socket path the client connects to.
func (c *Client) Address() string { return c.address }

// DefaultNamespace is the namespace used when a context carries none; empty
// if the client has no default.
func (c *Client) DefaultNamespace() string { return c.defaultNS }

// WithNamespace returns a context whose calls act in namespace ns. It is
// namespaces.WithNamespace, re-exported so that simple users need import
// only this package.
func WithNamespace(ctx context.Context, ns string) context.Context {
	return namespaces.WithNamespace(ctx, ns)
}

// namespace returns the namespace a call with ctx acts in.
func (c *Client) namespace(ctx context.Context) (string, bool) {
	if ns, ok := namespaces.Namespace(ctx); ok {
		return ns, true
	}
	return c.defaultNS, c.defaultNS != ""
}

// outgoing puts the namespace and lease of ctx into its gRPC metadata, where
// the daemon (or containerd) looks for them.
func (c *Client) outgoing(ctx context.Context) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	if ns, ok := c.namespace(ctx); ok {
		md.Set(namespaces.GRPCHeader, ns)
	}
	if id, ok := leases.FromContext(ctx); ok {
		md.Set(leases.GRPCHeader, id)
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// unaryInterceptor adds the headers, waits for a daemon that is down (see
// New) and maps the error of every unary call.
func (c *Client) unaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ctx = c.outgoing(ctx)
	err := invoker(ctx, method, req, reply, cc, opts...)
	if notConnected(err) {
		err = c.await(ctx, err, func() error { return invoker(ctx, method, req, reply, cc, opts...) })
	}
	return errgrpc.ToNative(err)
}

// streamInterceptor does the same for streams, whose errors come later,
// message by message.
func (c *Client) streamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	ctx = c.outgoing(ctx)
	s, err := streamer(ctx, desc, cc, method, opts...)
	if notConnected(err) {
		err = c.await(ctx, err, func() error {
			s, err = streamer(ctx, desc, cc, method, opts...)
			return err
		})
	}
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	return proxy.NativeStream{ClientStream: s}, nil
}

// Version is the daemon's version.
type Version struct {
	Version  string
	Revision string
}

// Version asks the daemon for its version.
func (c *Client) Version(ctx context.Context) (Version, error) {
	resp, err := c.version.Version(ctx, &emptypb.Empty{})
	if err != nil {
		return Version{}, err
	}
	return Version{Version: resp.Version, Revision: resp.Revision}, nil
}

// ServerInfo identifies the daemon process.
type ServerInfo struct {
	// UUID identifies the daemon's state; it survives restarts.
	UUID string
	// Pid is the daemon's process ID and Pidns the inode of its PID
	// namespace, which together tell whether it shares ours.
	Pid   uint64
	Pidns uint64
}

// Server asks the daemon who it is.
func (c *Client) Server(ctx context.Context) (ServerInfo, error) {
	resp, err := c.services.Introspection.Server(ctx, &emptypb.Empty{})
	if err != nil {
		return ServerInfo{}, err
	}
	return ServerInfo{UUID: resp.UUID, Pid: resp.Pid, Pidns: resp.Pidns}, nil
}

// PluginInfo describes one of the daemon's plugins.
type PluginInfo struct {
	Type     string
	ID       string
	Requires []string
	// Platforms are "os/arch[/variant]" strings, for plugins tied to
	// platforms.
	Platforms    []string
	Exports      map[string]string
	Capabilities []string
	// InitErr is why the plugin did not start; empty if it runs. A plugin
	// that chose not to run says so with "skip plugin" in it.
	InitErr string
}

// Skipped reports whether the plugin chose not to run, as opposed to having
// failed; containerd and ctr tell them apart by this message.
func (p PluginInfo) Skipped() bool {
	return p.InitErr != "" && strings.Contains(p.InitErr, "skip plugin")
}

// Plugins lists the daemon's plugins matching any of filters (fields "type",
// "id", "capabilities", "exports.<key>"; none lists all).
func (c *Client) Plugins(ctx context.Context, filters ...string) ([]PluginInfo, error) {
	resp, err := c.services.Introspection.Plugins(ctx, &introspectionapi.PluginsRequest{Filters: filters})
	if err != nil {
		return nil, err
	}
	out := make([]PluginInfo, 0, len(resp.Plugins))
	for _, p := range resp.Plugins {
		pi := PluginInfo{
			Type: p.Type, ID: p.ID, Requires: p.Requires,
			Exports: p.Exports, Capabilities: p.Capabilities,
		}
		for _, pl := range p.Platforms {
			pi.Platforms = append(pi.Platforms, platforms.Format(ocispec.Platform{OS: pl.OS, Architecture: pl.Architecture, Variant: pl.Variant}))
		}
		if p.InitErr != nil {
			pi.InitErr = p.InitErr.Message
			if pi.InitErr == "" {
				pi.InitErr = fmt.Sprintf("init failed with code %d", p.InitErr.Code)
			}
		}
		out = append(out, pi)
	}
	return out, nil
}

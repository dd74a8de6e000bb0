// Package daemon runs hulld: it turns a loaded configuration into running
// plugins, serves their gRPC services on the unix socket, and handles the
// process's signals. cmd/hulld only parses flags and calls Run.
package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hullrt/hull/config"
	"github.com/hullrt/hull/core/events"
	"github.com/hullrt/hull/internal/grpcserver"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/builtin"
	"github.com/hullrt/hull/plugins/cri"
	"github.com/hullrt/hull/plugins/proxy"
	"github.com/hullrt/hull/plugins/services"
	"github.com/hullrt/hull/plugins/services/containers"
	"github.com/hullrt/hull/plugins/services/content"
	"github.com/hullrt/hull/plugins/services/diff"
	eventsservice "github.com/hullrt/hull/plugins/services/events"
	"github.com/hullrt/hull/plugins/services/healthcheck"
	"github.com/hullrt/hull/plugins/services/images"
	"github.com/hullrt/hull/plugins/services/introspection"
	"github.com/hullrt/hull/plugins/services/leases"
	"github.com/hullrt/hull/plugins/services/mounts"
	"github.com/hullrt/hull/plugins/services/namespaces"
	"github.com/hullrt/hull/plugins/services/sandboxes"
	"github.com/hullrt/hull/plugins/services/snapshots"
	streamingservice "github.com/hullrt/hull/plugins/services/streaming"
	"github.com/hullrt/hull/plugins/services/tasks"
	transferservice "github.com/hullrt/hull/plugins/services/transfer"
	"github.com/hullrt/hull/plugins/services/version"
)

// Registry returns a registry holding every plugin hulld has.
func Registry() *plugin.Registry {
	r := &plugin.Registry{}
	builtin.Register(r)
	for _, register := range []func(*plugin.Registry){
		namespaces.Register, content.Register, images.Register, containers.Register,
		leases.Register, snapshots.Register, diff.Register, tasks.Register,
		eventsservice.Register, introspection.Register, version.Register, healthcheck.Register,
		cri.Register,
		sandboxes.Register,
		streamingservice.Register, transferservice.Register,
		mounts.Register,
	} {
		register(r)
	}
	return r
}

// PluginSections lists every registered plugin with its default config (nil
// for plugins without one), for the config package's rendering, validation
// and reference.
func PluginSections(r *plugin.Registry) []config.PluginSection {
	var out []config.PluginSection
	for _, reg := range r.Graph(nil) {
		out = append(out, config.PluginSection{URI: reg.URI(), Config: reg.Config})
	}
	return out
}

// Daemon is a running hulld.
type Daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	plugins *plugin.Set
	server  *grpc.Server
	lis     net.Listener
	// activated are the sockets systemd passed by path (socket
	// activation), taken before any check of the addresses.
	activated map[string]net.Listener
	// tcp serves the API on grpc.tcp_address with its own TLS options.
	tcp    *grpc.Server
	tcpLis net.Listener
	// ttrpc serves shims' calls back (events) on <address>.ttrpc.
	ttrpc       *ttrpc.Server
	ttrpcLis    net.Listener
	stopDebug   func()
	stopMetrics func()
	stopDump    func()
	lock        *os.File
	closers     []io.Closer
}

// New checks the configuration, prepares the directories, takes the root
// lock, initialises the plugins and opens the sockets. Serve then serves
// them. A plugin that fails while others need it, or that is in
// required_plugins, makes New fail with that plugin's error.
func New(ctx context.Context, cfg *config.Config, reg *plugin.Registry, log *slog.Logger) (_ *Daemon, retErr error) {
	// Before anything starts: a value that would fail a plugin fails
	// here, with its file and line, as `hulld config check` reports it.
	if err := cfg.Check(PluginSections(reg)); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, plugins: &plugin.Set{}}
	defer func() {
		if retErr != nil {
			d.close()
		}
	}()
	if err := os.MkdirAll(cfg.Root, 0o711); err != nil {
		return nil, fmt.Errorf("create root %s: %w", cfg.Root, err)
	}
	if err := os.MkdirAll(cfg.State, 0o711); err != nil {
		return nil, fmt.Errorf("create state %s: %w", cfg.State, err)
	}
	// Directories made by an earlier, laxer run are tightened too.
	for _, dir := range []string{cfg.Root, cfg.State} {
		if err := os.Chmod(dir, 0o711); err != nil {
			return nil, err
		}
	}
	if cfg.Cgroup.Path != "" {
		// Said at every start, so that nobody relies on it silently.
		log.Warn("cgroup.path is not supported yet: hulld stays in the cgroup it was started in", "path", cfg.Cgroup.Path)
	}
	// Sockets systemd made and passed are hulld's to serve; the kernel
	// queues connections on them already, so they look taken.
	activated, err := socketActivation(cfg.GRPC.Address, cfg.TTRPCAddress())
	if err != nil {
		return nil, err
	}
	d.activated = activated
	// Before anything of the root is touched: a daemon already serving
	// this address (with another root) keeps it, and this one stops.
	for _, path := range []string{cfg.GRPC.Address, cfg.TTRPCAddress()} {
		if d.activated[path] != nil {
			continue
		}
		if err := socketFree(path); err != nil {
			return nil, err
		}
	}
	lock, err := lockRoot(cfg.Root)
	if err != nil {
		return nil, err
	}
	d.lock = lock
	proxy.Register(reg, cfg.ProxyPlugins)
	if err := d.initPlugins(ctx, reg); err != nil {
		return nil, err
	}
	if err := d.listen(); err != nil {
		return nil, err
	}
	if err := d.writeEffectiveConfig(reg); err != nil {
		log.Warn("write effective config for debug dumps", "error", err)
	}
	d.dumpOnSignal()
	return d, nil
}

func (d *Daemon) effectiveConfigPath() string {
	return filepath.Join(d.cfg.State, "hulld.effective.toml")
}

// writeEffectiveConfig records the configuration in effect, so that a
// debug dump (hullctl debug dump) has it without knowing the flags.
func (d *Daemon) writeEffectiveConfig(reg *plugin.Registry) error {
	var buf bytes.Buffer
	if err := config.Render(&buf, d.cfg, PluginSections(reg)); err != nil {
		return err
	}
	return os.WriteFile(d.effectiveConfigPath(), buf.Bytes(), 0o600)
}

// shimLister is what the runtime plugin offers for debug dumps.
type shimLister interface {
	ShimPIDs(ctx context.Context) map[string]uint32
}

// recentEvents is what the event plugin offers for debug dumps.
type recentEvents interface {
	Recent() []*events.Envelope
}

// dumpOnSignal adds to the goroutine dump that SIGUSR1 triggers (see
// DumpStacksOnSignal): the recent events go to
// <state>/hulld.<pid>.events.<time>.log, and the signal is passed on to
// every shim, so that one signal to hulld dumps the daemon and all shims.
func (d *Daemon) dumpOnSignal() {
	var shims []shimLister
	for _, inst := range d.plugins.GetByType(plugin.RuntimePluginV2) {
		if l, ok := inst.(shimLister); ok {
			shims = append(shims, l)
		}
	}
	var recent []recentEvents
	for _, inst := range d.plugins.GetByType(plugin.EventPlugin) {
		if r, ok := inst.(recentEvents); ok {
			recent = append(recent, r)
		}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGUSR1)
	done := make(chan struct{})
	d.stopDump = func() { signal.Stop(ch); close(done) }
	go func() {
		for {
			select {
			case <-done:
				return
			case <-ch:
				for _, r := range recent {
					path, err := writeEvents(d.cfg.State, r.Recent())
					if err != nil {
						d.log.Warn("write recent events", "error", err)
					} else {
						d.log.Info("recent events written", "path", path)
					}
				}
				for _, l := range shims {
					for task, pid := range l.ShimPIDs(context.Background()) {
						if err := unix.Kill(int(pid), unix.SIGUSR1); err != nil {
							d.log.Warn("signal shim for a goroutine dump", "task", task, "pid", pid, "error", err)
						}
					}
				}
			}
		}
	}()
}

// writeEvents writes envelopes as JSON lines, decoding the events that
// hulld knows the types of.
func writeEvents(state string, envs []*events.Envelope) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, env := range envs {
		line := struct {
			Timestamp time.Time       `json:"timestamp"`
			Namespace string          `json:"namespace"`
			Topic     string          `json:"topic"`
			Type      string          `json:"type,omitempty"`
			Event     json.RawMessage `json:"event,omitempty"`
		}{Timestamp: env.Timestamp, Namespace: env.Namespace, Topic: env.Topic}
		if env.Event != nil {
			line.Type = env.Event.GetTypeUrl()
			if v, err := typeurl.UnmarshalAny(env.Event); err == nil {
				if m, ok := v.(proto.Message); ok {
					if data, err := protojson.Marshal(m); err == nil {
						line.Event = data
					}
				}
			}
		}
		if err := enc.Encode(line); err != nil {
			return "", err
		}
	}
	path := filepath.Join(state, fmt.Sprintf("hulld.%d.events.%s.log", os.Getpid(), time.Now().UTC().Format("20060102T150405.000000000Z")))
	return path, os.WriteFile(path, buf.Bytes(), 0o600)
}

// lockRoot takes an exclusive lock on <root>/hulld.lock so that two daemons
// never share a root; the lock dies with the process.
// lockHolderAlive reports whether the pid recorded in the lock file is a
// live process.
func lockHolderAlive(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return false
	}
	return unix.Kill(pid, 0) == nil
}

func lockRoot(root string) (*os.File, error) {
	path := filepath.Join(root, "hulld.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	// A daemon killed while it was starting a process leaves the lock to
	// the child until the child's exec closes it (the file is close-on-
	// exec): a moment, during which the holder's pid is gone. Wait that
	// out rather than refuse a restart.
	for deadline := time.Now().Add(5 * time.Second); err != nil && !lockHolderAlive(path) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		holder := strings.TrimSpace(string(pid))
		if holder == "" {
			holder = "unknown"
		}
		return nil, fmt.Errorf("root %s is in use by another hulld (pid %s, lock %s): %w", root, holder, path, errdefs.ErrUnavailable)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}

func (d *Daemon) initPlugins(ctx context.Context, reg *plugin.Registry) error {
	disabled := map[string]bool{}
	for _, uri := range d.cfg.DisabledPlugins {
		disabled[uri] = true
	}
	required := map[string]bool{}
	for _, uri := range d.cfg.RequiredPlugins {
		required[uri] = true
	}
	props := map[string]string{
		"grpc.address": d.cfg.GRPC.Address, "ttrpc.address": d.ttrpcAddress(),
		"root": d.cfg.Root, "state": d.cfg.State, "config.effective": d.effectiveConfigPath(),
	}
	regs := reg.Graph(func(r *plugin.Registration) bool { return disabled[r.URI()] })
	needed := newNeeds(regs)
	for _, r := range regs {
		uri := r.URI()
		var cfg any
		if r.Config != nil {
			// A deep copy of the default per run, so defaults stay intact.
			// Unknown keys were reported by Validate when the file loaded.
			cfg = config.CopyConfig(r.Config)
			if _, err := d.cfg.DecodePlugin(uri, cfg); err != nil {
				return fmt.Errorf("config of plugin %s: %w", uri, err)
			}
		}
		ic := &plugin.InitContext{
			Context: ctx, Root: filepath.Join(d.cfg.Root, uri), State: filepath.Join(d.cfg.State, uri),
			Properties: props, Config: cfg, Log: d.log.With("plugin", uri),
		}
		start := time.Now()
		p := d.plugins.Init(r, ic)
		switch {
		case p.Err == nil:
			d.log.Debug("plugin loaded", "plugin", uri, "duration", time.Since(start))
			if c, ok := p.Instance.(io.Closer); ok {
				d.closers = append(d.closers, c)
			}
		case errors.Is(p.Err, plugin.ErrSkip):
			if required[uri] {
				return fmt.Errorf("required plugin %s skipped itself: %w", uri, p.Err)
			}
			d.log.Info("plugin skipped", "plugin", uri, "reason", p.Err)
		default:
			// Stop at the first failure that matters: what would
			// follow is its cascade, and hides the cause.
			if err := needed.fatal(p, required); err != nil {
				return err
			}
			d.log.Warn("plugin failed to load", "plugin", uri, "error", p.Err)
		}
		delete(required, uri)
	}
	for _, uri := range d.cfg.RequiredPlugins {
		if required[uri] {
			return missingRequired(uri)
		}
	}
	return nil
}

func (d *Daemon) listen() error {
	g := d.cfg.GRPC
	metrics, stopMetrics, err := d.serveMetrics()
	if err != nil {
		return err
	}
	d.stopMetrics = stopMetrics
	calls := newCalls(d.log, metrics)
	serverOpts := append(grpcserver.Options(g.MaxRecvMsgSize, g.MaxSendMsgSize),
		grpc.UnaryInterceptor(calls.unary()),
		grpc.StreamInterceptor(calls.stream()))
	d.server = grpc.NewServer(serverOpts...)
	register := func(srv *grpc.Server) {
		for _, inst := range d.plugins.GetByType(plugin.GRPCPlugin) {
			if svc, ok := inst.(services.GRPCService); ok {
				svc.RegisterGRPC(srv)
			}
		}
	}
	register(d.server)
	if d.lis = d.activated[g.Address]; d.lis == nil {
		if d.lis, err = listenUnix(g.Address, g.UID, g.GID); err != nil {
			return err
		}
	}
	if err := d.listenTTRPC(); err != nil {
		return err
	}
	tcpLis, tcpOpts, err := d.tcpListener()
	if err != nil {
		return err
	}
	if tcpLis != nil {
		d.tcpLis = tcpLis
		d.tcp = grpc.NewServer(append(tcpOpts, serverOpts...)...)
		register(d.tcp)
	}
	if d.stopDebug, err = d.serveDebug(); err != nil {
		return err
	}
	return nil
}

func (d *Daemon) ttrpcAddress() string { return d.cfg.TTRPCAddress() }

// listenTTRPC serves the ttrpc plugins on the socket shims are given as
// TTRPC_ADDRESS. Only root may connect: what arrives there is trusted as
// coming from a shim.
func (d *Daemon) listenTTRPC() error {
	srv, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	for _, inst := range d.plugins.GetByType(plugin.TTRPCPlugin) {
		if svc, ok := inst.(services.TTRPCService); ok {
			if err := svc.RegisterTTRPC(srv); err != nil {
				return err
			}
		}
	}
	if lis := d.activated[d.ttrpcAddress()]; lis != nil {
		d.ttrpc, d.ttrpcLis = srv, lis
		return nil
	}
	lis, err := listenUnix(d.ttrpcAddress(), 0, 0)
	if err != nil {
		return err
	}
	if err := os.Chmod(d.ttrpcAddress(), 0o600); err != nil {
		lis.Close()
		return err
	}
	d.ttrpc, d.ttrpcLis = srv, lis
	return nil
}

// socketActivation returns the listening sockets systemd passed (socket
// activation, sd_listen_fds(3)) by path: the gRPC socket and, if the unit
// has it, the ttrpc one. hulld then serves them as they are: systemd made
// them, owns their mode and removes them, and clients that connect before
// hulld is ready wait in the queue instead of failing. A passed socket
// that is neither address is a unit that disagrees with the config: an
// error, not a socket silently left unserved.
func socketActivation(addresses ...string) (map[string]net.Listener, error) {
	// The variables are hulld's alone: Listeners unsets them, so no shim
	// or runc sees them.
	lis, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("sockets passed by systemd: %w", err)
	}
	out := map[string]net.Listener{}
	for _, l := range lis {
		if l == nil {
			continue // not a socket hulld can serve (a FIFO, say)
		}
		addr := l.Addr().String()
		if l.Addr().Network() != "unix" || !slices.Contains(addresses, addr) {
			for _, other := range lis {
				if other != nil {
					other.Close()
				}
			}
			return nil, fmt.Errorf("systemd passed the socket %s %q, which is none of hulld's (%s): make the unit's ListenStream= match grpc.address: %w",
				l.Addr().Network(), addr, strings.Join(addresses, ", "), errdefs.ErrInvalidArgument)
		}
		out[addr] = l
	}
	return out, nil
}

// listenUnix creates the socket at path, mode 0660 owned by uid:gid, in a
// directory that other users may traverse but not list.
func listenUnix(path string, uid, gid int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("create socket directory for %s: %w", path, err)
	}
	if err := socketFree(path); err != nil {
		return nil, err
	}
	// A socket left here is a dead daemon's.
	os.Remove(path)
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The path is removed by removeSocket, and only while it is still
	// this listener's: never a socket another daemon made there since.
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		lis.Close()
		return nil, err
	}
	us := &unixSocket{Listener: lis, path: path, dev: uint64(st.Dev), ino: st.Ino}
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return nil, err
	}
	if err := os.Chown(path, uid, gid); err != nil {
		lis.Close()
		return nil, err
	}
	return us, nil
}

// socketFree checks that no live daemon serves the unix socket at path:
// nothing is there, or a socket nobody answers on (a dead daemon's). A
// second hulld taking over a live daemon's address would leave that one
// running and unreachable.
func socketFree(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("socket path %s exists and is not a socket: %w", path, errdefs.ErrFailedPrecondition)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another daemon is serving on %s: stop it, or give this one another address: %w", path, errdefs.ErrAlreadyExists)
	}
	if errors.Is(err, unix.ECONNREFUSED) {
		return nil
	}
	return fmt.Errorf("socket %s: %v: cannot tell whether another daemon serves it: %w", path, err, errdefs.ErrUnavailable)
}

// unixSocket is a listener on a socket path, with the inode it made there.
type unixSocket struct {
	net.Listener
	path     string
	dev, ino uint64
}

// removeSocket removes the socket lis listens on if its path still names
// it: never a socket another daemon made there since.
func removeSocket(lis net.Listener) {
	us, ok := lis.(*unixSocket)
	if !ok {
		return
	}
	var st unix.Stat_t
	if unix.Lstat(us.path, &st) == nil && st.Ino == us.ino && uint64(st.Dev) == us.dev {
		os.Remove(us.path)
	}
}

// Plugins is the set of plugins the daemon runs, from which code in the same
// process builds a client over the service layer (client.NewInProcess).
func (d *Daemon) Plugins() *plugin.Set { return d.plugins }

// Address is the socket hulld serves on.
func (d *Daemon) Address() string { return d.cfg.GRPC.Address }

// Serve serves until ctx is cancelled, then stops gracefully: it stops
// accepting, lets in-flight calls finish (for at most grace), and closes the
// plugins and the lock.
func (d *Daemon) Serve(ctx context.Context, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- d.server.Serve(d.lis) }()
	go d.ttrpc.Serve(context.Background(), d.ttrpcLis)
	if d.tcp != nil {
		go d.tcp.Serve(d.tcpLis)
		d.log.Info("hulld serving on tcp", "address", d.tcpLis.Addr().String())
	}
	d.log.Info("hulld serving", "address", d.cfg.GRPC.Address, "root", d.cfg.Root, "state", d.cfg.State, "pid", os.Getpid())
	d.ready()
	stopWatchdog := d.startWatchdog()
	var err error
	select {
	case err = <-errc:
		stopWatchdog()
		d.stopping()
	case <-ctx.Done():
		stopWatchdog()
		d.stopping()
		d.log.Info("hulld stopping")
		done := make(chan struct{})
		go func() {
			if d.tcp != nil {
				d.tcp.GracefulStop()
			}
			d.server.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(grace):
			d.log.Warn("in-flight calls did not finish in time; closing them", "grace", grace)
			if d.tcp != nil {
				d.tcp.Stop()
			}
			d.server.Stop()
			<-done
		}
		err = <-errc
		if errors.Is(err, grpc.ErrServerStopped) {
			err = nil
		}
	}
	d.close()
	d.log.Info("hulld stopped")
	return err
}

func (d *Daemon) close() {
	for _, stop := range []*func(){&d.stopDebug, &d.stopMetrics, &d.stopDump} {
		if *stop != nil {
			(*stop)()
			*stop = nil
		}
	}
	if d.tcpLis != nil {
		d.tcpLis.Close() // after Serve stopped this is a harmless second close
	}
	if d.ttrpc != nil {
		d.ttrpc.Close()
		removeSocket(d.ttrpcLis)
		d.ttrpcLis.Close() // when Serve never ran, Close did not know it
	}
	for i := len(d.closers) - 1; i >= 0; i-- {
		if err := d.closers[i].Close(); err != nil {
			d.log.Warn("close plugin", "error", err)
		}
	}
	d.closers = nil
	if d.lis != nil {
		removeSocket(d.lis)
		d.lis.Close()
	}
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
}

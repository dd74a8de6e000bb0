package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/client/cio"
	"github.com/hullrt/hull/core/sandboxes"
	"github.com/hullrt/hull/core/snapshots"
	"github.com/hullrt/hull/cri/cni"
	criconfig "github.com/hullrt/hull/cri/config"
	"github.com/hullrt/hull/cri/netns"
	"github.com/hullrt/hull/cri/spec"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// sandbox is a pod: its pause container, network namespace and files.
type sandbox struct {
	rec    sandboxRecord
	config *runtime.PodSandboxConfig
	// rootDir holds hostname, hosts and resolv.conf; stateDir the shm
	// mount.
	rootDir, stateDir string

	// mu serialises stop and remove of the pod and container creation in
	// it.
	mu sync.Mutex

	stateMu sync.RWMutex
	ready   bool
	pid     uint32
	// netReleased is set once the network is torn down.
	netReleased bool
	// exited is closed when the pause process has exited.
	exited chan struct{}
}

func (sb *sandbox) isReady() bool {
	sb.stateMu.RLock()
	defer sb.stateMu.RUnlock()
	return sb.ready
}

func (sb *sandbox) pausePid() uint32 {
	sb.stateMu.RLock()
	defer sb.stateMu.RUnlock()
	return sb.pid
}

func (sb *sandbox) markExited() {
	sb.stateMu.Lock()
	defer sb.stateMu.Unlock()
	if sb.ready {
		sb.ready = false
	}
	select {
	case <-sb.exited:
	default:
		close(sb.exited)
	}
}

func (sb *sandbox) hostNetwork() bool {
	return sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_NODE
}

func (sb *sandbox) hostIPC() bool {
	return sb.config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() == runtime.NamespaceMode_NODE
}

func (sb *sandbox) shmPath() string {
	if sb.hostIPC() {
		return ""
	}
	return filepath.Join(sb.stateDir, "shm")
}

// sandboxer names what runs hull's pods in the sandbox store, as
// containerd's CRI names its pause-container controller.
const sandboxer = "podsandbox"

// newID returns a random 64-hex-digit id, the form the kubelet expects.
func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// cleanups runs the undo steps of a half-done creation, last first,
// unless disarmed.
type cleanups struct {
	fns []func(context.Context)
}

func (c *cleanups) add(fn func(context.Context)) { c.fns = append(c.fns, fn) }

// mkdirs makes dirs (traversable, not listable) and undoes them with the
// rest.
func (c *cleanups) mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
		c.add(func(context.Context) { os.RemoveAll(d) })
	}
	return nil
}

func (c *cleanups) run(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i](ctx)
	}
	c.fns = nil
}

// reserveName reserves name for id and returns the undo steps of a
// creation, the release of the name among them.
func reserveName(n *names, kind, name, id string) (*cleanups, error) {
	if err := n.reserve(name, id); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	undo := &cleanups{}
	undo.add(func(context.Context) { n.release(name, id) })
	return undo, nil
}

// handler finds a runtime handler; "" is the default one.
func (s *Service) handler(name string) (string, criconfig.RuntimeHandler, error) {
	if name == "" {
		name = s.cfg.Runtime.Containerd.DefaultRuntimeName
	}
	h, ok := s.cfg.Runtime.Containerd.Runtimes[name]
	if !ok {
		return "", h, fmt.Errorf("runtime handler %q is not configured (configured: %s): %w", name, strings.Join(s.cfg.Runtime.HandlerNames(), ", "), errdefs.ErrNotFound)
	}
	return name, h, nil
}

// runtimeOptions turns a handler's options table into the runc shim's
// options; other shims get none.
func runtimeOptions(h criconfig.RuntimeHandler) (any, error) {
	if len(h.Options) == 0 {
		return nil, nil
	}
	o := &options.Options{}
	for k, v := range h.Options {
		switch k {
		case "BinaryName":
			o.BinaryName, _ = v.(string)
		case "Root":
			o.Root, _ = v.(string)
		case "SystemdCgroup":
			o.SystemdCgroup, _ = v.(bool)
		case "NoPivotRoot":
			o.NoPivotRoot, _ = v.(bool)
		case "NoNewKeyring":
			o.NoNewKeyring, _ = v.(bool)
		case "ShimCgroup":
			o.ShimCgroup, _ = v.(string)
		case "CriuImagePath", "CriuWorkPath", "CriuPath", "IoUid", "IoGid", "Type":
			// Accepted: checkpointing and I/O ownership options hull's
			// paths do not use.
		default:
			return nil, fmt.Errorf("runtime option %q is not a runc shim option: %w", k, errdefs.ErrInvalidArgument)
		}
	}
	return o, nil
}

// RunPodSandbox creates and starts a pod: network namespace and CNI, the
// pod's files, then its pause container. Whatever fails undoes what was
// done, so a failed pod leaves no IP, mount or process.
func (s *Service) RunPodSandbox(ctx context.Context, r *runtime.RunPodSandboxRequest) (_ *runtime.RunPodSandboxResponse, retErr error) {
	cfg := r.GetConfig()
	if cfg == nil || cfg.GetMetadata() == nil {
		return nil, fmt.Errorf("pod sandbox config has no metadata: %w", errdefs.ErrInvalidArgument)
	}
	md := cfg.GetMetadata()
	if md.GetName() == "" || md.GetNamespace() == "" || md.GetUid() == "" {
		return nil, fmt.Errorf("pod sandbox metadata needs name, namespace and uid (got name %q, namespace %q, uid %q): %w",
			md.GetName(), md.GetNamespace(), md.GetUid(), errdefs.ErrInvalidArgument)
	}
	handlerName, h, err := s.handler(r.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	rtOpts, err := runtimeOptions(h)
	if err != nil {
		return nil, fmt.Errorf("runtime handler %q: %w", handlerName, err)
	}
	if err := knownSysctls(cfg.GetLinux().GetSysctls()); err != nil {
		return nil, err
	}
	ports := portMappings(cfg.GetPortMappings())
	if err := cni.ValidatePortMappings(ports); err != nil {
		return nil, err
	}
	id := newID()
	name := sandboxName(md)
	undo, err := reserveName(s.sandboxNames, "pod sandbox", name, id)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			undo.run(ctx)
		}
	}()
	if err := s.hostPortsFree(id, ports); err != nil {
		return nil, err
	}
	began := time.Now()
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	snapOpts, err := usernsSnapshotOpts(nsOpts)
	if err != nil {
		return nil, err
	}
	// Only a pod in a user namespace of its own gets id mapping labels.
	inUserns := snapOpts != nil
	ctx = s.nsCtx(ctx)
	sandboxImage := s.cfg.Images.PinnedImages["sandbox"]
	img, err := s.images.EnsurePulled(ctx, sandboxImage, nil)
	if err != nil {
		return nil, fmt.Errorf("sandbox image %q: %w", sandboxImage, err)
	}
	sb := &sandbox{
		config:   cfg,
		rootDir:  filepath.Join(s.cfg.Root, "sandboxes", id),
		stateDir: filepath.Join(s.cfg.State, "sandboxes", id),
		exited:   make(chan struct{}),
	}
	sb.rec = sandboxRecord{ID: id, Name: name, RuntimeHandler: handlerName, RuntimeType: h.RuntimeType,
		CreatedAt: time.Now().UnixNano(), Image: img.ID, CgroupParent: cfg.GetLinux().GetCgroupParent()}
	if sb.rec.Config, err = marshalConfig(cfg); err != nil {
		return nil, err
	}
	if err := undo.mkdirs(sb.rootDir, sb.stateDir); err != nil {
		return nil, err
	}
	// The network is set up while the pause container is made, as
	// neither needs the other until the pause process starts. A pod in a
	// user namespace is the exception: its network namespace must belong
	// to that user namespace, so the pause container makes it, and CNI
	// runs once it exists.
	var podNet *pendingNetwork
	specNetNS := ""
	if !sb.hostNetwork() {
		if err := s.network.Status(); err != nil {
			return nil, fmt.Errorf("pod network is not ready: %v: %w", err, errdefs.ErrFailedPrecondition)
		}
		dir := filepath.Join(s.cfg.State, "netns")
		var ns *netns.NetNS
		if inUserns {
			ns, err = netns.Reserve(dir)
		} else {
			ns, err = netns.New(dir)
		}
		if err != nil {
			return nil, fmt.Errorf("pod network namespace: %w", err)
		}
		undo.add(func(context.Context) { ns.Remove() })
		sb.rec.NetNSPath = ns.Path()
		if !inUserns {
			specNetNS = ns.Path()
			podNet = s.startNetwork(ctx, sb, ports, undo)
		}
	}
	netStarted := time.Now()
	if err := writePodFiles(sb); err != nil {
		return nil, err
	}
	if shm := sb.shmPath(); shm != "" {
		if err := mountShm(shm); err != nil {
			return nil, err
		}
		undo.add(func(context.Context) { unmountAll(shm) })
	}
	opts, err := spec.SandboxOpts(spec.Sandbox{
		ID: id, Config: cfg, Image: img.Config.Config, NetNSPath: specNetNS, ShmPath: sb.shmPath(), RuntimeHandler: handlerName,
	}, s.specOpts)
	if err != nil {
		return nil, err
	}
	ext, err := extension(recordTypeSandbox, sb.rec)
	if err != nil {
		return nil, err
	}
	snapshotter := s.snapshotter(h)
	specMade := time.Now()
	ctr, err := s.client.NewContainer(ctx, id,
		client.WithContainerSnapshotter(snapshotter),
		client.WithNewSnapshotFromParent(id, img.ChainID.String(), snapOpts...),
		client.WithImageName(img.Name),
		client.WithNewSpec(opts...),
		client.WithRuntime(h.RuntimeType, rtOpts),
		client.WithContainerLabels(sandboxLabels(cfg, id)),
		client.WithContainerExtension(sandboxExtension, ext),
		client.WithSandbox(id),
	)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox %q: pause container: %w", name, err)
	}
	undo.add(func(ctx context.Context) { ctr.Delete(ctx, client.WithSnapshotCleanup) })
	// containerd's Sandbox store holds the pod too, so that containerd 2.x
	// clients (ctr sandboxes ls) list it. Nothing of the pause task needs
	// that record: it is written (a commit to disk) while the task is
	// made, and the pod is ready only once both are done.
	stored := make(chan error, 1)
	go func() {
		_, err := s.client.SandboxStore().Create(ctx, sandboxes.Sandbox{
			ID: id, Labels: sandboxLabels(cfg, id), Runtime: sandboxes.RuntimeInfo{Name: h.RuntimeType},
			Sandboxer: sandboxer, Extensions: map[string]typeurl.Any{sandboxExtension: ext},
		})
		stored <- err
	}()
	var taskOpts []client.NewTaskOpts
	if h.RuntimePath != "" {
		taskOpts = append(taskOpts, client.WithRuntimePath(h.RuntimePath))
	}
	recorded := time.Now()
	task, err := ctr.NewTask(ctx, cio.NullIO, taskOpts...)
	serr := <-stored
	if serr == nil {
		undo.add(func(ctx context.Context) { s.client.SandboxStore().Delete(ctx, id) })
	}
	if err != nil {
		return nil, fmt.Errorf("pod sandbox %q: create pause task: %w", name, err)
	}
	taskMade := time.Now()
	undo.add(func(ctx context.Context) {
		task.Kill(ctx, syscall.SIGKILL)
		task.Delete(ctx, client.WithProcessKill)
	})
	if serr != nil {
		return nil, fmt.Errorf("pod sandbox %q: record in the sandbox store: %w", name, serr)
	}
	if !sb.hostNetwork() && inUserns {
		if err := netns.Load(sb.rec.NetNSPath).PinFrom(int(task.Pid())); err != nil {
			return nil, fmt.Errorf("pod sandbox %q: %w", name, err)
		}
		podNet = s.startNetwork(ctx, sb, ports, undo)
	}
	if podNet != nil {
		if err := podNet.wait(sb); err != nil {
			return nil, err
		}
		if err := writeNetworkState(sb); err != nil {
			return nil, fmt.Errorf("pod sandbox %q: record network: %w", name, err)
		}
	}
	netDone := time.Now()
	if err := task.Start(ctx); err != nil {
		return nil, fmt.Errorf("pod sandbox %q: start pause: %w", name, err)
	}
	s.log.Debug("pod sandbox timings", "id", id, "prepare", netStarted.Sub(began), "files_and_spec", specMade.Sub(netStarted),
		"records", recorded.Sub(specMade), "pause_task", taskMade.Sub(recorded), "network_wait", netDone.Sub(taskMade),
		"start", time.Since(netDone))
	sb.ready, sb.pid = true, task.Pid()
	s.sandboxes.add(id, sb)
	s.hub.sandboxEvent(sb, runtime.ContainerEventType_CONTAINER_CREATED_EVENT, s)
	s.hub.sandboxEvent(sb, runtime.ContainerEventType_CONTAINER_STARTED_EVENT, s)
	return &runtime.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// knownSysctls refuses a sysctl this kernel does not have, which runc
// would only find when the pod is half made. A sysctl under a directory
// hulld cannot see (an interface of the pod's own) is left to runc.
func knownSysctls(sysctls map[string]string) error {
	for k := range sysctls {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(strings.ReplaceAll(k, ".", "/"), "//", "/"))
		if strings.Contains(k, "/") {
			p = filepath.Join("/proc/sys", k)
		}
		if _, err := os.Stat(filepath.Dir(p)); err != nil {
			continue
		}
		if _, err := os.Stat(p); os.IsNotExist(err) {
			return fmt.Errorf("sysctl %q is not known to this kernel: %w", k, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func (s *Service) snapshotter(h criconfig.RuntimeHandler) string {
	if h.Snapshotter != "" {
		return h.Snapshotter
	}
	return s.cfg.Snapshotter
}

// pendingNetwork is a pod's CNI setup running in the background.
type pendingNetwork struct {
	done chan struct{}
	// Set by the setup before done is closed.
	err       error
	ips       []string
	cniResult []byte
}

// wait waits for the setup and records its IPs and result in sb.rec.
func (p *pendingNetwork) wait(sb *sandbox) error {
	<-p.done
	if p.err != nil {
		return p.err
	}
	sb.rec.IPs, sb.rec.CNIResult = p.ips, p.cniResult
	return nil
}

// startNetwork adds the pod's namespace at sb.rec.NetNSPath to the CNI
// networks in the background; wait gives its IPs to sb.rec. The undo steps
// get one that waits for the setup and tears down what it made, so a pod
// that fails meanwhile never leaves an IP behind.
func (s *Service) startNetwork(ctx context.Context, sb *sandbox, ports []cni.PortMapping, undo *cleanups) *pendingNetwork {
	p := &pendingNetwork{done: make(chan struct{})}
	pod := s.cniPod(sb, ports)
	undo.add(func(ctx context.Context) {
		<-p.done
		// A failed setup removed what it made, but a partial one may
		// leave plugin state that only a delete releases.
		s.network.Teardown(ctx, pod)
	})
	go func() {
		defer close(p.done)
		res, err := s.network.Setup(ctx, pod)
		if err != nil {
			if errdefs.IsUnknown(err) {
				// A plugin failed: the network, not the request, is
				// at fault, and the kubelet retries.
				p.err = fmt.Errorf("pod network: %v: %w", err, errdefs.ErrUnavailable)
			} else {
				p.err = fmt.Errorf("pod network: %w", err)
			}
			return
		}
		for _, ip := range res.IPs {
			p.ips = append(p.ips, ip.String())
		}
		if res.Raw != nil {
			if b, err := jsonMarshal(res.Raw); err == nil {
				p.cniResult = b
			}
		}
	}()
	return p
}

// networkState is what CNI gave a pod, kept in its state directory: it
// is known only once the pause container exists (CNI runs meanwhile, or
// after it for a pod in a user namespace), and like the network namespace
// it lasts until the host reboots, so it needs no place in the pod's
// durable record.
type networkState struct {
	IPs       []string        `json:"ips,omitempty"`
	CNIResult json.RawMessage `json:"cniResult,omitempty"`
}

func networkStatePath(sb *sandbox) string { return filepath.Join(sb.stateDir, "network") }

// writeNetworkState replaces the pod's network state file, atomically.
func writeNetworkState(sb *sandbox) error {
	return writeJSONAtomic(networkStatePath(sb), networkState{IPs: sb.rec.IPs, CNIResult: sb.rec.CNIResult})
}

// usernsSnapshotOpts gives the snapshot options that make a root
// filesystem owned by the pod's user namespace; nil for a pod in the
// host's.
func usernsSnapshotOpts(nsOpts *runtime.NamespaceOption) ([]snapshots.Opt, error) {
	labels, err := spec.UsernsSnapshotLabels(nsOpts)
	if err != nil || labels == nil {
		return nil, err
	}
	return []snapshots.Opt{snapshots.WithLabels(labels)}, nil
}

// readNetworkState gives sb.rec the IPs its state file holds, if any.
func readNetworkState(sb *sandbox) error {
	b, err := os.ReadFile(networkStatePath(sb))
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	var st networkState
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	sb.rec.IPs, sb.rec.CNIResult = st.IPs, st.CNIResult
	return nil
}

func (s *Service) cniPod(sb *sandbox, ports []cni.PortMapping) cni.Pod {
	md := sb.config.GetMetadata()
	pod := cni.Pod{
		ID: sb.rec.ID, Name: md.GetName(), Namespace: md.GetNamespace(), UID: md.GetUid(),
		NetNSPath: sb.rec.NetNSPath, PortMappings: ports, CgroupParent: sb.config.GetLinux().GetCgroupParent(),
		Annotations: sb.config.GetAnnotations(),
	}
	if d := sb.config.GetDnsConfig(); d != nil {
		pod.DNS = &cni.DNS{Servers: d.GetServers(), Searches: d.GetSearches(), Options: d.GetOptions()}
	}
	return pod
}

func portMappings(pms []*runtime.PortMapping) []cni.PortMapping {
	out := make([]cni.PortMapping, 0, len(pms))
	for _, p := range pms {
		proto := strings.ToLower(p.GetProtocol().String())
		out = append(out, cni.PortMapping{Protocol: proto, ContainerPort: p.GetContainerPort(), HostPort: p.GetHostPort(), HostIP: p.GetHostIp()})
	}
	return out
}

// hostPortsFree refuses a host port another live pod maps already: CNI's
// portmap would accept it and silently steal the other pod's traffic.
func (s *Service) hostPortsFree(id string, ports []cni.PortMapping) error {
	for _, p := range ports {
		if p.HostPort == 0 {
			continue
		}
		for _, other := range s.sandboxes.list() {
			if other.rec.ID == id || !other.isReady() {
				continue
			}
			for _, q := range portMappings(other.config.GetPortMappings()) {
				if q.HostPort == p.HostPort && q.Protocol == p.Protocol && (q.HostIP == p.HostIP || q.HostIP == "" || p.HostIP == "" || q.HostIP == "0.0.0.0" || p.HostIP == "0.0.0.0") {
					return fmt.Errorf("host port %d/%s is already mapped by pod sandbox %q (%s): %w", p.HostPort, p.Protocol, other.rec.ID, other.rec.Name, errdefs.ErrAlreadyExists)
				}
			}
		}
	}
	return nil
}

func sandboxLabels(cfg *runtime.PodSandboxConfig, id string) map[string]string {
	l := map[string]string{}
	for k, v := range cfg.GetLabels() {
		l[k] = v
	}
	l[kindLabel] = kindSandbox
	l[sandboxIDLabel] = id
	return l
}

// writePodFiles writes the pod's hostname, hosts and resolv.conf, which
// its containers bind-mount.
func writePodFiles(sb *sandbox) error {
	hostname := sb.config.GetHostname()
	if sb.hostNetwork() || hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		if hostname == "" || sb.hostNetwork() {
			hostname = h
		}
	}
	if err := os.WriteFile(filepath.Join(sb.rootDir, "hostname"), []byte(hostname+"\n"), 0o644); err != nil {
		return err
	}
	hosts := []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	if sb.hostNetwork() {
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = b
		}
	}
	if err := os.WriteFile(filepath.Join(sb.rootDir, "hosts"), hosts, 0o644); err != nil {
		return err
	}
	var resolv []byte
	if d := sb.config.GetDnsConfig(); d != nil && (len(d.GetServers()) > 0 || len(d.GetSearches()) > 0 || len(d.GetOptions()) > 0) {
		var b strings.Builder
		if len(d.GetSearches()) > 0 {
			b.WriteString("search " + strings.Join(d.GetSearches(), " ") + "\n")
		}
		for _, srv := range d.GetServers() {
			if net.ParseIP(srv) == nil {
				return fmt.Errorf("dns server %q is not an IP address: %w", srv, errdefs.ErrInvalidArgument)
			}
			b.WriteString("nameserver " + srv + "\n")
		}
		if len(d.GetOptions()) > 0 {
			b.WriteString("options " + strings.Join(d.GetOptions(), " ") + "\n")
		}
		resolv = []byte(b.String())
	} else if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		resolv = b
	}
	return os.WriteFile(filepath.Join(sb.rootDir, "resolv.conf"), resolv, 0o644)
}

func mountShm(path string) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("mount pod shm at %s: %w", path, err)
	}
	return nil
}

// unmountAll unmounts path until nothing is mounted there.
func unmountAll(path string) error {
	for i := 0; i < 16; i++ {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			if err == unix.EINVAL || err == unix.ENOENT {
				return nil
			}
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return nil
}

// Package server is hulld's CRI v1 runtime service: pods (a pause container
// in its own network namespace, networked through CNI) and their
// containers, their status, logs, exec, attach, port forwarding and stats,
// for a kubelet. It runs over the client library on hulld's in-process
// services, in the "k8s.io" namespace, so that hullctl and ctr see the very
// containers the kubelet made.
//
// State: what the kubelet asked for lives in the container records (see
// record.go) and what happened since in small status files, so that a
// restarted hulld rebuilds every pod and container as it was, with the
// exits it missed (see recover.go). Memory holds only indexes of them.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/cri/cni"
	criconfig "github.com/hullrt/hull/cri/config"
	"github.com/hullrt/hull/cri/containerio"
	criimages "github.com/hullrt/hull/cri/images"
	"github.com/hullrt/hull/cri/spec"
	"github.com/hullrt/hull/cri/streaming"
	"github.com/hullrt/hull/internal/version"
)

// Config is what the runtime service is made from.
type Config struct {
	Runtime *criconfig.Runtime
	Images  *criconfig.Images
	Server  *criconfig.Server
	// Root and State are the CRI's own directories under hulld's root and
	// state: pod files (hostname, hosts, resolv.conf) and volumes under
	// Root, FIFOs, shm mounts and network namespaces under State.
	Root, State string
	// Namespace is the containerd namespace of CRI objects ["k8s.io"].
	Namespace string
	// Snapshotter names the snapshotter of container root filesystems.
	Snapshotter string
	// CgroupDriver is "cgroupfs" or "systemd", already decided.
	CgroupDriver string
	// MinOOMScoreAdj clamps containers' oom_score_adj (nil: no clamp).
	MinOOMScoreAdj *int
	// Features of the host that the runtime handlers advertise.
	RecursiveReadOnly, UserNamespaces bool
	Log                               *slog.Logger
}

// Service implements runtime.v1.RuntimeService.
type Service struct {
	runtime.UnimplementedRuntimeServiceServer

	cfg       Config
	log       *slog.Logger
	client    *client.Client
	images    *criimages.Service
	network   *cni.Network
	stream    *streaming.Server
	specOpts  spec.Options
	execDrain time.Duration

	sandboxes      *index[*sandbox]
	containers     *index[*container]
	sandboxNames   *names
	containerNames *names
	hub            *eventHub
	cpu            cpuSamples
	taskLocks      keyedLocks
	// outputBuffers lends every container's output copies their read
	// buffers, only while output is in flight (containerio.Options).
	outputBuffers *sync.Pool

	// ctx lives as long as the service: background work (exit handling)
	// stops when it is cancelled, and wg waits for that work.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// lastContainers and lastSandboxes are the last encoded unfiltered
	// lists, answered again while their items are the same.
	lastContainers, lastSandboxes atomic.Pointer[listEncoding]
}

// New builds the runtime service over c (a client of hulld's in-process
// services), with its images service, recovers the pods and containers a
// previous hulld left, and starts the streaming server.
func New(ctx context.Context, c *client.Client, imgs *criimages.Service, cfg Config) (*Service, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = "k8s.io"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if err := cfg.Runtime.Validate(); err != nil {
		return nil, err
	}
	drain, _ := cfg.Runtime.ExecSyncDrain()
	for _, d := range []string{cfg.Root, cfg.State, filepath.Join(cfg.Root, "sandboxes"), filepath.Join(cfg.Root, "containers"),
		filepath.Join(cfg.State, "sandboxes"), filepath.Join(cfg.State, "containers"), filepath.Join(cfg.State, "netns")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
	}
	network, err := cni.New(cni.Config{
		BinDirs:       cfg.Runtime.CNI.CNIBinDirs(),
		ConfDir:       cfg.Runtime.CNI.ConfDir,
		MaxConfNum:    cfg.Runtime.CNI.MaxConfNum,
		ConfTemplate:  cfg.Runtime.CNI.ConfTemplate,
		SetupSerially: cfg.Runtime.CNI.SetupSerially,
		IPPref:        cfg.Runtime.CNI.IPPref,
		CacheDir:      filepath.Join(cfg.State, "cni-cache"),
	})
	if err != nil {
		return nil, fmt.Errorf("cni: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Service{
		cfg: cfg, log: cfg.Log, client: c, images: imgs, network: network, execDrain: drain,
		sandboxes: newIndex[*sandbox]("pod sandbox"), containers: newIndex[*container]("container"),
		sandboxNames: newNames(), containerNames: newNames(), hub: newEventHub(),
		ctx: sctx, cancel: cancel,
		outputBuffers: containerio.NewBufferPool(),
	}
	s.specOpts = spec.Options{
		CgroupDriver:                       cfg.CgroupDriver,
		MinOOMScoreAdj:                     cfg.MinOOMScoreAdj,
		DisableProcMount:                   cfg.Runtime.DisableProcMount,
		UnsetSeccompProfile:                cfg.Runtime.UnsetSeccompProfile,
		TolerateMissingHugetlb:             cfg.Runtime.TolerateMissingHugetlbController,
		DisableHugetlb:                     cfg.Runtime.DisableHugetlbController,
		DeviceOwnershipFromSecurityContext: cfg.Runtime.DeviceOwnershipFromSecurityContext,
		EnableUnprivilegedPorts:            cfg.Runtime.EnableUnprivilegedPorts,
		EnableUnprivilegedICMP:             cfg.Runtime.EnableUnprivilegedICMP,
		AppArmorEnabled:                    false,
		SELinuxEnabled:                     false,
		IgnoreImageDefinedVolumes:          cfg.Runtime.IgnoreImageDefinedVolumes,
	}
	if s.specOpts.UnsetSeccompProfile == "unconfined" {
		s.specOpts.UnsetSeccompProfile = ""
	}
	// Exits are watched before anything is recovered, so that none that
	// happens in between is missed.
	if err := s.watchExits(); err != nil {
		cancel()
		return nil, err
	}
	if err := s.recover(s.nsCtx(ctx)); err != nil {
		s.Close()
		return nil, fmt.Errorf("recover CRI state: %w", err)
	}
	idle, _ := cfg.Server.IdleTimeout()
	s.stream, err = streaming.New(streaming.Config{
		Address: cfg.Server.StreamServerAddress, Port: cfg.Server.StreamServerPort, IdleTimeout: idle,
		TLS: cfg.Server.EnableTLSStreaming, CertFile: cfg.Server.X509KeyPairStreaming.TLSCertFile, KeyFile: cfg.Server.X509KeyPairStreaming.TLSKeyFile,
	}, streamRuntime{s})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("stream server: %w", err)
	}
	return s, nil
}

// Close stops the streaming server and background work. Pods and
// containers keep running: they belong to their shims.
func (s *Service) Close() error {
	var err error
	if s.stream != nil {
		err = s.stream.Close()
	}
	s.cancel()
	s.wg.Wait()
	s.hub.close()
	return err
}

// nsCtx puts the CRI's namespace into ctx.
func (s *Service) nsCtx(ctx context.Context) context.Context {
	return client.WithNamespace(ctx, s.cfg.Namespace)
}

// Version reports the runtime, as crictl version shows it.
func (s *Service) Version(ctx context.Context, r *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{
		Version:           "0.1.0",
		RuntimeName:       "hull",
		RuntimeVersion:    version.Version,
		RuntimeApiVersion: "v1",
	}, nil
}

// Status reports whether the runtime and the pod network are ready, and
// what each runtime handler supports.
func (s *Service) Status(ctx context.Context, r *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	netReady := &runtime.RuntimeCondition{Type: runtime.NetworkReady, Status: true}
	if err := s.network.Status(); err != nil {
		netReady.Status = false
		netReady.Reason = "NetworkPluginNotReady"
		netReady.Message = "Network plugin returns error: " + err.Error()
	}
	resp := &runtime.StatusResponse{
		Status: &runtime.RuntimeStatus{Conditions: []*runtime.RuntimeCondition{
			{Type: runtime.RuntimeReady, Status: true},
			netReady,
		}},
		Features: &runtime.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	for _, name := range s.cfg.Runtime.HandlerNames() {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtime.RuntimeHandler{
			Name: name,
			Features: &runtime.RuntimeHandlerFeatures{
				RecursiveReadOnlyMounts: s.cfg.RecursiveReadOnly,
				UserNamespaces:          s.cfg.UserNamespaces,
			},
		})
	}
	// The kubelet also asks for the default handler by the empty name.
	resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtime.RuntimeHandler{
		Features: &runtime.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: s.cfg.RecursiveReadOnly, UserNamespaces: s.cfg.UserNamespaces},
	})
	if r.GetVerbose() {
		b, _ := json.Marshal(map[string]any{
			"cgroupDriver": s.cfg.CgroupDriver, "namespace": s.cfg.Namespace, "snapshotter": s.cfg.Snapshotter,
			"rootDir": s.cfg.Root, "stateDir": s.cfg.State,
			"cni": map[string]any{"binDirs": s.cfg.Runtime.CNI.CNIBinDirs(), "confDir": s.cfg.Runtime.CNI.ConfDir},
		})
		resp.Info = map[string]string{"config": string(b)}
	}
	return resp, nil
}

// RuntimeConfig tells the kubelet the cgroup driver, so it does not have to
// be configured twice.
func (s *Service) RuntimeConfig(ctx context.Context, r *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	d := runtime.CgroupDriver_CGROUPFS
	if s.cfg.CgroupDriver == "systemd" {
		d = runtime.CgroupDriver_SYSTEMD
	}
	return &runtime.RuntimeConfigResponse{Linux: &runtime.LinuxRuntimeConfiguration{CgroupDriver: d}}, nil
}

// UpdateRuntimeConfig passes the node's pod CIDR to CNI.
func (s *Service) UpdateRuntimeConfig(ctx context.Context, r *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	cidr := r.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr == "" {
		return &runtime.UpdateRuntimeConfigResponse{}, nil
	}
	var cidrs []string
	for _, c := range splitComma(cidr) {
		cidrs = append(cidrs, c)
	}
	if err := s.network.UpdatePodCIDR(cidrs); err != nil {
		return nil, err
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}

// CheckpointContainer is not supported: hull has no checkpoint/restore of
// containers yet.
func (s *Service) CheckpointContainer(ctx context.Context, r *runtime.CheckpointContainerRequest) (*runtime.CheckpointContainerResponse, error) {
	return nil, fmt.Errorf("checkpointing container %q: hull does not implement CRIU checkpoint/restore: %w", r.GetContainerId(), errdefs.ErrNotImplemented)
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// ignoreNotFound is nil for NotFound, which stop and remove calls must
// treat as done.
func ignoreNotFound(err error) error {
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}

// errJoin joins errors that are not nil.
func errJoin(errs ...error) error { return errors.Join(errs...) }

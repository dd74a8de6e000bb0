// Package cri registers hulld's CRI plugins, with containerd 2.x's names so
// that a containerd config's CRI sections configure them:
// io.containerd.cri.v1.runtime and io.containerd.cri.v1.images hold their
// sections' settings (the images plugin runs the image service), and
// io.containerd.grpc.v1.cri serves runtime.v1.RuntimeService and
// runtime.v1.ImageService on hulld's socket.
package cri

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client"
	criconfig "github.com/hullrt/hull/cri/config"
	criimages "github.com/hullrt/hull/cri/images"
	"github.com/hullrt/hull/cri/server"
	"github.com/hullrt/hull/internal/errgrpc"
	"github.com/hullrt/hull/internal/grpcpool"
	"github.com/hullrt/hull/plugin"
)

// Namespace is the containerd namespace of everything the CRI makes.
const Namespace = "k8s.io"

// Register adds the CRI plugins to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.CRIPlugin, ID: "runtime",
		Config: criconfig.DefaultRuntime(),
		Init: func(ic *plugin.InitContext) (any, error) {
			cfg := ic.Config.(*criconfig.Runtime)
			if err := cfg.Validate(); err != nil {
				return nil, err
			}
			return cfg, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.CRIPlugin, ID: "images",
		Requires: []plugin.Type{plugin.ServicePlugin, plugin.EventPlugin, plugin.SnapshotPlugin, plugin.ContentPlugin},
		Config:   criconfig.DefaultImages(),
		Init: func(ic *plugin.InitContext) (any, error) {
			cfg := ic.Config.(*criconfig.Images)
			if err := cfg.Validate(); err != nil {
				return nil, err
			}
			c, err := client.NewInProcess(ic, client.WithDefaultNamespace(Namespace))
			if err != nil {
				return nil, err
			}
			timeout, _ := cfg.PullProgressTimeout()
			svc, err := criimages.New(c, criimages.Config{
				Namespace:              Namespace,
				Snapshotter:            cfg.Snapshotter,
				RegistryConfigPath:     cfg.Registry.ConfigPath,
				MaxConcurrentDownloads: cfg.MaxConcurrentDownloads,
				PullProgressTimeout:    timeout,
				PinnedImages:           cfg.PinnedImages,
				Logger:                 ic.Log,
				Stats: criimages.FsInfoSource{
					ImageDirs:     []string{pluginRoot(ic, "io.containerd.snapshotter.v1."+cfg.Snapshotter), pluginRoot(ic, "io.containerd.content.v1.content")},
					ContainerDirs: []string{pluginRoot(ic, "io.containerd.snapshotter.v1."+cfg.Snapshotter)},
				},
			})
			if err != nil {
				return nil, err
			}
			return &images{svc: svc, cfg: cfg}, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "cri",
		Requires: []plugin.Type{plugin.CRIPlugin, plugin.ServicePlugin, plugin.EventPlugin, plugin.RuntimePluginV2},
		Config:   criconfig.DefaultServer(),
		Init: func(ic *plugin.InitContext) (any, error) {
			cfg := ic.Config.(*criconfig.Server)
			if err := cfg.Validate(); err != nil {
				return nil, err
			}
			rtAny, err := ic.GetByID(plugin.CRIPlugin, "runtime")
			if err != nil {
				return nil, err
			}
			imgAny, err := ic.GetByID(plugin.CRIPlugin, "images")
			if err != nil {
				return nil, err
			}
			rtCfg, ok := rtAny.(*criconfig.Runtime)
			img, ok2 := imgAny.(*images)
			if !ok || !ok2 {
				return nil, fmt.Errorf("CRI plugins are a %T and a %T: %w", rtAny, imgAny, errdefs.ErrFailedPrecondition)
			}
			imgs, imgCfg := img.svc, img.cfg
			c, err := client.NewInProcess(ic, client.WithDefaultNamespace(Namespace))
			if err != nil {
				return nil, err
			}
			driver := cgroupDriver(rtCfg)
			svc, err := server.New(ic.Context, c, imgs, server.Config{
				Runtime: rtCfg, Images: imgCfg, Server: cfg,
				Root: ic.Root, State: ic.State,
				Namespace: Namespace, Snapshotter: imgCfg.Snapshotter, CgroupDriver: driver,
				MinOOMScoreAdj: minOOMScoreAdj(rtCfg), RecursiveReadOnly: recursiveReadOnly(rtCfg),
				UserNamespaces: userNamespaces(),
				Log:            ic.Log,
			})
			if err != nil {
				return nil, err
			}
			ic.Meta.Exports["cgroupDriver"] = driver
			return &service{rt: svc, img: imgs}, nil
		},
	})
}

// images is the images plugin: the service and its section.
type images struct {
	svc *criimages.Service
	cfg *criconfig.Images
}

// contextTimeout bounds asking runc for its features.
const contextTimeout = 5 * time.Second

func pluginRoot(ic *plugin.InitContext, uri string) string {
	return filepath.Join(ic.Properties["root"], uri)
}

// cgroupDriver decides the driver: the config's, else systemd where the
// host runs systemd and the default runtime asks runc for systemd cgroups.
func cgroupDriver(cfg *criconfig.Runtime) string {
	if cfg.CgroupDriver != "" {
		return cfg.CgroupDriver
	}
	h := cfg.Containerd.Runtimes[cfg.Containerd.DefaultRuntimeName]
	if sc, _ := h.Options["SystemdCgroup"].(bool); sc {
		if _, err := os.Stat("/run/systemd/system"); err == nil {
			return "systemd"
		}
	}
	return "cgroupfs"
}

// minOOMScoreAdj is hulld's own oom_score_adj when containers must not go
// below it: when configured so, or, unset, when hulld lacks
// CAP_SYS_RESOURCE and the kernel would refuse a lower value (and fail
// every pod, as containerd does on such hosts without hand tuning).
func minOOMScoreAdj(cfg *criconfig.Runtime) *int {
	restrict := false
	if cfg.RestrictOOMScoreAdj != nil {
		restrict = *cfg.RestrictOOMScoreAdj
	} else {
		restrict = !hasCapSysResource()
	}
	if !restrict {
		return nil
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return nil
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil
	}
	return &v
}

func hasCapSysResource() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return true
			}
			return caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return true
}

// recursiveReadOnly reports whether read-only mounts can be made
// recursively read-only: the kernel has mount_setattr and the default
// runtime's runc lists "rro" among its mount options.
// userNamespaces reports whether pods may have user namespaces of their
// own: the kernel must let hulld make them. Their root filesystems are
// given the namespace's owners by the snapshotter (idmapped layers, or
// chowned where the kernel cannot idmap them).
func userNamespaces() bool {
	b, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && n > 0
}

func recursiveReadOnly(cfg *criconfig.Runtime) bool {
	if err := unix.MountSetattr(-1, "", 0, &unix.MountAttr{}); err == unix.ENOSYS {
		return false
	}
	h := cfg.Containerd.Runtimes[cfg.Containerd.DefaultRuntimeName]
	bin, _ := h.Options["BinaryName"].(string)
	if bin == "" {
		bin = "runc"
	}
	ctx, cancel := context.WithTimeout(context.Background(), contextTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "features").Output()
	if err != nil {
		return false
	}
	var f struct {
		MountOptions []string `json:"mountOptions"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &f); err != nil {
		return false
	}
	for _, o := range f.MountOptions {
		if o == "rro" {
			return true
		}
	}
	return false
}

// service serves both CRI services.
type service struct {
	rt  *server.Service
	img *criimages.Service
}

// RegisterGRPC registers runtime.v1.RuntimeService and ImageService,
// their errors (errdefs classes) turned into gRPC codes.
func (s *service) RegisterGRPC(g *grpc.Server) {
	r := codeMapping{g}
	runtime.RegisterRuntimeServiceServer(encodedLists{r, s.rt}, s.rt)
	runtime.RegisterImageServiceServer(r, imageServer{svc: s.img})
}

// codeMapping registers services with every handler's error mapped to its
// gRPC code, so that the CRI packages deal in errdefs errors only.
type codeMapping struct{ grpc.ServiceRegistrar }

func (c codeMapping) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, m := range desc.Methods {
		h := m.Handler
		m.Handler = func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			resp, err := h(srv, ctx, dec, in)
			return resp, errgrpc.ToGRPC(err)
		}
		d.Methods[i] = m
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, st := range desc.Streams {
		h := st.Handler
		st.Handler = func(srv any, stream grpc.ServerStream) error { return errgrpc.ToGRPC(h(srv, stream)) }
		d.Streams[i] = st
	}
	c.ServiceRegistrar.RegisterService(&d, impl)
}

// encodedLists registers the runtime service with its two lists answered
// in protobuf's wire form (grpcpool.Encoded), which the CRI service makes
// from the encodings it keeps with its list items: the kubelet relists
// every pod and container every second, and encoding the same unchanged
// items every time was the largest part of a relist's cost in hulld
// besides gRPC's own.
type encodedLists struct {
	grpc.ServiceRegistrar
	rt *server.Service
}

func (e encodedLists) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i, m := range d.Methods {
		switch m.MethodName {
		case "ListContainers":
			d.Methods[i].Handler = encodedHandler(desc.ServiceName, m.MethodName, e.rt.ListContainersEncoded)
		case "ListPodSandbox":
			d.Methods[i].Handler = encodedHandler(desc.ServiceName, m.MethodName, e.rt.ListPodSandboxEncoded)
		}
	}
	e.ServiceRegistrar.RegisterService(&d, impl)
}

// encodedHandler is a unary method handler that decodes the request as
// the generated one does, goes through the server's interceptors and
// answers with what list encoded.
func encodedHandler[R any, PR interface {
	*R
	proto.Message
}](service, method string, list func(context.Context, PR) ([]byte, error)) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	info := &grpc.UnaryServerInfo{FullMethod: "/" + service + "/" + method}
	return func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
		req := PR(new(R))
		if err := dec(req); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, r any) (any, error) {
			b, err := list(ctx, r.(PR))
			if err != nil {
				return nil, err
			}
			return grpcpool.Encoded(b), nil
		}
		if in == nil {
			return h(ctx, req)
		}
		i := *info
		i.Server = srv
		return in(ctx, req, &i, h)
	}
}

// Close stops the CRI service's background work; pods keep running.
func (s *service) Close() error { return s.rt.Close() }

// imageServer adapts the image service to the generated server interface.
type imageServer struct {
	runtime.UnimplementedImageServiceServer
	svc *criimages.Service
}

func (i imageServer) ListImages(ctx context.Context, r *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	return i.svc.ListImages(ctx, r)
}

func (i imageServer) ImageStatus(ctx context.Context, r *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	return i.svc.ImageStatus(ctx, r)
}

func (i imageServer) PullImage(ctx context.Context, r *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	return i.svc.PullImage(ctx, r)
}

func (i imageServer) RemoveImage(ctx context.Context, r *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	return i.svc.RemoveImage(ctx, r)
}

func (i imageServer) ImageFsInfo(ctx context.Context, r *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	return i.svc.ImageFsInfo(ctx, r)
}

// Package images is the CRI v1 image service of hulld: ListImages,
// ImageStatus, PullImage, RemoveImage and ImageFsInfo, over the client
// library and the containerd namespace the CRI keeps its objects in.
//
// The model is containerd's. An image is known to the CRI by its id, the
// digest of its config, and by the names that point at it: every image
// record in the namespace whose target (an index or a manifest) leads, for
// the host's platform, to that config. A pull records up to four names for
// one image: the reference pulled (a tag, or a digest), the repository
// digest (repo@sha256:<target digest>) and the id itself, all labelled
// io.cri-containerd.image=managed; images recorded by other tools (hullctl,
// ctr) in the namespace are listed too, under whatever names they have.
//
// Nothing is cached about which names exist: every call reads the image
// records afresh, so what hullctl or ctr do in the namespace is seen at
// once. What is cached is what is immutable, the config, size and chain ID
// of each target digest, and for a few seconds the disk usage ImageFsInfo
// measures.
package images

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/hullrt/hull/client"
)

// The labels containerd's CRI puts on image records, kept so that tools that
// know them (and a kubelet moving between runtimes) read hull's the same way.
const (
	// ManagedLabel marks an image record the CRI created.
	ManagedLabel = "io.cri-containerd.image"
	// ManagedValue is ManagedLabel's value.
	ManagedValue = "managed"
	// PinnedLabel on any record of an image pins the image, as
	// Config.PinnedImages does.
	PinnedLabel = "io.cri-containerd.pinned"
	// PinnedValue is PinnedLabel's value.
	PinnedValue = "pinned"
)

// Defaults: of Config's zero fields, and the pull progress timeout the
// configuration gives when it says nothing.
const (
	DefaultNamespace              = "k8s.io"
	DefaultMaxConcurrentDownloads = 3
	DefaultPullProgressTimeout    = 5 * time.Minute
)

// Config configures a Service. Zero fields take the defaults in brackets.
type Config struct {
	// Namespace holds the CRI's images ["k8s.io"].
	Namespace string
	// Snapshotter is the unpack target ["" = the daemon's default].
	Snapshotter string
	// RegistryConfigPath is the hosts.toml directory (containerd's
	// registry.config_path); "" = the client's default.
	RegistryConfigPath string
	// MaxConcurrentDownloads bounds the blobs above 1 MiB a pull fetches at
	// once [3]; smaller ones are fetched up to 8 at a time beside them.
	MaxConcurrentDownloads int
	// PullProgressTimeout: a pull whose downloads make no progress for
	// this long fails; 0 disables it, as image_pull_progress_timeout = "0"
	// does in the configuration, which supplies the default (5m,
	// DefaultPullProgressTimeout).
	PullProgressTimeout time.Duration
	// PinnedImages name images the kubelet must never garbage-collect,
	// e.g. {"sandbox": "registry.k8s.io/pause:3.10"}: the images these
	// references resolve to report pinned.
	PinnedImages map[string]string
	// Stats says where ImageFsInfo measures.
	Stats FsInfoSource
	// Logger receives the service's logs; nil means slog.Default().
	Logger *slog.Logger
}

// FsInfoSource tells ImageFsInfo which directories hold images and
// container writable layers.
type FsInfoSource struct {
	// ImageDirs are the snapshotter root and the content store root,
	// in that order: the kubelet watches the first filesystem listed,
	// and the unpacked layers are what grows with images (as
	// containerd reports its snapshotter's directory).
	ImageDirs []string
	// ContainerDirs hold container writable layers.
	ContainerDirs []string
}

// Service is the CRI image service. Its methods are safe for concurrent
// use.
type Service struct {
	c   *client.Client
	cfg Config
	log *slog.Logger

	// targets caches what is read from the content store about each image
	// target digest; content is immutable by digest, so entries stay true
	// for as long as the target exists.
	mu      sync.Mutex
	targets map[digest.Digest]*targetInfo
	// snapshotter is cfg.Snapshotter, or the daemon's default once asked.
	snapshotter string

	fs *fsUsage
}

// New returns the image service over c, which must reach the daemon's
// services (in process or over a socket).
func New(c *client.Client, cfg Config) (*Service, error) {
	if c == nil {
		return nil, fmt.Errorf("cri images: no client: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.MaxConcurrentDownloads <= 0 {
		cfg.MaxConcurrentDownloads = DefaultMaxConcurrentDownloads
	}
	if cfg.PullProgressTimeout < 0 {
		return nil, fmt.Errorf("cri images: pull progress timeout %v is negative: %w", cfg.PullProgressTimeout, errdefs.ErrInvalidArgument)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for key, ref := range cfg.PinnedImages {
		if _, err := normalizeRef(ref); err != nil {
			return nil, fmt.Errorf("cri images: pinned image %q: %w", key, err)
		}
	}
	return &Service{
		c: c, cfg: cfg, log: cfg.Logger.With("namespace", cfg.Namespace),
		targets: map[digest.Digest]*targetInfo{}, snapshotter: cfg.Snapshotter,
		fs: newFsUsage(cfg.Stats, fsCacheTTL),
	}, nil
}

// nsCtx puts the CRI namespace on ctx, whatever the caller's.
func (s *Service) nsCtx(ctx context.Context) context.Context {
	return client.WithNamespace(ctx, s.cfg.Namespace)
}

// snapshotterName is the snapshotter images are unpacked into: the
// configured one, else the daemon's default, asked once.
func (s *Service) snapshotterName(ctx context.Context) (string, error) {
	s.mu.Lock()
	name := s.snapshotter
	s.mu.Unlock()
	if name != "" {
		return name, nil
	}
	name, err := s.c.DefaultSnapshotter(ctx)
	if err != nil {
		return "", fmt.Errorf("cri images: finding the default snapshotter: %w", err)
	}
	s.mu.Lock()
	s.snapshotter = name
	s.mu.Unlock()
	return name, nil
}

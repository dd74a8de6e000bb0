// Package cni sets up and tears down pod networks through CNI plugins.
//
// A Network reads the CNI network configs in a directory with go-cni, the
// way the kubelet's runtimes do: the first MaxConfNum files in name order,
// plus a loopback network for every pod. It notices when the directory
// changes (a CNI daemonset writes its config after hulld started), and it can
// render a config from a template when the kubelet hands out the node's pod
// CIDR.
//
// go-cni runs plugins with libcni's result cache in /var/lib/cni and has no
// option to move it. hulld keeps its state to itself, so a Network hands the
// configs go-cni loaded to its own libcni.CNIConfig made with
// Config.CacheDir, and runs ADD and DEL through that. This also lets Setup
// undo a half-made network and lets Teardown go past a broken plugin, neither
// of which go-cni does: each network is deleted plugin by plugin when the
// conflist's own DEL stops at a failing plugin, so the IP, veth and port
// rules the other plugins made are still released.
package cni

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// Config says where CNI plugins and network configs are. Zero values take
// the defaults in brackets.
type Config struct {
	// BinDirs are the plugin directories [/opt/cni/bin].
	BinDirs []string
	// ConfDir holds the network configs, *.conf, *.conflist, *.json
	// [/etc/cni/net.d].
	ConfDir string
	// MaxConfNum is how many network configs to load, in file-name order [1].
	MaxConfNum int
	// ConfTemplate is a Go text/template file rendered into
	// ConfDir/10-hull-net.conflist when the kubelet sets the pod CIDR; ""
	// disables it.
	ConfTemplate string
	// SetupSerially adds networks one after the other instead of in parallel.
	SetupSerially bool
	// IPPref says which pod IP is the primary: "ipv4" [default], "ipv6" or
	// "cni" (the order CNI returned).
	IPPref string
	// CacheDir is libcni's result cache; hulld passes a directory under its
	// state (never /var/lib/cni). Required.
	CacheDir string
	// InterfacePrefix names the pod's interfaces: eth0, eth1, ... ["eth"].
	InterfacePrefix string
}

// The values IPPref takes.
const (
	IPPrefIPv4 = "ipv4"
	IPPrefIPv6 = "ipv6"
	IPPrefCNI  = "cni"
)

// TemplateConfName is the file UpdatePodCIDR renders ConfTemplate into. Its
// "10-" sorts it before most configs a CNI daemonset would write.
const TemplateConfName = "10-hull-net.conflist"

// Network is the pod network as the configs in ConfDir describe it. It is
// safe for concurrent use.
type Network struct {
	cfg Config
	// loader parses ConfDir (and decides readiness); plugins are never run
	// through it, see the package doc.
	loader gocni.CNI
	// runner runs the plugins with hull's cache directory.
	runner *libcni.CNIConfig
	exec   invoke.Exec

	// mu serializes reloads and guards the fields below. Setup and Teardown
	// hold it only to take a snapshot of nets, never while plugins run.
	mu       sync.Mutex
	loaded   bool
	confSum  [sha256.Size]byte
	loadErr  error     // why no network config is loaded; nil when one is
	nets     []network // replaced on reload, never changed in place
	podCIDRs []string  // what UpdatePodCIDR rendered last
}

// network is one loaded network config and the interface it gives a pod.
type network struct {
	list   *libcni.NetworkConfigList
	ifName string
}

// New makes a Network for cfg. It succeeds with an empty or missing ConfDir:
// the network is then not ready, and Status says why.
func New(cfg Config) (*Network, error) {
	if len(cfg.BinDirs) == 0 {
		cfg.BinDirs = []string{gocni.DefaultCNIDir}
	}
	if cfg.ConfDir == "" {
		cfg.ConfDir = gocni.DefaultNetDir
	}
	if cfg.MaxConfNum == 0 {
		cfg.MaxConfNum = gocni.DefaultMaxConfNum
	}
	if cfg.MaxConfNum < 0 {
		return nil, fmt.Errorf("cni max conf num %d is negative: %w", cfg.MaxConfNum, errdefs.ErrInvalidArgument)
	}
	if cfg.InterfacePrefix == "" {
		cfg.InterfacePrefix = gocni.DefaultPrefix
	}
	switch cfg.IPPref {
	case "":
		cfg.IPPref = IPPrefIPv4
	case IPPrefIPv4, IPPrefIPv6, IPPrefCNI:
	default:
		return nil, fmt.Errorf("cni ip preference %q is not %q, %q or %q: %w", cfg.IPPref, IPPrefIPv4, IPPrefIPv6, IPPrefCNI, errdefs.ErrInvalidArgument)
	}
	if cfg.CacheDir == "" {
		return nil, fmt.Errorf("cni cache dir is required (libcni would use /var/lib/cni): %w", errdefs.ErrInvalidArgument)
	}
	loader, err := gocni.New(
		// Loopback plus at least one network from ConfDir.
		gocni.WithMinNetworkCount(2),
		gocni.WithPluginDir(cfg.BinDirs),
		gocni.WithPluginConfDir(cfg.ConfDir),
		gocni.WithPluginMaxConfNum(cfg.MaxConfNum),
		gocni.WithInterfacePrefix(cfg.InterfacePrefix),
	)
	if err != nil {
		return nil, fmt.Errorf("cni: %w", err)
	}
	// An explicit Exec: libcni fills in a default lazily, which races when
	// networks are added in parallel.
	exec := &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: os.Stderr},
		PluginDecoder: version.PluginDecoder{},
	}
	n := &Network{
		cfg:    cfg,
		loader: loader,
		runner: libcni.NewCNIConfigWithCacheDir(cfg.BinDirs, cfg.CacheDir, exec),
		exec:   exec,
	}
	n.mu.Lock()
	n.reloadLocked()
	n.mu.Unlock()
	return n, nil
}

// notReadyError carries the reason the kubelet shows as its own text, while
// still being a FailedPrecondition.
type notReadyError struct{ reason string }

func (e *notReadyError) Error() string { return e.reason }
func (e *notReadyError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// Status is nil when a network config is loaded, else an error whose text is
// the reason the kubelet shows (FailedPrecondition). It reloads the configs
// when ConfDir changed, so a config written after start is picked up.
func (n *Network) Status() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.currentLocked(); err != nil {
		return err
	}
	// go-cni asks plugins of CNI 1.1 configs for their STATUS.
	if err := n.loader.Status(); err != nil {
		return &notReadyError{reason: "cni plugin not ready: " + err.Error()}
	}
	return nil
}

// current returns the networks of the config in ConfDir now.
func (n *Network) current() ([]network, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.currentLocked()
}

func (n *Network) currentLocked() ([]network, error) {
	if sum := confDirSum(n.cfg.ConfDir); !n.loaded || sum != n.confSum {
		n.confSum = sum
		n.reloadLocked()
	}
	return n.nets, n.loadErr
}

// reloadLocked loads ConfDir through go-cni and takes the networks it found.
func (n *Network) reloadLocked() {
	n.loaded = true
	n.nets = nil
	// go-cni flattens the cause of a failed Load into text; look first.
	if files, err := libcni.ConfFiles(n.cfg.ConfDir, confExts); err == nil && len(files) == 0 {
		n.loadErr = &notReadyError{reason: "cni config uninitialized: no network config found in " + n.cfg.ConfDir}
		return
	}
	if err := n.loader.Load(gocni.WithLoNetwork, gocni.WithDefaultConf); err != nil {
		// The text names the file; drop go-cni's prefix and sentinels.
		msg := strings.TrimPrefix(err.Error(), "cni config load failed: ")
		msg = strings.TrimSuffix(msg, ": "+gocni.ErrLoad.Error())
		msg = strings.TrimSuffix(msg, ": "+gocni.ErrInvalidConfig.Error())
		n.loadErr = &notReadyError{reason: "cni config load failed: " + msg}
		return
	}
	var nets []network
	for _, c := range n.loader.GetConfig().Networks {
		list, err := toConfList(c.Config)
		if err != nil {
			n.loadErr = &notReadyError{reason: fmt.Sprintf("cni config load failed: network %q: %v", c.Config.Name, err)}
			return
		}
		nets = append(nets, network{list: list, ifName: c.IFName})
	}
	if len(nets) < 2 {
		n.loadErr = &notReadyError{reason: "cni config uninitialized: no network config found in " + n.cfg.ConfDir}
		return
	}
	n.nets, n.loadErr = nets, nil
}

// toConfList turns go-cni's copy of a config back into libcni's form. The
// plugins are taken one by one: a conflist may have plugins from files in a
// directory of its name, which the list's own bytes do not hold.
func toConfList(c *gocni.NetworkConfList) (*libcni.NetworkConfigList, error) {
	list := &libcni.NetworkConfigList{
		Name:       c.Name,
		CNIVersion: c.CNIVersion,
		Bytes:      []byte(c.Source),
	}
	for i, p := range c.Plugins {
		pc, err := libcni.NetworkPluginConfFromBytes([]byte(p.Source))
		if err != nil {
			return nil, fmt.Errorf("plugin %d: %w", i, err)
		}
		list.Plugins = append(list.Plugins, pc)
	}
	return list, nil
}

// confExts are the extensions go-cni loads.
var confExts = []string{".conf", ".conflist", ".json"}

// confDirSum hashes the names and contents of the config files in dir and
// in its subdirectories (where a conflist may keep plugin files). Contents,
// not times: a config rewritten within a clock tick must still count.
func confDirSum(dir string) [sha256.Size]byte {
	h := sha256.New()
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(h, "error %s %v\n", path, err)
			return nil
		}
		if d.IsDir() {
			if path != dir && filepath.Dir(path) != dir {
				return fs.SkipDir
			}
			return nil
		}
		if !slices.Contains(confExts, filepath.Ext(path)) {
			return nil
		}
		data, err := os.ReadFile(path)
		fmt.Fprintf(h, "%s %d %v\n", path, len(data), err)
		h.Write(data)
		return nil
	})
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

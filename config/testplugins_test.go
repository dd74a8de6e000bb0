package config

import (
	"path"
	"sort"
	"strings"
)

// Small stand-ins for real plugin configs, shaped like containerd's, so the
// tests exercise nested tables, maps of tables and defaults inside maps.

type testMirror struct {
	Endpoints []string `toml:"endpoints" doc:"Mirror endpoints, tried in order."`
}

type testRegistry struct {
	ConfigPath string                `toml:"config_path" doc:"Directory of hosts.toml files."`
	Mirrors    map[string]testMirror `toml:"mirrors" doc:"Deprecated mirrors by registry host."`
}

type testImages struct {
	Snapshotter                string            `toml:"snapshotter" doc:"Snapshotter to unpack images with."`
	DisableSnapshotAnnotations bool              `toml:"disable_snapshot_annotations" doc:"Do not pass snapshot annotations."`
	DiscardUnpackedLayers      bool              `toml:"discard_unpacked_layers" doc:"Delete layer blobs after unpacking."`
	MaxConcurrentDownloads     int               `toml:"max_concurrent_downloads" doc:"Parallel layer downloads per pull."`
	ImagePullProgressTimeout   string            `toml:"image_pull_progress_timeout" doc:"Cancel a pull that makes no progress for this long."`
	PinnedImages               map[string]string `toml:"pinned_images" doc:"Images never garbage collected, by role."`
	Registry                   testRegistry      `toml:"registry" doc:"Registry access."`
}

type testRuntimeEntry struct {
	RuntimeType string         `toml:"runtime_type" doc:"Shim name."`
	Snapshotter string         `toml:"snapshotter" doc:"Snapshotter for this runtime."`
	Options     map[string]any `toml:"options" doc:"Shim options."`
}

type testContainerd struct {
	DefaultRuntimeName string                      `toml:"default_runtime_name" doc:"Runtime used when a pod names none."`
	Runtimes           map[string]testRuntimeEntry `toml:"runtimes" doc:"Runtimes by handler name."`
}

type testCNI struct {
	BinDir  string `toml:"bin_dir" doc:"CNI plugin binaries."`
	ConfDir string `toml:"conf_dir" doc:"CNI network configs."`
}

type testRuntime struct {
	Containerd    testContainerd `toml:"containerd" doc:"Runtimes."`
	CNI           testCNI        `toml:"cni" doc:"Pod networking."`
	EnableSelinux bool           `toml:"enable_selinux" doc:"Label containers for SELinux."`
}

type testCRIServer struct {
	DisableTCPService   bool   `toml:"disable_tcp_service" doc:"Serve CRI only on the unix socket."`
	StreamServerAddress string `toml:"stream_server_address" doc:"Address of the exec/attach stream server."`
	StreamServerPort    string `toml:"stream_server_port" doc:"Port of the stream server."`
}

type testOverlay struct {
	RootPath      string        `toml:"root_path" doc:"Where snapshots live."`
	UpperdirLabel bool          `toml:"upperdir_label" doc:"Label snapshots with their upperdir."`
	MountOptions  []string      `toml:"mount_options" doc:"Extra overlay mount options."`
	Sync          *testGCTuning `toml:"sync" doc:"Unset by default."`
}

type testGCHook struct {
	Name string `toml:"name" doc:"Hook name."`
}

type testGCTuning struct {
	Workers int `toml:"workers" doc:"Collector goroutines."`
}

type testGC struct {
	Tuning            *testGCTuning `toml:"tuning" doc:"Collector tuning; absent means automatic."`
	PauseThreshold    float64       `toml:"pause_threshold" doc:"Fraction of time GC may pause the database."`
	DeletionThreshold int           `toml:"deletion_threshold" doc:"Deletions that trigger a collection."`
	Hooks             []testGCHook  `toml:"hooks" doc:"Hooks run after collection."`
}

func testPlugins() []PluginSection {
	return []PluginSection{
		{URI: criGRPC, Config: &testCRIServer{StreamServerAddress: "127.0.0.1", StreamServerPort: "0"}},
		{URI: criImages, Config: &testImages{Snapshotter: "overlayfs", MaxConcurrentDownloads: 3, ImagePullProgressTimeout: "5m0s",
			PinnedImages: map[string]string{"sandbox": "registry.k8s.io/pause:3.10"}}},
		{URI: criRuntime, Config: &testRuntime{Containerd: testContainerd{DefaultRuntimeName: "runc",
			Runtimes: map[string]testRuntimeEntry{"runc": {RuntimeType: "io.containerd.runc.v2"}}},
			CNI: testCNI{BinDir: "/opt/cni/bin", ConfDir: "/etc/cni/net.d"}}},
		{URI: "io.containerd.snapshotter.v1.overlayfs", Config: &testOverlay{}},
		{URI: "io.containerd.gc.v1.scheduler", Config: &testGC{PauseThreshold: 0.02, DeletionThreshold: 0, Tuning: &testGCTuning{Workers: 2}}},
		{URI: "io.containerd.grpc.v1.containers"},
		{URI: "io.containerd.content.v1.content"},
	}
}

// memFS is an in-memory fileSystem for import tests and fuzzing.
type memFS map[string]string

func (m memFS) ReadFile(name string) ([]byte, error) {
	s, ok := m[name]
	if !ok {
		return nil, &notExist{name}
	}
	return []byte(s), nil
}

func (m memFS) Glob(pattern string) ([]string, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, err
	}
	var out []string
	for k := range m {
		if ok, _ := path.Match(pattern, k); ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

type notExist struct{ name string }

func (e *notExist) Error() string { return "open " + e.name + ": no such file or directory" }

func warningStrings(ws []Warning) string {
	var s []string
	for _, w := range ws {
		s = append(s, w.String())
	}
	return strings.Join(s, "\n")
}

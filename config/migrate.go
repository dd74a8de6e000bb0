package config

import (
	"bytes"
	"fmt"

	"github.com/pelletier/go-toml/v2"
)

// The CRI plugin's URIs before and after containerd 2.0 split it in three.
const (
	criGRPC    = "io.containerd.grpc.v1.cri"
	criRuntime = "io.containerd.cri.v1.runtime"
	criImages  = "io.containerd.cri.v1.images"
)

// v1PluginURI maps a version 1 plugin name, which was only the plugin's ID,
// to its full URI. The table is containerd's, for the plugins that had
// configuration or were commonly disabled in version 1 files.
func v1PluginURI(id string) (string, bool) {
	switch id {
	case "cri":
		return criGRPC, true
	case "linux":
		return "io.containerd.runtime.v1.linux", true
	case "aufs", "btrfs", "devmapper", "native", "overlayfs", "zfs":
		return "io.containerd.snapshotter.v1." + id, true
	case "bolt":
		return "io.containerd.metadata.v1.bolt", true
	case "scheduler":
		return "io.containerd.gc.v1.scheduler", true
	case "diff-service", "tasks-service", "content-service", "containers-service", "images-service", "snapshots-service":
		return "io.containerd.service.v1." + id, true
	case "cgroups":
		return "io.containerd.monitor.v1.cgroups", true
	case "opt", "restart":
		return "io.containerd.internal.v1." + id, true
	case "task":
		return "io.containerd.runtime.v2.task", true
	case "walking":
		return "io.containerd.differ.v1.walking", true
	}
	return "", false
}

// criImageKey reports keys of the version 2 CRI section that containerd 2.0
// moved to the images plugin.
func criImageKey(k string) bool {
	switch k {
	case "registry", "image_decryption", "max_concurrent_downloads", "image_pull_progress_timeout",
		"image_pull_with_sync_fs", "stats_collect_period":
		return true
	}
	return false
}

// criContainerdImageKey reports keys of the version 2 CRI section's
// [containerd] table that moved to the images plugin.
func criContainerdImageKey(k string) bool {
	switch k {
	case "snapshotter", "disable_snapshot_annotations", "discard_unpacked_layers":
		return true
	}
	return false
}

// criServerKey reports the keys that stay with the CRI gRPC service in
// version 3: those about serving CRI and its streams.
func criServerKey(k string) bool {
	switch k {
	case "disable_tcp_service", "stream_server_address", "stream_server_port", "stream_idle_timeout",
		"enable_tls_streaming", "x509_key_pair_streaming":
		return true
	}
	return false
}

// hasV1Signs reports whether an unversioned file uses version 1's short
// plugin names, in plugin sections or in the plugin lists.
func hasV1Signs(raw map[string]any) bool {
	if p, ok := raw["plugins"].(map[string]any); ok {
		for k := range p {
			if _, ok := v1PluginURI(k); ok {
				return true
			}
		}
	}
	for _, key := range []string{"disabled_plugins", "required_plugins"} {
		l, _ := raw[key].([]any)
		for _, x := range l {
			if s, ok := x.(string); ok {
				if _, ok := v1PluginURI(s); ok {
					return true
				}
			}
		}
	}
	return false
}

// hasV2Signs reports whether an unversioned file keeps runtime or image
// settings in the CRI gRPC section, which only version 2 did.
func hasV2Signs(raw map[string]any) bool {
	p, _ := raw["plugins"].(map[string]any)
	cri, _ := p[criGRPC].(map[string]any)
	for k := range cri {
		if k == "containerd" || k == "cni" || k == "sandbox_image" || criImageKey(k) {
			return true
		}
	}
	return false
}

// migrate1to2 renames version 1's short plugin names to URIs. Where a file
// names a plugin both ways, the URI section's keys win.
func migrate1to2(raw map[string]any, sm sourceMap) {
	if p, ok := raw["plugins"].(map[string]any); ok {
		for _, k := range sortedKeys(p) {
			uri, ok := v1PluginURI(k)
			if !ok {
				continue
			}
			v := p[k]
			delete(p, k)
			putMissing(p, uri, v)
			sm.copyPrefix([]string{"plugins", k}, []string{"plugins", uri})
		}
	}
	for _, key := range []string{"disabled_plugins", "required_plugins"} {
		l, ok := raw[key].([]any)
		if !ok {
			continue
		}
		for i, x := range l {
			if s, ok := x.(string); ok {
				if uri, ok := v1PluginURI(s); ok {
					l[i] = uri
				}
			}
		}
		raw[key] = appendUnique(nil, l)
	}
	raw["version"] = int64(2)
}

// migrate2to3 splits the CRI section as containerd 2.0 does: image
// settings to io.containerd.cri.v1.images (sandbox_image becoming
// pinned_images.sandbox), serving settings staying in
// io.containerd.grpc.v1.cri, and everything else, [containerd] and [cni]
// included, to io.containerd.cri.v1.runtime. Settings already present in
// the new sections win over moved ones. Keys are visited in sorted order so
// the result does not depend on map iteration.
func migrate2to3(raw map[string]any, sm sourceMap) {
	raw["version"] = int64(3)
	plugins, ok := raw["plugins"].(map[string]any)
	if !ok {
		return
	}
	// containerd 2.0 made the restart monitor a monitor plugin.
	const oldRestart, newRestart = "io.containerd.internal.v1.restart", "io.containerd.monitor.container.v1.restart"
	if v, ok := plugins[oldRestart]; ok {
		if _, taken := plugins[newRestart]; !taken {
			plugins[newRestart] = v
			delete(plugins, oldRestart)
			sm.copyPrefix([]string{"plugins", oldRestart}, []string{"plugins", newRestart})
		}
	}
	cri, ok := plugins[criGRPC].(map[string]any)
	if !ok {
		return
	}
	_, hadImages := plugins[criImages]
	_, hadRuntime := plugins[criRuntime]
	images := subTable(plugins, criImages)
	runtime := subTable(plugins, criRuntime)
	from := func(k ...string) []string { return append([]string{"plugins", criGRPC}, k...) }
	move := func(dst map[string]any, dstURI string, dstPath []string, srcPath []string, v any) {
		t := dst
		for _, k := range dstPath[:len(dstPath)-1] {
			t = subTable(t, k)
		}
		putMissing(t, dstPath[len(dstPath)-1], v)
		sm.copyPrefix(from(srcPath...), append([]string{"plugins", dstURI}, dstPath...))
	}
	for _, k := range sortedKeys(cri) {
		v := cri[k]
		switch {
		case criServerKey(k):
			continue
		case k == "sandbox_image":
			move(images, criImages, []string{"pinned_images", "sandbox"}, []string{k}, v)
		case criImageKey(k):
			move(images, criImages, []string{k}, []string{k}, v)
		case k == "containerd":
			ct, ok := v.(map[string]any)
			if !ok {
				move(runtime, criRuntime, []string{k}, []string{k}, v)
				break
			}
			for _, ck := range sortedKeys(ct) {
				if criContainerdImageKey(ck) {
					move(images, criImages, []string{ck}, []string{k, ck}, ct[ck])
				} else {
					move(runtime, criRuntime, []string{k, ck}, []string{k, ck}, ct[ck])
				}
			}
		default:
			move(runtime, criRuntime, []string{k}, []string{k}, v)
		}
		delete(cri, k)
	}
	if !hadImages && len(images) == 0 {
		delete(plugins, criImages)
	}
	if !hadRuntime && len(runtime) == 0 {
		delete(plugins, criRuntime)
	}
	if len(cri) == 0 {
		delete(plugins, criGRPC)
	}
}

// subTable returns m[k] as a table, creating it when absent. When m[k] is
// something else the caller's keys go to a detached table: the file's own
// value wins, as everywhere in migration.
func subTable(m map[string]any, k string) map[string]any {
	switch v := m[k].(type) {
	case map[string]any:
		return v
	case nil:
		if _, ok := m[k]; !ok {
			t := map[string]any{}
			m[k] = t
			return t
		}
	}
	return map[string]any{}
}

// putMissing sets m[k] = v unless m already has k; tables present on both
// sides are merged the same way, key by key.
func putMissing(m map[string]any, k string, v any) {
	old, ok := m[k]
	if !ok {
		m[k] = copyTree(v)
		return
	}
	om, ok1 := old.(map[string]any)
	vm, ok2 := v.(map[string]any)
	if ok1 && ok2 {
		for _, vk := range sortedKeys(vm) {
			putMissing(om, vk, vm[vk])
		}
	}
}

// Migrate rewrites a version 1, 2 or 3 config file as version 4, the way
// Load reads it, for `hulld config migrate`. A file without a version key
// is taken as version 1 if it uses short plugin names, as version 2 if its
// CRI section has version 2's layout, and as version 4 otherwise. A version
// 4 file comes back re-encoded, with any listener table of version 3's
// moved to its server section. Comments and formatting are not kept, and
// imported files are not touched: migrate them one by one.
func Migrate(data []byte, file string) ([]byte, error) {
	raw := map[string]any{}
	if err := toml.Unmarshal(data, &raw); err != nil {
		return nil, syntaxError(file, err)
	}
	src := indexPositions(data, file)
	vpos := src.lookup([]string{"version"})
	var version int
	if _, ok := raw["version"]; ok {
		v, _, err := fileVersion(raw, file, vpos)
		if err != nil {
			return nil, err
		}
		version = v
	} else {
		switch {
		case hasV1Signs(raw):
			version = 1
		case hasV2Signs(raw):
			version = 2
		default:
			version = CurrentVersion
		}
	}
	if version > CurrentVersion {
		return nil, &Error{File: file, Line: vpos.line, Column: vpos.col, Key: "version",
			Msg: fmt.Sprintf("config file %s is version %d; hull reads versions 2 to %d", file, version, CurrentVersion)}
	}
	if version == 1 {
		migrate1to2(raw, nil)
	}
	if version <= 2 {
		migrate2to3(raw, nil)
	}
	migrate3to4(raw, nil)
	delete(raw, "version")

	var buf bytes.Buffer
	if version < CurrentVersion {
		fmt.Fprintf(&buf, "# Migrated from config version %d by hulld config migrate.\n\n", version)
	}
	fmt.Fprintf(&buf, "version = %d\n", CurrentVersion)
	b, err := toml.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: encoding migrated config: %w", file, err)
	}
	buf.Write(b)
	return buf.Bytes(), nil
}

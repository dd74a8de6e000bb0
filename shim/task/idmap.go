package task

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/mount"
	"github.com/hullrt/hull/shim/runc"
)

// Bind mounts with uidMappings and gidMappings (runtime-spec 1.1) are
// idmapped: the container, in a user namespace, sees the files' owners
// shifted, as the kubelet asks for every volume of a pod with hostUsers:
// false. runc does this itself from 1.2 on; older ones ignore the fields
// and the container would see its volumes owned by the overflow id (a
// service account token of mode 0600 unreadable). For those, the shim
// makes each such mount idmapped itself, under <bundle>/idmapped/<n>, and
// gives runc that path without the mappings: a bind of an idmapped mount
// keeps its idmapping. Once runc create returned, the container's mount
// namespace holds its own copies and the shim's are detached.

// firstRuncWithIDMap is the first runc release that idmaps mounts itself.
var firstRuncWithIDMap = runc.Version{Major: 1, Minor: 2}

// idmapDir is where the shim attaches the idmapped sources in a bundle.
const idmapDir = "idmapped"

// idmapMounts makes the spec's idmapped bind mounts for a runc that
// cannot, rewriting config.json, and returns what detaches them (nil when
// nothing was done). spec is config.json as it is now.
func (ct *Container) idmapMounts(ctx context.Context, spec []byte) (func(), error) {
	if !bytes.Contains(spec, []byte(`"uidMappings"`)) && !bytes.Contains(spec, []byte(`"gidMappings"`)) {
		return nil, nil
	}
	v, err := ct.runc.Version(ctx)
	if err != nil || v.Compare(firstRuncWithIDMap) >= 0 {
		// A newer runc, or another runtime (crun, youki), does it.
		return nil, nil
	}
	return prepareIDMappedMounts(ct.Bundle, spec)
}

// prepareIDMappedMounts does idmapMounts' work in bundle.
func prepareIDMappedMounts(bundle string, spec []byte) (_ func(), retErr error) {
	dec := json.NewDecoder(bytes.NewReader(spec))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse spec: %w", err)
	}
	mounts, _ := doc["mounts"].([]any)
	dir := filepath.Join(bundle, idmapDir)
	var attached []string
	detach := func() {
		var errs []error
		for _, a := range attached {
			errs = append(errs, mount.UnmountAll(a))
		}
		if errors.Join(errs...) == nil {
			os.RemoveAll(dir)
		}
	}
	defer func() {
		if retErr != nil {
			detach()
		}
	}()
	for i, raw := range mounts {
		m, ok := raw.(map[string]any)
		if !ok {
			continue
		}
		uids, hasU := m["uidMappings"]
		gids, hasG := m["gidMappings"]
		if !hasU && !hasG {
			continue
		}
		dest, _ := m["destination"].(string)
		opts := stringList(m["options"])
		typ, _ := m["type"].(string)
		if typ != "bind" && !slices.Contains(opts, "bind") && !slices.Contains(opts, "rbind") {
			return nil, fmt.Errorf("mount %s: only bind mounts can be idmapped by this runc (type %q): %w", dest, typ, errdefs.ErrInvalidArgument)
		}
		uidmap, err := idMapOption(uids)
		if err != nil {
			return nil, fmt.Errorf("mount %s: uidMappings: %w", dest, err)
		}
		gidmap, err := idMapOption(gids)
		if err != nil {
			return nil, fmt.Errorf("mount %s: gidMappings: %w", dest, err)
		}
		source, _ := m["source"].(string)
		fi, err := os.Stat(source)
		if err != nil {
			return nil, fmt.Errorf("mount %s: source: %w", dest, err)
		}
		if len(attached) == 0 {
			if err := os.Mkdir(dir, 0o711); err != nil && !os.IsExist(err) {
				return nil, err
			}
		}
		target := filepath.Join(dir, strconv.Itoa(i))
		if fi.IsDir() {
			err = os.Mkdir(target, 0o700)
		} else {
			var f *os.File
			if f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
				err = f.Close()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("mount %s: %w", dest, err)
		}
		bind := "bind"
		if slices.Contains(opts, "rbind") {
			bind = "rbind"
		}
		if err := mount.All([]mount.Mount{{Type: "bind", Source: source, Options: []string{bind, "uidmap=" + uidmap, "gidmap=" + gidmap}}}, target); err != nil {
			return nil, fmt.Errorf("mount %s: idmap %s: %w", dest, source, err)
		}
		attached = append(attached, target)
		m["source"] = target
		delete(m, "uidMappings")
		delete(m, "gidMappings")
	}
	if len(attached) == 0 {
		return nil, nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), out, 0o644); err != nil {
		return nil, fmt.Errorf("rewrite spec: %w", err)
	}
	return detach, nil
}

// idMapOption turns a spec's id mappings into a "uidmap="/"gidmap=" value.
func idMapOption(v any) (string, error) {
	list, _ := v.([]any)
	if len(list) == 0 {
		return "", fmt.Errorf("uid and gid mappings go together, and neither may be empty: %w", errdefs.ErrInvalidArgument)
	}
	maps := make([]mount.IDMap, 0, len(list))
	for _, e := range list {
		m, _ := e.(map[string]any)
		var n [3]uint32
		for i, k := range []string{"containerID", "hostID", "size"} {
			num, _ := m[k].(json.Number)
			x, err := strconv.ParseUint(string(num), 10, 32)
			if err != nil {
				return "", fmt.Errorf("mapping %v: %s %q: %w", e, k, num, errdefs.ErrInvalidArgument)
			}
			n[i] = uint32(x)
		}
		maps = append(maps, mount.IDMap{ContainerID: n[0], HostID: n[1], Size: n[2]})
	}
	s := mount.FormatIDMaps(maps)
	if _, err := mount.ParseIDMaps(s); err != nil {
		return "", err
	}
	return s, nil
}

func stringList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

package runc

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
)

// Version is a runc release as `runc --version` names it.
type Version struct {
	Major, Minor, Patch int
	// Pre is the pre-release part ("rc.3" of 1.4.0-rc.3), "" for a release.
	Pre string
}

// String gives the version as runc prints it, without build suffixes.
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	return s
}

// ParseVersion reads the output of `runc --version` ("runc version
// 1.1.5+ds1" on its first line; distribution suffixes after + or ~ are
// dropped). ok is false for output that is not runc's (crun and youki
// print their own names) or whose number it cannot read.
func ParseVersion(out string) (v Version, ok bool) {
	for _, line := range strings.Split(out, "\n") {
		rest, found := strings.CutPrefix(strings.TrimSpace(line), "runc version ")
		if !found {
			continue
		}
		s := strings.TrimSpace(rest)
		if i := strings.IndexAny(s, "+~ "); i >= 0 {
			s = s[:i]
		}
		s = strings.TrimPrefix(s, "v")
		core, pre, _ := strings.Cut(s, "-")
		parts := strings.Split(core, ".")
		if len(parts) != 3 {
			return Version{}, false
		}
		var n [3]int
		for i, p := range parts {
			x, err := strconv.Atoi(p)
			if err != nil || x < 0 {
				return Version{}, false
			}
			n[i] = x
		}
		return Version{Major: n[0], Minor: n[1], Patch: n[2], Pre: pre}, true
	}
	return Version{}, false
}

// Compare orders versions as semver does: -1 when v is older than o, 0
// when equal, 1 when newer; a pre-release is older than its release.
func (v Version) Compare(o Version) int {
	for _, d := range [3]int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		if d != 0 {
			if d < 0 {
				return -1
			}
			return 1
		}
	}
	switch {
	case v.Pre == o.Pre:
		return 0
	case v.Pre == "":
		return 1
	case o.Pre == "":
		return -1
	}
	a, b := strings.Split(v.Pre, "."), strings.Split(o.Pre, ".")
	for i := 0; i < len(a) && i < len(b); i++ {
		x, errx := strconv.Atoi(a[i])
		y, erry := strconv.Atoi(b[i])
		var c int
		if errx == nil && erry == nil {
			c = x - y
		} else {
			c = strings.Compare(a[i], b[i])
		}
		if c < 0 {
			return -1
		}
		if c > 0 {
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// HasEscapeFixes reports whether v carries the fixes for the 2025
// container escapes (CVE-2025-31133, CVE-2025-52565, CVE-2025-52881):
// 1.2.8, 1.3.3, 1.4.0-rc.3 and every later release.
func (v Version) HasEscapeFixes() bool {
	switch {
	case v.Major != 1:
		return v.Major > 1
	case v.Minor >= 4:
		return v.Compare(Version{1, 4, 0, "rc.3"}) >= 0
	case v.Minor == 3:
		return v.Compare(Version{1, 3, 3, ""}) >= 0
	case v.Minor == 2:
		return v.Compare(Version{1, 2, 8, ""}) >= 0
	}
	return false
}

// Probe runs `binary --version` and parses its output. run starts cmd and
// waits for it; nil means cmd.Run. The shim passes its reaper's, because a
// subreaper must not have a second wait4 caller. A binary that is not runc
// is an error of class NotImplemented.
func Probe(binary string, run func(cmd *exec.Cmd) error) (Version, error) {
	var out strings.Builder
	cmd := exec.Command(binary, "--version")
	cmd.Stdout = &out
	if run == nil {
		run = (*exec.Cmd).Run
	}
	if err := run(cmd); err != nil {
		return Version{}, fmt.Errorf("%s --version: %w", binary, err)
	}
	v, ok := ParseVersion(out.String())
	if !ok {
		return Version{}, fmt.Errorf("%s --version printed %q, not a runc version: %w", binary, truncate([]byte(out.String())), errdefs.ErrNotImplemented)
	}
	return v, nil
}

// A runtime binary is identified by its path and by what any replacement
// of the file changes (inode, size, mtime and ctime, which no one can set
// back), so an upgraded runc is probed again.
type binaryKey struct {
	Path             string
	Dev, Ino         uint64
	Size             int64
	MtimeNs, CtimeNs int64
}

func keyOf(path string) (binaryKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return binaryKey{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return binaryKey{}, fmt.Errorf("stat %s: no inode: %w", path, errdefs.ErrNotImplemented)
	}
	return binaryKey{Path: path, Dev: uint64(st.Dev), Ino: st.Ino, Size: fi.Size(),
		MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano()}, nil
}

// versionCacheFile is the name of the probe cache in a VersionCache
// directory; the leading dot keeps it apart from namespace and container
// names, which start with a letter or digit.
const versionCacheFile = ".hull-runc-versions.json"

// cachedVersion is one entry of the cache file. Runc is false for a
// binary that is not runc (or not a release it could read).
type cachedVersion struct {
	Key     binaryKey `json:"key"`
	Runc    bool      `json:"runc"`
	Version Version   `json:"version"`
}

// versions remembers the probes of this process; the file cache carries
// them to the next shim, which is usually a new process per container.
var versions = struct {
	sync.Mutex
	m map[binaryKey]cachedVersion
}{m: map[binaryKey]cachedVersion{}}

// Version returns the version of r's binary, probing it at most once per
// binary file: from this process's memory, else from the cache file in
// r.VersionCache, else by running `--version` (and recording the answer in
// both). A binary that is not runc gives an error of class NotImplemented.
func (r *Runc) Version(ctx context.Context) (Version, error) {
	path, err := exec.LookPath(r.binary())
	if err != nil {
		return Version{}, fmt.Errorf("runtime binary %q: %w: %w", r.binary(), err, errdefs.ErrNotFound)
	}
	if path, err = filepath.Abs(path); err != nil {
		return Version{}, err
	}
	key, err := keyOf(path)
	if err != nil {
		return Version{}, fmt.Errorf("runtime binary %q: %w", path, err)
	}
	versions.Lock()
	c, ok := versions.m[key]
	versions.Unlock()
	if !ok {
		c, ok = r.readVersionCache(key)
	}
	if !ok {
		v, err := Probe(path, func(cmd *exec.Cmd) error { return r.runProbe(ctx, cmd) })
		switch {
		case err == nil:
			c = cachedVersion{Key: key, Runc: true, Version: v}
		case errdefs.IsNotImplemented(err):
			c = cachedVersion{Key: key}
		default:
			return Version{}, err // not cached: it may work next time
		}
		r.writeVersionCache(c)
	}
	versions.Lock()
	versions.m[key] = c
	versions.Unlock()
	if !c.Runc {
		return Version{}, fmt.Errorf("runtime binary %q is not runc: %w", path, errdefs.ErrNotImplemented)
	}
	return c.Version, nil
}

// runProbe runs cmd through the reaper when there is one.
func (r *Runc) runProbe(ctx context.Context, cmd *exec.Cmd) error {
	if r.Reaper == nil {
		return cmd.Run()
	}
	// The reaper takes only files for stdio; hand it a pipe.
	out := cmd.Stdout
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	cmd.Stdout = pw
	wait, err := r.Reaper.Start(cmd)
	pw.Close()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	defer stop()
	_, copyErr := pr.WriteTo(out)
	if st := wait(); st != 0 {
		return fmt.Errorf("exit status %d", st)
	}
	return copyErr
}

func (r *Runc) readVersionCache(key binaryKey) (cachedVersion, bool) {
	if r.VersionCache == "" {
		return cachedVersion{}, false
	}
	b, err := os.ReadFile(filepath.Join(r.VersionCache, versionCacheFile))
	if err != nil {
		return cachedVersion{}, false
	}
	var entries []cachedVersion
	if json.Unmarshal(b, &entries) != nil {
		return cachedVersion{}, false
	}
	for _, e := range entries {
		if e.Key == key {
			return e, true
		}
	}
	return cachedVersion{}, false
}

// writeVersionCache records c, replacing entries of the same path. Shims
// writing at once may drop each other's entry; that only costs a probe.
func (r *Runc) writeVersionCache(c cachedVersion) {
	if r.VersionCache == "" {
		return
	}
	path := filepath.Join(r.VersionCache, versionCacheFile)
	var entries []cachedVersion
	if b, err := os.ReadFile(path); err == nil {
		json.Unmarshal(b, &entries)
	}
	kept := []cachedVersion{c}
	for _, e := range entries {
		if e.Key.Path != c.Key.Path {
			kept = append(kept, e)
		}
	}
	b, err := json.Marshal(kept)
	if err != nil {
		return
	}
	tmp, err := os.CreateTemp(r.VersionCache, versionCacheFile+".*")
	if err != nil {
		return
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil || os.Rename(tmp.Name(), path) != nil {
		os.Remove(tmp.Name())
	}
}

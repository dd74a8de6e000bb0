package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fsCacheTTL is how long a measurement is reused. The kubelet asks every
// few seconds, and from several places; walking the snapshotter's tree for
// each would cost more than the answer is worth.
const fsCacheTTL = 5 * time.Second

// ImageFsInfo reports the disk the images and the containers' writable
// layers use: one FilesystemUsage per filesystem holding ImageDirs
// (image_filesystems) and per filesystem holding ContainerDirs
// (container_filesystems). The bytes and inodes are those of the
// directories, counted as du does (allocated blocks, hard links once, not
// crossing into other filesystems), not what statfs says of the whole disk;
// fs_id.mountpoint is the first of the directories on that filesystem. A
// measurement is reused for a few seconds.
func (s *Service) ImageFsInfo(ctx context.Context, _ *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	m, err := s.fs.get(ctx)
	if err != nil {
		return nil, err
	}
	return &runtime.ImageFsInfoResponse{ImageFilesystems: m.images.toCRI(m.at), ContainerFilesystems: m.containers.toCRI(m.at)}, nil
}

// fsGroup is the usage of the directories on one filesystem.
type fsGroup struct {
	mountpoint    string
	bytes, inodes uint64
}

type fsGroups []fsGroup

func (gs fsGroups) toCRI(at time.Time) []*runtime.FilesystemUsage {
	out := make([]*runtime.FilesystemUsage, 0, len(gs))
	for _, g := range gs {
		out = append(out, &runtime.FilesystemUsage{
			Timestamp:  at.UnixNano(),
			FsId:       &runtime.FilesystemIdentifier{Mountpoint: g.mountpoint},
			UsedBytes:  &runtime.UInt64Value{Value: g.bytes},
			InodesUsed: &runtime.UInt64Value{Value: g.inodes},
		})
	}
	return out
}

// fsMeasurement is one measurement of all the directories.
type fsMeasurement struct {
	at                 time.Time
	images, containers fsGroups
}

// fsUsage measures the directories of an FsInfoSource, one measurement at
// a time, and keeps the last for ttl.
type fsUsage struct {
	src FsInfoSource
	ttl time.Duration
	// sem is held by the caller measuring; the others wait for it (or for
	// their context) and take its result.
	sem  chan struct{}
	last *fsMeasurement
}

func newFsUsage(src FsInfoSource, ttl time.Duration) *fsUsage {
	return &fsUsage{src: src, ttl: ttl, sem: make(chan struct{}, 1)}
}

func (u *fsUsage) get(ctx context.Context) (*fsMeasurement, error) {
	select {
	case u.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-u.sem }()
	if u.last != nil && time.Since(u.last.at) < u.ttl {
		return u.last, nil
	}
	m := &fsMeasurement{at: time.Now()}
	var err error
	if m.images, err = measureDirs(ctx, u.src.ImageDirs); err != nil {
		return nil, err
	}
	if m.containers, err = measureDirs(ctx, u.src.ContainerDirs); err != nil {
		return nil, err
	}
	u.last = m
	return m, nil
}

// measureDirs groups dirs by the filesystem they are on, in the order
// given, and measures each group. A directory that does not exist yet
// (nothing was pulled) counts as empty, on its nearest existing parent's
// filesystem.
func measureDirs(ctx context.Context, dirs []string) (fsGroups, error) {
	type group struct {
		dev  uint64
		dirs []string
	}
	var groups []*group
	for _, d := range dirs {
		if d == "" {
			continue
		}
		d = filepath.Clean(d)
		dev, err := deviceOf(d)
		if err != nil {
			return nil, err
		}
		var g *group
		for _, x := range groups {
			if x.dev == dev {
				g = x
			}
		}
		if g == nil {
			g = &group{dev: dev}
			groups = append(groups, g)
		}
		g.dirs = append(g.dirs, d)
	}
	out := make(fsGroups, 0, len(groups))
	for _, g := range groups {
		fg := fsGroup{mountpoint: g.dirs[0]}
		links := map[uint64]bool{}
		for i, d := range g.dirs {
			if sameAsEarlier(d, g.dirs[:i]) || containedStrictly(d, g.dirs) {
				// Counted as part of a directory that holds it.
				continue
			}
			b, n, err := du(ctx, d, g.dev, links)
			if err != nil {
				return nil, err
			}
			fg.bytes += b
			fg.inodes += n
		}
		out = append(out, fg)
	}
	return out, nil
}

// sameAsEarlier reports whether dir appears among earlier.
func sameAsEarlier(dir string, earlier []string) bool {
	for _, d := range earlier {
		if d == dir {
			return true
		}
	}
	return false
}

// containedStrictly reports whether dir lies strictly below another of dirs.
func containedStrictly(dir string, dirs []string) bool {
	for _, d := range dirs {
		if d != dir && strings.HasPrefix(dir, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

// deviceOf returns the device of path, or of its nearest existing parent.
func deviceOf(path string) (uint64, error) {
	for p := path; ; {
		var st syscall.Stat_t
		err := syscall.Stat(p, &st)
		if err == nil {
			return uint64(st.Dev), nil //nolint:unconvert // Dev's type differs between architectures
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENOTDIR) {
			return 0, fmt.Errorf("image fs info: stat %s: %w", p, err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return 0, fmt.Errorf("image fs info: stat %s: %w", path, err)
		}
		p = parent
	}
}

// du counts the allocated bytes and the inodes of the tree at root that
// are on device dev, each hard-linked inode once (links remembers those
// seen, across the directories of one filesystem).
func du(ctx context.Context, root string, dev uint64, links map[uint64]bool) (bytes, inodes uint64, err error) {
	n := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// Gone since it was listed (or root not made yet).
				return nil
			}
			return fmt.Errorf("image fs info: %w", err)
		}
		if n++; n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("image fs info: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if uint64(st.Dev) != dev { //nolint:unconvert // Dev's type differs between architectures
			// Another filesystem mounted here: not ours to count.
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && st.Nlink > 1 {
			if links[st.Ino] {
				return nil
			}
			links[st.Ino] = true
		}
		bytes += uint64(st.Blocks) * 512 //nolint:unconvert // Blocks's type differs between architectures
		inodes++
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return bytes, inodes, err
}

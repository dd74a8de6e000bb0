package manager

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/hullrt/hull/core/mount"
)

// coreTypes are the types core/mount performs (with their options, idmaps
// and long overlays); other filesystems are mounted here with mount(2).
var coreTypes = []string{"bind", "rbind", "overlay", "tmpfs", "proc"}

// canPerform reports whether hull can mount type t on this host: a type
// core/mount knows, or a filesystem the kernel lists in /proc/filesystems.
// The error names the type.
func canPerform(t string) error {
	if slices.Contains(coreTypes, t) {
		return nil
	}
	if t != "" && !strings.ContainsAny(t, "/ \t\n") {
		if fss, err := kernelFilesystems(); err == nil && slices.Contains(fss, t) {
			return nil
		}
	}
	return fmt.Errorf("mount type %q cannot be performed by hull: it is not bind, overlay, tmpfs, proc or a filesystem this kernel has: %w", t, errdefs.ErrInvalidArgument)
}

func kernelFilesystems() ([]string, error) {
	f, err := os.Open("/proc/filesystems")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var fss []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 {
			fss = append(fss, fields[len(fields)-1])
		}
	}
	return fss, sc.Err()
}

// perform mounts m at mp, creating mp (a file when m binds a file). The
// mount's Target is not used: each mount gets its own mount point.
func perform(m mount.Mount, mp string) (retErr error) {
	if err := makeMountPoint(m, mp); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			_ = os.Remove(mp)
		}
	}()
	if slices.Contains(coreTypes, m.Type) && !slices.Contains(m.Options, "loop") {
		t := m.Type
		if t == "rbind" {
			t, m.Options = "bind", append(slices.Clone(m.Options), "rbind")
		}
		return mount.All([]mount.Mount{{Type: t, Source: m.Source, Options: m.Options}}, mp)
	}
	o, err := parseBlockOptions(m.Options)
	if err != nil {
		return err
	}
	source := m.Source
	var loop *os.File
	if o.loop {
		if loop, err = attachLoop(m.Source, o.readOnly()); err != nil {
			return err
		}
		// With autoclear the kernel frees the device at its last
		// unmount; until it is mounted, the device is ours to free.
		defer loop.Close()
		source = loop.Name()
	}
	err = unix.Mount(source, mp, m.Type, o.flags, strings.Join(o.data, ","))
	if err != nil {
		if loop != nil {
			_ = unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_CLR_FD, 0)
		}
		return fmt.Errorf("mount %s %s at %s: %w", m.Type, m.Source, mp, err)
	}
	return nil
}

func makeMountPoint(m mount.Mount, mp string) error {
	if m.Type == "bind" || m.Type == "rbind" {
		if st, err := os.Stat(m.Source); err == nil && !st.IsDir() {
			f, err := os.OpenFile(mp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("mount point %s: %w", mp, err)
			}
			return f.Close()
		}
	}
	if err := os.Mkdir(mp, 0o700); err != nil {
		return fmt.Errorf("mount point %s: %w", mp, err)
	}
	return nil
}

// attachLoop attaches file to a free loop device, read-only if asked, with
// autoclear set, and returns the open device.
func attachLoop(file string, readOnly bool) (*os.File, error) {
	mode := os.O_RDWR
	if readOnly {
		mode = os.O_RDONLY
	}
	backing, err := os.OpenFile(file, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop device for %q: %w", file, err)
	}
	defer backing.Close()
	if st, err := backing.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("loop device for %q: not a regular file: %w", file, errdefs.ErrInvalidArgument)
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loop device for %q: %w", file, err)
	}
	defer ctl.Close()
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
	cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
	if readOnly {
		cfg.Info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	copy(cfg.Info.File_name[:], file)
	// Another process may take the free device between our asking and
	// our attaching: ask again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("loop device for %q: get a free device: %w", file, err)
		}
		dev, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), mode|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("loop device for %q: %w", file, err)
		}
		err = unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return nil, fmt.Errorf("loop device for %q: attach /dev/loop%d: %w", file, n, err)
		}
	}
}

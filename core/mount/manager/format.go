package manager

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/mount"
)

// expand fills in the templates of s from the mounts performed before it.
// A template is "{{ f args }}" with f one of containerd's format functions:
//
//	source i      the source of mount i
//	target i      the target of mount i
//	mount i       where mount i is mounted
//	overlay a b   the mount points of a..b joined by ":" (a > b counts down)
//
// Text outside templates is kept as it is. An index outside active, an
// unknown function or a malformed template is InvalidArgument naming it.
func expand(s string, active []ActiveMount) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	var b strings.Builder
	rest := s
	for {
		open := strings.Index(rest, "{{")
		if open < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		b.WriteString(rest[:open])
		end := strings.Index(rest[open+2:], "}}")
		if end < 0 {
			return "", fmt.Errorf("template in %q: %q is not closed by }}: %w", s, rest[open:], errdefs.ErrInvalidArgument)
		}
		body := rest[open+2 : open+2+end]
		v, err := call(strings.Fields(body), active)
		if err != nil {
			return "", fmt.Errorf("template {{%s}} in %q: %w", body, s, err)
		}
		b.WriteString(v)
		rest = rest[open+2+end+2:]
	}
}

// call evaluates one template's function over active.
func call(fields []string, active []ActiveMount) (string, error) {
	if len(fields) == 0 {
		return "", fmt.Errorf("empty template: %w", errdefs.ErrInvalidArgument)
	}
	f, args := fields[0], fields[1:]
	want := 1
	if f == "overlay" {
		want = 2
	}
	switch f {
	case "source", "target", "mount", "overlay":
	default:
		return "", fmt.Errorf("unknown function %q (the functions are source, target, mount, overlay): %w", f, errdefs.ErrInvalidArgument)
	}
	if len(args) != want {
		return "", fmt.Errorf("%s takes %d index(es), got %d: %w", f, want, len(args), errdefs.ErrInvalidArgument)
	}
	idx := make([]int, len(args))
	for i, a := range args {
		n, err := strconv.Atoi(a)
		if err != nil {
			return "", fmt.Errorf("%s: index %q is not a number: %w", f, a, errdefs.ErrInvalidArgument)
		}
		if n < 0 || n >= len(active) {
			return "", fmt.Errorf("%s: mount index %d does not exist, %d mount(s) come before this one: %w", f, n, len(active), errdefs.ErrInvalidArgument)
		}
		idx[i] = n
	}
	switch f {
	case "source":
		return active[idx[0]].Source, nil
	case "target":
		return active[idx[0]].Target, nil
	case "mount":
		return active[idx[0]].MountPoint, nil
	}
	step := 1
	if idx[0] > idx[1] {
		step = -1
	}
	var dirs []string
	for i := idx[0]; ; i += step {
		dirs = append(dirs, active[i].MountPoint)
		if i == idx[1] {
			break
		}
	}
	return strings.Join(dirs, ":"), nil
}

// format is containerd's "format" transform: the templates in source,
// target and options filled in from active.
func format(m mount.Mount, active []ActiveMount) (mount.Mount, error) {
	var err error
	if m.Source, err = expand(m.Source, active); err != nil {
		return m, err
	}
	if m.Target, err = expand(m.Target, active); err != nil {
		return m, err
	}
	opts := make([]string, len(m.Options))
	for i, o := range m.Options {
		if opts[i], err = expand(o, active); err != nil {
			return m, err
		}
	}
	m.Options = opts
	return m, nil
}

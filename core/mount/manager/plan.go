package manager

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/core/mount"
)

// transform is one transform a mount's type names, applied before the
// mount is made: "format" and "mkdir".
type transform func(m mount.Mount, active []ActiveMount) (mount.Mount, error)

// step is what the manager does to one mount.
type step struct {
	// transforms in application order, outermost first; each sets the
	// mount's type to what follows its prefix before it runs.
	names      []string
	types      []string
	transforms []transform
	// apply is how many of transforms the manager applies.
	apply int
}

// plan is the decision for a mount list: mounts[:first] are performed by
// the manager; mounts[first] has steps[first].apply transforms applied;
// the rest are the caller's. first is -1 when nothing needs the manager.
type plan struct {
	first int
	steps []step
}

// makePlan decides, as containerd's planner does, which mounts the manager
// performs and which transforms it applies, given the types and transforms
// the caller claims. An unknown prefix ends the transform chain (the rest
// is the mount's type, as in containerd); "mkfs" is known but not something
// hull does, which is NotImplemented naming it.
func makePlan(mounts []mount.Mount, o ActivateOptions, known map[string]transform) (plan, error) {
	p := plan{first: -1, steps: make([]step, len(mounts))}
	for i, m := range mounts {
		st := &p.steps[i]
		t := m.Type
		for {
			prefix, rest, ok := strings.Cut(t, "/")
			if !ok {
				break
			}
			if prefix == "mkfs" {
				return plan{}, fmt.Errorf("mount %d (type %q): the mkfs transform is not supported by hull: %w", i, m.Type, errdefs.ErrNotImplemented)
			}
			tr, ok := known[prefix]
			if !ok {
				break
			}
			st.names = append(st.names, prefix)
			st.types = append(st.types, rest)
			st.transforms = append(st.transforms, tr)
			if !slices.Contains(o.AllowTransforms, prefix) && !slices.Contains(o.AllowMountTypes, m.Type) {
				p.first = i
				st.apply = len(st.transforms)
			}
			t = rest
		}
		if o.Temporary {
			p.first = i + 1
		}
	}
	return p, nil
}

// baseType is the type of a mount once its transforms are applied.
func (s step) baseType(m mount.Mount) string {
	if len(s.types) == 0 {
		return m.Type
	}
	return s.types[len(s.types)-1]
}

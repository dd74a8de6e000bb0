package spec

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
)

// knownCapabilities lists every capability of Linux 6.x in the kernel's
// numbering order, so that the index is the capability number.
func knownCapabilities() []string { return oci.AllCapabilities() }

// capAll is the CRI's name for every capability.
const capAll = "ALL"

// ParseCapability returns the canonical name ("CAP_NET_ADMIN") of a CRI
// capability name, which Kubernetes writes without the prefix
// ("NET_ADMIN") but other clients write with it, in any case. "ALL" (in
// any case) is returned as "ALL". An unknown name is InvalidArgument.
func ParseCapability(name string) (string, error) {
	up := strings.ToUpper(strings.TrimSpace(name))
	if up == capAll {
		return capAll, nil
	}
	if !strings.HasPrefix(up, "CAP_") {
		up = "CAP_" + up
	}
	if !slices.Contains(knownCapabilities(), up) {
		return "", fmt.Errorf("unknown capability %q: %w", name, errdefs.ErrInvalidArgument)
	}
	return up, nil
}

// boundingCapabilities is every capability in hulld's own bounding set:
// what "ALL" can grant, since runc cannot give a container a capability
// its parent lacks. If the set cannot be read, every capability is
// returned and runc decides.
func boundingCapabilities() []string {
	known := knownCapabilities()
	var have []string
	for i, name := range known {
		r, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(i), 0, 0, 0)
		if err != nil {
			if i == 0 {
				return known
			}
			// A kernel older than the list stops here.
			break
		}
		if r == 1 {
			have = append(have, name)
		}
	}
	return have
}

// capabilityChange is a parsed Capability message: ALL in add or drop,
// then the single names, applied in that order so that "add ALL, drop
// CHOWN" is everything but CHOWN and "drop ALL, add NET_BIND_SERVICE" is
// only NET_BIND_SERVICE.
type capabilityChange struct {
	addAll, dropAll bool
	add, drop       []string
}

func parseCapabilityChange(c *runtime.Capability) (capabilityChange, error) {
	var ch capabilityChange
	if c == nil {
		return ch, nil
	}
	if len(c.GetAddAmbientCapabilities()) > 0 {
		// Ambient capabilities survive execve into a non-root program
		// (CVE-2022-24769): hull grants none.
		return ch, fmt.Errorf("ambient capabilities %v: hull grants no ambient capabilities: %w", c.GetAddAmbientCapabilities(), errdefs.ErrInvalidArgument)
	}
	for _, n := range c.GetAddCapabilities() {
		p, err := ParseCapability(n)
		if err != nil {
			return ch, fmt.Errorf("add capabilities: %w", err)
		}
		if p == capAll {
			ch.addAll = true
		} else {
			ch.add = append(ch.add, p)
		}
	}
	for _, n := range c.GetDropCapabilities() {
		p, err := ParseCapability(n)
		if err != nil {
			return ch, fmt.Errorf("drop capabilities: %w", err)
		}
		if p == capAll {
			ch.dropAll = true
		} else {
			ch.drop = append(ch.drop, p)
		}
	}
	return ch, nil
}

// apply returns set changed by ch; all is what ALL means.
func (ch capabilityChange) apply(set, all []string) []string {
	out := append([]string(nil), set...)
	if ch.addAll {
		out = append([]string(nil), all...)
	}
	if ch.dropAll {
		out = nil
	}
	for _, c := range ch.add {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return slices.DeleteFunc(out, func(c string) bool { return slices.Contains(ch.drop, c) })
}

// withCapabilities applies the security context's capability changes to
// the bounding, effective and permitted sets.
func withCapabilities(ch capabilityChange) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureProcess(s)
		caps := s.Process.Capabilities
		if caps == nil {
			caps = &specs.LinuxCapabilities{}
		}
		all := boundingCapabilities()
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding:  ch.apply(caps.Bounding, all),
			Effective: ch.apply(caps.Effective, all),
			Permitted: ch.apply(caps.Permitted, all),
		}
		return nil
	}
}

// withoutInheritableCapabilities empties the inheritable and ambient sets,
// whatever an earlier option put there: a capability in them survives
// execve of a non-root program (CVE-2022-24769).
func withoutInheritableCapabilities(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	if s.Process != nil && s.Process.Capabilities != nil {
		s.Process.Capabilities.Inheritable = nil
		s.Process.Capabilities.Ambient = nil
	}
	return nil
}

func ensureProcess(s *oci.Spec) {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
}

func ensureLinux(s *oci.Spec) {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
}

func ensureResources(s *oci.Spec) {
	ensureLinux(s)
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
}

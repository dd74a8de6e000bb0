package containers

import (
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The type URLs containerd gives the runtime-spec types it sends as typed
// Any values: a container's Spec, an exec's process and a task update's
// resources. hull registers the same ones so that a spec written by either
// client decodes in either daemon.
const (
	SpecTypeURL      = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
	ProcessTypeURL   = "types.containerd.io/opencontainers/runtime-spec/1/Process"
	ResourcesTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"
)

// The registration is global because typeurl's registry is; registering
// the same type under the same URL again (containerd's own packages do it
// in test binaries) is harmless.
func init() {
	typeurl.Register(&specs.Spec{}, "types.containerd.io", "opencontainers/runtime-spec", "1", "Spec")
	typeurl.Register(&specs.Process{}, "types.containerd.io", "opencontainers/runtime-spec", "1", "Process")
	typeurl.Register(&specs.LinuxResources{}, "types.containerd.io", "opencontainers/runtime-spec", "1", "LinuxResources")
}

// Package tasks registers the tasks service: containerd's TasksClient in
// process over the runtime plugin (tasks-service), which looks up container
// records and rootfs mounts, and containerd's tasks gRPC API over it.
package tasks

import (
	api "github.com/containerd/containerd/api/services/tasks/v1"

	"github.com/hullrt/hull/core/containers"
	"github.com/hullrt/hull/core/mount/manager"
	"github.com/hullrt/hull/core/runtime"
	"github.com/hullrt/hull/plugin"
	"github.com/hullrt/hull/plugins/services"
	"github.com/hullrt/hull/plugins/services/mounts"
)

// Register adds the tasks service plugin (containerd's TasksClient over the
// runtime plugin, in process) and its gRPC adapter to r.
func Register(r *plugin.Registry) {
	r.Register(&plugin.Registration{
		Type: plugin.ServicePlugin, ID: services.TasksService,
		Requires: []plugin.Type{plugin.RuntimePluginV2, plugin.MetadataPlugin, plugin.ServicePlugin, mounts.MountManagerPlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			rt, err := plugin.Instance[runtime.Runtime](ic, plugin.RuntimePluginV2, "task")
			if err != nil {
				return nil, err
			}
			cs, err := plugin.Instance[containers.Store](ic, plugin.ServicePlugin, services.ContainersService)
			if err != nil {
				return nil, err
			}
			sn, err := plugin.Instance[Snapshotters](ic, plugin.ServicePlugin, services.SnapshotsService)
			if err != nil {
				return nil, err
			}
			local := NewLocal(rt, cs, sn)
			// Without a mount manager (disabled, or failed), rootfs
			// mounts go to the shim as they are, as in containerd.
			if mm, err := plugin.Instance[manager.Activator](ic, mounts.MountManagerPlugin, mounts.ManagerID); err == nil {
				local.WithMountManager(mm)
			}
			return local, nil
		},
	})
	r.Register(&plugin.Registration{
		Type: plugin.GRPCPlugin, ID: "tasks", Requires: []plugin.Type{plugin.ServicePlugin},
		Init: func(ic *plugin.InitContext) (any, error) {
			local, err := plugin.Instance[api.TasksClient](ic, plugin.ServicePlugin, services.TasksService)
			if err != nil {
				return nil, err
			}
			return &service{local: local}, nil
		},
	})
}

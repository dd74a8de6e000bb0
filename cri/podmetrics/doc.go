// Package podmetrics turns what hull knows of a pod and its containers into
// the cadvisor-style metrics of the CRI's ListMetricDescriptors and
// ListPodSandboxMetrics calls: the series the kubelet's /metrics/cadvisor
// endpoint served before runtimes reported them (container_cpu_*,
// container_memory_*, container_network_*, container_fs_*, ...).
//
// The model is cadvisor's. Every metric has a descriptor (Descriptors) that
// names it, explains it and lists its label keys, sorted; every value Collect
// reports carries the label values in that order. All container metrics share
// the keys container, id, image, namespace and pod (container is the CRI
// container name, "POD" for the pause container; id is the CRI container id);
// some add one or more keys of their own (interface, device, failure_type and
// scope, pagesize, ulimit, ...).
//
// Sources:
//   - cgroup counters come from the shim's metrics (cgroup v1 or v2 stats),
//     converted to cadvisor's units: seconds for CPU time and pressure, bytes
//     for memory. CRI values are unsigned integers, so seconds are truncated
//     to whole seconds.
//   - process counts (container_processes, container_file_descriptors,
//     container_sockets, and container_threads when the stats lack the pids
//     controller) are read from /proc for every process of the cgroup that
//     holds the container's init process, found through /proc/<pid>/cgroup
//     and the cgroup mounts in /proc/self/mountinfo, as cadvisor counts the
//     processes of a container's cgroup. container_ulimits_soft is read from
//     the init process's /proc/<pid>/limits.
//   - network counters are the pod's: /proc/<pid>/net/dev of a process in the
//     pod's network namespace, one series per interface, lo and the host-side
//     prefixes cadvisor ignores (veth, docker) left out.
//   - container_spec_* come from the OCI spec's resources; container_fs_* from
//     the writable layer's usage the caller measured.
//
// A source that is missing or unreadable leaves its metrics out rather than
// reporting zeros that were never measured; Collect never fails.
package podmetrics

package podmetrics

import (
	"log/slog"
	"path/filepath"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PauseContainerName is the container label value of a pod's pause
// container, as cadvisor names it.
const PauseContainerName = "POD"

// Container is what is known of one container (or the pod's pause
// container) when its metrics are collected.
type Container struct {
	// ID and Name are the CRI container id and name (PauseContainerName for
	// the pause container).
	ID, Name string
	// PodName, PodNamespace and PodID are the pod's metadata name,
	// namespace and sandbox id.
	PodName, PodNamespace, PodID string
	// Image is the image reference the container runs, the "image" label.
	Image string
	// Stats are the cgroup counters as hull's shim reports them: a
	// *v1.Metrics (github.com/containerd/cgroups/v3/cgroup1/stats) or a
	// *v2.Metrics (cgroup2/stats); nil if unknown.
	Stats any
	// Pid is the container's init pid, 0 if it is not running. The
	// processes of the cgroup holding it are counted for
	// container_processes, _file_descriptors, _sockets (and _threads when
	// Stats lack the pids controller); its limits give
	// container_ulimits_soft.
	Pid uint32
	// CgroupPath is the spec's linux.cgroupsPath. When set, the cgroup found
	// for Pid must match it, so that a recycled pid does not lend another
	// process's cgroup to the container.
	CgroupPath string
	// Spec gives container_spec_* (CPU period, shares and quota, memory
	// limit, reservation and swap limit); nil leaves them out.
	Spec *specs.Spec
	// StartedAt gives container_start_time_seconds; zero leaves it out.
	StartedAt time.Time
	// FsUsedBytes and FsInodesUsed are the writable layer's usage;
	// FsLimitBytes, FsInodesTotal and FsInodesFree describe its filesystem
	// (statfs). container_fs_* are reported when FsLimitBytes or
	// FsInodesTotal is not zero, that is when the filesystem was measured.
	FsUsedBytes, FsInodesUsed, FsLimitBytes, FsInodesTotal, FsInodesFree uint64
	// FsDevice is the "device" label of container_fs_* (the writable
	// layer's filesystem source, as cadvisor names it); "" if unknown.
	FsDevice string
}

// Pod adds the pod-level network counters, read from the pod's network
// namespace.
type Pod struct {
	ID, Name, Namespace string
	// NetNSPid is a pid in the pod's network namespace (the pause process);
	// 0 means no network metrics (host network).
	NetNSPid uint32
}

// Collect returns the metrics of one pod: PodSandboxMetrics{PodSandboxId,
// Metrics (pod level: network), ContainerMetrics (one per container)}.
// Every metric carries the label values in the order of its descriptor's
// label keys and now as its timestamp. What cannot be read is left out and
// logged at debug level.
func Collect(pod Pod, containers []Container, now time.Time) *runtime.PodSandboxMetrics {
	c := collector{root: "/", log: slog.Default()}
	return c.collect(pod, containers, now)
}

// collector holds where the host's files are, so that tests can point it at
// a fake /proc and /sys.
type collector struct {
	root string // joined in front of /proc, /sys and cgroup mount points
	log  *slog.Logger
}

func (c collector) collect(pod Pod, containers []Container, now time.Time) *runtime.PodSandboxMetrics {
	defs := map[string]described{}
	for _, d := range definitions() {
		defs[d.name] = described{d, d.labelKeys()}
	}
	out := &runtime.PodSandboxMetrics{PodSandboxId: pod.ID}

	if pod.NetNSPid != 0 {
		e := newEmitter(defs, now, baseLabels{container: PauseContainerName, id: pod.ID, namespace: pod.Namespace, pod: pod.Name})
		c.networkMetrics(e, pod)
		c.reportBad(e)
		out.Metrics = e.out
	}
	for _, ctr := range containers {
		e := newEmitter(defs, now, baseLabels{container: ctr.Name, id: ctr.ID, image: ctr.Image, namespace: ctr.PodNamespace, pod: ctr.PodName})
		c.containerMetrics(e, ctr, now)
		c.reportBad(e)
		out.ContainerMetrics = append(out.ContainerMetrics, &runtime.ContainerMetrics{ContainerId: ctr.ID, Metrics: e.out})
	}
	return out
}

// reportBad logs metrics the code tried to add against their definition:
// they are left out, and the code needs fixing.
func (c collector) reportBad(e *emitter) {
	if len(e.bad) > 0 {
		c.log.Error("metrics left out: name or labels do not match their descriptor", "metrics", e.bad, "id", e.base.id)
	}
}

func (c collector) containerMetrics(e *emitter, ctr Container, now time.Time) {
	e.add(lastSeen, uint64(max(now.Unix(), 0)))
	if !ctr.StartedAt.IsZero() && ctr.StartedAt.Unix() > 0 {
		e.add(startTime, uint64(ctr.StartedAt.Unix()))
	}
	var u *usage
	if ctr.Stats != nil {
		var err error
		if u, err = usageOf(ctr.Stats); err != nil {
			c.log.Debug("cgroup stats not understood", "container", ctr.ID, "error", err)
		}
	}
	if u != nil {
		c.cgroupMetrics(e, u)
	}
	if ctr.Spec != nil {
		specMetrics(e, ctr.Spec)
	}
	if ctr.FsLimitBytes != 0 || ctr.FsInodesTotal != 0 {
		dev := label{keyDevice, ctr.FsDevice}
		e.add(fsUsage, ctr.FsUsedBytes, dev)
		e.add(fsLimit, ctr.FsLimitBytes, dev)
		e.add(fsInodesTotal, ctr.FsInodesTotal, dev)
		e.add(fsInodesFree, ctr.FsInodesFree, dev)
	}
	if ctr.Pid != 0 {
		c.processMetrics(e, ctr, u)
	}
}

// specMetrics reports the resources the spec asks for; where it asks for
// none, the kernel's default that the cgroup then holds (cadvisor reads the
// cgroup files).
func specMetrics(e *emitter, spec *specs.Spec) {
	const defaultCFSPeriod, defaultShares = 100000, 1024
	var res specs.LinuxResources
	if spec.Linux != nil && spec.Linux.Resources != nil {
		res = *spec.Linux.Resources
	}
	var cpu specs.LinuxCPU
	if res.CPU != nil {
		cpu = *res.CPU
	}
	period, shares := uint64(defaultCFSPeriod), uint64(defaultShares)
	if cpu.Period != nil && *cpu.Period > 0 {
		period = *cpu.Period
	}
	if cpu.Shares != nil && *cpu.Shares > 0 {
		shares = *cpu.Shares
	}
	e.add(specCPUPeriod, period)
	e.add(specCPUShares, shares)
	if cpu.Quota != nil && *cpu.Quota > 0 {
		e.add(specCPUQuota, uint64(*cpu.Quota))
	}
	var mem specs.LinuxMemory
	if res.Memory != nil {
		mem = *res.Memory
	}
	e.add(specMemoryLimit, positive(mem.Limit))
	e.add(specMemoryReservation, positive(mem.Reservation))
	e.add(specMemorySwapLimit, positive(mem.Swap))
}

// positive is *v when it is a limit (> 0) and 0 for none or unlimited (-1).
func positive(v *int64) uint64 {
	if v == nil || *v <= 0 {
		return 0
	}
	return uint64(*v)
}

// networkMetrics reports the pod's interfaces.
func (c collector) networkMetrics(e *emitter, pod Pod) {
	devs, err := readNetDev(c.path("proc", strconv.FormatUint(uint64(pod.NetNSPid), 10), "net", "dev"))
	if err != nil {
		c.log.Debug("network counters unreadable", "pod", pod.ID, "pid", pod.NetNSPid, "error", err)
		return
	}
	for _, d := range devs {
		if ignoredInterface(d.name) {
			continue
		}
		l := label{keyInterface, d.name}
		e.add(networkReceiveBytes, d.rxBytes, l)
		e.add(networkReceivePackets, d.rxPackets, l)
		e.add(networkReceiveErrors, d.rxErrors, l)
		e.add(networkReceiveDropped, d.rxDropped, l)
		e.add(networkTransmitBytes, d.txBytes, l)
		e.add(networkTransmitPackets, d.txPackets, l)
		e.add(networkTransmitErrors, d.txErrors, l)
		e.add(networkTransmitDropped, d.txDropped, l)
	}
}

// baseLabels are the label values every metric of one container carries.
type baseLabels struct {
	container, id, image, namespace, pod string
}

// label is one label beyond the base ones.
type label struct{ key, value string }

// described is a definition with its label keys worked out once per
// collection.
type described struct {
	definition
	keys []string
}

// emitter builds the metrics of one container (or of the pod), placing label
// values in the order of each descriptor's keys.
type emitter struct {
	defs map[string]described
	ts   int64
	base baseLabels
	out  []*runtime.Metric
	// bad records the names of metrics added with a name or labels that
	// do not match a definition: a programming error tests look for.
	bad []string
}

func newEmitter(defs map[string]described, now time.Time, base baseLabels) *emitter {
	return &emitter{defs: defs, ts: now.UnixNano(), base: base}
}

func (e *emitter) add(name string, value uint64, extra ...label) {
	d, ok := e.defs[name]
	if !ok || len(extra) != len(d.extra) {
		e.bad = append(e.bad, name)
		return
	}
	values := make([]string, len(d.keys))
	for i, k := range d.keys {
		switch k {
		case keyContainer:
			values[i] = e.base.container
		case keyID:
			values[i] = e.base.id
		case keyImage:
			values[i] = e.base.image
		case keyNamespace:
			values[i] = e.base.namespace
		case keyPod:
			values[i] = e.base.pod
		default:
			found := false
			for _, l := range extra {
				if l.key == k {
					values[i], found = l.value, true
					break
				}
			}
			if !found {
				e.bad = append(e.bad, name)
				return
			}
		}
	}
	e.out = append(e.out, &runtime.Metric{
		Name:        name,
		Timestamp:   e.ts,
		MetricType:  d.kind,
		LabelValues: values,
		Value:       &runtime.UInt64Value{Value: value},
	})
}

// path joins the collector's root and the parts of an absolute host path.
func (c collector) path(parts ...string) string {
	return filepath.Join(append([]string{c.root}, parts...)...)
}

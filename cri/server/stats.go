package server

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/cri/podmetrics"
)

// cpuSample is the last CPU reading of a container, from which the next
// reading derives its nanocores.
type cpuSample struct {
	at    time.Time
	total uint64
}

type cpuSamples struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

// rate records a reading and returns the usage in nanocores since the
// previous one (0 the first time).
func (c *cpuSamples) rate(id string, at time.Time, total uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]cpuSample{}
	}
	prev, ok := c.last[id]
	c.last[id] = cpuSample{at: at, total: total}
	if !ok || !at.After(prev.at) || total < prev.total {
		return 0
	}
	return uint64(float64(total-prev.total) / at.Sub(prev.at).Seconds())
}

// rawStats reads a task's cgroup counters as its shim reports them: a
// cgroup1 or cgroup2 stats.Metrics.
func (s *Service) rawStats(ctx context.Context, id string) (any, error) {
	ctr, err := s.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, err
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, err
	}
	m, err := task.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	v, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return nil, fmt.Errorf("decode stats of %q: %w", id, err)
	}
	return v, nil
}

// taskStats reads a task's cgroup counters into CRI stats.
func (s *Service) taskStats(ctx context.Context, id string) (*runtime.CpuUsage, *runtime.MemoryUsage, error) {
	v, err := s.rawStats(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	ts := now.UnixNano()
	cpu := &runtime.CpuUsage{Timestamp: ts}
	mem := &runtime.MemoryUsage{Timestamp: ts}
	var total uint64
	switch st := v.(type) {
	case *v1.Metrics:
		if u := st.GetCPU().GetUsage(); u != nil {
			total = u.Total
		}
		if ms := st.GetMemory(); ms != nil {
			usage := ms.GetUsage().GetUsage()
			ws := usage
			if ms.TotalInactiveFile < ws {
				ws -= ms.TotalInactiveFile
			} else {
				ws = 0
			}
			mem.UsageBytes = &runtime.UInt64Value{Value: usage}
			mem.WorkingSetBytes = &runtime.UInt64Value{Value: ws}
			mem.RssBytes = &runtime.UInt64Value{Value: ms.TotalRSS}
			mem.PageFaults = &runtime.UInt64Value{Value: ms.TotalPgFault}
			mem.MajorPageFaults = &runtime.UInt64Value{Value: ms.TotalPgMajFault}
			if l := ms.GetUsage().GetLimit(); l > 0 && l < 1<<62 && l > ws {
				mem.AvailableBytes = &runtime.UInt64Value{Value: l - ws}
			}
		}
	case *v2.Metrics:
		if c := st.GetCPU(); c != nil {
			total = c.UsageUsec * 1000
		}
		if ms := st.GetMemory(); ms != nil {
			ws := ms.Usage
			if ms.InactiveFile < ws {
				ws -= ms.InactiveFile
			} else {
				ws = 0
			}
			mem.UsageBytes = &runtime.UInt64Value{Value: ms.Usage}
			mem.WorkingSetBytes = &runtime.UInt64Value{Value: ws}
			mem.RssBytes = &runtime.UInt64Value{Value: ms.Anon}
			mem.PageFaults = &runtime.UInt64Value{Value: ms.Pgfault}
			mem.MajorPageFaults = &runtime.UInt64Value{Value: ms.Pgmajfault}
			if l := ms.UsageLimit; l > 0 && l < 1<<62 && l > ws {
				mem.AvailableBytes = &runtime.UInt64Value{Value: l - ws}
			}
		}
	default:
		return nil, nil, fmt.Errorf("stats of %q are a %T: %w", id, v, errdefs.ErrNotImplemented)
	}
	cpu.UsageCoreNanoSeconds = &runtime.UInt64Value{Value: total}
	cpu.UsageNanoCores = &runtime.UInt64Value{Value: s.cpu.rate(id, now, total)}
	return cpu, mem, nil
}

func (s *Service) containerStats(ctx context.Context, c *container) (*runtime.ContainerStats, error) {
	st := &runtime.ContainerStats{Attributes: &runtime.ContainerAttributes{
		Id: c.rec.ID, Metadata: c.config.GetMetadata(), Labels: c.config.GetLabels(), Annotations: c.config.GetAnnotations(),
	}}
	ts := nowNano()
	if c.state() == runtime.ContainerState_CONTAINER_RUNNING {
		cpu, mem, err := s.taskStats(ctx, c.rec.ID)
		if err != nil && !errdefs.IsNotFound(err) {
			return nil, err
		}
		st.Cpu, st.Memory = cpu, mem
	}
	if st.Cpu == nil {
		st.Cpu = &runtime.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: &runtime.UInt64Value{}, UsageNanoCores: &runtime.UInt64Value{}}
		st.Memory = &runtime.MemoryUsage{Timestamp: ts, WorkingSetBytes: &runtime.UInt64Value{}}
	}
	usage, err := s.client.SnapshotService(s.cfg.Snapshotter).Usage(ctx, c.rec.ID)
	wl := &runtime.FilesystemUsage{Timestamp: ts, FsId: &runtime.FilesystemIdentifier{Mountpoint: s.cfg.Root}}
	if err == nil {
		wl.UsedBytes = &runtime.UInt64Value{Value: uint64(usage.Size)}
		wl.InodesUsed = &runtime.UInt64Value{Value: uint64(usage.Inodes)}
	} else {
		wl.UsedBytes, wl.InodesUsed = &runtime.UInt64Value{}, &runtime.UInt64Value{}
	}
	st.WritableLayer = wl
	return st, nil
}

// ContainerStats reports one container's CPU, memory and writable layer.
func (s *Service) ContainerStats(ctx context.Context, r *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	c, err := s.containers.get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := s.containerStats(s.nsCtx(ctx), c)
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats reports the stats of the containers matching the
// filter.
func (s *Service) ListContainerStats(ctx context.Context, r *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	f := r.GetFilter()
	ctx = s.nsCtx(ctx)
	resp := &runtime.ListContainerStatsResponse{}
	for _, c := range s.containers.list() {
		if f != nil {
			if f.GetId() != "" && !hasPrefix(c.rec.ID, f.GetId()) {
				continue
			}
			if f.GetPodSandboxId() != "" && !hasPrefix(c.rec.SandboxID, f.GetPodSandboxId()) {
				continue
			}
			if !labelsMatch(c.config.GetLabels(), f.GetLabelSelector()) {
				continue
			}
		}
		st, err := s.containerStats(ctx, c)
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue
			}
			return nil, err
		}
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

func (s *Service) podStats(ctx context.Context, sb *sandbox) (*runtime.PodSandboxStats, error) {
	ts := nowNano()
	ps := &runtime.PodSandboxStats{
		Attributes: &runtime.PodSandboxAttributes{Id: sb.rec.ID, Metadata: sb.config.GetMetadata(), Labels: sb.config.GetLabels(), Annotations: sb.config.GetAnnotations()},
		Linux:      &runtime.LinuxPodSandboxStats{},
	}
	cpu := &runtime.CpuUsage{Timestamp: ts, UsageCoreNanoSeconds: &runtime.UInt64Value{}, UsageNanoCores: &runtime.UInt64Value{}}
	mem := &runtime.MemoryUsage{Timestamp: ts, WorkingSetBytes: &runtime.UInt64Value{}, UsageBytes: &runtime.UInt64Value{}, RssBytes: &runtime.UInt64Value{}}
	add := func(c *runtime.CpuUsage, m *runtime.MemoryUsage) {
		if c != nil {
			cpu.UsageCoreNanoSeconds.Value += c.GetUsageCoreNanoSeconds().GetValue()
			cpu.UsageNanoCores.Value += c.GetUsageNanoCores().GetValue()
		}
		if m != nil {
			mem.WorkingSetBytes.Value += m.GetWorkingSetBytes().GetValue()
			mem.UsageBytes.Value += m.GetUsageBytes().GetValue()
			mem.RssBytes.Value += m.GetRssBytes().GetValue()
		}
	}
	if sb.isReady() {
		if c, m, err := s.taskStats(ctx, sb.rec.ID); err == nil {
			add(c, m)
		}
	}
	var procs uint64
	for _, c := range s.containersOf(sb.rec.ID) {
		st, err := s.containerStats(ctx, c)
		if err != nil {
			continue
		}
		add(st.Cpu, st.Memory)
		ps.Linux.Containers = append(ps.Linux.Containers, st)
		if c.state() == runtime.ContainerState_CONTAINER_RUNNING {
			procs++
		}
	}
	ps.Linux.Cpu, ps.Linux.Memory = cpu, mem
	ps.Linux.Process = &runtime.ProcessUsage{Timestamp: ts, ProcessCount: &runtime.UInt64Value{Value: procs}}
	if pid := sb.pausePid(); pid != 0 && sb.isReady() && !sb.hostNetwork() {
		ps.Linux.Network = netStats(pid, ts)
	}
	return ps, nil
}

// netStats reads the pod's interfaces from its pause process's view of
// /proc/net/dev, which needs no entering of the namespace.
func netStats(pid uint32, ts int64) *runtime.NetworkUsage {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return nil
	}
	defer f.Close()
	nu := &runtime.NetworkUsage{Timestamp: ts}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		if name == "lo" {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) < 12 {
			continue
		}
		n := func(i int) *runtime.UInt64Value {
			v, _ := strconv.ParseUint(fs[i], 10, 64)
			return &runtime.UInt64Value{Value: v}
		}
		iface := &runtime.NetworkInterfaceUsage{Name: name, RxBytes: n(0), RxErrors: n(2), TxBytes: n(8), TxErrors: n(10)}
		if nu.DefaultInterface == nil || name == "eth0" {
			nu.DefaultInterface = iface
		}
		nu.Interfaces = append(nu.Interfaces, iface)
	}
	return nu
}

// PodSandboxStats reports one pod's resource use.
func (s *Service) PodSandboxStats(ctx context.Context, r *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	sb, err := s.sandboxes.get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	ps, err := s.podStats(s.nsCtx(ctx), sb)
	if err != nil {
		return nil, err
	}
	return &runtime.PodSandboxStatsResponse{Stats: ps}, nil
}

// ListPodSandboxStats reports the pods matching the filter.
func (s *Service) ListPodSandboxStats(ctx context.Context, r *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	f := r.GetFilter()
	ctx = s.nsCtx(ctx)
	resp := &runtime.ListPodSandboxStatsResponse{}
	for _, sb := range s.sandboxes.list() {
		if f != nil {
			if f.GetId() != "" && !hasPrefix(sb.rec.ID, f.GetId()) {
				continue
			}
			if !labelsMatch(sb.config.GetLabels(), f.GetLabelSelector()) {
				continue
			}
		}
		ps, err := s.podStats(ctx, sb)
		if err != nil {
			return nil, err
		}
		resp.Stats = append(resp.Stats, ps)
	}
	return resp, nil
}

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics
// reports: cadvisor's, which the kubelet's /metrics/cadvisor serves.
func (s *Service) ListMetricDescriptors(ctx context.Context, r *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	return &runtime.ListMetricDescriptorsResponse{Descriptors: podmetrics.Descriptors()}, nil
}

// ListPodSandboxMetrics reports the described metrics of every ready pod
// and its running containers.
func (s *Service) ListPodSandboxMetrics(ctx context.Context, r *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	ctx = s.nsCtx(ctx)
	now := time.Now()
	fs := s.writableFs()
	resp := &runtime.ListPodSandboxMetricsResponse{}
	for _, sb := range s.sandboxes.list() {
		if !sb.isReady() {
			continue
		}
		md := sb.config.GetMetadata()
		pod := podmetrics.Pod{ID: sb.rec.ID, Name: md.GetName(), Namespace: md.GetNamespace()}
		if !sb.hostNetwork() {
			pod.NetNSPid = sb.pausePid()
		}
		var ctrs []podmetrics.Container
		for _, c := range s.containersOf(sb.rec.ID) {
			if c.state() != runtime.ContainerState_CONTAINER_RUNNING {
				continue
			}
			pc := podmetrics.Container{
				ID: c.rec.ID, Name: c.config.GetMetadata().GetName(),
				PodName: md.GetName(), PodNamespace: md.GetNamespace(), PodID: sb.rec.ID,
				Image: c.rec.ImageName, Pid: c.status().Pid, StartedAt: time.Unix(0, c.status().StartedAt),
				FsLimitBytes: fs.limit, FsInodesTotal: fs.inodes, FsInodesFree: fs.inodesFree,
			}
			if v, err := s.rawStats(ctx, c.rec.ID); err == nil {
				pc.Stats = v
			}
			if sp, err := s.containerSpec(ctx, c.rec.ID); err == nil {
				pc.Spec = sp
				if sp.Linux != nil {
					pc.CgroupPath = sp.Linux.CgroupsPath
				}
			}
			if u, err := s.client.SnapshotService(s.cfg.Snapshotter).Usage(ctx, c.rec.ID); err == nil {
				pc.FsUsedBytes, pc.FsInodesUsed = uint64(u.Size), uint64(u.Inodes)
			}
			ctrs = append(ctrs, pc)
		}
		resp.PodMetrics = append(resp.PodMetrics, podmetrics.Collect(pod, ctrs, now))
	}
	return resp, nil
}

// fsSize is the size of the filesystem holding writable layers.
type fsSize struct{ limit, inodes, inodesFree uint64 }

func (s *Service) writableFs() fsSize {
	var st unix.Statfs_t
	if err := unix.Statfs(s.cfg.Root, &st); err != nil {
		return fsSize{}
	}
	return fsSize{limit: st.Blocks * uint64(st.Bsize), inodes: st.Files, inodesFree: st.Ffree}
}

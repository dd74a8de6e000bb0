package spec

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/client/oci"
	"github.com/hullrt/hull/core/containers"
)

// host is what the options need to know about the machine's cgroups.
// ContainerOpts probes it; tests set it.
type host struct {
	cgroup2 bool // the unified hierarchy: containers get a cgroup namespace
	hugetlb bool // the hugetlb controller is available
	swap    bool // swap can be limited
}

const cgroupRoot = "/sys/fs/cgroup"

// probeHost reads the cgroup setup of the running system.
func probeHost() host {
	var h host
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		h.cgroup2 = true
		if data, err := os.ReadFile(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
			h.hugetlb = strings.Contains(" "+strings.TrimSpace(string(data))+" ", " hugetlb ")
		}
		// The root cgroup has no memory.swap.max; the one hulld runs
		// in does when swap accounting is on.
		if own := ownCgroup2(); own != "" {
			_, err := os.Stat(filepath.Join(cgroupRoot, own, "memory.swap.max"))
			h.swap = err == nil
		}
		return h
	}
	_, err := os.Stat(filepath.Join(cgroupRoot, "hugetlb"))
	h.hugetlb = err == nil
	_, err = os.Stat(filepath.Join(cgroupRoot, "memory", "memory.memsw.limit_in_bytes"))
	h.swap = err == nil
	return h
}

// ownCgroup2 is the cgroup v2 path of the calling process, "" if unknown.
func ownCgroup2() string {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return filepath.Clean("/" + p)
		}
	}
	return ""
}

// clampOOMScoreAdj checks an oom_score_adj and raises it to the minimum
// the host allows.
func clampOOMScoreAdj(v int64, min *int) (int, error) {
	if v < -1000 || v > 1000 {
		return 0, fmt.Errorf("oom_score_adj %d is outside -1000..1000: %w", v, errdefs.ErrInvalidArgument)
	}
	adj := int(v)
	if min != nil && adj < *min {
		adj = *min
	}
	return adj, nil
}

// withResources applies the CRI resources: CFS period, quota and shares,
// memory and swap limits, cpusets, hugepage limits and unified (cgroup v2)
// keys. Zero values mean "not set". Without a swap limit, swap is limited
// to the memory limit where swap can be limited, so that a container does
// not swap by default.
func withResources(r *runtime.LinuxContainerResources, o Options, h host) (oci.SpecOpts, error) {
	if r == nil {
		return nil, nil
	}
	for _, v := range []struct {
		name string
		v    int64
	}{
		{"cpu_period", r.GetCpuPeriod()}, {"cpu_quota", r.GetCpuQuota()}, {"cpu_shares", r.GetCpuShares()},
		{"memory_limit_in_bytes", r.GetMemoryLimitInBytes()},
	} {
		// A quota of -1 is "unlimited" to the kernel.
		if v.v < 0 && !(v.name == "cpu_quota" && v.v == -1) {
			return nil, fmt.Errorf("resource %s %d is negative: %w", v.name, v.v, errdefs.ErrInvalidArgument)
		}
	}
	if sw := r.GetMemorySwapLimitInBytes(); sw < -1 {
		return nil, fmt.Errorf("resource memory_swap_limit_in_bytes %d is negative: %w", sw, errdefs.ErrInvalidArgument)
	}
	var hugepages []specs.LinuxHugepageLimit
	if len(r.GetHugepageLimits()) > 0 && !o.DisableHugetlb {
		if !h.hugetlb && !o.TolerateMissingHugetlb {
			return nil, fmt.Errorf("hugepage limits are set but the hugetlb cgroup controller is missing (tolerate_missing_hugetlb_controller drops them): %w", errdefs.ErrFailedPrecondition)
		}
		if h.hugetlb {
			for _, l := range r.GetHugepageLimits() {
				if l.GetPageSize() == "" || strings.ContainsAny(l.GetPageSize(), "/.\x00") {
					return nil, fmt.Errorf("hugepage limit page size %q: %w", l.GetPageSize(), errdefs.ErrInvalidArgument)
				}
				hugepages = append(hugepages, specs.LinuxHugepageLimit{Pagesize: l.GetPageSize(), Limit: l.GetLimit()})
			}
		}
	}
	for k := range r.GetUnified() {
		if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." {
			return nil, fmt.Errorf("unified resource key %q is not a cgroup file name: %w", k, errdefs.ErrInvalidArgument)
		}
	}
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		ensureResources(s)
		res := s.Linux.Resources
		cpu := res.CPU
		if cpu == nil {
			cpu = &specs.LinuxCPU{}
		}
		if p := r.GetCpuPeriod(); p != 0 {
			v := uint64(p)
			cpu.Period = &v
		}
		if q := r.GetCpuQuota(); q != 0 {
			cpu.Quota = &q
		}
		if sh := r.GetCpuShares(); sh != 0 {
			v := uint64(sh)
			cpu.Shares = &v
		}
		if c := r.GetCpusetCpus(); c != "" {
			cpu.Cpus = c
		}
		if m := r.GetCpusetMems(); m != "" {
			cpu.Mems = m
		}
		if *cpu != (specs.LinuxCPU{}) {
			res.CPU = cpu
		}
		if limit := r.GetMemoryLimitInBytes(); limit != 0 || r.GetMemorySwapLimitInBytes() != 0 {
			if res.Memory == nil {
				res.Memory = &specs.LinuxMemory{}
			}
			if limit != 0 {
				res.Memory.Limit = &limit
				if r.GetMemorySwapLimitInBytes() == 0 && h.swap {
					sw := limit
					res.Memory.Swap = &sw
				}
			}
			if sw := r.GetMemorySwapLimitInBytes(); sw != 0 && h.swap {
				res.Memory.Swap = &sw
			}
		}
		res.HugepageLimits = append(res.HugepageLimits, hugepages...)
		if u := r.GetUnified(); len(u) > 0 {
			if res.Unified == nil {
				res.Unified = make(map[string]string, len(u))
			}
			maps.Copy(res.Unified, u)
		}
		return nil
	}, nil
}

// withOOMScoreAdj sets the process's oom_score_adj.
func withOOMScoreAdj(adj int) oci.SpecOpts {
	return oci.WithOOMScoreAdj(adj)
}

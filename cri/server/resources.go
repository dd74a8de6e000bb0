package server

import (
	"encoding/json"

	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/hullrt/hull/core/containers"
)

// containersRecord is the store's container record, which Update options
// change.
type containersRecord = containers.Container

// setSpec stores sp as rec's spec.
func setSpec(rec *containersRecord, sp *specs.Spec) error {
	b, err := json.Marshal(sp)
	if err != nil {
		return err
	}
	var a typeurl.Any = &anypb.Any{TypeUrl: containers.SpecTypeURL, Value: b}
	rec.Spec = a
	return nil
}

func clampOOM(v int, min *int) int {
	if min != nil && v < *min {
		return *min
	}
	return v
}

// linuxResources turns CRI resources into OCI ones; zero means "leave".
func linuxResources(r *runtime.LinuxContainerResources, minOOM *int) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	cpu := &specs.LinuxCPU{}
	if r.GetCpuPeriod() != 0 {
		p := uint64(r.GetCpuPeriod())
		cpu.Period = &p
	}
	if r.GetCpuQuota() != 0 {
		q := r.GetCpuQuota()
		cpu.Quota = &q
	}
	if r.GetCpuShares() != 0 {
		s := uint64(r.GetCpuShares())
		cpu.Shares = &s
	}
	cpu.Cpus, cpu.Mems = r.GetCpusetCpus(), r.GetCpusetMems()
	if *cpu != (specs.LinuxCPU{}) {
		out.CPU = cpu
	}
	if r.GetMemoryLimitInBytes() != 0 || r.GetMemorySwapLimitInBytes() != 0 {
		out.Memory = &specs.LinuxMemory{}
		if l := r.GetMemoryLimitInBytes(); l != 0 {
			out.Memory.Limit = &l
		}
		if sw := r.GetMemorySwapLimitInBytes(); sw != 0 {
			out.Memory.Swap = &sw
		}
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	if len(r.GetUnified()) > 0 {
		out.Unified = map[string]string{}
		for k, v := range r.GetUnified() {
			out.Unified[k] = v
		}
	}
	return out
}

// mergeResources lays the set fields of upd over cur.
func mergeResources(cur, upd *specs.LinuxResources) *specs.LinuxResources {
	if cur == nil {
		cur = &specs.LinuxResources{}
	}
	if upd.CPU != nil {
		if cur.CPU == nil {
			cur.CPU = &specs.LinuxCPU{}
		}
		c, u := cur.CPU, upd.CPU
		if u.Period != nil {
			c.Period = u.Period
		}
		if u.Quota != nil {
			c.Quota = u.Quota
		}
		if u.Shares != nil {
			c.Shares = u.Shares
		}
		if u.Cpus != "" {
			c.Cpus = u.Cpus
		}
		if u.Mems != "" {
			c.Mems = u.Mems
		}
	}
	if upd.Memory != nil {
		if cur.Memory == nil {
			cur.Memory = &specs.LinuxMemory{}
		}
		if upd.Memory.Limit != nil {
			cur.Memory.Limit = upd.Memory.Limit
		}
		if upd.Memory.Swap != nil {
			cur.Memory.Swap = upd.Memory.Swap
		}
	}
	if len(upd.HugepageLimits) > 0 {
		cur.HugepageLimits = upd.HugepageLimits
	}
	if len(upd.Unified) > 0 {
		if cur.Unified == nil {
			cur.Unified = map[string]string{}
		}
		for k, v := range upd.Unified {
			cur.Unified[k] = v
		}
	}
	return cur
}

// containerUser is the user a container's spec runs as, for its status.
func containerUser(sp *specs.Spec) *runtime.ContainerUser {
	if sp == nil || sp.Process == nil {
		return nil
	}
	u := sp.Process.User
	// The process's groups, as `id -G` shows them: its group first.
	groups := []int64{int64(u.GID)}
	for _, g := range u.AdditionalGids {
		if g != u.GID {
			groups = append(groups, int64(g))
		}
	}
	return &runtime.ContainerUser{Linux: &runtime.LinuxContainerUser{Uid: int64(u.UID), Gid: int64(u.GID), SupplementalGroups: groups}}
}

package podmetrics

import (
	"slices"
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The name lists of sigs.k8s.io/cri-tools v1.37.0 pkg/validate/pod.go,
// copied as data: that package cannot be imported.
var (
	critestExpected = []string{
		"container_blkio_device_usage_total",
		"container_cpu_cfs_periods_total",
		"container_cpu_cfs_throttled_periods_total",
		"container_cpu_cfs_throttled_seconds_total",
		"container_cpu_system_seconds_total",
		"container_cpu_usage_seconds_total",
		"container_cpu_user_seconds_total",
		"container_file_descriptors",
		"container_fs_inodes_free",
		"container_fs_inodes_total",
		"container_fs_limit_bytes",
		"container_fs_reads_bytes_total",
		"container_fs_reads_total",
		"container_fs_usage_bytes",
		"container_fs_writes_bytes_total",
		"container_fs_writes_total",
		"container_hugetlb_max_usage_bytes",
		"container_hugetlb_usage_bytes",
		"container_last_seen",
		"container_memory_cache",
		"container_memory_failcnt",
		"container_memory_failures_total",
		"container_memory_kernel_usage",
		"container_memory_mapped_file",
		"container_memory_max_usage_bytes",
		"container_memory_rss",
		"container_memory_swap",
		"container_memory_usage_bytes",
		"container_memory_working_set_bytes",
		"container_network_receive_bytes_total",
		"container_network_receive_errors_total",
		"container_network_receive_packets_dropped_total",
		"container_network_receive_packets_total",
		"container_network_transmit_bytes_total",
		"container_network_transmit_errors_total",
		"container_network_transmit_packets_dropped_total",
		"container_network_transmit_packets_total",
		"container_oom_events_total",
		"container_pressure_cpu_stalled_seconds_total",
		"container_pressure_cpu_waiting_seconds_total",
		"container_pressure_io_stalled_seconds_total",
		"container_pressure_io_waiting_seconds_total",
		"container_pressure_memory_stalled_seconds_total",
		"container_pressure_memory_waiting_seconds_total",
		"container_processes",
		"container_sockets",
		"container_spec_cpu_period",
		"container_spec_cpu_quota",
		"container_spec_cpu_shares",
		"container_spec_memory_limit_bytes",
		"container_spec_memory_reservation_limit_bytes",
		"container_spec_memory_swap_limit_bytes",
		"container_start_time_seconds",
		"container_threads",
		"container_threads_max",
		"container_ulimits_soft",
	}
	critestUnimplemented = []string{
		"container_hugetlb_max_usage_bytes",
		"container_hugetlb_usage_bytes",
		"container_pressure_cpu_stalled_seconds_total",
		"container_pressure_cpu_waiting_seconds_total",
		"container_pressure_io_stalled_seconds_total",
		"container_pressure_io_waiting_seconds_total",
		"container_pressure_memory_stalled_seconds_total",
		"container_pressure_memory_waiting_seconds_total",
		"container_spec_cpu_quota",
		"container_spec_memory_reservation_limit_bytes",
		"container_ulimits_soft",
	}
	critestOptional = []string{
		"container_blkio_device_usage_total",
		"container_fs_reads_bytes_total",
		"container_fs_reads_total",
		"container_fs_writes_bytes_total",
		"container_fs_writes_total",
	}
)

// critestDescriptors is critest's testMetricDescriptors: every descriptor
// has help and label keys, every expected one not unimplemented is there.
func critestDescriptors(descs []*runtime.MetricDescriptor) []string {
	var problems []string
	returned := map[string]*runtime.MetricDescriptor{}
	for _, d := range descs {
		returned[d.GetName()] = d
		if d.GetHelp() == "" {
			problems = append(problems, d.GetName()+": no help")
		}
		if len(d.GetLabelKeys()) == 0 {
			problems = append(problems, d.GetName()+": no label keys")
		}
	}
	var missing []string
	for _, name := range critestExpected {
		if _, ok := returned[name]; !ok && !slices.Contains(critestUnimplemented, name) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "missing descriptors: "+strings.Join(missing, " "))
	}
	return problems
}

// critestPodMetrics is critest's testPodSandboxMetrics: the pod is there,
// every expected metric not optional or unimplemented has a value, and the
// first value found of every described metric has as many label values as
// its descriptor has keys.
func critestPodMetrics(all []*runtime.PodSandboxMetrics, descs []*runtime.MetricDescriptor, podID string) []string {
	var pm *runtime.PodSandboxMetrics
	for _, m := range all {
		if m.GetPodSandboxId() == podID {
			pm = m
			break
		}
	}
	if pm == nil {
		return []string{"no metrics for pod " + podID}
	}
	found := map[string][]string{}
	for _, m := range pm.GetMetrics() {
		if len(found[m.GetName()]) == 0 {
			found[m.GetName()] = m.GetLabelValues()
		}
	}
	for _, cm := range pm.GetContainerMetrics() {
		for _, m := range cm.GetMetrics() {
			if len(found[m.GetName()]) == 0 {
				found[m.GetName()] = m.GetLabelValues()
			}
		}
	}
	var problems, missing, mismatched []string
	for _, name := range critestExpected {
		if len(found[name]) == 0 && !slices.Contains(critestOptional, name) && !slices.Contains(critestUnimplemented, name) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "missing values: "+strings.Join(missing, " "))
	}
	for _, d := range descs {
		values, ok := found[d.GetName()]
		if !ok {
			if !slices.Contains(critestOptional, d.GetName()) && !slices.Contains(critestUnimplemented, d.GetName()) {
				mismatched = append(mismatched, d.GetName())
			}
			continue
		}
		if len(values) != len(d.GetLabelKeys()) {
			mismatched = append(mismatched, d.GetName())
		}
	}
	if len(mismatched) > 0 {
		problems = append(problems, "labels not as described: "+strings.Join(mismatched, ","))
	}
	return problems
}

func TestDescriptorsPassCritest(t *testing.T) {
	if p := critestDescriptors(Descriptors()); len(p) > 0 {
		t.Fatalf("critest would fail: %v", p)
	}
}

func TestDescriptorsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range Descriptors() {
		if seen[d.Name] {
			t.Errorf("descriptor %q twice", d.Name)
		}
		seen[d.Name] = true
		if !slices.IsSorted(d.LabelKeys) {
			t.Errorf("%s: label keys %v not sorted", d.Name, d.LabelKeys)
		}
		if len(slices.Compact(slices.Clone(d.LabelKeys))) != len(d.LabelKeys) {
			t.Errorf("%s: label keys %v repeat", d.Name, d.LabelKeys)
		}
		for _, k := range []string{"container", "id", "image", "namespace", "pod"} {
			if !slices.Contains(d.LabelKeys, k) {
				t.Errorf("%s: label keys %v lack %q", d.Name, d.LabelKeys, k)
			}
		}
		// critest fails on a described metric without a value unless
		// it knows the metric as optional or unimplemented: describing
		// one outside its list would need a value in every pod.
		if !slices.Contains(critestExpected, d.Name) {
			t.Errorf("%s is not in critest's list", d.Name)
		}
	}
	// Descriptors hands out copies.
	a := Descriptors()
	a[0].LabelKeys[0] = "changed"
	if Descriptors()[0].LabelKeys[0] == "changed" {
		t.Error("a change to one Descriptors result shows in the next")
	}
}

func TestCollectPassesCritest(t *testing.T) {
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			f := newFakeHost(t)
			pod, ctrs := f.pod(version)
			c, logs := f.collector()
			pm := c.collect(pod, ctrs, fakeNow)
			if p := critestPodMetrics([]*runtime.PodSandboxMetrics{pm}, Descriptors(), pod.ID); len(p) > 0 {
				t.Fatalf("critest would fail: %v", p)
			}
			if logs.Len() > 0 {
				t.Errorf("unexpected log output:\n%s", logs)
			}
		})
	}
}

// TestCritestCheckCatchesGaps makes sure the copied check is not vacuous:
// without network and process sources it reports what is missing.
func TestCritestCheckCatchesGaps(t *testing.T) {
	f := newFakeHost(t)
	pod, ctrs := f.pod("v1")
	pod.NetNSPid = 0
	for i := range ctrs {
		ctrs[i].Pid = 0
	}
	c, _ := f.collector()
	p := critestPodMetrics([]*runtime.PodSandboxMetrics{c.collect(pod, ctrs, fakeNow)}, Descriptors(), pod.ID)
	joined := strings.Join(p, "\n")
	for _, want := range []string{"container_network_receive_bytes_total", "container_processes", "container_sockets"} {
		if !strings.Contains(joined, want) {
			t.Errorf("critest check did not report %s missing: %v", want, p)
		}
	}
	if p := critestPodMetrics([]*runtime.PodSandboxMetrics{c.collect(pod, ctrs, fakeNow)}, Descriptors(), "other"); len(p) != 1 {
		t.Errorf("another pod's metrics were accepted: %v", p)
	}
}

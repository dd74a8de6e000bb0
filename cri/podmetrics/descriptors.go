package podmetrics

import (
	"slices"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Label keys. The base keys are on every metric; the others belong to the
// metrics that break a container's value down further.
const (
	keyContainer   = "container"
	keyID          = "id"
	keyImage       = "image"
	keyNamespace   = "namespace"
	keyPod         = "pod"
	keyInterface   = "interface"
	keyDevice      = "device"
	keyMajor       = "major"
	keyMinor       = "minor"
	keyOperation   = "operation"
	keyFailureType = "failure_type"
	keyScope       = "scope"
	keyPagesize    = "pagesize"
	keyUlimit      = "ulimit"
)

// Metric names, as cadvisor exports them.
const (
	cpuUsageSeconds             = "container_cpu_usage_seconds_total"
	cpuUserSeconds              = "container_cpu_user_seconds_total"
	cpuSystemSeconds            = "container_cpu_system_seconds_total"
	cpuCFSPeriods               = "container_cpu_cfs_periods_total"
	cpuCFSThrottledPeriods      = "container_cpu_cfs_throttled_periods_total"
	cpuCFSThrottledSeconds      = "container_cpu_cfs_throttled_seconds_total"
	memoryUsage                 = "container_memory_usage_bytes"
	memoryMaxUsage              = "container_memory_max_usage_bytes"
	memoryWorkingSet            = "container_memory_working_set_bytes"
	memoryCache                 = "container_memory_cache"
	memoryRSS                   = "container_memory_rss"
	memoryMappedFile            = "container_memory_mapped_file"
	memorySwap                  = "container_memory_swap"
	memoryKernel                = "container_memory_kernel_usage"
	memoryFailcnt               = "container_memory_failcnt"
	memoryFailures              = "container_memory_failures_total"
	oomEvents                   = "container_oom_events_total"
	hugetlbUsage                = "container_hugetlb_usage_bytes"
	hugetlbMaxUsage             = "container_hugetlb_max_usage_bytes"
	pressureCPUWaiting          = "container_pressure_cpu_waiting_seconds_total"
	pressureCPUStalled          = "container_pressure_cpu_stalled_seconds_total"
	pressureMemoryWaiting       = "container_pressure_memory_waiting_seconds_total"
	pressureMemoryStalled       = "container_pressure_memory_stalled_seconds_total"
	pressureIOWaiting           = "container_pressure_io_waiting_seconds_total"
	pressureIOStalled           = "container_pressure_io_stalled_seconds_total"
	blkioDeviceUsage            = "container_blkio_device_usage_total"
	fsReadsBytes                = "container_fs_reads_bytes_total"
	fsReads                     = "container_fs_reads_total"
	fsWritesBytes               = "container_fs_writes_bytes_total"
	fsWrites                    = "container_fs_writes_total"
	fsUsage                     = "container_fs_usage_bytes"
	fsLimit                     = "container_fs_limit_bytes"
	fsInodesTotal               = "container_fs_inodes_total"
	fsInodesFree                = "container_fs_inodes_free"
	processes                   = "container_processes"
	fileDescriptors             = "container_file_descriptors"
	sockets                     = "container_sockets"
	threads                     = "container_threads"
	threadsMax                  = "container_threads_max"
	ulimitsSoft                 = "container_ulimits_soft"
	lastSeen                    = "container_last_seen"
	startTime                   = "container_start_time_seconds"
	specCPUPeriod               = "container_spec_cpu_period"
	specCPUQuota                = "container_spec_cpu_quota"
	specCPUShares               = "container_spec_cpu_shares"
	specMemoryLimit             = "container_spec_memory_limit_bytes"
	specMemoryReservation       = "container_spec_memory_reservation_limit_bytes"
	specMemorySwapLimit         = "container_spec_memory_swap_limit_bytes"
	networkReceiveBytes         = "container_network_receive_bytes_total"
	networkReceivePackets       = "container_network_receive_packets_total"
	networkReceiveErrors        = "container_network_receive_errors_total"
	networkReceiveDropped       = "container_network_receive_packets_dropped_total"
	networkTransmitBytes        = "container_network_transmit_bytes_total"
	networkTransmitPackets      = "container_network_transmit_packets_total"
	networkTransmitErrors       = "container_network_transmit_errors_total"
	networkTransmitDropped      = "container_network_transmit_packets_dropped_total"
	counter                     = runtime.MetricType_COUNTER
	gauge                       = runtime.MetricType_GAUGE
	secondsTruncated            = " Whole seconds (truncated)."
	cgroupUnlimitedReportedZero = " 0 if unlimited."
)

// definition is one metric: its descriptor and its kind.
type definition struct {
	name  string
	help  string
	kind  runtime.MetricType
	extra []string // label keys beyond the base ones
}

// labelKeys are the definition's label keys, sorted, as the CRI asks the
// runtime to keep them.
func (d definition) labelKeys() []string {
	keys := append([]string{keyContainer, keyID, keyImage, keyNamespace, keyPod}, d.extra...)
	slices.Sort(keys)
	return keys
}

// definitions lists every metric Collect can report. It builds a new table on
// each call so that no caller can change another's.
func definitions() []definition {
	iface := []string{keyInterface}
	dev := []string{keyDevice}
	return []definition{
		{cpuUsageSeconds, "Cumulative CPU time consumed by the container, user and system." + secondsTruncated, counter, nil},
		{cpuUserSeconds, "Cumulative user CPU time consumed by the container." + secondsTruncated, counter, nil},
		{cpuSystemSeconds, "Cumulative system CPU time consumed by the container." + secondsTruncated, counter, nil},
		{cpuCFSPeriods, "Number of elapsed CFS enforcement period intervals.", counter, nil},
		{cpuCFSThrottledPeriods, "Number of CFS period intervals in which the container was throttled.", counter, nil},
		{cpuCFSThrottledSeconds, "Total time the container has been throttled by CFS." + secondsTruncated, counter, nil},

		{memoryUsage, "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, nil},
		{memoryMaxUsage, "Maximum memory usage recorded in bytes.", gauge, nil},
		{memoryWorkingSet, "Current working set in bytes: usage less inactive file-backed memory.", gauge, nil},
		{memoryCache, "Number of bytes of page cache memory.", gauge, nil},
		{memoryRSS, "Size of RSS (anonymous and swap cache memory) in bytes.", gauge, nil},
		{memoryMappedFile, "Size of memory mapped files in bytes.", gauge, nil},
		{memorySwap, "Container swap usage in bytes.", gauge, nil},
		{memoryKernel, "Size of kernel memory allocated to the container in bytes.", gauge, nil},
		{memoryFailcnt, "Number of times memory usage hit the memory limit.", counter, nil},
		{memoryFailures, "Cumulative count of memory allocation failures (page faults), in the container alone or in its whole hierarchy.", counter, []string{keyFailureType, keyScope}},
		{oomEvents, "Count of out of memory kills observed in the container.", counter, nil},

		{hugetlbUsage, "Current hugepage usage in bytes.", gauge, []string{keyPagesize}},
		{hugetlbMaxUsage, "Maximum hugepage usage recorded in bytes.", gauge, []string{keyPagesize}},

		{pressureCPUWaiting, "Total time tasks in the container waited for CPU (PSI some)." + secondsTruncated, counter, nil},
		{pressureCPUStalled, "Total time no task in the container could run for lack of CPU (PSI full)." + secondsTruncated, counter, nil},
		{pressureMemoryWaiting, "Total time tasks in the container waited for memory (PSI some)." + secondsTruncated, counter, nil},
		{pressureMemoryStalled, "Total time no task in the container could run for lack of memory (PSI full)." + secondsTruncated, counter, nil},
		{pressureIOWaiting, "Total time tasks in the container waited for I/O (PSI some)." + secondsTruncated, counter, nil},
		{pressureIOStalled, "Total time no task in the container could run for I/O (PSI full)." + secondsTruncated, counter, nil},

		{blkioDeviceUsage, "Bytes of block I/O by device and operation.", counter, []string{keyDevice, keyMajor, keyMinor, keyOperation}},
		{fsReadsBytes, "Cumulative count of bytes read.", counter, dev},
		{fsReads, "Cumulative count of reads completed.", counter, dev},
		{fsWritesBytes, "Cumulative count of bytes written.", counter, dev},
		{fsWrites, "Cumulative count of writes completed.", counter, dev},
		{fsUsage, "Number of bytes that are consumed by the container on this filesystem.", gauge, dev},
		{fsLimit, "Number of bytes that can be consumed by the container on this filesystem.", gauge, dev},
		{fsInodesTotal, "Number of inodes of the filesystem.", gauge, dev},
		{fsInodesFree, "Number of available inodes of the filesystem.", gauge, dev},

		{processes, "Number of processes running inside the container.", gauge, nil},
		{fileDescriptors, "Number of open file descriptors of the container's processes.", gauge, nil},
		{sockets, "Number of open sockets of the container's processes.", gauge, nil},
		{threads, "Number of threads running inside the container.", gauge, nil},
		{threadsMax, "Maximum number of threads allowed inside the container, infinity if value is zero.", gauge, nil},
		{ulimitsSoft, "Soft ulimit values of the container's init process; unlimited values are not reported.", gauge, []string{keyUlimit}},

		{lastSeen, "Last time the container was seen by the exporter, in seconds since the Unix epoch.", gauge, nil},
		{startTime, "Start time of the container in seconds since the Unix epoch.", gauge, nil},

		{specCPUPeriod, "CPU CFS period of the container in microseconds.", gauge, nil},
		{specCPUQuota, "CPU CFS quota of the container in microseconds per period; not reported without a quota.", gauge, nil},
		{specCPUShares, "CPU shares of the container.", gauge, nil},
		{specMemoryLimit, "Memory limit of the container in bytes." + cgroupUnlimitedReportedZero, gauge, nil},
		{specMemoryReservation, "Memory reservation (soft limit) of the container in bytes." + cgroupUnlimitedReportedZero, gauge, nil},
		{specMemorySwapLimit, "Memory plus swap limit of the container in bytes." + cgroupUnlimitedReportedZero, gauge, nil},

		{networkReceiveBytes, "Cumulative count of bytes received.", counter, iface},
		{networkReceivePackets, "Cumulative count of packets received.", counter, iface},
		{networkReceiveErrors, "Cumulative count of errors encountered while receiving.", counter, iface},
		{networkReceiveDropped, "Cumulative count of packets dropped while receiving.", counter, iface},
		{networkTransmitBytes, "Cumulative count of bytes transmitted.", counter, iface},
		{networkTransmitPackets, "Cumulative count of packets transmitted.", counter, iface},
		{networkTransmitErrors, "Cumulative count of errors encountered while transmitting.", counter, iface},
		{networkTransmitDropped, "Cumulative count of packets dropped while transmitting.", counter, iface},
	}
}

// Descriptors are the metrics Collect reports, for ListMetricDescriptors.
// Each call returns new values the caller may keep or change.
func Descriptors() []*runtime.MetricDescriptor {
	defs := definitions()
	out := make([]*runtime.MetricDescriptor, 0, len(defs))
	for _, d := range defs {
		out = append(out, &runtime.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: d.labelKeys()})
	}
	return out
}

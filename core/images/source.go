package images

import (
	"net"
	"slices"
	"strings"
)

// LabelDistributionSource prefixes the content label, one per registry
// host, that lists the repositories a blob was pulled from
// ("containerd.io/distribution.source.docker.io=library/redis"): a push
// to the same registry mounts the blob from one of them instead of
// uploading it.
const LabelDistributionSource = "containerd.io/distribution.source."

// DistributionSourceKey is the label key for a registry host, which names
// the host without its port, as containerd's keys do: the label says the
// same whether hull or containerd wrote it.
func DistributionSourceKey(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return LabelDistributionSource + host
}

// DistributionSource returns the repositories m (a blob's labels, or a
// descriptor's annotations) lists for registry host: under containerd's
// key, else under the key with the port that earlier hull versions wrote.
func DistributionSource(m map[string]string, host string) string {
	if v := m[DistributionSourceKey(host)]; v != "" {
		return v
	}
	return m[LabelDistributionSource+host]
}

// AppendDistributionSource adds repo to a label's comma-separated list of
// repositories, kept sorted and without repeats.
func AppendDistributionSource(list, repo string) string {
	var repos []string
	if list != "" {
		repos = strings.Split(list, ",")
	}
	if repo != "" {
		repos = append(repos, repo)
	}
	slices.Sort(repos)
	repos = slices.Compact(repos)
	if len(repos) > 0 && repos[0] == "" {
		repos = repos[1:]
	}
	return strings.Join(repos, ",")
}

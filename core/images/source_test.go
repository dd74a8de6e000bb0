package images

import "testing"

func TestDistributionSource(t *testing.T) {
	for host, want := range map[string]string{
		"docker.io":        "containerd.io/distribution.source.docker.io",
		"127.0.0.1:5000":   "containerd.io/distribution.source.127.0.0.1",
		"[::1]:5000":       "containerd.io/distribution.source.::1",
		"registry.example": "containerd.io/distribution.source.registry.example",
	} {
		if got := DistributionSourceKey(host); got != want {
			t.Errorf("DistributionSourceKey(%q) = %q, want %q", host, got, want)
		}
	}
	for _, c := range []struct{ list, repo, want string }{
		{"", "library/redis", "library/redis"},
		{"library/redis", "library/redis", "library/redis"},
		{"z/b", "a/b", "a/b,z/b"},
		{"a,,c", "b", "a,b,c"},
		{"a", "", "a"},
	} {
		if got := AppendDistributionSource(c.list, c.repo); got != c.want {
			t.Errorf("AppendDistributionSource(%q, %q) = %q, want %q", c.list, c.repo, got, c.want)
		}
	}
}

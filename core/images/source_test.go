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

func TestDistributionSourceLookup(t *testing.T) {
	for _, c := range []struct {
		labels map[string]string
		host   string
		want   string
	}{
		{map[string]string{"containerd.io/distribution.source.127.0.0.1": "a/b"}, "127.0.0.1:5000", "a/b"},
		{map[string]string{"containerd.io/distribution.source.127.0.0.1:5000": "old/repo"}, "127.0.0.1:5000", "old/repo"},
		{map[string]string{"containerd.io/distribution.source.127.0.0.1": "new", "containerd.io/distribution.source.127.0.0.1:5000": "old"}, "127.0.0.1:5000", "new"},
		{map[string]string{"containerd.io/distribution.source.docker.io": "library/x"}, "docker.io", "library/x"},
		{nil, "docker.io", ""},
	} {
		if got := DistributionSource(c.labels, c.host); got != c.want {
			t.Errorf("DistributionSource(%v, %q) = %q, want %q", c.labels, c.host, got, c.want)
		}
	}
}

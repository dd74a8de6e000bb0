package cni

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestUpdatePodCIDR(t *testing.T) {
	dir := t.TempDir()
	confDir := filepath.Join(dir, "net.d")
	tmpl := filepath.Join(dir, "template.conflist")
	writeFile(t, tmpl, `{"cniVersion": "1.0.0", "name": "hull", "plugins": [{"type": "bridge",
  "ipam": {"type": "host-local", "ranges": [{{range $i, $r := .PodCIDRRanges}}{{if $i}}, {{end}}[{"subnet": "{{$r}}"}]{{end}}],
    "routes": [{{range $i, $r := .Routes}}{{if $i}}, {{end}}{"dst": "{{$r}}"}{{end}}]}}],
  "first": "{{.PodCIDR}}"}`)
	n, err := New(Config{ConfDir: confDir, ConfTemplate: tmpl, CacheDir: filepath.Join(dir, "cache"), BinDirs: []string{systemBinDir}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Status(); err == nil {
		t.Fatal("ready before the pod CIDR was set")
	}
	rendered := filepath.Join(confDir, TemplateConfName)

	if err := n.UpdatePodCIDR([]string{"10.244.1.0/24", " fd00:10:244:1::/64"}); err != nil {
		t.Fatalf("UpdatePodCIDR: %v", err)
	}
	want := `{"cniVersion": "1.0.0", "name": "hull", "plugins": [{"type": "bridge",
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}],
  "first": "10.244.1.0/24"}`
	if got, err := os.ReadFile(rendered); err != nil || string(got) != want {
		t.Fatalf("rendered %s = %s, %v; want %s", rendered, got, err, want)
	}
	if err := n.Status(); err != nil {
		t.Errorf("Status after the template was rendered: %v", err)
	}

	// Unchanged CIDRs do not render again: an edit by hand stays.
	writeFile(t, rendered, `{"cniVersion": "1.0.0", "name": "edited", "plugins": [{"type": "bridge"}]}`)
	if err := n.UpdatePodCIDR([]string{"10.244.1.0/24", "fd00:10:244:1::/64"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(rendered); string(got) == want {
		t.Errorf("unchanged CIDRs rendered the template again")
	}

	if err := n.UpdatePodCIDR([]string{"10.244.2.0/24"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(rendered)
	want = `{"cniVersion": "1.0.0", "name": "hull", "plugins": [{"type": "bridge",
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.2.0/24"}]],
    "routes": [{"dst": "0.0.0.0/0"}]}}],
  "first": "10.244.2.0/24"}`
	if string(got) != want {
		t.Errorf("after a new CIDR rendered %s, want %s", got, want)
	}
	if tmps, _ := filepath.Glob(filepath.Join(confDir, "*.tmp")); len(tmps) > 0 {
		t.Errorf("temporary files left: %v", tmps)
	}

	if err := n.UpdatePodCIDR([]string{"10.244.3.0/33"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("UpdatePodCIDR with a bad CIDR = %v, want InvalidArgument", err)
	}

	writeFile(t, tmpl, `{{.NoSuchField}}`)
	if err := n.UpdatePodCIDR([]string{"10.244.4.0/24"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("UpdatePodCIDR with a broken template = %v, want InvalidArgument", err)
	}
}

func TestUpdatePodCIDRWithoutTemplate(t *testing.T) {
	dir := t.TempDir()
	n, err := New(Config{ConfDir: filepath.Join(dir, "net.d"), CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.UpdatePodCIDR([]string{"10.244.1.0/24"}); err != nil {
		t.Fatalf("UpdatePodCIDR without a template: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "net.d")); !os.IsNotExist(err) {
		t.Errorf("UpdatePodCIDR without a template touched the conf dir: %v", err)
	}
}

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
)

// tctr runs containerd v2.4.2's ctr against the daemon at address; its
// image commands go through the Transfer service.
func tctr(t *testing.T, address string, stdin []byte, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(hulltest.Containerd2Bin(t, "ctr"), append([]string{"-a", address, "--timeout", "120s"}, args...)...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func tctrOK(t *testing.T, address string, stdin []byte, args ...string) string {
	t.Helper()
	out, err := tctr(t, address, stdin, args...)
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// imageList is `ctr images ls` reduced to "name digest" lines, sorted.
func imageList(t *testing.T, address, ns string) []string {
	t.Helper()
	out := tctrOK(t, address, nil, "-n", ns, "images", "ls")
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		// Skip the header and any warning ctr prints first.
		f := strings.Fields(l)
		if len(f) >= 3 && strings.HasPrefix(f[2], "sha256:") {
			lines = append(lines, f[0]+" "+f[2])
		}
	}
	sort.Strings(lines)
	return lines
}

// yardstick is a containerd v2.4.2 on its own root, to compare with.
func yardstick(t *testing.T) *hulltest.Containerd {
	t.Helper()
	return hulltest.StartContainerdWith(t, t.TempDir(), hulltest.ContainerdOptions{Binary: hulltest.Containerd2Bin(t, "containerd")})
}

func TestTransferPullWithCtr2(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img := smallImage("transfer")
	reg.Push(t, "transfer/app", "1", img)
	ref := reg.Host() + "/transfer/app:1"
	d := hulltest.Start(t, hulltest.Options{})
	c := yardstick(t)

	for _, addr := range []string{d.Address, c.Address} {
		out := tctrOK(t, addr, nil, "-n", "tp", "images", "pull", "--plain-http", ref)
		if !strings.Contains(out, "saved") && !strings.Contains(out, "done") {
			t.Logf("pull output from %s:\n%s", addr, out)
		}
	}
	hull, ctd := imageList(t, d.Address, "tp"), imageList(t, c.Address, "tp")
	if strings.Join(hull, "\n") != strings.Join(ctd, "\n") || len(hull) != 1 || !strings.Contains(hull[0], img.Manifest.Desc.Digest.String()) {
		t.Fatalf("images after pull: hull %q, containerd %q (want %s)", hull, ctd, img.Manifest.Desc.Digest)
	}
	// Unpacked as containerd's ctr asks: a container can be made from it.
	tctrOK(t, d.Address, nil, "-n", "tp", "containers", "create", ref, "tp1")
	tctrOK(t, d.Address, nil, "-n", "tp", "containers", "rm", "tp1")

	// --hosts-dir: the hosts.toml of the registry says plain http, so no
	// --plain-http is needed.
	hostsDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(hostsDir, reg.Host()), 0o755); err != nil {
		t.Fatal(err)
	}
	toml := "server = \"http://" + reg.Host() + "\"\n[host.\"http://" + reg.Host() + "\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n"
	if err := os.WriteFile(filepath.Join(hostsDir, reg.Host(), "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	tctrOK(t, d.Address, nil, "-n", "tp2", "images", "pull", "--hosts-dir", hostsDir, ref)
	if got := imageList(t, d.Address, "tp2"); len(got) != 1 || got[0] != hull[0] {
		t.Fatalf("images after pull with --hosts-dir: %q, want %q", got, hull)
	}
	// A pull that fails (no such tag) records nothing and leaves no lease.
	if out, err := tctr(t, d.Address, nil, "-n", "tp3", "images", "pull", "--plain-http", reg.Host()+"/transfer/app:nosuch"); err == nil {
		t.Fatalf("pull of a missing tag succeeded:\n%s", out)
	}
	if got := imageList(t, d.Address, "tp3"); len(got) != 0 {
		t.Fatalf("failed pull left images %q", got)
	}
	if ls := tctrOK(t, d.Address, nil, "-n", "tp3", "leases", "ls"); strings.Count(strings.TrimSpace(ls), "\n") != 0 {
		t.Fatalf("failed pull left leases:\n%s", ls)
	}
}

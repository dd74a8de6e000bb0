package cni

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hullrt/hull/cri/netns"
)

// netnsEnv marks a test binary re-run by inOwnNetNS.
const netnsEnv = "HULL_CNI_TEST_IN_NETNS"

// systemBinDir is where Debian installs the CNI plugins.
const systemBinDir = "/usr/lib/cni"

// inOwnNetNS keeps a test's bridges, veths and iptables rules out of the
// machine's network namespace. Called first in a test, it re-runs the test
// binary for just that test under unshare(1) in a new network and mount
// namespace and returns true, and the caller returns; in the re-run it
// returns false and the test does its work. Everything the plugins make then
// dies with that process, even if the test crashes before its cleanup.
func inOwnNetNS(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == "1" {
		return false
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run CNI plugins")
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join(systemBinDir, p)); err != nil {
			t.Fatalf("CNI plugin %s missing (containernetworking-plugins): %v", p, err)
		}
	}
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-5*time.Second))
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "unshare", "--net", "--mount", "--propagation", "private",
		os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("run in its own network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("test in its own network namespace: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("test did not pass in its own network namespace")
	}
	return true
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// bridgeNet is a bridge + host-local + portmap network, as a node would
// have, with everything it keeps in the test's temp dirs.
type bridgeNet struct {
	net      *Network
	name     string // network name
	bridge   string
	subnet   *net.IPNet
	dataDir  string // host-local's
	cacheDir string
	confDir  string
	nsDir    string
}

// newBridgeNet writes a conflist whose plugins are bridge, then extra (raw
// JSON objects, comma-separated), then portmap.
func newBridgeNet(t *testing.T, cfg Config, extra ...string) *bridgeNet {
	t.Helper()
	dir := t.TempDir()
	b := &bridgeNet{
		name:     "hulltest",
		bridge:   "hb" + randomHex(t, 4),
		dataDir:  filepath.Join(dir, "ipam"),
		cacheDir: filepath.Join(dir, "cache"),
		confDir:  filepath.Join(dir, "net.d"),
		nsDir:    filepath.Join(dir, "netns"),
	}
	_, b.subnet, _ = net.ParseCIDR("10.250.7.0/28")
	plugins := []string{fmt.Sprintf(`{"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
		"ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}}`,
		b.bridge, b.dataDir, b.subnet.String())}
	plugins = append(plugins, extra...)
	plugins = append(plugins, `{"type": "portmap", "capabilities": {"portMappings": true}}`)
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`, b.name, strings.Join(plugins, ",\n"))
	writeFile(t, filepath.Join(b.confDir, "20-hulltest.conflist"), conf)
	if cfg.BinDirs == nil {
		cfg.BinDirs = []string{systemBinDir}
	}
	cfg.ConfDir, cfg.CacheDir = b.confDir, b.cacheDir
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Status(); err != nil {
		t.Fatalf("Status with %s: %v", conf, err)
	}
	b.net = n
	return b
}

// pod makes a pod with its own network namespace, removed at cleanup.
func (b *bridgeNet) pod(t *testing.T, pms ...PortMapping) (Pod, *netns.NetNS) {
	t.Helper()
	ns, err := netns.New(b.nsDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Remove(); err != nil {
			t.Errorf("remove netns: %v", err)
		}
	})
	id := randomHex(t, 32)
	return Pod{
		ID: id, Name: "web", Namespace: "default", UID: "uid-" + id[:8],
		NetNSPath: ns.Path(), PortMappings: pms,
	}, ns
}

// allocated lists the IPs host-local holds, and for whom.
func (b *bridgeNet) allocated(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(b.dataDir, b.name))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if net.ParseIP(e.Name()) == nil {
			continue // its lock and last_reserved_ip files
		}
		data, err := os.ReadFile(filepath.Join(b.dataDir, b.name, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(data)
	}
	return out
}

// cached lists the result cache's files.
func (b *bridgeNet) cached(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(b.cacheDir, "results"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// hostLinks lists the links of the test's network namespace.
func hostLinks(t *testing.T) []string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return names
}

// vethsGone waits for the host ends of removed pods' veths to go: the kernel
// destroys a namespace's devices after its last reference is gone, not
// synchronously with the unmount.
func vethsGone(t *testing.T, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	deadline := time.Now().Add(10 * time.Second)
	// Polled: there is no event for a kernel work queue's progress.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got := hostLinks(t)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("host links = %v, want %v", got, want)
		}
		<-tick.C
	}
}

func iptablesSave(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakePlugin writes an executable CNI plugin into dir that records each
// call's stdin and environment under record/<command>.{stdin,env} and then
// runs body (sh).
func fakePlugin(t *testing.T, dir, name, record, body string) {
	t.Helper()
	script := fmt.Sprintf(`#!/bin/sh
cat > %[1]s/"$CNI_COMMAND".stdin
env > %[1]s/"$CNI_COMMAND".env
%[2]s
`, record, body)
	if err := os.MkdirAll(record, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

package cni

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/cri/netns"
)

func TestSetupAndTeardown(t *testing.T) {
	if inOwnNetNS(t) {
		return
	}
	ctx := context.Background()
	b := newBridgeNet(t, Config{})
	before := hostLinks(t)
	pod, ns := b.pod(t, PortMapping{Protocol: "tcp", ContainerPort: 80, HostPort: 18080})

	res, err := b.net.Setup(ctx, pod)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if len(res.IPs) != 1 || !b.subnet.Contains(res.IPs[0]) {
		t.Fatalf("pod IPs = %v, want one in %v", res.IPs, b.subnet)
	}
	ip := res.IPs[0].String()
	if got := b.allocated(t); len(got) != 1 || !strings.Contains(got[ip], pod.ID) {
		t.Errorf("host-local allocations = %v, want only %s for %s", got, ip, pod.ID)
	}
	if _, ok := res.Interfaces["eth0"]; !ok {
		t.Errorf("result interfaces %v lack eth0", res.Interfaces)
	}
	if _, ok := res.Interfaces["lo"]; !ok {
		t.Errorf("result interfaces %v lack lo", res.Interfaces)
	}
	if _, err := json.Marshal(res.Raw); err != nil {
		t.Errorf("Raw does not marshal: %v", err)
	}
	var inside []string
	err = ns.Do(func() error {
		eth0, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		if eth0.HardwareAddr.String() != res.Interfaces["eth0"] {
			t.Errorf("eth0 MAC %s, result says %s", eth0.HardwareAddr, res.Interfaces["eth0"])
		}
		addrs, err := eth0.Addrs()
		for _, a := range addrs {
			inside = append(inside, a.String())
		}
		return err
	})
	if err != nil {
		t.Fatalf("look at the pod's eth0: %v", err)
	}
	if !slices.Contains(inside, ip+"/28") {
		t.Errorf("pod eth0 addresses %v lack %s/28", inside, ip)
	}
	links := hostLinks(t)
	var veths []string
	for _, l := range links {
		if strings.HasPrefix(l, "veth") {
			veths = append(veths, l)
		}
	}
	if len(veths) != 1 || !slices.Contains(links, b.bridge) {
		t.Errorf("host links %v: want bridge %s and one veth", links, b.bridge)
	}
	if rules := iptablesSave(t); !strings.Contains(rules, pod.ID) || !strings.Contains(rules, "18080") {
		t.Errorf("portmap rules for pod %s port 18080 missing:\n%s", pod.ID, rules)
	}
	if c := b.cached(t); len(c) != 2 {
		t.Errorf("result cache in %s = %v, want loopback's and hulltest's", b.cacheDir, c)
	}
	if m, _ := filepath.Glob("/var/lib/cni/results/*" + pod.ID + "*"); len(m) > 0 {
		t.Errorf("libcni cached in /var/lib/cni: %v", m)
	}

	for i := range 2 {
		if err := b.net.Teardown(ctx, pod); err != nil {
			t.Fatalf("Teardown #%d: %v", i+1, err)
		}
	}
	if got := b.allocated(t); len(got) != 0 {
		t.Errorf("host-local allocations after Teardown = %v", got)
	}
	if rules := iptablesSave(t); strings.Contains(rules, pod.ID) {
		t.Errorf("rules for pod %s left after Teardown:\n%s", pod.ID, rules)
	}
	if c := b.cached(t); len(c) != 0 {
		t.Errorf("result cache after Teardown = %v", c)
	}
	// The bridge stays, as on any node; the pod's veth goes.
	vethsGone(t, append(slices.Clone(before), b.bridge))
	// Still in the namespace: Teardown took its veth out.
	err = ns.Do(func() error {
		if _, err := net.InterfaceByName("eth0"); err == nil {
			t.Errorf("pod eth0 still there after Teardown")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTeardownAfterNetNSRemoved(t *testing.T) {
	if inOwnNetNS(t) {
		return
	}
	ctx := context.Background()
	b := newBridgeNet(t, Config{SetupSerially: true})
	before := hostLinks(t)
	pod, ns := b.pod(t, PortMapping{Protocol: "udp", ContainerPort: 53, HostPort: 10053})
	if _, err := b.net.Setup(ctx, pod); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if err := ns.Remove(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := b.net.Teardown(ctx, pod); err != nil {
			t.Fatalf("Teardown #%d of a pod whose netns is gone: %v", i+1, err)
		}
	}
	if got := b.allocated(t); len(got) != 0 {
		t.Errorf("host-local allocations after Teardown = %v", got)
	}
	if rules := iptablesSave(t); strings.Contains(rules, pod.ID) {
		t.Errorf("rules for pod %s left after Teardown:\n%s", pod.ID, rules)
	}
	vethsGone(t, append(slices.Clone(before), b.bridge))
}

func TestSetupFailureLeavesNothing(t *testing.T) {
	if inOwnNetNS(t) {
		return
	}
	ctx := context.Background()
	bin := t.TempDir()
	record := t.TempDir()
	fakePlugin(t, bin, "hull-refuse", record, `
if [ "$CNI_COMMAND" = ADD ]; then
	echo '{"cniVersion": "1.0.0", "code": 999, "msg": "hull-refuse refuses ADD"}'
	exit 1
fi`)
	for _, tc := range []struct {
		name, plugin, wantErr string
		serial                bool
	}{
		{"script fails on add", `{"type": "hull-refuse"}`, "hull-refuse refuses ADD", false},
		{"binary missing", `{"type": "hull-not-installed"}`, `failed to find plugin "hull-not-installed"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBridgeNet(t, Config{BinDirs: []string{systemBinDir, bin}, SetupSerially: tc.serial}, tc.plugin)
			before := hostLinks(t)
			pod, _ := b.pod(t, PortMapping{ContainerPort: 80, HostPort: 18081})
			_, err := b.net.Setup(ctx, pod)
			if err == nil {
				t.Fatal("Setup succeeded with a failing plugin")
			}
			for _, want := range []string{`network "hulltest"`, tc.wantErr} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Setup error %q does not say %q", err, want)
				}
			}
			if got := b.allocated(t); len(got) != 0 {
				t.Errorf("host-local allocations after failed Setup = %v", got)
			}
			if c := b.cached(t); len(c) != 0 {
				t.Errorf("result cache after failed Setup = %v", c)
			}
			// The bridge plugin may have made the bridge before failing on;
			// no veth may stay.
			want := slices.DeleteFunc(hostLinks(t), func(l string) bool { return strings.HasPrefix(l, "veth") })
			if !slices.Contains(before, b.bridge) && !slices.Contains(want, b.bridge) {
				t.Errorf("bridge %s was never made: links %v", b.bridge, want)
			}
			vethsGone(t, want)
		})
	}
	if _, err := os.Stat(filepath.Join(record, "DEL.stdin")); err != nil {
		t.Errorf("the refusing plugin was never asked to DEL: %v", err)
	}
}

func TestCapabilitiesAndArgsReachPlugins(t *testing.T) {
	if inOwnNetNS(t) {
		return
	}
	ctx := context.Background()
	bin, record, dir := t.TempDir(), t.TempDir(), t.TempDir()
	fakePlugin(t, bin, "hull-fake", record, `
if [ "$CNI_COMMAND" = ADD ]; then
	echo '{"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "'"$CNI_NETNS"'"}],
	"ips": [{"address": "fd00::5/64", "interface": 0}, {"address": "10.9.0.5/24", "interface": 0}]}'
fi`)
	writeFile(t, filepath.Join(dir, "net.d", "10-fake.conflist"), `{"cniVersion": "1.0.0", "name": "fake", "plugins": [
		{"type": "hull-fake", "capabilities": {"portMappings": true, "bandwidth": true, "dns": true, "cgroupPath": true}}]}`)
	for _, tc := range []struct {
		pref string
		want []string
	}{
		{"", []string{"10.9.0.5", "fd00::5"}},
		{IPPrefIPv6, []string{"fd00::5", "10.9.0.5"}},
		{IPPrefCNI, []string{"fd00::5", "10.9.0.5"}},
	} {
		n, err := New(Config{BinDirs: []string{systemBinDir, bin}, ConfDir: filepath.Join(dir, "net.d"), CacheDir: filepath.Join(dir, "cache"), IPPref: tc.pref})
		if err != nil {
			t.Fatal(err)
		}
		ns, err := netns.New(filepath.Join(dir, "netns"))
		if err != nil {
			t.Fatal(err)
		}
		pod := Pod{
			ID: "abc123", Name: "web", Namespace: "prod", UID: "u-1", NetNSPath: ns.Path(),
			PortMappings: []PortMapping{{Protocol: "UDP", ContainerPort: 53, HostPort: 5353, HostIP: "127.0.0.1"}, {ContainerPort: 8080}},
			CgroupParent: "/kubepods/pod-u-1",
			Annotations:  map[string]string{IngressBandwidthAnnotation: "10M", EgressBandwidthAnnotation: "1Ki"},
			DNS:          &DNS{Servers: []string{"10.96.0.10"}, Searches: []string{"prod.svc.cluster.local"}, Options: []string{"ndots:5"}},
		}
		res, err := n.Setup(ctx, pod)
		if err != nil {
			t.Fatalf("Setup: %v", err)
		}
		var got []string
		for _, ip := range res.IPs {
			got = append(got, ip.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("IPPref %q: pod IPs %v, want %v", tc.pref, got, tc.want)
		}
		// Only the ID: what ADD got comes from the cache.
		if err := n.Teardown(ctx, Pod{ID: pod.ID, NetNSPath: pod.NetNSPath}); err != nil {
			t.Fatalf("Teardown: %v", err)
		}
		if err := ns.Remove(); err != nil {
			t.Fatal(err)
		}
	}

	var stdin struct {
		Name          string `json:"name"`
		RuntimeConfig struct {
			PortMappings []map[string]any `json:"portMappings"`
			Bandwidth    map[string]any   `json:"bandwidth"`
			DNS          map[string]any   `json:"dns"`
			CgroupPath   string           `json:"cgroupPath"`
		} `json:"runtimeConfig"`
	}
	data, err := os.ReadFile(filepath.Join(record, "ADD.stdin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &stdin); err != nil {
		t.Fatalf("plugin stdin %s: %v", data, err)
	}
	rc := stdin.RuntimeConfig
	if stdin.Name != "fake" || len(rc.PortMappings) != 1 || rc.PortMappings[0]["protocol"] != "udp" ||
		rc.PortMappings[0]["hostPort"] != float64(5353) || rc.PortMappings[0]["hostIP"] != "127.0.0.1" {
		t.Errorf("plugin got name %q, port mappings %v; want fake and only 127.0.0.1:5353/udp", stdin.Name, rc.PortMappings)
	}
	if rc.Bandwidth["ingressRate"] != float64(10_000_000) || rc.Bandwidth["egressRate"] != float64(1024) || rc.Bandwidth["ingressBurst"] == nil {
		t.Errorf("plugin got bandwidth %v", rc.Bandwidth)
	}
	if rc.CgroupPath != "/kubepods/pod-u-1" || rc.DNS["servers"] == nil {
		t.Errorf("plugin got cgroupPath %q, dns %v", rc.CgroupPath, rc.DNS)
	}
	env, err := os.ReadFile(filepath.Join(record, "ADD.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"K8S_POD_NAMESPACE=prod", "K8S_POD_NAME=web", "K8S_POD_INFRA_CONTAINER_ID=abc123", "K8S_POD_UID=u-1", "IgnoreUnknown=1"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("plugin CNI_ARGS lack %s:\n%s", want, env)
		}
	}
	// DEL gets the arguments ADD had, from the cache.
	del, err := os.ReadFile(filepath.Join(record, "DEL.stdin"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(del), `"hostPort":5353`) || !strings.Contains(string(del), "prevResult") {
		t.Errorf("plugin DEL stdin lacks the port mapping or prevResult: %s", del)
	}

	// With its config gone, a pod is still deleted from the network it was
	// added to.
	n, err := New(Config{BinDirs: []string{systemBinDir, bin}, ConfDir: filepath.Join(dir, "net.d"), CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New(filepath.Join(dir, "netns"))
	if err != nil {
		t.Fatal(err)
	}
	pod := Pod{ID: "def456", NetNSPath: ns.Path()}
	if _, err := n.Setup(ctx, pod); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if err := ns.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "net.d", "10-fake.conflist")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(record, "DEL.stdin")); err != nil {
		t.Fatal(err)
	}
	if err := n.Status(); err == nil {
		t.Fatal("ready without a config")
	}
	if err := n.Teardown(ctx, pod); err != nil {
		t.Fatalf("Teardown without a config: %v", err)
	}
	if del, err := os.ReadFile(filepath.Join(record, "DEL.stdin")); err != nil || !strings.Contains(string(del), `"name":"fake"`) {
		t.Errorf("no DEL from the cached config: %s, %v", del, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "cache", "results")); len(entries) != 0 {
		t.Errorf("cache entries left: %v", entries)
	}

	// A bad annotation is the caller's error, before any plugin runs.
	writeFile(t, filepath.Join(dir, "net.d", "10-fake.conflist"), `{"cniVersion": "1.0.0", "name": "fake", "plugins": [{"type": "hull-fake"}]}`)
	_, err = n.Setup(ctx, Pod{ID: "bad", NetNSPath: "/nonexistent", Annotations: map[string]string{EgressBandwidthAnnotation: "fast"}})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), EgressBandwidthAnnotation) {
		t.Errorf("Setup with a bad bandwidth annotation = %v, want InvalidArgument naming it", err)
	}
}

func TestStatus(t *testing.T) {
	dir := t.TempDir()
	confDir := filepath.Join(dir, "net.d")
	n, err := New(Config{ConfDir: confDir, CacheDir: filepath.Join(dir, "cache"), BinDirs: []string{systemBinDir}})
	if err != nil {
		t.Fatalf("New with a missing conf dir: %v", err)
	}
	err = n.Status()
	if !errdefs.IsFailedPrecondition(err) || err.Error() != "cni config uninitialized: no network config found in "+confDir {
		t.Fatalf("Status with no conf dir = %v", err)
	}
	if err := os.Mkdir(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := n.Status(); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), confDir) {
		t.Fatalf("Status with an empty conf dir = %v", err)
	}
	_, err = n.Setup(context.Background(), Pod{ID: "p1", NetNSPath: "/nonexistent"})
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "no network config found in "+confDir) {
		t.Errorf("Setup when not ready = %v, want FailedPrecondition with Status's reason", err)
	}

	writeFile(t, filepath.Join(confDir, "50-net.conflist"), `{"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": "bridge"}]}`)
	if err := n.Status(); err != nil {
		t.Fatalf("Status after a conflist was written: %v", err)
	}

	// A broken file that sorts first is the one loaded, and named.
	bad := filepath.Join(confDir, "10-broken.conf")
	writeFile(t, bad, `{"cniVersion": "1.0.0", "name": `)
	if err := n.Status(); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), bad) {
		t.Errorf("Status with a broken config = %v, want one naming %s", err, bad)
	}
	// Rewritten in place with the same length and within the same clock
	// tick, it must still be noticed.
	writeFile(t, bad, `{"cniVersion": "1.0.0", "type":"x"}`[:len(`{"cniVersion": "1.0.0", "name": `)])
	writeFile(t, bad, `{"name": "a", "type": "bridge"}  `)
	if err := n.Status(); err != nil {
		t.Errorf("Status after the broken config was fixed: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{CacheDir: ""},
		{CacheDir: "/tmp/x", IPPref: "ipv5"},
		{CacheDir: "/tmp/x", MaxConfNum: -1},
	} {
		if _, err := New(cfg); !errdefs.IsInvalidArgument(err) {
			t.Errorf("New(%+v) = %v, want InvalidArgument", cfg, err)
		}
	}
}

func TestOrderIPs(t *testing.T) {
	v4a, v4b, v6 := net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.2"), net.ParseIP("fd00::1")
	for _, tc := range []struct {
		pref     string
		in, want []net.IP
	}{
		{IPPrefIPv4, []net.IP{v6, v4a, v4b}, []net.IP{v4a, v6, v4b}},
		{IPPrefIPv6, []net.IP{v4a, v4b, v6}, []net.IP{v6, v4a, v4b}},
		{IPPrefCNI, []net.IP{v6, v4a}, []net.IP{v6, v4a}},
		{IPPrefIPv6, []net.IP{v4a}, []net.IP{v4a}},
		{IPPrefIPv4, nil, nil},
	} {
		got := orderIPs(slices.Clone(tc.in), tc.pref)
		if !slices.EqualFunc(got, tc.want, net.IP.Equal) {
			t.Errorf("orderIPs(%v, %s) = %v, want %v", tc.in, tc.pref, got, tc.want)
		}
	}
}

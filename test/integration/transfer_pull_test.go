package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hullrt/hull/client"
	"github.com/hullrt/hull/core/pull"
	"github.com/hullrt/hull/core/remotes/credentials"
	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/registrytest"
)

// transferCall is the method hulld's debug log names for a Transfer call.
const transferCall = "/containerd.services.transfer.v1.Transfer/Transfer"

// TestHullctlPullThroughTransfer: hullctl images pull and run's pull go
// through hulld's Transfer service (hulld fetches and unpacks, hullctl
// shows its progress), --local and the download flags keep hullctl's own
// pull, and a daemon without Transfer (Debian's containerd 1.6) gets
// hullctl's own pull without being asked.
func TestHullctlPullThroughTransfer(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img := smallImage("tp")
	for _, tag := range []string{"1", "2", "3", "4"} {
		reg.Push(t, "tp/app", tag, img)
	}
	d := hulltest.Start(t, hulltest.Options{Config: "version = 3\n[debug]\n  level = \"debug\"\n"})
	h := newHullctl(t, d)
	calls := func() int { return strings.Count(d.Log(), transferCall) }

	ref := reg.Host() + "/tp/app:1"
	out := h.ok(t, "images", "pull", "--plain", "--plain-http", ref)
	if calls() != 1 {
		t.Fatalf("hullctl images pull made %d Transfer calls, want 1", calls())
	}
	for _, l := range img.Layers {
		if !strings.Contains(out, "layer-"+l.Desc.Digest.String()+": done") {
			t.Errorf("no progress of layer %s from hulld's events:\n%s", l.Desc.Digest, out)
		}
	}
	if !strings.Contains(out, ref+": pulled "+img.Manifest.Desc.Digest.String()) {
		t.Errorf("no pulled line:\n%s", out)
	}
	// Unpacked by hulld: a container runs from it without hullctl's unpack.
	if ls := h.ok(t, "snapshots", "ls"); strings.Count(ls, "Committed") < len(img.Layers) {
		t.Errorf("the pull through Transfer did not unpack %d layers:\n%s", len(img.Layers), ls)
	}

	// hullctl's own pull: --local, or a flag only it honours.
	h.ok(t, "images", "pull", "--plain", "--plain-http", "--local", reg.Host()+"/tp/app:2")
	h.ok(t, "images", "pull", "--plain", "--plain-http", "--max-concurrent-downloads", "2", reg.Host()+"/tp/app:3")
	if calls() != 1 {
		t.Fatalf("--local and --max-concurrent-downloads went through Transfer (%d calls)", calls())
	}
	// Bad input through Transfer: a tag the registry lacks is named.
	h.fails(t, []string{reg.Host() + "/tp/app:nosuch", "not found"}, "images", "pull", "--plain", "--plain-http", reg.Host()+"/tp/app:nosuch")
	if calls() != 2 {
		t.Fatalf("%d Transfer calls after the failed pull, want 2", calls())
	}
	ls := h.ok(t, "images", "ls", "-q")
	for _, tag := range []string{"1", "2", "3"} {
		if !strings.Contains(ls, reg.Host()+"/tp/app:"+tag) {
			t.Errorf("image tp/app:%s missing:\n%s", tag, ls)
		}
	}
	if strings.Contains(ls, "nosuch") {
		t.Errorf("a failed pull left an image:\n%s", ls)
	}

	// containerd 1.6 has no Transfer service: hullctl pulls itself.
	hulltest.RequireCtr(t)
	c16 := hulltest.StartContainerdWith(t, "", hulltest.ContainerdOptions{})
	h16 := hullctlRunner{bin: h.bin, d: &hulltest.Daemon{Address: c16.Address}}
	h16.ok(t, "images", "pull", "--plain", "--plain-http", reg.Host()+"/tp/app:4")
	if ls := h16.ok(t, "images", "ls", "-q"); !strings.Contains(ls, reg.Host()+"/tp/app:4") {
		t.Fatalf("containerd 1.6 lacks the image hullctl pulled:\n%s", ls)
	}
}

// TestClientTransferPull drives the client library's TransferPull against
// containerd v2.4.2's Transfer service, the yardstick: the image is
// recorded and unpacked there, progress arrives as blob states, and the
// options that only a client-side pull has are refused.
func TestClientTransferPull(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Htpasswd: map[string]string{"carol": "pw"}})
	img := smallImage("ctp")
	reg.Push(t, "ctp/app", "1", img)
	ref := reg.Host() + "/ctp/app:1"
	cd := hulltest.StartContainerdWith(t, "", hulltest.ContainerdOptions{Binary: hulltest.Containerd2Bin(t, "containerd")})
	cl, err := client.New(cd.Address, client.WithDefaultNamespace("ctp"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()

	var mu sync.Mutex
	done := map[string]bool{}
	progress := func(p pull.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Status == pull.StatusDone || p.Status == pull.StatusExists {
			done[p.Desc.Digest.String()] = true
		}
	}
	_, err = cl.TransferPull(ctx, ref, client.WithPlainHTTP(), client.WithProgress(progress))
	if err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Fatalf("pull without credentials: %v, want the registry's refusal", err)
	}
	got, err := cl.TransferPull(ctx, ref, client.WithPlainHTTP(), client.WithProgress(progress),
		client.WithCredentials(credentials.Static("", "carol", "pw")), client.WithPullUnpack("overlayfs", nil))
	if err != nil {
		t.Fatalf("pull with credentials asked over the auth stream: %v", err)
	}
	if got.Name != ref || got.Target.Digest != img.Manifest.Desc.Digest {
		t.Fatalf("image %s %s, want %s %s", got.Name, got.Target.Digest, ref, img.Manifest.Desc.Digest)
	}
	for _, l := range img.Layers {
		if !done[l.Desc.Digest.String()] {
			t.Errorf("no progress said layer %s was done: %v", l.Desc.Digest, done)
		}
	}
	ctr2 := hulltest.Containerd2Bin(t, "ctr")
	if out := runTool(t, ctr2, "--address", cd.Address, "-n", "ctp", "snapshots", "ls"); strings.Count(out, "Committed") < len(img.Layers) {
		t.Errorf("containerd did not unpack the pull:\n%s", out)
	}

	_, err = cl.TransferPull(ctx, ref, client.WithMaxConcurrentDownloads(2))
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), ref) {
		t.Fatalf("TransferPull with a client-side download setting: %v, want InvalidArgument naming %s", err, ref)
	}
}

// TestTransferPullsShareConnections: hulld's Transfer pulls from one
// registry reuse the connections of the pulls before them, whatever
// credentials each brings: after three pulls of three images hulld holds
// no more connections to the registry than after the first.
func TestTransferPullsShareConnections(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	for _, tag := range []string{"a", "b", "c"} {
		reg.Push(t, "share/app", tag, smallImage("share-"+tag))
	}
	d := hulltest.Start(t, hulltest.Options{})
	h := newHullctl(t, d)
	var after []int
	for _, tag := range []string{"a", "b", "c"} {
		h.ok(t, "images", "pull", "--plain", "--plain-http", reg.Host()+"/share/app:"+tag)
		after = append(after, connectionsTo(t, d.PID(), reg.Host()))
	}
	if after[0] == 0 {
		t.Fatalf("hulld holds no connection to %s after a pull: its idle connections are not kept", reg.Host())
	}
	if after[2] > after[0] {
		t.Errorf("hulld holds %v connections to %s after each of three pulls: later pulls dialled again", after, reg.Host())
	}
}

// connectionsTo counts the established TCP connections of process pid to
// hostPort (an IPv4 host:port), from /proc.
func connectionsTo(t *testing.T, pid int, hostPort string) int {
	t.Helper()
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(host).To4()
	p, err := strconv.Atoi(port)
	if err != nil || ip == nil {
		t.Fatalf("%s is not an IPv4 host:port", hostPort)
	}
	// /proc/net/tcp writes an address as the little-endian hex of its
	// four bytes, and the port in big-endian hex.
	remote := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], p)
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		// sl local remote st ... inode (field 9)
		if len(f) > 9 && f[2] == remote && f[3] == "01" && inodes[f[9]] {
			n++
		}
	}
	return n
}

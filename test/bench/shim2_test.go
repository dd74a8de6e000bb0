package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hullrt/hull/internal/hulltest"
	"github.com/hullrt/hull/internal/testimage"
)

// BenchmarkRunRmShim2 times `run --rm` of a busybox container running
// /bin/true with containerd v2.4.2's runc shim (io.containerd.runc.v2) and
// containerd v2.4.2's ctr, under hulld and under containerd v2.4.2, both
// on temporary roots, alternating, 20 runs each after two warm-ups.
// Target: hulld <= 0.8x containerd v2.4.2's median with the same shim.
func BenchmarkRunRmShim2(b *testing.B) {
	const target, runs, ref = 0.8, 20, "example.test/busybox:bench"
	ctr := hulltest.Containerd2Bin(b, "ctr")
	hulltest.Containerd2Bin(b, "containerd-shim-runc-v2")
	path := hulltest.Containerd2Dir + string(os.PathListSeparator) + os.Getenv("PATH")
	h := hulltest.Start(b, hulltest.Options{Env: []string{"PATH=" + path}})
	c := hulltest.StartContainerdWith(b, "", hulltest.ContainerdOptions{
		Binary: hulltest.Containerd2Bin(b, "containerd"), PathDirs: []string{hulltest.Containerd2Dir}})
	files, err := testimage.BusyboxFiles()
	if err != nil {
		b.Fatal(err)
	}
	var archive bytes.Buffer
	if err := testimage.WriteOCIArchive(&archive, ref, testimage.New([]string{"/bin/sh"}, files)); err != nil {
		b.Fatal(err)
	}
	tar := filepath.Join(b.TempDir(), "busybox.tar")
	if err := os.WriteFile(tar, archive.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	fifos := b.TempDir()
	// The shim's runc root named, as ctr's default is containerd's own
	// (/run/containerd/runc).
	runcRoots := map[string]string{h.Address: b.TempDir(), c.Address: b.TempDir()}
	args := func(addr, id string) []string {
		return []string{"--address", addr, "-n", "bench", "run", "--rm", "--fifo-dir", fifos, "--runc-root", runcRoots[addr],
			"--runtime", "io.containerd.runc.v2", ref, id, "/bin/true"}
	}
	for _, addr := range []string{h.Address, c.Address} {
		if _, err := run(ctr, "--address", addr, "-n", "bench", "images", "import", "--local", tar); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, addr := range []string{h.Address, c.Address} {
			for _, pid := range hulltest.ShimPIDs(addr) {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
		}
	})
	var hullTimes, ctrdTimes []time.Duration
	for i := -2; i < runs; i++ {
		id := fmt.Sprintf("rm2-%d", i+2)
		var out strings.Builder
		ht, err := runTo(&out, ctr, args(h.Address, id)...)
		if err != nil {
			b.Fatalf("hulld: %v\n%s", err, out.String())
		}
		ct, err := runTo(&out, ctr, args(c.Address, id)...)
		if err != nil {
			b.Fatalf("containerd: %v\n%s", err, out.String())
		}
		if i >= 0 {
			hullTimes, ctrdTimes = append(hullTimes, ht), append(ctrdTimes, ct)
		}
	}
	// The floor under both: ctr starting and making one call, and runc
	// alone creating, starting and deleting the same kind of container
	// from a prepared bundle, as every shim must.
	floor := newRuncPodFloor(b)
	if err := floor.writeSpec(floor.ctr, func(ns []specs.LinuxNamespace) []specs.LinuxNamespace { return ns }); err != nil {
		b.Fatal(err)
	}
	var floors []time.Duration
	for i := 0; i < runs; i++ {
		ctrT, err := runTo(io.Discard, ctr, "--address", h.Address, "version")
		if err != nil {
			b.Fatal(err)
		}
		runcT, err := floor.once(fmt.Sprintf("rm2-floor-%d", i), "/bin/busybox", "true")
		if err != nil {
			b.Fatal(err)
		}
		floors = append(floors, ctrT+runcT)
	}
	hm, cm, fm := median(hullTimes), median(ctrdTimes), median(floors)
	report(b, "run-rm-shim2", "containerd-2.4.2", hm, cm, target,
		fmt.Sprintf("containerd v2.4.2's runc shim and ctr under both; floor (ctr version + runc create, start, delete) %s, %.2f of containerd's; above it hull %s, containerd %s, ratio %.2f",
			ms(fm), float64(fm)/float64(cm), ms(hm-fm), ms(cm-fm), float64(hm-fm)/float64(cm-fm)))
	b.ReportMetric(float64(fm)/float64(cm), "floor-ratio")
	b.ReportMetric(float64(hm-fm)/float64(cm-fm), "above-floor-ratio")
}

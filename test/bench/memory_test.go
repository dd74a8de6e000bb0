package bench

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkIdleMemory starts hulld and containerd fresh, lets them settle,
// serves one `ctr version` on each and compares their resident memory
// (VmRSS). Target: hull <= 0.7x containerd.
func BenchmarkIdleMemory(b *testing.B) {
	const target = 0.7
	hull := startHull(b, "")
	ctrd := startContainerd(b, "")
	time.Sleep(2 * time.Second)
	for _, addr := range []string{hull.Address, ctrd.Address} {
		if _, err := run("ctr", "--address", addr, "version"); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(time.Second)

	hRSS, hAnon, err := rssKiB(hull.PID())
	if err != nil {
		b.Fatal(err)
	}
	cRSS, cAnon, err := rssKiB(ctrd.PID())
	if err != nil {
		b.Fatal(err)
	}
	mib := func(kib int64) float64 { return float64(kib) / 1024 }
	ratio := float64(hRSS) / float64(cRSS)
	fmt.Printf("idle-memory: hull %.1fMiB containerd %.1fMiB ratio %.2f (target <= %.2f, %s); anonymous: hull %.1fMiB containerd %.1fMiB\n",
		mib(hRSS), mib(cRSS), ratio, target, verdict(ratio, target), mib(hAnon), mib(cAnon))
	b.ReportMetric(mib(hRSS), "hull-MiB")
	b.ReportMetric(mib(cRSS), "containerd-MiB")
	b.ReportMetric(ratio, "hull/containerd")
	b.ReportMetric(mib(hAnon), "hull-anon-MiB")
	b.ReportMetric(mib(cAnon), "containerd-anon-MiB")
}

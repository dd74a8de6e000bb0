package bench

import (
	"fmt"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/opencontainers/go-digest"
)

// BenchmarkContentRoundTrip times sequential Info+Read pairs of one small
// blob, the calls `ctr images ls` makes for every image, so that the daemon's
// cost per call shows without ctr's own. Each daemon runs alone on the
// machine in turn.
func BenchmarkContentRoundTrip(b *testing.B) {
	const pairs = 10000
	data := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
	dgst := digest.FromBytes(data)
	ctx := nsCtx("default")
	hull := startHull(b, "")
	ctrd := startContainerd(b, "")
	var results []time.Duration
	for _, addr := range []string{hull.Address, ctrd.Address} {
		cs := contentapi.NewContentClient(dial(b, addr))
		if err := writeBlob(ctx, cs, "rt", data, dgst, nil); err != nil {
			b.Fatal(err)
		}
		// Labelled as a root so neither daemon's gc takes it mid-run.
		cs.Update(ctx, &contentapi.UpdateRequest{Info: &contentapi.Info{Digest: dgst.String(), Labels: map[string]string{"containerd.io/gc.root": "bench"}}})
		var reps []time.Duration
		for r := 0; r < 3; r++ {
			start := time.Now()
			for i := 0; i < pairs; i++ {
				if _, err := cs.Info(ctx, &contentapi.InfoRequest{Digest: dgst.String()}); err != nil {
					b.Fatal(err)
				}
				rc, err := cs.Read(ctx, &contentapi.ReadContentRequest{Digest: dgst.String()})
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := rc.Recv(); err != nil {
						break
					}
				}
			}
			reps = append(reps, time.Since(start)/pairs)
		}
		results = append(results, median(reps))
	}
	report(b, "content-roundtrip", "containerd", results[0], results[1], 0.7,
		fmt.Sprintf("per Info+Read pair, %d pairs, median of 3", pairs))
}

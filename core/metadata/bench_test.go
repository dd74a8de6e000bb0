package metadata

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/hullrt/hull/core/namespaces"
)

// BenchmarkContainerCreateParallel creates containers from 16 goroutines
// per CPU at once, as a burst of pods does, on the test's disk: with
// group commit the burst shares commits and their syncs.
func BenchmarkContainerCreateParallel(b *testing.B) {
	db := openDBAt(b, b.TempDir())
	ctx := namespaces.WithNamespace(context.Background(), "bench")
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := db.Containers().Create(ctx, newContainer(fmt.Sprintf("c%d", n.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

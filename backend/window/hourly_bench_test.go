package window

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
)

// BenchmarkRollHour rolls one keyword-hour of 1,000 hosts (60 minutes of
// 1,000 cells) into the hourly tier: the unit of work of the roller. See
// bench/storage.md.
func BenchmarkRollHour(b *testing.B) {
	rdb := redistest.Start(b).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	fl := fleet{hosts: 1000, minutes: 60, base: 1714557600}
	fl.write(b, rdb, s.Keys(), "substring:x", true)
	exp := time.Now().Add(time.Hour).Unix()
	b.ReportAllocs()
	for b.Loop() {
		if cells, _, err := s.RollHour(ctx, "substring:x", fl.base, exp); err != nil || cells != 3*1000/3 {
			b.Fatalf("%d cells, %v", cells, err)
		}
	}
}

// BenchmarkRollHourBounded rolls one keyword-hour of 100,000 hosts (3
// minutes of them: 200,000 distinct sums of cells and hosts) with bounds of
// sums held below, at and above that, and reports the live heap's peak
// growth (sampled every 2 ms). See bench/storage.md.
func BenchmarkRollHourBounded(b *testing.B) {
	rdb := redistest.Start(b).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	fl := fleet{hosts: 100000, minutes: 3, base: 1714557600}
	fl.write(b, rdb, s.Keys(), "substring:x", false)
	for _, maxCells := range []int{10000, DefaultRollMaxCells, 1000000} {
		b.Run(fmt.Sprintf("max=%d", maxCells), func(b *testing.B) {
			var peak uint64
			for b.Loop() {
				runtime.GC()
				var base runtime.MemStats
				runtime.ReadMemStats(&base)
				stop, done := make(chan struct{}), make(chan struct{})
				go func() {
					defer close(done)
					var m runtime.MemStats
					for {
						select {
						case <-stop:
							return
						case <-time.After(2 * time.Millisecond):
						}
						runtime.ReadMemStats(&m)
						if m.HeapAlloc > base.HeapAlloc {
							peak = max(peak, m.HeapAlloc-base.HeapAlloc)
						}
					}
				}()
				_, _, err := s.RollHourBounded(ctx, "substring:x", fl.base, 1<<40, maxCells)
				close(stop)
				<-done
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(peak)/1e6, "peak-heap-MB")
		})
	}
}

package window

import (
	"context"
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

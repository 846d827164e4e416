package window

import (
	"context"
	"testing"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// BenchmarkTieredCounts reads 90 days of one keyword through both tiers:
// 83 days of hours (1,992) and 7 days of minutes (10,080), each with a
// count, as GET /api/v1/counts with the default retentions does. The cost
// is per hour and minute read, not per host. See bench/reads.md.
func BenchmarkTieredCounts(b *testing.B) {
	rdb := redistest.Start(b).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	const kw = "substring:x"
	const to = int64(1714557600)
	from, split := to-90*86400, to-7*86400
	p := rdb.Pipeline()
	put := func(w, h, t string, n int64) {
		p.HSet(ctx, w, Field("web-1", "app"), n)
		p.ZAdd(ctx, h, redis.Z{Score: float64(n), Member: "web-1"}, redis.Z{Score: float64(n), Member: TotalMember})
		p.ZAdd(ctx, t, redis.Z{Score: float64(n), Member: "app"})
		if p.Len() > 3000 {
			if _, err := p.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	for hr := from; hr < split; hr += 3600 {
		put(s.keys.HourWindow(kw, hr), s.keys.HourHostTotals(kw, hr), s.keys.HourTagTotals(kw, hr), 60)
	}
	for m := split; m < to; m += 60 {
		put(s.keys.Window(kw, m), s.keys.HostTotals(kw, m), s.keys.TagTotals(kw, m), 1)
	}
	if _, err := p.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	for _, f := range []struct {
		name string
		f    Filter
	}{{"total", Filter{}}, {"host", Filter{Host: "web-1", HostSet: true}}} {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ps, err := s.CountsTiered(ctx, kw, from, to, split, f.f, benchMaxCells)
				if err != nil || len(ps) != 1992+10080 {
					b.Fatalf("%d points, %v", len(ps), err)
				}
			}
		})
	}
}

// benchMaxCells is the API's default cell limit.
const benchMaxCells = 250_000

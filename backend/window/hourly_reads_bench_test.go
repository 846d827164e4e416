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
// count, as GET /api/v1/counts with the default retentions does, with the
// hours in the layout the roll-up wrote before (total, host) and in the
// compact one it writes now (-compact). The cost is per hour and minute
// read, not per host. See bench/reads.md.
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
	// kw's hours as the roll-up before the compact hourly layout wrote
	// them (zsets); compact's as it writes them now: host-keyed, the host
	// sums hash holding the total, the tag and the marker.
	const compact = "substring:compact"
	for hr := from; hr < split; hr += 3600 {
		put(s.keys.HourWindow(kw, hr), s.keys.HourHostTotals(kw, hr), s.keys.HourTagTotals(kw, hr), 60)
		p.HSet(ctx, s.keys.HourWindow(compact, hr), Field("web-1", "app"), 60)
		p.HSet(ctx, s.keys.HourHostSums(compact, hr), TotalMember, 60, SingleTagField, "app", CellHosts, 1)
	}
	for m := split; m < to; m += 60 {
		put(s.keys.Window(kw, m), s.keys.HostTotals(kw, m), s.keys.TagTotals(kw, m), 1)
		put(s.keys.Window(compact, m), s.keys.HostTotals(compact, m), s.keys.TagTotals(compact, m), 1)
	}
	if _, err := p.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	for _, f := range []struct {
		name, kw string
		f        Filter
	}{
		{"total", kw, Filter{}}, {"host", kw, Filter{Host: "web-1", HostSet: true}},
		{"total-compact", compact, Filter{}}, {"host-compact", compact, Filter{Host: "web-1", HostSet: true}},
	} {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ps, err := s.CountsTiered(ctx, f.kw, from, to, split, f.f, benchMaxCells)
				if err != nil || len(ps) != 1992+10080 {
					b.Fatalf("%d points, %v", len(ps), err)
				}
			}
		})
	}
}

// benchMaxCells is the API's default cell limit.
const benchMaxCells = 250_000

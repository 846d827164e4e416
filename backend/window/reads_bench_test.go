package window

import (
	"context"
	"testing"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
)

// BenchmarkFleetReads reads one keyword of 100,000 hosts × 20 minutes (the
// "Bounded state at fleet scale" measurement): the cell reads the counts API
// made before (Cells, then filtering in Go) against the rollup reads. See
// bench/reads.md.
func BenchmarkFleetReads(b *testing.B) {
	rdb := redistest.Start(b).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	fl := fleet{hosts: 100000, minutes: 20, base: 1714557600}
	fl.write(b, rdb, s.Keys(), "substring:x", true)
	// The same fleet of one tag, laid out host-keyed (CellHosts).
	keyed := fleet{hosts: 100000, minutes: 20, base: 1714557600, keyed: true}
	keyed.write(b, rdb, s.Keys(), "substring:keyed", true)
	from, to := fl.base, fl.base+int64(fl.minutes)*60
	host := Filter{Host: fl.host(4321), HostSet: true}
	b.Run("before/cells-host", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cells, err := s.Cells(ctx, "substring:x", from, to)
			if err != nil {
				b.Fatal(err)
			}
			var n int64
			for _, c := range cells {
				if host.match(c.Host, c.Tag, c.Labels) {
					n += c.Count
				}
			}
		}
	})
	benches := []struct {
		name string
		read func() error
	}{
		{"after/counts-host", func() error { _, err := s.Counts(ctx, "substring:x", from, to, host, 1e6); return err }},
		{"after/counts-all", func() error { _, err := s.Counts(ctx, "substring:x", from, to, Filter{}, 1e6); return err }},
		{"after/top-host-10m", func() error {
			_, _, err := s.Top(ctx, "substring:x", from, from+600, "host", 10, 1e6)
			return err
		}},
		{"after/top-host-20m", func() error { _, _, err := s.Top(ctx, "substring:x", from, to, "host", 10, 1e7); return err }},
		{"after/top-tag-20m", func() error { _, _, err := s.Top(ctx, "substring:x", from, to, "tag", 10, 1e6); return err }},
		{"keyed/counts-host", func() error { _, err := s.Counts(ctx, "substring:keyed", from, to, host, 1e6); return err }},
		{"keyed/top-host-10m", func() error {
			_, _, err := s.Top(ctx, "substring:keyed", from, from+600, "host", 10, 1e6)
			return err
		}},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bb.read(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTopHostOfSmallMinutes sums a top by host over 500 minutes of 500
// hosts (250,000 entries, the default KEYALERT_MAX_CELLS_PER_QUERY), with
// the host rollups as the ingest script writes them for such minutes (host
// sums hashes, copied into zsets by the top script) and as zsets (the
// layout before, and that of minutes past HostSumsMax hosts), and as
// host-keyed minutes (one tag: the cells summed by host). See
// bench/reads.md.
func BenchmarkTopHostOfSmallMinutes(b *testing.B) {
	rdb := redistest.Start(b).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	for _, layout := range []struct {
		name        string
		zset, keyed bool
	}{{"hashes", false, false}, {"zsets", true, false}, {"keyed", false, true}} {
		kw := "substring:" + layout.name
		fl := fleet{hosts: 500, minutes: 500, base: 1714557600, zsetHosts: layout.zset, keyed: layout.keyed}
		fl.write(b, rdb, s.Keys(), kw, true)
		b.Run(layout.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.Top(ctx, kw, fl.base, fl.base+int64(fl.minutes)*60, "host", 10, 250000); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

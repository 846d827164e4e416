package rollup

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/redis/go-redis/v9"
)

// usedMemory is Redis's used_memory after a moment for lazy frees.
func usedMemory(tb testing.TB, rdb redis.UniversalClient) int64 {
	tb.Helper()
	time.Sleep(200 * time.Millisecond)
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	tb.Fatal("no used_memory in INFO memory")
	return 0
}

// BenchmarkStorage measures the Redis memory of the two tiers for one
// keyword over a fleet of hosts, every host counting in every minute (the
// dense case): the minute tier as the ingest script lays it out (window hash,
// host and tag rollups with the minute's total, expiries), the dedup ids
// beside it (one per series-minute: one entry per flush and minute), and
// the hourly tier RollHour writes. Reported per series-minute and
// series-hour; bench/storage.md projects them onto a fleet.
func BenchmarkStorage(b *testing.B) {
	const hosts, tag, kw = 1000, "app.log", "substring:Exception"
	rdb := redistest.Start(b).Client()
	ctx := context.Background()
	k := window.NewKeys(streamKey)
	store := window.NewStore(rdb, streamKey)
	hour := window.HourStart(time.Now().Unix()) - 2*3600
	expire := time.Now().Add(24 * time.Hour)
	host := func(i int) string { return fmt.Sprintf("host-%04d.example.internal", i) }
	for range b.N {
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		base := usedMemory(b, rdb)
		for m := hour; m < hour+3600; m += 60 {
			p := rdb.Pipeline()
			var total int64
			for i := range hosts {
				n := int64(1 + (i*7+int(m/60))%500)
				p.HIncrBy(ctx, k.Window(kw, m), window.Field(host(i), tag), n)
				p.ZIncrBy(ctx, k.HostTotals(kw, m), float64(n), host(i))
				total += n
			}
			p.ZIncrBy(ctx, k.HostTotals(kw, m), float64(total), window.TotalMember)
			p.ZIncrBy(ctx, k.TagTotals(kw, m), float64(total), tag)
			for _, key := range []string{k.Window(kw, m), k.HostTotals(kw, m), k.TagTotals(kw, m)} {
				p.ExpireAt(ctx, key, expire)
			}
			if _, err := p.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
		minutes := usedMemory(b, rdb) - base
		// Dedup ids: 16 raw bytes each (as the ingest script stores them),
		// in the hour's seen set.
		p := rdb.Pipeline()
		for i := range 60 * hosts {
			var id [16]byte
			binary.LittleEndian.PutUint64(id[:], uint64(i)*0x9e3779b97f4a7c15)
			binary.LittleEndian.PutUint64(id[8:], uint64(i)*0xbf58476d1ce4e5b9+1)
			p.SAdd(ctx, k.Seen(hour), string(id[:]))
		}
		p.ExpireAt(ctx, k.Seen(hour), expire)
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		seen := usedMemory(b, rdb) - base - minutes
		if _, _, err := store.RollHour(ctx, kw, hour, expire.Unix()); err != nil {
			b.Fatal(err)
		}
		// used_memory grows by a few hundred KB more than the hourly keys
		// (buffers Redis keeps after the large writes), which at 1,000
		// series would swamp the figure: MEMORY USAGE measures the keys.
		// MEMORY USAGE of the keys themselves (no keyspace or expiry
		// overhead, no client buffers): the cross-check.
		usage := func(keys ...string) (n int64) {
			for _, key := range keys {
				u, err := rdb.MemoryUsage(ctx, key, 0).Result()
				if err != nil {
					b.Fatal(err)
				}
				n += u
			}
			return n
		}
		var minuteKeys int64
		for m := hour; m < hour+3600; m += 60 {
			minuteKeys += usage(k.Window(kw, m), k.HostTotals(kw, m), k.TagTotals(kw, m))
		}
		// Every key of the hour, whatever its layout (pieces, host sums).
		hourKeys := usage(rdb.Keys(ctx, k.HourWindow(kw, hour)+"*").Val()...)
		b.ReportMetric(float64(minuteKeys)/(60*hosts), "keyB/series-minute")
		b.ReportMetric(float64(hourKeys)/hosts, "keyB/series-hour")
		b.ReportMetric(float64(minutes)/(60*hosts), "B/series-minute")
		b.ReportMetric(float64(seen)/(60*hosts), "B/dedup-id")
	}
}

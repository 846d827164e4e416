package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/redis/go-redis/v9"
)

// readLeased is the read of the "range of ids owned per batch" design
// (bench/backend.md): the group delivers without a pending entry per entry
// (NOACK) and the batch's first and last ids are recorded as one lease, in
// the same atomic step, so a crash after it leaves an owned range.
const readLeased = `
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'NOACK', 'STREAMS', KEYS[1], '>')
if not r then return r end
local es = r[1][2]
if #es > 0 then
  redis.call('HSET', KEYS[2], es[1][1], es[#es][1] .. ' ' .. #es .. ' ' .. ARGV[2] .. ' ' .. ARGV[4])
end
return r`

// BenchmarkReadPaths measures Redis's CPU per entry read, batches of 1,000
// of the chunk shape, for the ways a consumer can take entries: the group's
// delivery with a pending entry per entry and its acknowledgement (today),
// the delivery without pending entries (NOACK), that delivery and a lease
// per batch in one script (the reply crossing Lua both ways), and XRANGE
// (a cursor owned elsewhere). One op is one entry; use -benchtime=Nx.
//
//	go test -run '^$' -bench BenchmarkReadPaths -benchtime 300000x ./backend/ingest
func BenchmarkReadPaths(b *testing.B) {
	const batch = 1000
	ctx := context.Background()
	type reader func(rdb *redis.Client, last string) (n int, lastID string)
	group := func(noack bool) reader {
		return func(rdb *redis.Client, _ string) (int, string) {
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{testStream, ">"},
				Count: batch, Block: -1, NoAck: noack}).Result()
			if err == redis.Nil || len(res) == 0 || len(res[0].Messages) == 0 {
				return 0, ""
			}
			if err != nil {
				b.Fatal(err)
			}
			ms := res[0].Messages
			if !noack {
				ids := make([]string, len(ms))
				for i := range ms {
					ids[i] = ms[i].ID
				}
				if err := rdb.XAck(ctx, testStream, "g", ids...).Err(); err != nil {
					b.Fatal(err)
				}
			}
			return len(ms), ms[len(ms)-1].ID
		}
	}
	leased := redis.NewScript(readLeased)
	paths := []struct {
		name string
		read reader
	}{
		{"xreadgroup+xack", group(false)},
		{"xreadgroup-noack", group(true)},
		{"script-noack-lease", func(rdb *redis.Client, _ string) (int, string) {
			res, err := leased.Run(ctx, rdb, []string{testStream, testStream + ":leases"}, "g", "c", batch, time.Now().Unix()).Slice()
			if err == redis.Nil || len(res) == 0 {
				return 0, ""
			}
			if err != nil {
				b.Fatal(err)
			}
			es := res[0].([]any)[1].([]any)
			if len(es) == 0 {
				return 0, ""
			}
			return len(es), es[len(es)-1].([]any)[0].(string)
		}},
		{"xrange", func(rdb *redis.Client, last string) (int, string) {
			ms, err := rdb.XRangeN(ctx, testStream, "("+last, "+", batch).Result()
			if err != nil {
				b.Fatal(err)
			}
			if len(ms) == 0 {
				return 0, ""
			}
			return len(ms), ms[len(ms)-1].ID
		}},
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			rdb := redistest.Start(b).Client()
			xaddPipelined(b, rdb, testStream, benchEntries(b.N, false))
			if err := rdb.XGroupCreate(ctx, testStream, "g", "0").Err(); err != nil {
				b.Fatal(err)
			}
			cpu0 := redistest.CPU(b, rdb)
			b.ResetTimer()
			read, last := 0, "0"
			for read < b.N {
				n, id := p.read(rdb, last)
				if n == 0 {
					b.Fatalf("read %d of %d entries", read, b.N)
				}
				read, last = read+n, id
			}
			b.StopTimer()
			b.ReportMetric(float64((redistest.CPU(b, rdb)-cpu0).Nanoseconds())/1000/float64(b.N), "redis-cpu-µs/entry")
		})
	}
}

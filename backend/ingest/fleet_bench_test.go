package ingest

import (
	"context"
	"fmt"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// fleetEntries makes n entries shaped like BenchmarkFleet's
// (cmd/keyalertd): hosts hosts (one producer each) × 32 keywords, a chunk
// being one flush of one host (every keyword, one ~115-byte sample line
// each), two flushes per event minute, minutes of an hour an hour back. A
// batch of 1,000 entries then holds ~31 hosts × 32 keywords: every entry is
// its own series, and a keyword-minute gathers all hosts.
func fleetEntries(n, hosts int) []stream.Entry {
	const keywords, flushes = 32, 2
	base := nowMinute() - 3600
	es := make([]stream.Entry, 0, n)
	for chunk := 0; len(es) < n; chunk++ {
		h := chunk % hosts
		minute := base + int64(chunk/(hosts*flushes))*60
		host := fmt.Sprintf("host-%04d.example.internal", h)
		for k := 0; k < keywords && len(es) < n; k++ {
			kw := fmt.Sprintf("fleet-keyword-%02d", k)
			es = append(es, stream.Entry{
				Batch:    fmt.Sprintf("%032x", chunk),
				Keyword:  keyword.Spec{Text: kw},
				Host:     host,
				Tag:      "app.log",
				Minute:   minute,
				Count:    int64(1 + (h+k)%20),
				Samples:  []string{fmt.Sprintf("2026-12-01T05:40:00.123Z %s worker-7 request %d failed: %s after 3 retries (upstream timeout)", host, h*100+k, kw)},
				SentMs:   time.Now().UnixMilli(),
				Producer: fmt.Sprintf("%016x", h),
				Attempt:  fmt.Sprintf("%016x", chunk),
			})
		}
	}
	return es
}

// BenchmarkScriptFleet is BenchmarkScript on the fleet's shape (see
// fleetEntries), in batches of 1,000 as keyalertd reads them, with
// keyalertd's defaults (20 samples per series, 10,000 series per
// keyword-minute). Besides Redis CPU per entry it attributes the server's
// time with INFO commandstats: µs per entry of each command the script
// calls (Redis 7 counts them), and of the script itself less those ("lua").
// Variants: samples off (Samples 0), 100 hosts (host sums stay a hash), no
// series bound, the AOF on (appendfsync everysec, as BenchmarkFleet runs
// Redis), and a script that does nothing with the same KEYS and ARGV. One op is one entry; use -benchtime=64000x (one event
// minute of 1,000 hosts) or more.
func BenchmarkScriptFleet(b *testing.B) {
	for _, v := range []struct {
		name      string
		hosts     int
		samples   int
		maxSeries int
		aof       string
		script    *redis.Script
	}{
		{"hosts=1000", 1000, 20, DefaultMaxSeriesPerMinute, "off", nil},
		{"hosts=1000/samples=0", 1000, 0, DefaultMaxSeriesPerMinute, "off", nil},
		{"hosts=1000/maxseries=0", 1000, 20, 0, "off", nil},
		{"hosts=100", 100, 20, DefaultMaxSeriesPerMinute, "off", nil},
		{"hosts=1000/aof=everysec", 1000, 20, DefaultMaxSeriesPerMinute, "everysec", nil},
		// The same KEYS and ARGV to a script that does nothing: what
		// sending and converting them costs.
		{"hosts=1000/noop", 1000, 20, DefaultMaxSeriesPerMinute, "off", redis.NewScript("return 1")},
	} {
		b.Run(v.name, func(b *testing.B) {
			sc := v.script
			if sc == nil {
				sc = applyScript
			}
			benchScriptEntries(b, sc, fleetEntries(b.N, v.hosts), v.samples, v.maxSeries, v.aof)
		})
	}
}

// benchScriptEntries runs the apply script over es, read and planned
// beforehand in batches of 1,000, and reports Redis CPU per entry;
// and commandstats' µs per entry by command. aof is redistest's SetAOF mode.
func benchScriptEntries(b *testing.B, script *redis.Script, es []stream.Entry, samples, maxSeries int, aof string) {
	srv := redistest.Start(b)
	rdb := srv.Client()
	ctx := context.Background()
	srv.SetAOF(aof)
	xaddPipelined(b, rdb, testStream, es)
	rdb.XGroupCreate(ctx, testStream, "keyalertd", "0")
	p := planner{keys: window.NewKeys(testStream), stream: testStream, dead: DeadStream(testStream), group: "keyalertd",
		consumer: "c", window: time.Hour, maxPerProd: DefaultDedupMaxPerProducer, pendingMax: 10000, retention: 7 * 24 * time.Hour,
		sampleCap: samples, sampleTTL: 7 * 24 * 3600, deadMaxLen: 1000, maxDeliv: 10, maxSeries: maxSeries}
	plans := readPlans(b, rdb, &p)
	script.Load(ctx, rdb)
	rdb.ConfigResetStat(ctx)
	b.ResetTimer()
	cpu0 := redistest.CPU(b, rdb)
	for _, pl := range plans {
		if err := script.Run(ctx, rdb, pl.keys, pl.args...).Err(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((redistest.CPU(b, rdb)-cpu0).Nanoseconds())/1000/float64(b.N), "redis-cpu-µs/entry")
	b.StopTimer()
	stats := commandStats(b, rdb)
	var nested float64
	for name, s := range stats {
		if name != "evalsha" && name != "eval" && name != "script" && name != "config" && name != "info" {
			nested += s.usec
		}
	}
	var names []string
	for name := range stats {
		names = append(names, name)
	}
	sort.Strings(names)
	var summary []string
	for _, name := range names {
		s := stats[name]
		switch name {
		case "evalsha":
			b.ReportMetric((s.usec-nested)/float64(b.N), "lua-µs/entry")
			b.ReportMetric(s.usec/float64(b.N), "evalsha-µs/entry")
		case "config", "info", "script", "eval":
		default:
			b.ReportMetric(s.usec/float64(b.N), name+"-µs/entry")
			summary = append(summary, fmt.Sprintf("%s %.2f calls %.2f µs", name, s.calls/float64(b.N), s.usec/float64(b.N)))
		}
	}
	b.Logf("per entry: %s", strings.Join(summary, ", "))
}

type cmdStat struct{ calls, usec float64 }

// commandStats parses INFO commandstats: command -> calls and µs.
func commandStats(tb testing.TB, rdb redis.UniversalClient) map[string]cmdStat {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]cmdStat{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		var s cmdStat
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				s.calls = f
			case "usec":
				s.usec = f
			}
		}
		out[name] = s
	}
	return out
}

// BenchmarkApplyFleet is BenchmarkApply on the fleet's shape (see
// fleetEntries): one consumer with keyalertd's defaults draining the
// prefilled stream, Redis CPU per entry applied and per raw XADD, and the
// ratio of applied to raw XADD rates. Use -benchtime=64000x or more.
func BenchmarkApplyFleet(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	for _, aof := range []string{"off", "everysec"} {
		b.Run("aof="+aof, func(b *testing.B) { benchApplyEntries(b, aof, 0, fleetEntries(b.N, 1000)) })
	}
}

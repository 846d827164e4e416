package alert

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// The benchmark world: 10,000 enabled rules over 2,000 keywords (5 rules per
// keyword): 70% threshold (5m), 20% absence (10m), 10% spike (5m against a
// 30m baseline); 40% group by none, 40% by host, 20% by tag; a quarter with
// host/tag filters. A fifth of the keywords are busy (10 host/tag series
// every minute), the rest sparse (one series every 7 minutes). About 1% of
// the rules fire; the measured ticks are steady state (no transitions).
const (
	benchRules    = 10000
	benchKeywords = 2000
)

var benchNow = time.Date(2025, 3, 1, 12, 0, 30, 0, time.UTC)

func benchSnapshot() rules.Snapshot {
	snap := rules.Snapshot{Version: 1}
	old := benchNow.Add(-24 * time.Hour)
	for i := 0; i < benchRules; i++ {
		r := rules.Rule{
			ID: fmt.Sprintf("r%05d", i), Name: fmt.Sprintf("rule %d", i), Keywords: []string{fmt.Sprintf("kw%04d", i%benchKeywords)},
			Match: keyword.Substring, Severity: rules.Error, Enabled: true, ResolveAfter: rules.Duration(5 * time.Minute),
			RepeatInterval: rules.Duration(time.Hour), PagerDuty: rules.PagerDuty{RoutingKey: testKey}, CreatedAt: old, UpdatedAt: old,
		}
		switch {
		case i%10 < 7:
			count := int64(1_000_000)
			if i%100 == 0 {
				count = 5 // 1% fire
			}
			r.Condition = rules.Condition{Type: rules.Threshold, Count: count, Window: rules.Duration(5 * time.Minute)}
		case i%10 < 9:
			r.Condition = rules.Condition{Type: rules.Absence, Count: 1, Window: rules.Duration(10 * time.Minute)}
		default:
			r.Condition = rules.Condition{Type: rules.Spike, Factor: 3, MinCount: 10, Window: rules.Duration(5 * time.Minute), Baseline: rules.Duration(30 * time.Minute)}
		}
		switch i % 5 {
		case 0, 1:
			r.GroupBy = rules.GroupNone
		case 2, 3:
			r.GroupBy = rules.GroupHost
		default:
			r.GroupBy = rules.GroupTag
		}
		if i%4 == 3 {
			r.Filters = rules.Filters{Host: "web-*", Tag: "app.*"}
		}
		snap.Rules = append(snap.Rules, r)
	}
	return snap
}

func benchCells() map[string][]window.Cell {
	nowMin := benchNow.Unix() - benchNow.Unix()%60
	out := map[string][]window.Cell{}
	for k := 0; k < benchKeywords; k++ {
		id := keyword.Spec{Text: fmt.Sprintf("kw%04d", k)}.ID()
		for back := int64(39); back >= 0; back-- {
			m := nowMin - back*60
			if k%5 == 0 {
				for s := 0; s < 10; s++ {
					out[id] = append(out[id], window.Cell{Minute: m, Host: fmt.Sprintf("web-%d", s), Tag: "app." + strconv.Itoa(s%2), Count: int64(1 + s%3)})
				}
			} else if (back+int64(k))%7 == 0 {
				out[id] = append(out[id], window.Cell{Minute: m, Host: fmt.Sprintf("db-%d", k%3), Tag: "sys", Count: 1})
			}
		}
	}
	return out
}

// memCounts serves cells from memory, so the benchmark measures the engine
// alone; BenchmarkEvaluateTickRedisWindow reads them through window.Store.
type memCounts struct{ cells map[string][]window.Cell }

func (m memCounts) CellsMany(_ context.Context, kwIDs []string, from, to int64) (map[string][]window.Cell, error) {
	out := make(map[string][]window.Cell, len(kwIDs))
	for _, kw := range kwIDs {
		cs := m.cells[kw]
		lo := 0
		for lo < len(cs) && cs[lo].Minute < from {
			lo++
		}
		hi := lo
		for hi < len(cs) && cs[hi].Minute < to {
			hi++
		}
		if hi > lo {
			out[kw] = cs[lo:hi]
		}
	}
	return out, nil
}

func (m memCounts) Samples(context.Context, []window.Series, int) ([]window.Sample, error) {
	return nil, nil
}

func benchEngine(b *testing.B, rdb *redis.Client, counts Counts) *Engine {
	ctx := context.Background()
	now := func() time.Time { return benchNow }
	rs := rules.NewStore(rdb, rules.Options{}, now, quiet)
	ob := outbox.New(rdb, outbox.Options{}, quiet)
	shards := lease.NewShards(rdb, LeasePrefix, "bench", lease.Options{TTL: time.Minute, Shards: 16}, quiet)
	if err := shards.Step(ctx); err != nil {
		b.Fatal(err)
	}
	e := New(Config{Redis: rdb, Rules: rs, Silences: silence.NewStore(rdb, now, quiet), Counts: counts,
		Store: NewStore(rdb, ob, RuleKeys{Rules: rs}, now, quiet), Shards: shards, Now: now, Log: quiet})
	// The rules are compiled from memory: creating 10,000 through the store
	// is the API's business, not the tick's. Version 0 matches an empty
	// store, so Tick does not reload them.
	snap := benchSnapshot()
	snap.Version = 0
	e.rs = compile(snap, shards.N(), DefaultEvalDelay)
	if err := e.Tick(ctx); err != nil { // the first tick fires the 1%
		b.Fatal(err)
	}
	return e
}

func runTicks(b *testing.B, e *Engine, rdb *redis.Client) {
	ctx := context.Background()
	fired := testutil.ToFloat64(e.met.episodes)
	redisBefore := redisCPU(b, rdb)
	b.ReportAllocs()
	b.ResetTimer()
	cpuBefore := processCPU()
	for i := 0; i < b.N; i++ {
		if err := e.Tick(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpuBefore)/float64(time.Millisecond)/float64(b.N), "cpu-ms/tick")
	b.ReportMetric(float64(redisCPU(b, rdb)-redisBefore)/float64(time.Millisecond)/float64(b.N), "redis-cpu-ms/tick")
	if testutil.ToFloat64(e.met.episodes) != fired {
		b.Fatal("steady-state ticks changed alerts")
	}
	tracked, _ := e.c.Store.Tracked(ctx)
	b.ReportMetric(float64(len(tracked)), "active-alerts")
}

// BenchmarkEvaluateTick: one full tick over 10,000 enabled rules with counts
// served from memory (engine CPU, plus the few Redis reads of state).
func BenchmarkEvaluateTick(b *testing.B) {
	rdb := redistest.Start(b).Client()
	e := benchEngine(b, rdb, memCounts{benchCells()})
	runTicks(b, e, rdb)
}

// BenchmarkEvaluateTickRedisWindow: the same tick reading the counts from
// real Redis through window.Store.
func BenchmarkEvaluateTickRedisWindow(b *testing.B) {
	rdb := redistest.Start(b).Client()
	ctx := context.Background()
	ws := window.NewStore(rdb, stream.DefaultStream)
	p := rdb.Pipeline()
	n := 0
	for kw, cells := range benchCells() {
		for _, c := range cells {
			p.HSet(ctx, ws.Keys().Window(kw, c.Minute), window.Field(c.Host, c.Tag), c.Count)
			if n++; n%2000 == 0 {
				if _, err := p.Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	e := benchEngine(b, rdb, ws)
	runTicks(b, e, rdb)
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU reads the server's own CPU time (user + sys) from INFO.
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

package alert

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
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

// benchCellsAt is the benchmark world's cells of keyword k in minute m:
// the same pattern at every minute, so that a clock moving on finds the
// world as busy as before.
func benchCellsAt(k int, m int64) []window.Cell { return benchCellsWith(k, m, 0) }

// benchCellsWith is benchCellsAt, and with hosts > 0 the keywords of the
// absence rules (k%10 is 7 or 8, all grouped by host) heartbeat from that
// many hosts every minute: each of their rules remembers hosts groups.
func benchCellsWith(k int, m int64, hosts int) []window.Cell {
	if hosts > 0 && (k%10 == 7 || k%10 == 8) {
		out := make([]window.Cell, 0, hosts)
		for h := 0; h < hosts; h++ {
			out = append(out, window.Cell{Minute: m, Host: "web-" + strconv.Itoa(h), Tag: "app.0", Count: 1})
		}
		return out
	}
	if k%5 == 0 {
		out := make([]window.Cell, 0, 10)
		for s := 0; s < 10; s++ {
			out = append(out, window.Cell{Minute: m, Host: fmt.Sprintf("web-%d", s), Tag: "app." + strconv.Itoa(s%2), Count: int64(1 + s%3)})
		}
		return out
	}
	if (m/60+int64(k))%7 == 0 {
		return []window.Cell{{Minute: m, Host: fmt.Sprintf("db-%d", k%3), Tag: "sys", Count: 1}}
	}
	return nil
}

func benchKeywordID(k int) string { return keyword.Spec{Text: fmt.Sprintf("kw%04d", k)}.ID() }

// benchCellsMinute is every keyword's cells of minute m.
func benchCellsMinute(m int64) map[string][]window.Cell {
	out := map[string][]window.Cell{}
	for k := 0; k < benchKeywords; k++ {
		if c := benchCellsAt(k, m); len(c) > 0 {
			out[benchKeywordID(k)] = c
		}
	}
	return out
}

func benchCells() map[string][]window.Cell {
	nowMin := benchNow.Unix() - benchNow.Unix()%60
	out := map[string][]window.Cell{}
	for back := int64(39); back >= 0; back-- {
		for kw, c := range benchCellsMinute(nowMin - back*60) {
			out[kw] = append(out[kw], c...)
		}
	}
	return out
}

// memCounts serves the benchmark world's cells from memory, for any
// minute up to its clock, so the benchmark measures the engine alone;
// BenchmarkEvaluateTickRedisWindow reads them through window.Store.
type memCounts struct {
	idx   map[string]int
	clk   *time.Time
	hosts int // heartbeat hosts per absence keyword (benchCellsWith)
}

func newMemCounts(clk *time.Time) memCounts {
	m := memCounts{idx: map[string]int{}, clk: clk}
	for k := 0; k < benchKeywords; k++ {
		m.idx[benchKeywordID(k)] = k
	}
	return m
}

func (m memCounts) CellsMany(_ context.Context, kwIDs []string, from, to int64) (map[string][]window.Cell, error) {
	out := make(map[string][]window.Cell, len(kwIDs))
	last := m.clk.Unix() - m.clk.Unix()%60
	for _, kw := range kwIDs {
		k, ok := m.idx[kw]
		if !ok {
			continue
		}
		var cs []window.Cell
		for mi := (from + 59) / 60 * 60; mi < to && mi <= last; mi += 60 {
			cs = append(cs, benchCellsWith(k, mi, m.hosts)...)
		}
		if len(cs) > 0 {
			out[kw] = cs
		}
	}
	return out, nil
}

func (m memCounts) Samples(context.Context, []window.Series, int) ([]window.Sample, error) {
	return nil, nil
}

func benchEngineAt(b *testing.B, rdb *redis.Client, counts Counts, clk *time.Time, noCache bool) *Engine {
	return benchEngineWith(b, rdb, counts, clk, noCache, benchSnapshot())
}

func benchEngineWith(b *testing.B, rdb *redis.Client, counts Counts, clk *time.Time, noCache bool, snap rules.Snapshot) *Engine {
	ctx := context.Background()
	now := func() time.Time { return *clk }
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
	snap.Version = 0
	e.noCache = noCache
	e.rs = compile(snap, shards.N(), DefaultEvalDelay)
	// The first ticks fire the 1% (as many as the tick budget needs to
	// judge every rule once).
	for first := true; first || testutil.ToFloat64(e.met.deferred) > 0; first = false {
		if err := e.Tick(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

// runTicks measures b.N ticks. With step 0 every tick is at the same
// clock (ticks within a minute: the common case, every EvalInterval); with
// step a minute, every tick starts a new minute (windows move: the most a
// tick does without new counts). Steady state: no alert may change.
func runTicks(b *testing.B, e *Engine, rdb *redis.Client, clk *time.Time, step time.Duration, write func(map[string][]window.Cell)) {
	ctx := context.Background()
	fired := testutil.ToFloat64(e.met.episodes)
	redisBefore := redistest.CPU(b, rdb)
	b.ReportAllocs()
	b.ResetTimer()
	cpuBefore := processCPU()
	ticks, maxTick := 0, time.Duration(0)
	for i := 0; i < b.N; i++ {
		*clk = clk.Add(step)
		if step > 0 {
			// The new minute's counts arrive, as ingest writes them.
			b.StopTimer()
			m := clk.Unix() - clk.Unix()%60
			cells := benchCellsMinute(m)
			if write != nil {
				write(cells)
			}
			// Every keyword marked changed (a worst case: only some
			// have counts in a minute).
			mk := marker{}
			for k := 0; k < benchKeywords; k++ {
				mk[benchKeywordID(k)] = []int64{m}
			}
			if err := writeChanges(ctx, rdb, mk); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		// A new minute's rules left over by the tick budget are judged by
		// the next ticks (KEYALERT_EVAL_INTERVAL apart), here at once.
		for first := true; first || testutil.ToFloat64(e.met.deferred) > 0; first = false {
			t0 := time.Now()
			if err := e.Tick(ctx); err != nil {
				b.Fatal(err)
			}
			maxTick = max(maxTick, time.Since(t0))
			ticks++
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpuBefore)/float64(time.Millisecond)/float64(ticks), "cpu-ms/tick")
	b.ReportMetric(float64(ticks)/float64(b.N), "ticks/op")
	b.ReportMetric(float64(maxTick)/float64(time.Millisecond), "max-tick-ms")
	b.ReportMetric(float64(redistest.CPU(b, rdb)-redisBefore)/float64(time.Millisecond)/float64(ticks), "redis-cpu-ms/tick")
	if testutil.ToFloat64(e.met.episodes) != fired {
		b.Fatal("steady-state ticks changed alerts")
	}
	tracked, _ := e.c.Store.Tracked(ctx)
	b.ReportMetric(float64(len(tracked)), "active-alerts")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
	runtime.KeepAlive(e) // its cache is what heap-MB measures
}

// tickModes are the engines compared: "full" reads every count and judges
// every rule on every tick (before incremental evaluation), "incremental"
// reads what the change markers name and judges what changed.
var tickModes = []struct {
	name    string
	noCache bool
}{{"full", true}, {"incremental", false}}

// tickSteps: ticks within one minute, and ticks that each start a minute.
var tickSteps = []struct {
	name string
	step time.Duration
}{{"same-minute", 0}, {"new-minute", time.Minute}}

// BenchmarkEvaluateTick: one full tick over 10,000 enabled rules with counts
// served from memory (engine CPU, plus the few Redis reads of state).
func BenchmarkEvaluateTick(b *testing.B) {
	for _, mode := range tickModes {
		for _, st := range tickSteps {
			b.Run(mode.name+"/"+st.name, func(b *testing.B) {
				rdb := redistest.Start(b).Client()
				clk := benchNow
				e := benchEngineAt(b, rdb, newMemCounts(&clk), &clk, mode.noCache)
				runTicks(b, e, rdb, &clk, st.step, nil)
			})
		}
	}
}

// BenchmarkEvaluateTickRememberedGroups: the benchmark world with its
// 2,000 absence rules (all grouped by host) each remembering 50 hosts that
// heartbeat every minute: 100,000 remembered groups, counts from memory.
// heap-B/group is the engine's heap (count cache, group memory, rules)
// after the first tick per remembered group.
func BenchmarkEvaluateTickRememberedGroups(b *testing.B) {
	const hosts = 50
	for _, mode := range tickModes {
		for _, st := range tickSteps {
			b.Run(mode.name+"/"+st.name, func(b *testing.B) {
				rdb := redistest.Start(b).Client()
				clk := benchNow
				mc := newMemCounts(&clk)
				mc.hosts = hosts
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				e := benchEngineAt(b, rdb, mc, &clk, mode.noCache)
				groups := 0
				for _, m := range e.mem {
					groups += len(m.groups)
				}
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				runTicks(b, e, rdb, &clk, st.step, nil)
				// After runTicks: ResetTimer drops metrics reported before.
				b.ReportMetric(float64(groups), "groups")
				b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(max(groups, 1)), "heap-B/group")
			})
		}
	}
}

// BenchmarkEvaluateTickRedisWindow: the same tick reading the counts from
// real Redis through window.Store.
func BenchmarkEvaluateTickRedisWindow(b *testing.B) {
	for _, mode := range tickModes {
		for _, st := range tickSteps {
			b.Run(mode.name+"/"+st.name, func(b *testing.B) {
				benchRedisWindow(b, mode.noCache, st.step)
			})
		}
	}
}

func benchRedisWindow(b *testing.B, noCache bool, step time.Duration) {
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
	clk := benchNow
	e := benchEngineAt(b, rdb, ws, &clk, noCache)
	runTicks(b, e, rdb, &clk, step, func(cells map[string][]window.Cell) {
		p := rdb.Pipeline()
		for kw, cs := range cells {
			for _, c := range cs {
				p.HSet(ctx, ws.Keys().Window(kw, c.Minute), window.Field(c.Host, c.Tag), c.Count)
			}
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkEvaluateTickHostRule: one threshold rule grouped by host over
// 100,000 hosts with a 10-minute window, each host counting every other
// minute (500,000 cells in the window, 600,000 in the minutes read), from
// real Redis. No host reaches the threshold.
func BenchmarkEvaluateTickHostRule(b *testing.B) {
	const hosts = 100_000
	srv := redistest.Start(b)
	rdb := srv.Client()
	ctx := context.Background()
	ws := window.NewStore(rdb, stream.DefaultStream)
	nowMin := benchNow.Unix() - benchNow.Unix()%60
	kw := keyword.Spec{Text: "Exception"}.ID()
	p := rdb.Pipeline()
	for back := int64(0); back < 12; back++ {
		m := nowMin - back*60
		for h := 0; h < hosts; h++ {
			if (int64(h)+back)%2 != 0 {
				continue
			}
			p.HSet(ctx, ws.Keys().Window(kw, m), window.Field(fmt.Sprintf("host-%06d", h), "app"), 1)
		}
		if _, err := p.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	snap := rules.Snapshot{Rules: []rules.Rule{{ID: "r-host", Name: "per host", Keywords: []string{"Exception"}, Match: keyword.Substring,
		Severity: rules.Error, Enabled: true, ResolveAfter: rules.Duration(5 * time.Minute), GroupBy: rules.GroupHost,
		Condition: rules.Condition{Type: rules.Threshold, Count: 1000, Window: rules.Duration(10 * time.Minute)},
		PagerDuty: rules.PagerDuty{RoutingKey: testKey}, CreatedAt: benchNow.Add(-time.Hour), UpdatedAt: benchNow.Add(-time.Hour)}}}
	for _, mode := range tickModes {
		for _, st := range tickSteps {
			b.Run(mode.name+"/"+st.name, func(b *testing.B) {
				clk := benchNow
				e := benchEngineWith(b, rdb, ws, &clk, mode.noCache, snap)
				runTicks(b, e, rdb, &clk, st.step, func(map[string][]window.Cell) {
					// The new minute: every other host counts, as before.
					m := clk.Unix() - clk.Unix()%60
					p := rdb.Pipeline()
					for h := 0; h < hosts; h++ {
						if (int64(h)+m/60)%2 == 0 {
							p.HSet(ctx, ws.Keys().Window(kw, m), window.Field(fmt.Sprintf("host-%06d", h), "app"), 1)
						}
					}
					if _, err := p.Exec(ctx); err != nil {
						b.Fatal(err)
					}
					if err := writeChanges(ctx, rdb, marker{kw: {m}}); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

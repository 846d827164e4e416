package ingest

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// benchEntries makes n version 3 entries shaped like the plugin's output: 16
// sources (8 hosts x 2 tags, one producer each) each flushing a chunk a second, a chunk carrying entries
// for 10 of 16 keywords in its minute, two ~120-byte samples each. Cells
// repeat across a read batch as they do in a real backlog. scattered mixes
// keywords, hosts, tags and minutes so that nearly every entry of a batch has
// its own cell instead: the worst case for the apply script.
func benchEntries(n int, scattered bool) []stream.Entry {
	now := nowMinute()
	line := strings.Repeat("2024-05-01 10:00:00 worker-7 request failed with Exception after retries ", 2)[:120]
	es := make([]stream.Entry, 0, n)
	for chunk := 0; len(es) < n; chunk++ {
		src := chunk % 16
		sec := chunk / 16 // chunks of one source are a second apart
		minute := now - 3600 + int64(sec/60)*60
		for k := 0; k < 10 && len(es) < n; k++ {
			e := stream.Entry{
				Batch:   fmt.Sprintf("%032x", chunk),
				Keyword: keyword.Spec{Text: fmt.Sprintf("keyword-%02d", (chunk+k*3)%16)},
				Host:    fmt.Sprintf("host-%d", src%8),
				Tag:     []string{"app.log", "nginx.access"}[src/8],
				Minute:  minute,
				Count:   int64(1 + (chunk+k)%50),
				Samples: []string{line, line},
				SentMs:  time.Now().UnixMilli(),
				// Version 3, as the plugin writes: one producer per source.
				Producer: fmt.Sprintf("%016x", src),
				Attempt:  fmt.Sprintf("%016x", chunk),
			}
			if i := len(es); scattered {
				e.Keyword.Text = fmt.Sprintf("keyword-%02d", i%16)
				e.Host = fmt.Sprintf("host-%d", (i/16)%8)
				e.Tag = []string{"app.log", "nginx.access"}[(i/128)%2]
				e.Minute = now - int64((i/7)%3)*60
			}
			es = append(es, e)
		}
	}
	return es
}

// xaddPipelined writes es in pipelines of 500 and returns the elapsed time:
// the raw write rate the apply rate is compared with.
func xaddPipelined(tb testing.TB, rdb redis.UniversalClient, key string, es []stream.Entry) time.Duration {
	ctx := context.Background()
	vals := make([][]any, len(es))
	for i := range es {
		vals[i] = es[i].AppendValues(nil)
	}
	t0 := time.Now()
	for i := 0; i < len(es); i += 500 {
		pipe := rdb.Pipeline()
		for _, v := range vals[i:min(i+500, len(es))] {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: v})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	return time.Since(t0)
}

// BenchmarkApply measures entries applied exactly once per second by one
// consumer (read, parse, apply script, acknowledge) draining a prefilled
// stream, and the raw pipelined XADD rate of the same Redis in the same run.
// Use -benchtime=Nx: one op is one entry.
func BenchmarkApply(b *testing.B) {
	// As keyalertd sets it (cmd/keyalertd GCPercent).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	// redistest fsyncs the AOF on every write. Debian's redis.conf has no
	// AOF (RDB snapshots only); an AOF in production would run everysec.
	for _, aof := range []string{"off", "everysec"} {
		for _, shape := range []string{"chunks", "scattered"} {
			b.Run("aof="+aof+"/cells="+shape, func(b *testing.B) { benchApply(b, aof, shape == "scattered") })
		}
	}
}

// BenchmarkApplyWorkers compares numbers of read-apply loops (Workers) on
// the chunk-shaped workload without AOF; keyalertd's default comes from it.
func BenchmarkApplyWorkers(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	for _, w := range []int{1, 2, 3, 4, 6} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) { benchApplyWith(b, "off", false, w) })
	}
}

func benchApply(b *testing.B, aof string, scattered bool) { benchApplyWith(b, aof, scattered, 0) }

// BenchmarkApplyLabels compares label-free entries with the same entries
// carrying three Kubernetes labels (app, container, namespace; one set per
// source, so the series are as many), chunk-shaped, without AOF.
func BenchmarkApplyLabels(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	for _, labels := range []bool{false, true} {
		b.Run(fmt.Sprintf("labels=%v", labels), func(b *testing.B) {
			es := benchEntries(b.N, false)
			if labels {
				withK8sLabels(es)
			}
			benchApplyEntries(b, "off", 0, es)
		})
	}
}

// BenchmarkScriptLabels is BenchmarkScript for label-free entries and for
// the same entries with three labels, in one run.
func BenchmarkScriptLabels(b *testing.B) {
	for _, labels := range []bool{false, true} {
		b.Run(fmt.Sprintf("labels=%v", labels), func(b *testing.B) { benchScript(b, labels) })
	}
}

// withK8sLabels gives each entry the labels of its source's container.
func withK8sLabels(es []stream.Entry) {
	for i := range es {
		e := &es[i]
		app := []string{"web", "worker", "api", "db"}[len(e.Host)%4]
		if e.Tag == "nginx.access" {
			app = "nginx"
		}
		e.Labels = []stream.Label{{Name: "app", Value: app}, {Name: "container", Value: app + "-" + e.Host},
			{Name: "namespace", Value: "shop-" + e.Host[len(e.Host)-1:]}}
	}
}

func benchApplyWith(b *testing.B, aof string, scattered bool, workers int) {
	benchApplyEntries(b, aof, workers, benchEntries(b.N, scattered))
}

func benchApplyEntries(b *testing.B, aof string, workers int, es []stream.Entry) {
	srv := redistest.Start(b)
	rdb := srv.Client()
	ctx := context.Background()
	srv.SetAOF(aof)

	rdb.ConfigResetStat(ctx)
	cpu0 := redistest.CPU(b, rdb)
	rawDur := xaddPipelined(b, rdb, "bench:raw", es)
	rawCPU := redistest.CPU(b, rdb) - cpu0
	rawStats := commandStats(b, rdb)
	rdb.Del(ctx, "bench:raw")
	xaddPipelined(b, rdb, testStream, es)
	es = nil
	runtime.GC() // the consumer's heap alone, as in keyalertd

	var applied atomic.Int64
	done := make(chan struct{})
	c, err := New(Options{
		Client: rdb, Stream: testStream, Consumer: "bench", Logger: quietLogger(), Block: 100 * time.Millisecond, Workers: workers, // defaults otherwise, as keyalertd's
		OnApplied: func(_ context.Context, a []stream.Entry) {
			if applied.Add(int64(len(a))) == int64(b.N) {
				close(done)
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	rdb.ConfigResetStat(ctx)
	b.ResetTimer()
	cpu0 = redistest.CPU(b, rdb)
	self0 := selfCPU()
	t0 := time.Now()
	stopped := make(chan struct{})
	go func() { c.Run(runCtx); close(stopped) }()
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		b.Fatalf("applied %d of %d entries in 10 minutes", applied.Load(), b.N)
	}
	applyDur := time.Since(t0)
	applyCPU, goCPU := redistest.CPU(b, rdb)-cpu0, selfCPU()-self0
	b.StopTimer()
	cancel()
	<-stopped
	if b.N >= 1000 { // not the probe run of one entry
		b.Logf("redis per raw xadd: %s", perCommand(rawStats, b.N))
		b.Logf("redis per applied entry: %s", perCommand(commandStats(b, rdb), b.N))
	}

	applyRate := float64(b.N) / applyDur.Seconds()
	rawRate := float64(b.N) / rawDur.Seconds()
	perEntry := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 / float64(b.N) }
	// CPU per entry does not depend on what else the machine runs.
	b.ReportMetric(perEntry(applyCPU), "redis-cpu-µs/applied")
	b.ReportMetric(perEntry(goCPU), "consumer-cpu-µs/applied")
	b.ReportMetric(perEntry(rawCPU), "redis-cpu-µs/xadd")
	b.ReportMetric(applyRate, "applied/s")
	b.ReportMetric(rawRate, "xadd/s")
	b.ReportMetric(applyRate/rawRate, "ratio")
}

// perCommand sums up commandstats per entry: each command's calls and µs
// (those of at least 0.005 µs), and for the apply script its own time less
// the commands it called. commandstats times are wall clock inside each
// command: on a busy machine they can add up to more than the CPU time.
func perCommand(stats map[string]cmdStat, n int) string {
	var nested float64
	var names []string
	for name, s := range stats {
		switch name {
		case "config", "info":
			continue
		case "evalsha", "eval", "xreadgroup", "get", "xpending", "xautoclaim", "xinfo", "incr", "multi", "exec", "xadd", "ping", "hello", "client", "xgroup", "script":
		default:
			nested += s.usec // called by the script
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var out []string
	for _, name := range names {
		s := stats[name]
		if s.usec/float64(n) < 0.005 {
			continue
		}
		out = append(out, fmt.Sprintf("%s %.3f calls %.2f µs", name, s.calls/float64(n), s.usec/float64(n)))
		if name == "evalsha" {
			out = append(out, fmt.Sprintf("(lua %.2f µs)", (s.usec-nested)/float64(n)))
		}
	}
	return strings.Join(out, ", ")
}

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBuild measures the consumer's own work per entry (parse, dedup
// ids, script arguments) without Redis. One op is one entry.
func BenchmarkBuild(b *testing.B) {
	es := benchEntries(500, false)
	msgs := make([]message, len(es))
	for i := range es {
		msgs[i].id = fmt.Sprintf("1-%d", i)
		for _, v := range es[i].AppendValues(nil) {
			msgs[i].kv = append(msgs[i].kv, v.(string))
		}
	}
	p := planner{keys: window.NewKeys(testStream), stream: testStream, dead: DeadStream(testStream), group: "g",
		consumer: "c", window: time.Hour, maxPerProd: 10000, pendingMax: 10000, retention: 7 * 24 * time.Hour, sampleCap: 20, sampleTTL: 3600, deadMaxLen: 1000, maxDeliv: 10}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += len(msgs) {
		p.build("new", msgs, nil, now, "")
	}
}

// BenchmarkScript measures the apply script alone: Redis CPU per entry for
// batches read and planned beforehand. One op is one entry.
func BenchmarkScript(b *testing.B) { benchScript(b, false) }

func benchScript(b *testing.B, labels bool) {
	rdb := redistest.Start(b).Client()
	ctx := context.Background()
	rdb.ConfigSet(ctx, "appendonly", "no")
	es := benchEntries(b.N, false)
	if labels {
		withK8sLabels(es)
	}
	xaddPipelined(b, rdb, testStream, es)
	rdb.XGroupCreate(ctx, testStream, "keyalertd", "0")
	p := planner{keys: window.NewKeys(testStream), stream: testStream, dead: DeadStream(testStream), group: "keyalertd",
		consumer: "c", window: time.Hour, maxPerProd: 10000, pendingMax: 10000, retention: 7 * 24 * time.Hour, sampleCap: 20, sampleTTL: 3600, deadMaxLen: 1000, maxDeliv: 10}
	plans := readPlans(b, rdb, &p)
	applyScript.Load(ctx, rdb)
	b.ResetTimer()
	cpu0 := redistest.CPU(b, rdb)
	for _, pl := range plans {
		if err := applyScript.Run(ctx, rdb, pl.keys, pl.args...).Err(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((redistest.CPU(b, rdb)-cpu0).Nanoseconds())/1000/float64(b.N), "redis-cpu-µs/entry")
}

// readPlans reads testStream as consumer "c" of group keyalertd in batches
// of 1,000 and plans each, so that a benchmark can time the script alone.
func readPlans(b *testing.B, rdb *redis.Client, p *planner) []*plan {
	b.Helper()
	ctx := context.Background()
	var plans []*plan
	for {
		res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "keyalertd", Consumer: "c", Streams: []string{testStream, ">"}, Count: 1000, Block: -1}).Result()
		if err != nil || len(res[0].Messages) == 0 {
			return plans
		}
		plans = append(plans, p.build("new", fromXMessages(res[0].Messages), nil, time.Now(), "0"))
	}
}

// BenchmarkDetach measures copying a batch of 1,000 applied chunk-shaped
// entries (two 120-byte samples each) out of their reply, as commit does
// before OnApplied, against the per-string copy it replaced. One op is one
// entry.
func BenchmarkDetach(b *testing.B) {
	line := strings.Repeat("2024-05-01 10:00:00 worker-7 request failed with Exception after retries ", 2)[:120]
	es, _ := entriesOfReply(1000, func(i, f int) string {
		switch f {
		case 1:
			return fmt.Sprintf("keyword-%02d", i%16)
		case 10, 11:
			return line
		case 6, 7, 8, 9:
			return ""
		}
		return fmt.Sprintf("%016x", i/10*100+f)
	})
	for i := range es {
		es[i].Labels = nil
	}
	for _, v := range []struct {
		name string
		f    func([]stream.Entry)
	}{{"per-string", detachEach}, {"batch-buffer", detach}} {
		b.Run(v.name, func(b *testing.B) {
			work := make([]stream.Entry, len(es))
			b.ReportAllocs()
			for done := 0; done < b.N; done += len(es) {
				copy(work, es)
				v.f(work)
			}
		})
	}
}

// BenchmarkLayout measures laying out a parsed chunk-shaped batch of 1,000
// entries (KEYS and ARGV, no parse). One op is one entry.
func BenchmarkLayout(b *testing.B) {
	now := time.Now()
	var msgs []message
	for i, e := range benchEntries(1000, false) {
		var kv []string
		for _, v := range e.AppendValues(nil) {
			kv = append(kv, v.(string))
		}
		msgs = append(msgs, message{id: fmt.Sprintf("1-%d", i), kv: kv})
	}
	p := layoutTestPlanner(DefaultSamples)
	pl := p.build("new", msgs, nil, now, "")
	b.ReportAllocs()
	for done := 0; done < b.N; done += len(pl.entries) {
		p.layout(pl)
	}
}

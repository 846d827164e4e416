package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// BenchmarkKeyalertd measures the real binary: entries applied exactly once
// per second by one keyalertd draining a prefilled stream (from its start to
// an empty pending list), next to the raw pipelined XADD rate of the same
// Redis in the same run. One op is one entry; use -benchtime=Nx.
// KEYALERT_BENCH_ENV adds settings to keyalertd's environment, as
// space-separated NAME=value pairs (KEYALERT_BENCH_ENV="KEYALERT_WORKERS=2").
func BenchmarkKeyalertd(b *testing.B) {
	for _, aof := range []string{"off", "everysec"} {
		b.Run("aof="+aof, func(b *testing.B) { benchKeyalertd(b, aof) })
	}
}

func benchKeyalertd(b *testing.B, aof string) {
	srv := redistest.Start(b)
	rdb := srv.Client()
	ctx := context.Background()
	srv.SetAOF(aof)
	vals := chunkShaped(b.N)
	t0 := time.Now()
	pipelined(b, rdb, "bench:raw", vals)
	raw := time.Since(t0)
	rdb.Del(ctx, "bench:raw")
	pipelined(b, rdb, stream.DefaultStream, vals)
	vals = nil

	env := baseEnv(srv.URL())
	if aof == "off" {
		// The comparison without AOF is deliberate: accept the volatile Redis.
		env["KEYALERT_ALLOW_VOLATILE_REDIS"] = "true"
	}
	for _, kv := range strings.Fields(os.Getenv("KEYALERT_BENCH_ENV")) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			b.Fatalf("KEYALERT_BENCH_ENV: %q is not NAME=value", kv)
		}
		env[k] = v
	}
	rdb.ConfigResetStat(ctx)
	cpu0 := redistest.CPU(b, rdb)
	b.ResetTimer()
	t0 = time.Now()
	p := start(b, env)
	first, applied0 := drainTimed(b, rdb, 10*time.Minute)
	end := time.Now()
	dur := end.Sub(t0)
	b.StopTimer()
	cpu := procCPU(b, p.cmd.Process.Pid)
	redisCPU := redistest.CPU(b, rdb) - cpu0
	p.kill()
	rate, rawRate := float64(b.N)/dur.Seconds(), float64(b.N)/raw.Seconds()
	b.ReportMetric(rate, "applied/s")
	b.ReportMetric(rawRate, "xadd/s")
	b.ReportMetric(rate/rawRate, "ratio")
	// From the first entry read on: the ratio without keyalertd's start-up
	// (~0.1 s, a few per cent of a run of 300,000 entries).
	if steady := end.Sub(first).Seconds(); steady > 0 && applied0 < int64(b.N) {
		b.ReportMetric(float64(int64(b.N)-applied0)/steady/rawRate, "ratio-after-start")
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "keyalertd-cpu-µs/applied")
	b.ReportMetric(float64(redisCPU.Nanoseconds())/1000/float64(b.N), "redis-cpu-µs/applied")
	if b.N >= 1000 {
		b.Logf("redis µs per applied entry by command: %s", commandsPerEntry(b, rdb, b.N))
	}
}

// drainTimed is drained, and also returns when the group was first seen
// to have delivered entries and how many it had applied (read and not
// pending) then.
func drainTimed(b *testing.B, rdb redis.UniversalClient, limit time.Duration) (first time.Time, applied int64) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		gs, err := rdb.XInfoGroups(context.Background(), stream.DefaultStream).Result()
		if err == nil && len(gs) == 1 {
			if first.IsZero() && gs[0].EntriesRead > 0 {
				first, applied = time.Now(), gs[0].EntriesRead-gs[0].Pending
			}
			if gs[0].Lag == 0 && gs[0].Pending == 0 {
				return first, applied
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("stream %s not drained after %v", stream.DefaultStream, limit)
	return first, applied
}

// commandsPerEntry is INFO commandstats as calls and µs per entry of each
// command that took at least 0.005 µs per entry (wall clock inside the
// command; the script's includes the commands it called).
func commandsPerEntry(b *testing.B, rdb redis.UniversalClient, n int) string {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		var calls, usec float64
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				calls = f
			case "usec":
				usec = f
			}
		}
		if usec/float64(n) >= 0.005 {
			out = append(out, fmt.Sprintf("%s %.3f calls %.2f µs", name, calls/float64(n), usec/float64(n)))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// chunkShaped is the plugin-like workload of the ingest benchmark: 16
// sources flushing a chunk a second, 10 keyword entries a chunk.
func chunkShaped(n int) [][]any {
	now := time.Now().Unix()/60*60 - 3600
	line := strings.Repeat("2024-05-01 10:00:00 worker-7 request failed with Exception after retries ", 2)[:120]
	out := make([][]any, 0, n)
	for chunk := 0; len(out) < n; chunk++ {
		src := chunk % 16
		for k := 0; k < 10 && len(out) < n; k++ {
			e := stream.Entry{
				Batch:   fmt.Sprintf("%032x", chunk),
				Keyword: keyword.Spec{Text: fmt.Sprintf("keyword-%02d", (chunk+k*3)%16)},
				Host:    fmt.Sprintf("host-%d", src%8),
				Tag:     []string{"app.log", "nginx.access"}[src/8],
				Minute:  now + int64(chunk/16/60)*60,
				Count:   int64(1 + (chunk+k)%50),
				Samples: []string{line, line},
				SentMs:  time.Now().UnixMilli(),
				// Version 3, as the plugin writes: one producer per source.
				Producer: fmt.Sprintf("%016x", src),
				Attempt:  fmt.Sprintf("%016x", chunk),
			}
			out = append(out, e.AppendValues(nil))
		}
	}
	return out
}

func pipelined(b *testing.B, rdb redis.UniversalClient, key string, vals [][]any) {
	ctx := context.Background()
	for i := 0; i < len(vals); i += 500 {
		pipe := rdb.Pipeline()
		for _, v := range vals[i:min(i+500, len(vals))] {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: v})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// procCPU is a process's user+system CPU time from /proc.
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the whole line, in clock ticks (100 Hz here).
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

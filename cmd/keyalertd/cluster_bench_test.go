package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/pkg/streamshard"
	"github.com/keyalert/keyalert/plugin/chunk"
	"github.com/redis/go-redis/v9"
)

// BenchmarkClusterShards measures one keyalertd binary draining a prefilled
// sharded stream on one Redis Cluster of three masters, with 1, 2 and 3
// shards in one run (a stream of its own each): entries applied per second,
// Redis CPU per entry applied (INFO cpu, used_cpu_sys + used_cpu_user,
// summed over the nodes, from keyalertd's start to the drain), Redis CPU per
// entry written (the prefill's pipelined XADDs, 500 per round trip; the
// plugin sends a chunk's entries in one MULTI/EXEC) and keyalertd's CPU per
// entry. One op is one entry; use
// -benchtime=Nx.
func BenchmarkClusterShards(b *testing.B) {
	cl := redistest.StartClusterWith(b, redistest.ClusterOptions{Masters: 3})
	rdb := cl.Client()
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("shards=%d", n), func(b *testing.B) { benchShards(b, cl, rdb, n) })
	}
}

func benchShards(b *testing.B, cl *redistest.Cluster, rdb *redis.ClusterClient, n int) {
	// A stream name whose shards land on min(n, 3) different masters, so
	// that the run shows what n nodes do.
	var key string
	for try := 0; ; try++ {
		key = fmt.Sprintf("bench%d-%d-%d:events", n, b.N, try)
		masters := map[int]bool{}
		for s := 0; s < n; s++ {
			masters[cl.MasterOf(streamshard.Key(key, s))] = true
		}
		if len(masters) == min(n, 3) || try == 100 {
			break
		}
	}
	es := fleetShaped(b.N)
	byShard := make([][][]any, n)
	for i := range es {
		s := streamshard.Of(es[i].Host, n)
		byShard[s] = append(byShard[s], es[i].AppendValues(nil))
	}
	nodes := map[int]bool{}
	xadd0 := clusterCPU(b, cl)
	for s, vals := range byShard {
		k := streamshard.Key(key, s)
		pipelined(b, rdb, k, vals)
		nodes[cl.MasterOf(k)] = true
	}
	es, byShard = nil, nil
	env := baseEnv(cl.URL())
	env["KEYALERT_STREAM"], env["KEYALERT_STREAM_SHARDS"] = key, strconv.Itoa(n)
	cpu0 := clusterCPU(b, cl)
	xaddCPU := cpu0 - xadd0
	b.ResetTimer()
	t0 := time.Now()
	p := start(b, env)
	for s := 0; s < n; s++ {
		k := streamshard.Key(key, s)
		drainedKey(b, rdb, k, 10*time.Minute-time.Since(t0))
	}
	dur := time.Since(t0)
	b.StopTimer()
	kcpu := procCPU(b, p.cmd.Process.Pid)
	rcpu := clusterCPU(b, cl) - cpu0
	p.kill()
	b.ReportMetric(float64(b.N)/dur.Seconds(), "applied/s")
	b.ReportMetric(float64(rcpu.Microseconds())/float64(b.N), "redis-cpu-µs/entry")
	b.ReportMetric(float64(xaddCPU.Microseconds())/float64(b.N), "redis-xadd-cpu-µs/entry")
	b.ReportMetric(float64(kcpu.Microseconds())/float64(b.N), "keyalertd-cpu-µs/entry")
	b.ReportMetric(float64(len(nodes)), "masters-used")
}

// fleetShaped is chunkShaped over 240 hosts, one producer each, so that
// hosts spread over the shards.
func fleetShaped(n int) []stream.Entry {
	now := time.Now().Unix()/60*60 - 3600
	line := strings.Repeat("2024-05-01 10:00:00 worker-7 request failed with Exception after retries ", 2)[:120]
	out := make([]stream.Entry, 0, n)
	for c := 0; len(out) < n; c++ {
		src := c % 240
		for k := 0; k < 10 && len(out) < n; k++ {
			out = append(out, stream.Entry{
				Batch:   fmt.Sprintf("%032x", c),
				Keyword: keyword.Spec{Text: fmt.Sprintf("keyword-%02d", (c+k*3)%16)},
				Host:    fmt.Sprintf("host-%03d", src),
				Tag:     []string{"app.log", "nginx.access"}[src%2],
				Minute:  now + int64(c/240/60)*60,
				Count:   int64(1 + (c+k)%50),
				Samples: []string{line, line},
				SentMs:  time.Now().UnixMilli(),
				// Version 3, as the plugin writes.
				Producer: fmt.Sprintf("%016x", src),
				Attempt:  fmt.Sprintf("%016x", c),
			})
		}
	}
	return out
}

// clusterCPU is the CPU time every node of cl has used (INFO cpu).
func clusterCPU(b *testing.B, cl *redistest.Cluster) time.Duration {
	var sum time.Duration
	for _, s := range cl.Servers {
		sum += redistest.CPU(b, s.Client())
	}
	return sum
}

// BenchmarkFlushWaitReplicas measures the plugin's flush latency (through
// flbhost, a chunk of 20 records from 20 hosts over three shards) on a
// cluster of three masters with a replica each, with Redis_Wait_Replicas 0
// and 1. One op is one flush.
func BenchmarkFlushWaitReplicas(b *testing.B) {
	cl := redistest.StartClusterWith(b, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	rdb := cl.Client()
	doc, err := keyword.EncodeSetShards([]keyword.Spec{{Text: "Exception"}}, 3)
	if err != nil {
		b.Fatal(err)
	}
	if err := rdb.Set(context.Background(), keyword.DefaultSetKey, doc, 0).Err(); err != nil {
		b.Fatal(err)
	}
	for _, wait := range []string{"0", "1"} {
		b.Run("Redis_Wait_Replicas="+wait, func(b *testing.B) {
			h := flbhost.StartForTest(b)
			mark := h.LogLen()
			pluginInstance(b, h, "app", cl.URL(), map[string]string{"Hostname_Key": "host", "Redis_Wait_Replicas": wait})
			if !h.WaitLog(mark, "shards=3", 10*time.Second) {
				b.Fatal("plugin did not pick up 3 shards")
			}
			chunks := make([][]byte, b.N)
			for i := range chunks {
				var c []byte
				for r := 0; r < 20; r++ {
					c, err = chunk.AppendEvent(c, chunk.FormatV2, time.Now(), chunk.EventTime,
						map[string]any{"log": fmt.Sprintf("flush %d record %d Exception", i, r), "host": fmt.Sprintf("host-%d", r)})
					if err != nil {
						b.Fatal(err)
					}
				}
				chunks[i] = c
			}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				flushOK(b, h, "app", "app.log", chunks[i])
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

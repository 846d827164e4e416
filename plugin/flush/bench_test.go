package flush

import (
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/fluent/fluent-bit-go/output"
	"github.com/keyalert/keyalert/harness/loghub"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/match"
	"github.com/keyalert/keyalert/plugin/accessor"
	"github.com/keyalert/keyalert/plugin/chunk"
	"github.com/tinylib/msgp/msgp"
)

// benchKeywords are 32 realistic alert keywords; some occur in the loghub
// samples, most do not, as in production.
var benchKeywords = []string{
	"Exception", "ERROR", "WARN", "error", "fail", "Failed", "denied", "timeout",
	"refused", "panic", "fatal", "FATAL", "OutOfMemory", "NullPointer", "disk full", "Connection reset",
	"authentication failure", "Invalid user", "segfault", "killed", "corrupt", "unreachable", "No space left", "broken pipe",
	"SEVERE", "CRITICAL", "deadlock", "overflow", "retrying", "rejected", "lost", "abort",
}

// benchSpecs returns n substring keywords: the 32 above, then synthetic ones.
func benchSpecs(n int) []keyword.Spec {
	specs := make([]keyword.Spec, 0, n)
	for i := 0; i < n; i++ {
		text := fmt.Sprintf("kw%04d-never", i)
		if i < len(benchKeywords) {
			text = benchKeywords[i]
		}
		specs = append(specs, keyword.Spec{Text: text})
	}
	return specs
}

// benchChunks splits every loghub line into tail-shaped chunks (Fluent Bit 2.1+
// layout, EventTime) of 1024 records.
func benchChunks(b *testing.B) ([][]byte, int) {
	lines := loghub.All(b)
	var chunks [][]byte
	for i := 0; i < len(lines); i += 1024 {
		chunks = append(chunks, chunk.Lines(chunk.FormatV2, chunk.EventTime, t0, lines[i:min(i+1024, len(lines))]))
	}
	return chunks, len(lines)
}

// reportPerRecord adds records/s, records/cpu-s and allocs/record; one op
// is one pass over all chunks. records/cpu-s divides by the process's CPU
// time (user + system, all threads, GC included) instead of the wall clock:
// the per-core figure, which other processes competing for the cores do not
// lower as much as they lower records/s.
func reportPerRecord(b *testing.B, records int, mallocs uint64, cpu time.Duration) {
	n := float64(b.N) * float64(records)
	b.ReportMetric(n/b.Elapsed().Seconds(), "records/s")
	if cpu > 0 {
		b.ReportMetric(n/cpu.Seconds(), "records/cpu-s")
	}
	b.ReportMetric(float64(mallocs)/n, "allocs/record")
}

// cpuTime is the CPU time the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// BenchmarkFlush is keyalert's flush path without Redis: in-place decode,
// one matcher pass per value, aggregation and entry building.
func BenchmarkFlush(b *testing.B) {
	chunks, records := benchChunks(b)
	for _, n := range []int{32, 1000} {
		b.Run(fmt.Sprintf("keywords=%d", n), func(b *testing.B) {
			m, err := match.Compile(benchSpecs(n))
			if err != nil {
				b.Fatal(err)
			}
			fl := New(Options{Keys: []string{"log", "message"}, Hostname: "bench", Samples: 1, Identity: "bench"})
			for _, c := range chunks { // warm the pool
				fl.Process(m, c, "tail.0")
			}
			b.ReportAllocs()
			b.ResetTimer()
			before, cpu0 := mallocs(), cpuTime()
			for i := 0; i < b.N; i++ {
				for _, c := range chunks {
					if res := fl.Process(m, c, "tail.0"); res.Err != nil {
						b.Fatal(res.Err)
					}
				}
			}
			b.StopTimer()
			reportPerRecord(b, records, mallocs()-before, cpuTime()-cpu0)
		})
	}
}

// BenchmarkGetRecordContains is the path most Go output plugins take, on the
// same chunks: fluent-bit-go's decoder (copy + reflection into interface
// maps) and strings.Contains for each of the 32 keywords.
func BenchmarkGetRecordContains(b *testing.B) {
	chunks, records := benchChunks(b)
	kws := benchKeywords
	counts := make([]int, len(kws))
	b.ReportAllocs()
	b.ResetTimer()
	before, cpu0 := mallocs(), cpuTime()
	for i := 0; i < b.N; i++ {
		for _, c := range chunks {
			dec := output.NewDecoder(unsafe.Pointer(&c[0]), len(c))
			for {
				ret, _, rec := output.GetRecord(dec)
				if ret != 0 {
					break
				}
				v, ok := rec["log"].([]byte)
				if !ok {
					continue
				}
				line := string(v)
				for k, kw := range kws {
					if strings.Contains(line, kw) {
						counts[k]++
					}
				}
			}
		}
	}
	b.StopTimer()
	reportPerRecord(b, records, mallocs()-before, cpuTime()-cpu0)
	if counts[0] == 0 {
		b.Fatal("no Exception counted: decoder path broken")
	}
}

// kubeChunks are the loghub lines as the kubernetes filter leaves them,
// keys in the order Fluent Bit writes them: the tail input's (log, stream,
// time), a JSON log's fields that Merge_Log lifted (level), then the
// "kubernetes" map (pod_name, namespace_name, pod_id, labels, annotations,
// host, container_name, docker_id, container_hash, container_image). Chunks
// of 1024 records, step apart in event time: 5 namespaces, 7 apps and 3
// levels, so a chunk has up to 105 label sets in each minute it spans. With
// perContainer, every record of a chunk comes from one container (chunk c
// from app c%7 in namespace c%5), as the tail input makes chunks of one
// file: its kubernetes map is the same bytes all through, only the level
// varies.
func kubeChunks(b *testing.B, step time.Duration, perContainer bool) ([][]byte, int) {
	lines := loghub.All(b)
	levels := []string{"info", "warn", "error"}
	var chunks [][]byte
	var cur []byte
	for i, l := range lines {
		a, ns := i%7, i%5
		if perContainer {
			a, ns = i/1024%7, i/1024%5
		}
		app := fmt.Sprintf("app-%d", a)
		rec := ordered{
			{"log", l},
			{"stream", "stdout"},
			{"time", t0.Format("2006-01-02T15:04:05.000000000Z")},
			{"level", levels[i%3]},
			{"kubernetes", ordered{
				{"pod_name", app + "-5d8c7b9f6d-x7k2p"},
				{"namespace_name", fmt.Sprintf("team-%d", ns)},
				{"pod_id", "0b1c7e2a-6f4d-4c1e-9a8b-3d2e1f0a9b8c"},
				{"labels", ordered{{"app", app}, {"pod-template-hash", "5d8c7b9f6d"}}},
				{"annotations", ordered{{"kubectl.kubernetes.io/restartedAt", "2024-04-30T09:12:44Z"}}},
				{"host", "node-1"},
				{"container_name", app},
				{"docker_id", "4f2e8c9d1a7b3e6f0c5d8a2b9e1f4c7d6a3b8e0f2c5d9a1b4e7f0c3d6a9b2e5f"},
				{"container_hash", "registry.example/" + app + "@sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"},
				{"container_image", "registry.example/" + app + ":1.4.2"},
			}},
		}
		// The event's header as AppendEvent writes it, then the ordered record
		// in place of its (empty) map.
		ev, err := chunk.AppendEvent(nil, chunk.FormatV2, t0.Add(time.Duration(i%1024)*step), chunk.EventTime, map[string]any{})
		if err != nil {
			b.Fatal(err)
		}
		cur = rec.append(append(cur, ev[:len(ev)-1]...))
		if (i+1)%1024 == 0 || i == len(lines)-1 {
			chunks = append(chunks, cur)
			cur = nil
		}
	}
	return chunks, len(lines)
}

// ordered is a msgpack map whose keys keep their order.
type ordered []struct {
	k string
	v any
}

func (o ordered) append(b []byte) []byte {
	b = msgp.AppendMapHeader(b, uint32(len(o)))
	for _, kv := range o {
		b = msgp.AppendString(b, kv.k)
		switch v := kv.v.(type) {
		case ordered:
			b = v.append(b)
		case string:
			b = msgp.AppendString(b, v)
		}
	}
	return b
}

// BenchmarkFlushLabels is the flush path on kubernetes-shaped records,
// without labels and with three read from nested maps
// ($kubernetes['namespace_name'], $kubernetes['labels']['app'], $level),
// in the same run. Records are 10ms apart (a chunk spans about 10 s, as
// with Fluent Bit's default 1 s flush on a busy node) or 1 s apart (a chunk
// spans 17 minutes: 17 times the series, the worst case for entry building).
// containers=chunk is step=10ms with each chunk from one container, as the
// tail input reads one file per tag.
func BenchmarkFlushLabels(b *testing.B) {
	for _, step := range []time.Duration{10 * time.Millisecond, time.Second} {
		chunks, records := kubeChunks(b, step, false)
		b.Run("step="+step.String(), func(b *testing.B) { benchLabels(b, chunks, records) })
	}
	chunks, records := kubeChunks(b, 10*time.Millisecond, true)
	b.Run("containers=chunk", func(b *testing.B) { benchLabels(b, chunks, records) })
}

func benchLabels(b *testing.B, chunks [][]byte, records int) {
	m, err := match.Compile(benchSpecs(32))
	if err != nil {
		b.Fatal(err)
	}
	three := []Label{
		{Name: "namespace", Path: accessor.MustParse("$kubernetes['namespace_name']")},
		{Name: "app", Path: accessor.MustParse("$kubernetes['labels']['app']")},
		{Name: "level", Path: accessor.MustParse("$level")},
	}
	for _, labels := range [][]Label{nil, three} {
		b.Run(fmt.Sprintf("labels=%d", len(labels)), func(b *testing.B) {
			fl := New(Options{Keys: []string{"log", "message"}, Hostname: "bench", Samples: 1, Identity: "bench", Labels: labels})
			for _, c := range chunks { // warm the pool
				fl.Process(m, c, "kube.var.log.containers.x")
			}
			b.ReportAllocs()
			b.ResetTimer()
			before, cpu0 := mallocs(), cpuTime()
			entries, matched := 0, 0
			for i := 0; i < b.N; i++ {
				for _, c := range chunks {
					res := fl.Process(m, c, "kube.var.log.containers.x")
					if res.Err != nil {
						b.Fatal(res.Err)
					}
					entries += len(res.Entries)
					matched += res.Matched
				}
			}
			b.StopTimer()
			reportPerRecord(b, records, mallocs()-before, cpuTime()-cpu0)
			b.ReportMetric(float64(entries)/float64(b.N), "entries/op")
			b.ReportMetric(float64(matched)/float64(b.N)/float64(records), "matched/record")
		})
	}
}

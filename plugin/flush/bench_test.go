package flush

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/fluent/fluent-bit-go/output"
	"github.com/keyalert/keyalert/harness/loghub"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/match"
	"github.com/keyalert/keyalert/plugin/chunk"
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

// reportPerRecord adds records/s and allocs/record; one op is one pass over
// all chunks.
func reportPerRecord(b *testing.B, records int, mallocs uint64) {
	n := float64(b.N) * float64(records)
	b.ReportMetric(n/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(mallocs)/n, "allocs/record")
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
			before := mallocs()
			for i := 0; i < b.N; i++ {
				for _, c := range chunks {
					if res := fl.Process(m, c, "tail.0"); res.Err != nil {
						b.Fatal(res.Err)
					}
				}
			}
			b.StopTimer()
			reportPerRecord(b, records, mallocs()-before)
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
	before := mallocs()
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
	reportPerRecord(b, records, mallocs()-before)
	if counts[0] == 0 {
		b.Fatal("no Exception counted: decoder path broken")
	}
}

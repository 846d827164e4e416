package match

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/keyalert/keyalert/pkg/keyword"
)

// realKeywords are the kind of keywords people alert on in these logs.
var realKeywords = []keyword.Spec{
	sub("Exception"), sub("ERROR"), sub("WARN"), sub("FATAL"), sub("OutOfMemoryError"),
	sub("NullPointerException"), sub("Disk Full"), sub("Connection refused"), sub("Failed password"),
	sub("Invalid user"), sub("POSSIBLE BREAK-IN ATTEMPT"), sub("BLOCK*"), sub("SocketTimeoutException"),
	sub("Broken pipe"), sub("segfault"), sub("Permission denied"),
	subI("error"), subI("timeout"), subI("refused"), subI("denied"), subI("failed"), subI("unreachable"),
	subI("corrupt"), subI("panic"),
	wordI("fail"), word("killed"), wordI("abort"), word("CRITICAL"),
	rx(`timeout after \d+ms`), rx(`connection (refused|reset)`), rxI(`disk\s+full`), rx(`exit code [1-9]\d*`),
}

var (
	benchSyllables = []string{"con", "nect", "time", "out", "lease", "block", "node", "queue", "sched", "quorum",
		"shard", "rep", "lica", "disk", "mem", "heap", "sock", "auth", "token", "flush", "commit", "peer", "vol",
		"zone", "snap", "shot", "cache", "pool", "lock", "dead"}
	benchWords = []string{"overflow", "expired", "lost", "stalled", "rejected", "corrupted", "unavailable",
		"throttled", "evicted", "missing", "degraded", "diverged", "mismatch", "exhausted", "aborted"}
)

// benchKeywords returns n keywords: the real ones first, then generated ones
// in the same style (exception names, error codes, host names, phrases,
// words, regexes with a literal), case-sensitive and not.
func benchKeywords(n int) []keyword.Spec {
	out := slices.Clone(realKeywords[:min(n, len(realKeywords))])
	seen := map[string]bool{}
	for _, s := range out {
		seen[s.ID()] = true
	}
	r := rand.New(rand.NewPCG(42, 7))
	camel := func() string {
		w := benchSyllables[r.IntN(len(benchSyllables))] + benchSyllables[r.IntN(len(benchSyllables))]
		return string(w[0]-'a'+'A') + w[1:]
	}
	for len(out) < n {
		var s keyword.Spec
		switch k := r.IntN(20); {
		case k < 4:
			s = sub(camel() + camel() + "Exception")
		case k < 7:
			s = sub(fmt.Sprintf("ERR-%05d", r.IntN(100000)))
		case k < 9:
			s = sub(fmt.Sprintf("db-%03d.prod unreachable", r.IntN(1000)))
		case k < 15:
			s = subI(benchSyllables[r.IntN(len(benchSyllables))] + " " + benchWords[r.IntN(len(benchWords))])
		case k < 17:
			s = word(camel() + benchWords[r.IntN(len(benchWords))])
		case k < 19:
			s = wordI(fmt.Sprintf("E%04d", r.IntN(10000)))
		default:
			s = rx(fmt.Sprintf(`%s %s after \d+ms`, benchSyllables[r.IntN(len(benchSyllables))], benchWords[r.IntN(len(benchWords))]))
		}
		if !seen[s.ID()] {
			seen[s.ID()] = true
			out = append(out, s)
		}
	}
	return out
}

// benchLines returns every loghub line (about 14,000, 130 bytes on average),
// or generated log-like lines when loghub is absent.
func benchLines(b testing.TB) [][]byte {
	if dir := loghubDir(b); dir != "" {
		files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		var lines [][]byte
		for _, f := range files {
			lines = append(lines, readLines(b, f)...)
		}
		if len(lines) > 0 {
			return lines
		}
	}
	fmt.Fprintln(os.Stderr, "bench: ../shared/loghub not found, using generated lines")
	r := rand.New(rand.NewPCG(1, 1))
	levels := []string{"INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"}
	lines := make([][]byte, 10000)
	for i := range lines {
		lines[i] = fmt.Appendf(nil, "2015-10-18 18:%02d:%02d,%03d %s [main] org.apache.hadoop.%s: %s %s for %s_%d took %dms",
			r.IntN(60), r.IntN(60), r.IntN(1000), levels[r.IntN(len(levels))],
			benchSyllables[r.IntN(len(benchSyllables))], benchSyllables[r.IntN(len(benchSyllables))],
			benchWords[r.IntN(len(benchWords))], benchSyllables[r.IntN(len(benchSyllables))], r.Uint64(), r.IntN(5000))
	}
	return lines
}

func totalBytes(lines [][]byte) int64 {
	var n int64
	for _, l := range lines {
		n += int64(len(l))
	}
	return n
}

// BenchmarkScan: one op scans every line as its own record (Scan, Found,
// Reset).
func BenchmarkScan(b *testing.B) {
	lines := benchLines(b)
	for _, n := range []int{32, 1000} {
		b.Run(fmt.Sprintf("keywords=%d", n), func(b *testing.B) {
			m, err := Compile(benchKeywords(n))
			if err != nil {
				b.Fatal(err)
			}
			st := m.Stats()
			b.Logf("%d lines, %d bytes; %+v", len(lines), totalBytes(lines), st)
			s := m.NewScratch()
			found := 0
			b.SetBytes(totalBytes(lines))
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				for _, l := range lines {
					m.Scan(l, s)
					found += len(s.Found())
					s.Reset()
				}
			}
			cpu.report(b, totalBytes(lines))
			b.ReportMetric(float64(found)/float64(b.N), "found/op")
		})
	}
}

// BenchmarkCompile: building the automata when the keyword set changes.
func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{32, 1000} {
		b.Run(fmt.Sprintf("keywords=%d", n), func(b *testing.B) {
			specs := benchKeywords(n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Compile(specs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkContainsLoop is the naive baseline for the same keywords: per line,
// ASCII-lowercase once, then bytes.Contains (or a boundary loop) per keyword
// and regexp.Match per regex keyword. literals=28 drops the 4 regexes, to
// show the bytes.Contains loop alone.
func BenchmarkContainsLoop(b *testing.B) {
	lines := benchLines(b)
	literals := func(specs []keyword.Spec) []keyword.Spec {
		return slices.DeleteFunc(specs, func(s keyword.Spec) bool { return s.Match == keyword.Regex })
	}
	for _, set := range []struct {
		name  string
		specs []keyword.Spec
	}{
		{"keywords=32", benchKeywords(32)},
		{fmt.Sprintf("literals=%d", len(literals(benchKeywords(32)))), literals(benchKeywords(32))},
	} {
		b.Run(set.name, func(b *testing.B) {
			type kw struct {
				spec keyword.Spec
				text []byte
				re   *regexp.Regexp
			}
			var kws []kw
			for _, s := range set.specs {
				s = s.Canonical()
				k := kw{spec: s, text: []byte(s.Text)}
				if s.Match == keyword.Regex {
					k.re, _ = s.Regexp()
				}
				kws = append(kws, k)
			}
			lower := make([]byte, 0, 4096)
			found := 0
			b.SetBytes(totalBytes(lines))
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				for _, l := range lines {
					lower = lower[:0]
					for _, c := range l {
						if 'A' <= c && c <= 'Z' {
							c += 'a' - 'A'
						}
						lower = append(lower, c)
					}
					for _, k := range kws {
						t := l
						if k.spec.IgnoreCase {
							t = lower
						}
						var ok bool
						switch k.spec.Match {
						case keyword.Substring:
							ok = bytes.Contains(t, k.text)
						case keyword.Word:
							ok = containsWord(t, k.text)
						case keyword.Regex:
							ok = k.re.Match(l)
						}
						if ok {
							found++
						}
					}
				}
			}
			cpu.report(b, totalBytes(lines))
			b.ReportMetric(float64(found)/float64(b.N), "found/op")
		})
	}
}

// cpuClock measures the benchmark goroutine's thread CPU time. The machine is
// shared, so wall-clock MB/s drops whenever other processes run; cpu-MB/s
// (bytes per CPU second of this thread) does not count time spent waiting for
// a core, though it still pays for caches that others evicted.
type cpuClock struct {
	start time.Duration
	ok    bool
}

func startCPU() *cpuClock {
	runtime.LockOSThread()
	c := &cpuClock{}
	c.start, c.ok = threadCPU()
	return c
}

func (c *cpuClock) report(b *testing.B, bytesPerOp int64) {
	defer runtime.UnlockOSThread()
	end, ok := threadCPU()
	if !c.ok || !ok || end <= c.start {
		return
	}
	b.ReportMetric(float64(bytesPerOp)*float64(b.N)/(end-c.start).Seconds()/1e6, "cpu-MB/s")
}

func containsWord(t, w []byte) bool {
	for off := 0; ; {
		j := bytes.Index(t[off:], w)
		if j < 0 {
			return false
		}
		st, end := off+j, off+j+len(w)
		if (st == 0 || !isWordByte[t[st-1]]) && (end == len(t) || !isWordByte[t[end]]) {
			return true
		}
		off = st + 1
	}
}

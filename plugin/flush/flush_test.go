package flush

import (
	"errors"
	"fmt"
	"github.com/keyalert/keyalert/plugin/accessor"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/loghub"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/match"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/chunk"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC) // a minute start

func compile(t testing.TB, specs ...keyword.Spec) *match.Matcher {
	t.Helper()
	m, err := match.Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sub(text string) keyword.Spec { return keyword.Spec{Text: text} }

type ev struct {
	at  time.Duration // after t0
	rec map[string]any
}

func build(t testing.TB, f chunk.Format, kind chunk.TimeKind, evs ...ev) []byte {
	t.Helper()
	var b []byte
	for _, e := range evs {
		var err error
		if b, err = chunk.AppendEvent(b, f, t0.Add(e.at), kind, e.rec); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// summary renders entries as "id host minute-offset count [samples]".
func summary(es []stream.Entry) []string {
	var out []string
	for _, e := range es {
		s := fmt.Sprintf("%s %s +%d %d", e.Keyword.ID(), e.Host, e.Minute-t0.Unix(), e.Count)
		if len(e.Samples) > 0 {
			s += " [" + strings.Join(e.Samples, "|") + "]"
		}
		out = append(out, s)
	}
	return out
}

func TestProcess(t *testing.T) {
	base := Options{Keys: []string{"log", "message"}, Hostname: "agent", Samples: 1, Identity: "id"}
	kws := []keyword.Spec{sub("ERROR"), sub("WARN"), {Text: "timeout", IgnoreCase: true}}
	tests := []struct {
		name   string
		opt    func(o *Options)
		evs    []ev
		want   []string
		events int
	}{
		{"counts once per keyword per record, grouped by minute",
			nil,
			[]ev{
				{0, map[string]any{"log": "ERROR ERROR twice"}},
				{10 * time.Second, map[string]any{"log": "ERROR and WARN"}},
				{70 * time.Second, map[string]any{"log": "late ERROR"}},
				{80 * time.Second, map[string]any{"log": "nothing here"}},
			},
			[]string{
				"substring:ERROR agent +0 2 [ERROR ERROR twice]",
				"substring:ERROR agent +60 1",
				"substring:WARN agent +0 1 [ERROR and WARN]",
			}, 4},
		{"keyword in two scanned keys counts once, sample is the first value",
			nil,
			[]ev{{0, map[string]any{"log": "a TIMEOUT", "message": "another timeout"}}},
			[]string{"substring/i:timeout agent +0 1 [a TIMEOUT]"}, 1},
		{"keys not configured are not scanned",
			nil,
			[]ev{{0, map[string]any{"other": "ERROR", "log": "fine"}}},
			nil, 1},
		{"bin values are scanned, numbers ignored",
			nil,
			[]ev{{0, map[string]any{"log": []byte("bin WARN"), "message": int64(5)}}},
			[]string{"substring:WARN agent +0 1 [bin WARN]"}, 1},
		{"star scans nested maps and arrays",
			func(o *Options) { o.Keys, o.AllKeys = nil, true },
			[]ev{{0, map[string]any{"k8s": map[string]any{"labels": []any{"x", "WARN deep"}}, "n": 1.5}}},
			[]string{"substring:WARN agent +0 1 [WARN deep]"}, 1},
		{"hostname key overrides, falls back when absent, empty or not a string",
			func(o *Options) { o.HostnameKey = accessor.MustParse("host") },
			[]ev{
				{0, map[string]any{"log": "ERROR", "host": "web-1"}},
				{1, map[string]any{"log": "ERROR", "host": []byte("web-1")}},
				{2, map[string]any{"log": "ERROR"}},
				{3, map[string]any{"log": "ERROR", "host": ""}},
				{4, map[string]any{"log": "ERROR", "host": int64(7)}},
			},
			// Samples are per host: the fallback host gets its own line.
			[]string{"substring:ERROR agent +0 3 [ERROR]", "substring:ERROR web-1 +0 2 [ERROR]"}, 5},
		{"hostname key as a record accessor into the kubernetes map",
			func(o *Options) { o.HostnameKey = accessor.MustParse("$kubernetes['host']") },
			[]ev{
				{0, map[string]any{"log": "ERROR", "kubernetes": map[string]any{"pod_name": "p", "host": "node-1"}}},
				{1, map[string]any{"log": "ERROR", "kubernetes": map[string]any{"host": "node-2"}}},
				{2, map[string]any{"log": "ERROR", "kubernetes": "not a map"}},
			},
			[]string{"substring:ERROR agent +0 1 [ERROR]", "substring:ERROR node-1 +0 1 [ERROR]", "substring:ERROR node-2 +0 1 [ERROR]"}, 3},
		{"samples: first N per keyword",
			func(o *Options) { o.Samples = 2 },
			[]ev{
				{0, map[string]any{"log": "WARN 1"}},
				{1, map[string]any{"log": "WARN 2"}},
				{2, map[string]any{"log": "WARN 3"}},
			},
			[]string{"substring:WARN agent +0 3 [WARN 1|WARN 2]"}, 3},
		{"samples: first N per keyword on each host, bounded per flush",
			func(o *Options) { o.HostnameKey, o.Samples, o.SamplesPerFlush = accessor.MustParse("host"), 1, 2 },
			[]ev{
				{0, map[string]any{"log": "WARN a1", "host": "a"}},
				{1, map[string]any{"log": "WARN a2", "host": "a"}},
				{2, map[string]any{"log": "WARN b1", "host": "b"}},
				{3, map[string]any{"log": "WARN c1", "host": "c"}},
			},
			[]string{"substring:WARN a +0 2 [WARN a1]", "substring:WARN b +0 1 [WARN b1]", "substring:WARN c +0 1"}, 4},
		{"samples zero",
			func(o *Options) { o.Samples = 0 },
			[]ev{{0, map[string]any{"log": "WARN 1"}}},
			[]string{"substring:WARN agent +0 1"}, 1},
	}
	for _, tt := range tests {
		for _, f := range []chunk.Format{chunk.FormatV1, chunk.FormatV2} {
			t.Run(fmt.Sprintf("%s/v%d", tt.name, 2-int(f)), func(t *testing.T) {
				opt := base
				if tt.opt != nil {
					tt.opt(&opt)
				}
				data := build(t, f, chunk.EventTime, tt.evs...)
				res := New(opt).Process(compile(t, kws...), data, "app.log")
				if res.Err != nil || res.Events != tt.events {
					t.Fatalf("err %v events %d", res.Err, res.Events)
				}
				got := summary(res.Entries)
				if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
				}
				for _, e := range res.Entries {
					if e.Tag != "app.log" || e.Batch != res.Batch || len(e.Batch) != 32 {
						t.Errorf("entry tag %q batch %q", e.Tag, e.Batch)
					}
				}
			})
		}
	}
}

func TestTimeKindsGiveSameMinutes(t *testing.T) {
	m := compile(t, sub("x"))
	fl := New(Options{Keys: []string{"log"}, Hostname: "h", Identity: "id"})
	var ref []string
	for _, kind := range []chunk.TimeKind{chunk.EventTime, chunk.EventTimeExt8, chunk.IntTime, chunk.UintTime, chunk.FloatTime} {
		data := build(t, chunk.FormatV2, kind,
			ev{59 * time.Second, map[string]any{"log": "x"}},
			ev{60 * time.Second, map[string]any{"log": "x"}},
			ev{61*time.Second + 900*time.Millisecond, map[string]any{"log": "x"}})
		got := strings.Join(summary(New(fl.opt).Process(m, data, "t").Entries), ";")
		if ref == nil {
			ref = []string{got}
			if got != "substring:x h +0 1;substring:x h +60 2" {
				t.Fatalf("minutes: %s", got)
			}
		} else if got != ref[0] {
			t.Errorf("kind %d: %s, want %s", kind, got, ref[0])
		}
	}
}

func TestBatchID(t *testing.T) {
	m := compile(t, sub("x"))
	data := build(t, chunk.FormatV2, chunk.EventTime, ev{0, map[string]any{"log": "x"}})
	a := New(Options{Keys: []string{"log"}, Hostname: "h", Identity: "host-a"})
	b := New(Options{Keys: []string{"log"}, Hostname: "h", Identity: "host-b"})
	r1, r2, r3 := a.Process(m, data, "t"), a.Process(m, data, "t"), b.Process(m, data, "t")
	if r1.Batch != r2.Batch {
		t.Error("same chunk, same instance: batch differs")
	}
	if r1.Batch == r3.Batch {
		t.Error("two instances share a batch id")
	}
	if r1.Batch != stream.BatchID("host-a", data) {
		t.Error("batch is not stream.BatchID(identity, chunk)")
	}
	// The producer is the instance's, stable across flushes and restarts.
	if p := r1.Entries[0].Producer; p != stream.ProducerID("host-a") || p != r2.Entries[0].Producer || p == r3.Entries[0].Producer {
		t.Errorf("producers %q %q %q: want stream.ProducerID of each instance's identity", p, r2.Entries[0].Producer, r3.Entries[0].Producer)
	}
}

func TestSkippedAndBrokenChunks(t *testing.T) {
	m := compile(t, sub("ERROR"))
	fl := New(Options{Keys: []string{"log"}, Hostname: "h", Samples: 1, Identity: "id"})
	good := build(t, chunk.FormatV2, chunk.EventTime, ev{0, map[string]any{"log": "ERROR a"}})
	notMap := []byte{0x92, 0x05, 0xa1, 'x'} // [5, "x"]: framed, record not a map
	tests := []struct {
		name                  string
		data                  []byte
		wantCount, wantEvents int
		wantSkipped           int
		wantErrAt             int // byte offset; -1 = no error
	}{
		{"skipped event in the middle", concat(good, notMap, good), 2, 2, 1, -1},
		{"truncated tail: counts before the break", concat(good, good, good[:len(good)-2]), 2, 2, 0, 2 * len(good)},
		{"garbage at start", concat([]byte{0xc1}, good), 0, 0, 0, 0},
		{"empty chunk", nil, 0, 0, 0, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := fl.Process(m, tt.data, "t")
			var n int64
			for _, e := range res.Entries {
				n += e.Count
			}
			if int(n) != tt.wantCount || res.Events != tt.wantEvents || res.Skipped != tt.wantSkipped {
				t.Errorf("count %d events %d skipped %d", n, res.Events, res.Skipped)
			}
			var de *chunk.DecodeError
			switch {
			case tt.wantErrAt < 0 && res.Err != nil:
				t.Errorf("unexpected error %v", res.Err)
			case tt.wantErrAt >= 0 && (!errors.As(res.Err, &de) || de.Offset != tt.wantErrAt):
				t.Errorf("error %v, want one at offset %d", res.Err, tt.wantErrAt)
			}
		})
	}
}

func TestEmptyMatcherCountsNothing(t *testing.T) {
	fl := New(Options{Keys: []string{"log"}, Hostname: "h", Identity: "id"})
	data := build(t, chunk.FormatV2, chunk.EventTime, ev{0, map[string]any{"log": "x"}})
	for _, m := range []*match.Matcher{nil, compile(t)} {
		if res := fl.Process(m, data, "t"); len(res.Entries) != 0 || res.Events != 0 {
			t.Errorf("%+v", res)
		}
	}
}

// The matcher may be swapped between flushes (keyword follower); pooled state
// built for the old one must not be used with the new one.
func TestMatcherSwap(t *testing.T) {
	fl := New(Options{Keys: []string{"log"}, Hostname: "h", Identity: "id"})
	data := build(t, chunk.FormatV2, chunk.EventTime, ev{0, map[string]any{"log": "alpha beta gamma"}})
	m1 := compile(t, sub("alpha"))
	m2 := compile(t, sub("zeta"), sub("beta"), sub("gamma"))
	for i := 0; i < 3; i++ {
		if got := strings.Join(summary(fl.Process(m1, data, "t").Entries), ";"); got != "substring:alpha h +0 1" {
			t.Fatalf("m1: %s", got)
		}
		if got := strings.Join(summary(fl.Process(m2, data, "t").Entries), ";"); got != "substring:beta h +0 1;substring:gamma h +0 1" {
			t.Fatalf("m2: %s", got)
		}
	}
}

// Concurrent flushes (workers N) share one Flusher and give the same totals.
func TestConcurrentFlushesSameTotals(t *testing.T) {
	lines := []string{"ERROR one", "WARN two", "ERROR WARN three", "quiet"}
	var all []string
	for i := 0; i < 50; i++ {
		all = append(all, lines...)
	}
	data := chunk.Lines(chunk.FormatV2, chunk.EventTime, t0, all)
	m := compile(t, sub("ERROR"), sub("WARN"))
	fl := New(Options{Keys: []string{"log"}, Hostname: "h", Samples: 1, Identity: "id"})
	want := total(fl.Process(m, data, "t").Entries)
	var wg sync.WaitGroup
	results := make(chan map[string]int64, 8*20)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				results <- total(fl.Process(m, data, "t").Entries)
			}
		}()
	}
	wg.Wait()
	close(results)
	for got := range results {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("got %v want %v", got, want)
		}
	}
	if want["substring:ERROR"] != 100 || want["substring:WARN"] != 100 {
		t.Fatalf("totals %v", want)
	}
}

func total(es []stream.Entry) map[string]int64 {
	out := map[string]int64{}
	for _, e := range es {
		out[e.Keyword.ID()] += e.Count
	}
	return out
}

// The loghub README lists, per file, how many lines contain each word; the
// flush path must reproduce them from tail-shaped chunks.
func TestLoghubCounts(t *testing.T) {
	want := loghub.Counts // Exception, ERROR, WARN, error any case
	m := compile(t, sub("Exception"), sub("ERROR"), sub("WARN"), keyword.Spec{Text: "error", IgnoreCase: true})
	ids := []string{"substring:Exception", "substring:ERROR", "substring:WARN", "substring/i:error"}
	fl := New(Options{Keys: []string{"log"}, Hostname: "h", Samples: 1, Identity: "id"})
	for name, w := range want {
		t.Run(name, func(t *testing.T) {
			lines := loghub.Read(t, name)
			got := map[string]int64{}
			// Several chunks, as tail would flush them.
			for i := 0; i < len(lines); i += 300 {
				end := min(i+300, len(lines))
				data := chunk.Lines(chunk.FormatV2, chunk.EventTime, t0, lines[i:end])
				res := fl.Process(m, data, "tail.0")
				if res.Err != nil || res.Events != end-i {
					t.Fatalf("err %v events %d", res.Err, res.Events)
				}
				for k, v := range total(res.Entries) {
					got[k] += v
				}
			}
			for i, id := range ids {
				if got[id] != w[i] {
					t.Errorf("%s: %d, want %d", id, got[id], w[i])
				}
			}
		})
	}
}

// Per-record work allocates nothing: a chunk of 1000 records costs the same
// allocations as a chunk of 10 (only per-flush entry building allocates).
func TestAllocationsDoNotGrowWithRecords(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector (sync.Pool drops items)")
	}
	m := compile(t, sub("ERROR"), sub("WARN"), sub("Exception"))
	fl := New(Options{Keys: []string{"log", "message"}, HostnameKey: accessor.MustParse("host"), Hostname: "h", Samples: 1, Identity: "id"})
	mk := func(n int) []byte {
		var evs []ev
		for i := 0; i < n; i++ {
			evs = append(evs, ev{time.Duration(i) * time.Second, map[string]any{
				"log": fmt.Sprintf("line %d ERROR WARN", i), "host": "web-" + fmt.Sprint(i%3)}})
		}
		return build(t, chunk.FormatV2, chunk.EventTime, evs...)
	}
	small, large := mk(10), mk(1000)
	fl.Process(m, small, "t")
	fl.Process(m, large, "t")
	a := testing.AllocsPerRun(20, func() { fl.Process(m, small, "t") })
	b := testing.AllocsPerRun(20, func() { fl.Process(m, large, "t") })
	// The large chunk spans 17 minutes, so it builds more entries; allow for
	// those, not for anything per record.
	if b > a+float64(17*3*2*4) {
		t.Errorf("allocations: %v for 10 records, %v for 1000", a, b)
	}
}

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

package aggregate

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
)

type specList []keyword.Spec

func (s specList) Len() int                { return len(s) }
func (s specList) Spec(i int) keyword.Spec { return s[i] }

// Keywords deliberately out of ID order: index 0 sorts after index 1.
var specs = specList{
	{Text: "warn", Match: keyword.Substring},
	{Text: "error", Match: keyword.Substring, IgnoreCase: true},
}

type add struct {
	kw     int
	host   string
	minute int64
	line   string
}

func TestEntries(t *testing.T) {
	tests := []struct {
		name     string
		samples  int
		perFlush int // 0: DefaultSamplesPerFlush
		adds     []add
		want     []string // "id host minute count samples|..."
	}{
		{"nothing counted", 1, 0, nil, nil},
		{"counts per series, sorted by id, host, minute", 1, 0,
			[]add{{0, "b", 120, "w1"}, {0, "a", 120, "w2"}, {1, "a", 60, "e1"}, {0, "a", 60, "w3"}, {0, "a", 120, "w4"}},
			[]string{
				"substring/i:error a 60 1 e1",
				"substring:warn a 60 1 ",
				"substring:warn a 120 2 w2", // host a's first warn line: samples are per host
				"substring:warn b 120 1 w1",
			}},
		{"samples are the first N per keyword of a host across minutes", 2, 0,
			[]add{{0, "h", 0, "one"}, {0, "h", 60, "two"}, {0, "h", 60, "three"}, {1, "h", 0, "x"}},
			[]string{
				"substring/i:error h 0 1 x",
				"substring:warn h 0 1 one",
				"substring:warn h 60 2 two",
			}},
		{"every host gets its own samples", 1, 0,
			[]add{{0, "a", 0, "a1"}, {0, "a", 0, "a2"}, {0, "b", 0, "b1"}, {0, "c", 60, "c1"}, {0, "b", 0, "b2"}},
			[]string{
				"substring:warn a 0 2 a1",
				"substring:warn b 0 2 b1",
				"substring:warn c 60 1 c1",
			}},
		{"the flush bound stops samples in record order", 2, 3,
			[]add{{0, "a", 0, "a1"}, {0, "a", 0, "a2"}, {0, "b", 0, "b1"}, {0, "b", 0, "b2"}, {0, "c", 0, "c1"}},
			[]string{
				"substring:warn a 0 2 a1|a2",
				"substring:warn b 0 2 b1",
				"substring:warn c 0 1 ",
			}},
		{"zero samples keeps none", 0, 0,
			[]add{{1, "h", 0, "x"}, {1, "h", 0, "y"}},
			[]string{"substring/i:error h 0 2 "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New()
			// A previous flush must not leak into this one.
			a.Reset(5, DefaultSamplesPerFlush)
			a.Add(0, a.Host([]byte("old")), 0, 0, []byte("stale"))
			perFlush := tt.perFlush
			if perFlush == 0 {
				perFlush = DefaultSamplesPerFlush
			}
			a.Reset(tt.samples, perFlush)
			for _, ad := range tt.adds {
				a.Add(ad.kw, a.Host([]byte(ad.host)), 0, ad.minute, []byte(ad.line))
			}
			es := a.Entries(specs, "b1", "tag.x", nil)
			if len(es) != len(tt.want) {
				t.Fatalf("%d entries, want %d: %+v", len(es), len(tt.want), es)
			}
			for i, e := range es {
				got := e.Keyword.ID() + " " + e.Host + " " + itoa(e.Minute) + " " + itoa(e.Count) + " " + strings.Join(e.Samples, "|")
				if got != tt.want[i] {
					t.Errorf("entry %d = %q, want %q", i, got, tt.want[i])
				}
				if e.Batch != "b1" || e.Tag != "tag.x" {
					t.Errorf("entry %d batch %q tag %q", i, e.Batch, e.Tag)
				}
			}
		})
	}
}

func TestSamplesAreCutAndCopied(t *testing.T) {
	a := New()
	a.Reset(1, DefaultSamplesPerFlush)
	line := []byte(strings.Repeat("é", 400)) // 800 bytes, 2-byte runes
	a.Add(0, a.Host([]byte("h")), 0, 0, line)
	es := a.Entries(specs[:1], "b", "t", nil)
	s := es[0].Samples[0]
	if len(s) > stream.MaxSampleBytes || len(s) < stream.MaxSampleBytes-1 || !strings.HasPrefix(string(line), s) {
		t.Fatalf("sample of %d bytes", len(s))
	}
	line[0] = 'X' // the chunk is reused after the flush
	if es[0].Samples[0][0] == 'X' {
		t.Fatal("sample aliases the chunk")
	}
}

func TestSteadyStateDoesNotAllocate(t *testing.T) {
	a := New()
	hosts := [][]byte{[]byte("web-1"), []byte("web-2")}
	line := []byte("some line")
	run := func() {
		a.Reset(1, DefaultSamplesPerFlush)
		for i := 0; i < 100; i++ {
			a.Add(i%2, a.Host(hosts[i%2]), 0, int64(i/10)*60, line)
		}
	}
	run()
	if n := testing.AllocsPerRun(50, run); n != 0 {
		t.Errorf("%v allocations per flush of 100 records", n)
	}
}

func TestInternedHostsBounded(t *testing.T) {
	a := New()
	a.Reset(0, DefaultSamplesPerFlush)
	for i := 0; i <= maxInternedHosts+1; i++ {
		a.Host([]byte(itoa(int64(i))))
	}
	a.Reset(0, DefaultSamplesPerFlush)
	if len(a.hosts) != 0 {
		t.Fatalf("%d hosts kept", len(a.hosts))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestLabelSetsAreSeriesOfTheirOwn(t *testing.T) {
	a := New()
	a.SetLabelNames([]string{"app", "namespace"})
	a.Reset(1, DefaultSamplesPerFlush)
	h := a.Host([]byte("node-1"))
	shopWeb := a.LabelSet([]byte("web\x00shop"))
	shopNone := a.LabelSet([]byte("\x00shop")) // app empty: left out of the entry
	none := a.LabelSet([]byte("\x00"))
	a.Add(0, h, shopWeb, 0, []byte("w1"))
	a.Add(0, h, shopWeb, 0, []byte("w2"))
	a.Add(0, h, shopNone, 0, []byte("w3"))
	a.Add(0, h, none, 60, []byte("w4"))
	var got []string
	for _, e := range a.Entries(specs, "b", "t", nil) {
		got = append(got, fmtEntry(e))
	}
	want := []string{
		"substring:warn node-1 t [] 60 1 w4",
		"substring:warn node-1 t [namespace=shop] 0 1 w3",
		"substring:warn node-1 t [app=web namespace=shop] 0 2 w1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSeriesPastTheLimitGoToTheOverflowSeries(t *testing.T) {
	a := New()
	a.SetLabelNames([]string{"app"})
	a.SetMaxSeries(2)
	for round := 0; round < 2; round++ { // the limit is per flush
		a.Reset(1, DefaultSamplesPerFlush)
		for i, app := range []string{"a", "b", "c", "a", "d", "c"} {
			a.Add(0, a.Host([]byte("h")), a.LabelSet([]byte(app)), int64(i%2)*60, []byte(app))
		}
		a.Add(1, a.Host([]byte("h")), a.LabelSet([]byte("c")), 0, []byte("other keyword")) // its own limit
		n, kws := a.Overflowed()
		if n != 3 || len(kws) != 1 || kws[0] != 0 {
			t.Fatalf("round %d: overflowed %d %v, want 3 [0]", round, n, kws)
		}
		var got []string
		for _, e := range a.Entries(specs, "b", "t", nil) {
			got = append(got, fmtEntry(e))
		}
		want := []string{
			"substring/i:error h t [app=c] 0 1 other keyword",
			"substring:warn __other__ __other__ [app=__other__] 0 2 c",
			"substring:warn __other__ __other__ [app=__other__] 60 1 ",
			"substring:warn h t [app=a] 0 1 a",
			"substring:warn h t [app=a] 60 1 ",
			"substring:warn h t [app=b] 60 1 b",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("round %d: got\n%s\nwant\n%s", round, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestSteadyStateWithLabelsAndOverflowDoesNotAllocate(t *testing.T) {
	a := New()
	a.SetLabelNames([]string{"app", "namespace"})
	a.SetMaxSeries(3)
	keys := [][]byte{[]byte("web\x00shop"), []byte("api\x00shop"), []byte("db\x00data"), []byte("x\x00y"), []byte("z\x00y")}
	line := []byte("some line")
	run := func() {
		a.Reset(1, DefaultSamplesPerFlush)
		for i := 0; i < 100; i++ {
			a.Add(i%2, a.Host([]byte("node")), a.LabelSet(keys[i%len(keys)]), int64(i/10)*60, line)
		}
	}
	run()
	if n := testing.AllocsPerRun(50, run); n != 0 {
		t.Errorf("%v allocations per flush of 100 records", n)
	}
}

func fmtEntry(e stream.Entry) string {
	var ls []string
	for _, l := range e.Labels {
		ls = append(ls, l.Name+"="+l.Value)
	}
	return e.Keyword.ID() + " " + e.Host + " " + e.Tag + " [" + strings.Join(ls, " ") + "] " + itoa(e.Minute) + " " + itoa(e.Count) + " " + strings.Join(e.Samples, "|")
}

// Samples are cut exactly as stream.CutSample cuts them.
func TestSamplesCutLikeCutSample(t *testing.T) {
	lines := [][]byte{[]byte("short"), []byte(strings.Repeat("a", 600)), []byte(strings.Repeat("é", 300)),
		append([]byte(strings.Repeat("x", 511)), "€uro"...), {}, []byte("\xff\xfe")}
	a := New()
	a.Reset(len(lines), DefaultSamplesPerFlush)
	for i, l := range lines {
		a.Add(0, a.Host([]byte("h"+itoa(int64(i)))), 0, 0, l)
	}
	es := a.Entries(specs[:1], "b", "t", nil)
	for i, e := range es {
		host := e.Host
		n, _ := strconv.Atoi(host[1:])
		if want := stream.CutSample(lines[n]); len(e.Samples) != 1 || e.Samples[0] != want {
			t.Errorf("entry %d (%s): samples %q, want [%q]", i, host, e.Samples, want)
		}
	}
}

// Entries come out in the order of the strings themselves (keyword ID,
// host, label set key with the overflow set last, minute), over many
// flushes of one aggregator whose interned tables grow: a real host named
// like the overflow host ties with it on the host and is ordered by labels.
func TestEntriesSortByTheStrings(t *testing.T) {
	many := specList{}
	for _, text := range []string{"b", "a", "c", "a"} { // the same ID twice
		many = append(many, keyword.Spec{Text: text, Match: keyword.Substring})
	}
	hosts := []string{"web", stream.OverflowValue, "api", "", "zz"}
	sets := []string{"", "x\x00y", "x\x00", "\x00y", "a\x00b"}
	a := New()
	a.SetLabelNames([]string{"n1", "n2"})
	a.SetMaxSeries(6)
	for flush := 0; flush < 20; flush++ {
		a.Reset(1, 0)
		seed := uint32(flush*7919 + 1)
		next := func(n int) int { seed = seed*1664525 + 1013904223; return int(seed>>16) % n }
		for i := 0; i < 60; i++ {
			suffix := func(n int) string {
				if k := next(n); k > 0 {
					return strconv.Itoa(k)
				}
				return ""
			}
			h := a.HostString(hosts[next(len(hosts))] + suffix(1+flush%3))
			l := a.LabelSetString(sets[next(len(sets))] + suffix(1+flush%4))
			a.Add(next(len(many)), h, l, int64(60*next(3)), []byte("line"))
		}
		es := a.Entries(many, "b", "t", nil)
		key := func(e stream.Entry) []string {
			ls := "\xff"
			if e.Tag != stream.OverflowValue {
				var vals []string
				got := map[string]string{}
				for _, l := range e.Labels {
					got[l.Name] = l.Value
				}
				for _, n := range []string{"n1", "n2"} {
					vals = append(vals, got[n])
				}
				ls = strings.Join(vals, "\x00")
			}
			return []string{e.Keyword.ID(), e.Host, ls, strconv.FormatInt(e.Minute, 10)}
		}
		for i := 1; i < len(es); i++ {
			p, c := key(es[i-1]), key(es[i])
			if ord := strings.Compare(p[0], c[0]); ord == 0 {
				if ord = strings.Compare(p[1], c[1]); ord == 0 {
					if ord = strings.Compare(p[2], c[2]); ord == 0 {
						if es[i-1].Minute > es[i].Minute {
							ord = 1
						}
					}
				}
				if ord > 0 {
					t.Fatalf("flush %d: entry %d %q before %q", flush, i, p, c)
				}
			} else if ord > 0 {
				t.Fatalf("flush %d: entry %d %q before %q", flush, i, p, c)
			}
		}
	}
}

// sortKeys orders keys as sorting them with cmpKeys does, through packed
// integers or, past their width, with cmpKeys itself.
func TestSortKeysIsCmpKeys(t *testing.T) {
	seed := uint32(1)
	next := func(n int) int32 { seed = seed*1664525 + 1013904223; return int32(seed>>8) % int32(n) }
	var buf []sortKey
	var packed []uint64
	for _, n := range []int{1, 2, 3, 17, 200, 1000, 70000} {
		keys := make([]sortKey, n)
		for i := range keys {
			keys[i] = sortKey{kw: next(min(n, 4)), host: next(min(n, 3)), labels: next(n), i: int32(i), minute: int64(next(5)) * 60}
		}
		want := slices.Clone(keys)
		slices.SortFunc(want, cmpKeys)
		var got []sortKey
		got, buf, packed = sortKeys(keys, buf, packed)
		for i := range want {
			if cmpKeys(got[i], want[i]) != 0 {
				t.Fatalf("n=%d: key %d is %+v, want %+v", n, i, got[i], want[i])
			}
		}
	}
}

// TestCountsWithManySeriesInTurn adds records of far more series than
// Aggregator.recent has slots, in an order that revisits them, past the
// series limit and over several flushes: every count equals a plain count
// per (keyword, host, labels, minute), the overflow's included.
func TestCountsWithManySeriesInTurn(t *testing.T) {
	a := New()
	a.SetLabelNames([]string{"app"})
	a.SetMaxSeries(150)
	r := rand.New(rand.NewPCG(7, 8))
	for round := range 3 {
		a.Reset(0, DefaultSamplesPerFlush)
		want := map[string]int64{}
		perKw := map[int]map[string]bool{}
		for i := range 5000 {
			kw := r.IntN(2)
			host := "h" + itoa(int64(r.IntN(4)))
			app := "a" + itoa(int64(r.IntN(50)))
			minute := int64(r.IntN(3)) * 60
			if i%3 == 0 { // runs of one series, as a one-container chunk makes
				kw, host, app, minute = 0, "h0", "a0", 0
			}
			a.Add(kw, a.Host([]byte(host)), a.LabelSet([]byte(app)), minute, nil)
			if perKw[kw] == nil {
				perKw[kw] = map[string]bool{}
			}
			series := host + " t [app=" + app + "]"
			if !perKw[kw][series] && len(perKw[kw]) >= 150 {
				series = "__other__ __other__ [app=__other__]"
			} else {
				perKw[kw][series] = true
			}
			want[specs[kw].ID()+" "+series+" "+itoa(minute)]++
		}
		got := map[string]int64{}
		for _, e := range a.Entries(specs, "b", "t", nil) {
			var ls []string
			for _, l := range e.Labels {
				ls = append(ls, l.Name+"="+l.Value)
			}
			got[e.Keyword.ID()+" "+e.Host+" "+e.Tag+" ["+strings.Join(ls, " ")+"] "+itoa(e.Minute)] += e.Count
		}
		if !maps.Equal(got, want) {
			t.Fatalf("round %d: %d series counted, want %d:\ngot  %v\nwant %v", round, len(got), len(want), got, want)
		}
	}
}

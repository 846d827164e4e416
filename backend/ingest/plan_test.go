package ingest

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
)

func TestDedupBytesIsDedupID(t *testing.T) {
	es := []stream.Entry{
		entry(1, "err", "h", "t", 60, 1),
		{Batch: batchID(2), Keyword: keyword.Spec{Text: "Error", IgnoreCase: true}.Canonical(), Host: "h|x", Tag: "", Minute: 1714557600, Count: 3},
		{Batch: batchID(3), Keyword: keyword.Spec{Text: `a\s+b`, Match: keyword.Regex}, Host: "ü", Tag: "t|", Minute: 0, Count: 1},
	}
	for _, e := range es {
		got, _ := dedupBytes(&e, e.Keyword.ID(), nil)
		if want := e.DedupID(); hex.EncodeToString([]byte(got)) != want {
			t.Errorf("%+v: dedupBytes %x, DedupID %s", e, got, want)
		}
	}
}

func FuzzDedupBytesIsDedupID(f *testing.F) {
	f.Add("kw", "host", "tag", int64(60), uint8(0), false)
	f.Fuzz(func(t *testing.T, kw, host, tag string, minute int64, mode uint8, icase bool) {
		e := stream.Entry{Batch: batchID(7), Keyword: keyword.Spec{Text: kw, Match: keyword.Mode(mode % 3), IgnoreCase: icase}, Host: host, Tag: tag, Minute: minute}
		got, _ := dedupBytes(&e, e.Keyword.ID(), nil)
		if hex.EncodeToString([]byte(got)) != e.DedupID() {
			t.Errorf("%+v: dedupBytes differs from DedupID", e)
		}
	})
}

// FuzzBuild feeds arbitrary field values through parse and layout: nothing
// may panic, every message is either counted, dead-lettered or expired, and
// the script arguments have the announced shape.
func FuzzBuild(f *testing.F) {
	now := time.Unix(1714557600, 0)
	good := func(e stream.Entry) []string {
		var out []string
		for _, v := range e.AppendValues(nil) {
			out = append(out, v.(string))
		}
		return out
	}
	f.Add(encodeFields(good(entry(1, "err", "h", "t", 1714557600, 3))))
	f.Add(encodeFields([]string{"v", "1", "batch", batchID(1), "count", "x"}))
	f.Add(encodeFields([]string{"v", "2"}))
	f.Fuzz(func(t *testing.T, raw string) {
		msgs := []message{
			{id: "1-0", kv: append([]string{}, decodeFields(raw)...)},
			{id: "1-1"}, // deleted
			{id: "1-2", kv: good(entry(1, "err", "h", "t", 1714557600, 3))},
		}
		p := planner{keys: window.NewKeys(testStream), stream: testStream, dead: DeadStream(testStream), group: "g",
			consumer: "c", window: time.Hour, maxPerProd: 100, pendingMax: 1000, retention: time.Hour, sampleCap: 3, sampleTTL: 3600, deadMaxLen: 10, maxDeliv: 5}
		pl := p.build("new", msgs, map[string]int64{"1-2": 1}, now, "0")
		if n := len(pl.entries) + len(pl.dead) + len(pl.expired) + len(pl.repeats); n != len(msgs) {
			t.Fatalf("%d messages in, %d accounted for", len(msgs), n)
		}
		if got := pl.args[argEntries]; got != len(pl.entries) {
			t.Fatalf("entries slot = %v, want %d entries", got, len(pl.entries))
		}
		for _, k := range pl.keys {
			if k[:3] != "ka:" && k != testStream && k != DeadStream(testStream) {
				t.Fatalf("key %q outside the stream's namespace", k)
			}
		}
	})
}

// encodeFields and decodeFields turn a field list into one fuzzable string.
func encodeFields(fs []string) string {
	s := ""
	for _, f := range fs {
		s += fmt.Sprintf("%d:%s", len(f), f)
	}
	return s
}

func decodeFields(s string) []string {
	var out []string
	for len(s) > 0 {
		var n int
		var rest string
		if _, err := fmt.Sscanf(s, "%d:", &n); err != nil {
			return out
		}
		i := 0
		for i < len(s) && s[i] != ':' {
			i++
		}
		rest = s[i+1:]
		if n < 0 || n > len(rest) {
			return out
		}
		out = append(out, rest[:n])
		s = rest[n:]
	}
	return out
}

// randomBatch makes n messages from seed, drawn from small sets of
// keywords, hosts, tags, minutes (two event hours), producers, chunks and
// attempts, so that cells, series, producers and chunks repeat, in runs
// and interleaved: versions 2, 3 and 4, with 0 to 3 samples.
func randomBatch(seed uint64, n int, now time.Time) []message {
	r := rand.New(rand.NewPCG(seed, seed>>32|1))
	m := now.Unix()/60*60 - 120
	var msgs []message
	var prev stream.Entry
	for i := 0; i < n; i++ {
		e := entry(1+r.IntN(6), []string{"err", "timeout", "Exception", "oom"}[r.IntN(4)], []string{"web-1", "web-2", "db-1"}[r.IntN(3)],
			[]string{"app", "nginx"}[r.IntN(2)], m-int64([]int{0, 1, 65}[r.IntN(3)])*60, int64(1+r.IntN(9)))
		if i > 0 && r.IntN(2) == 0 { // the same chunk as the previous entry
			e.Batch, e.Host, e.Tag, e.Minute = prev.Batch, prev.Host, prev.Tag, prev.Minute
		}
		switch v := r.IntN(4); {
		case v == 0: // version 2
		case i > 0 && prev.Producer != "" && r.IntN(2) == 0:
			e.Producer, e.Attempt, e.Labels = prev.Producer, prev.Attempt, prev.Labels
		default:
			e = v3(e, r.IntN(3), r.IntN(2))
			if v == 3 {
				e = labelled(e, "app", []string{"shop", "cart"}[r.IntN(2)], "namespace", "prod")
			}
		}
		for range r.IntN(4) {
			e.Samples = append(e.Samples, fmt.Sprintf("line %d of %s", r.IntN(5), e.Host))
		}
		prev = e
		var kv []string
		for _, v := range e.AppendValues(nil) {
			kv = append(kv, v.(string))
		}
		msgs = append(msgs, message{id: fmt.Sprintf("1714561100000-%d", i), kv: kv})
	}
	return msgs
}

// checkLayoutIsRef builds msgs and lays the plan out again with layoutRef
// (the layout before its caches): KEYS, ARGV and the order must be equal.
func checkLayoutIsRef(t *testing.T, p *planner, msgs []message, now time.Time) {
	t.Helper()
	pl := p.build("new", msgs, nil, now, "7")
	ref := &plan{source: pl.source, entries: slices.Clone(pl.entries), msgs: pl.msgs, kwIDs: pl.kwIDs, dedups: pl.dedups,
		legacy: pl.legacy, dead: pl.dead, expired: pl.expired, repeats: pl.repeats, size: pl.size, now: pl.now, fence: pl.fence}
	p.layoutRef(ref)
	if !slices.Equal(pl.order, ref.order) {
		t.Fatalf("order %v, before %v", pl.order, ref.order)
	}
	if !slices.Equal(pl.keys, ref.keys) {
		t.Fatalf("KEYS\n%q\nbefore\n%q", pl.keys, ref.keys)
	}
	if !reflect.DeepEqual(pl.args, ref.args) {
		t.Fatalf("ARGV\n%v\nbefore\n%v", pl.args, ref.args)
	}
}

func layoutTestPlanner(sampleCap int) *planner {
	return &planner{keys: window.NewKeys(testStream), stream: testStream, dead: DeadStream(testStream), group: "g",
		consumer: "c", window: time.Hour, maxPerProd: 10000, pendingMax: 10000, retention: 7 * 24 * time.Hour,
		sampleCap: sampleCap, sampleTTL: 3600, deadMaxLen: 1000, maxDeliv: 10}
}

func TestLayoutGivesWhatItGaveBeforeItsCaches(t *testing.T) {
	now := time.Unix(1714561800, 0)
	cases := []struct {
		name      string
		msgs      func() []message
		sampleCap int
	}{
		{"golden batch", func() []message { m, _, _ := goldenBatch(); return m }, 20},
		{"chunk-shaped benchmark batch", func() []message {
			var msgs []message
			for i, e := range benchEntries(300, false) {
				e.Minute = now.Unix()/60*60 - int64(i/160)*60
				var kv []string
				for _, v := range e.AppendValues(nil) {
					kv = append(kv, v.(string))
				}
				msgs = append(msgs, message{id: fmt.Sprintf("1714561100000-%d", i), kv: kv})
			}
			return msgs
		}, 20},
		{"random batch, quota of samples reached", func() []message { return randomBatch(1, 200, now) }, 4},
		{"random batch", func() []message { return randomBatch(2, 200, now) }, 20},
		{"random batch, no samples kept", func() []message { return randomBatch(3, 50, now) }, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkLayoutIsRef(t, layoutTestPlanner(tc.sampleCap), tc.msgs(), now) })
	}
}

// FuzzLayoutGivesWhatItGaveBeforeItsCaches: random batches lay out as
// they did before the caches.
func FuzzLayoutGivesWhatItGaveBeforeItsCaches(f *testing.F) {
	f.Add(uint64(1), uint8(40), uint8(4))
	f.Add(uint64(7), uint8(255), uint8(20))
	f.Fuzz(func(t *testing.T, seed uint64, n, sampleCap uint8) {
		now := time.Unix(1714561800, 0)
		checkLayoutIsRef(t, layoutTestPlanner(int(sampleCap%24)), randomBatch(seed, int(n), now), now)
	})
}

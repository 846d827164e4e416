package ingest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// layoutSeries is one series of a layout test's batch, counted count times
// (hosts web-<host>).
type layoutSeries struct {
	host   int
	tag    string
	labels []string // name, value pairs
	count  int64
}

// oneTag is hosts [from, to) of tag, each counted once.
func oneTag(tag string, from, to int) []layoutSeries {
	var out []layoutSeries
	for h := from; h < to; h++ {
		out = append(out, layoutSeries{host: h, tag: tag, count: int64(1 + h%5)})
	}
	return out
}

// The keys and host sums fields ingest writes for a keyword-minute, by the
// shape of its series and how it changes, and every read of the minute
// (counts by each filter, tops, splits, cells) equal to what its cells hold,
// read straight from Redis.
func TestMinuteLayoutsReadAsTheirCells(t *testing.T) {
	const kw = "substring:Exception"
	// The hours rolled from them: host-keyed whatever their hosts if of
	// one tag without labels, else host sums as a minute has them; cells
	// in 16 pieces past window.HostSumsMax (hourly pieces follow the hour's
	// cells, not the limit of series).
	keyedSmall := hourLayout{[]string{"", "\x00H"}, []string{"\x00", "\x00C", "\x00T"}, 0}
	keyedPieces := hourLayout{[]string{"\x00H", "\x00P ×16"}, []string{"\x00", "\x00C", "\x00N", "\x00P", "\x00T"}, 0}
	zsetPieces := hourLayout{[]string{"\x00H", "\x00P ×16", "\x00h", "\x00t"}, []string{"\x00N", "\x00P"}, 0}
	tests := []struct {
		name      string
		before    int // hosts of tag app the version before wrote first
		batches   [][]layoutSeries
		maxSeries int
		// The minute's keys by their suffix after the window key, sorted,
		// and its host sums: the fields starting with NUL, and the number
		// of host fields.
		keys     []string
		meta     []string
		hostSums int
		// The same of the hour rolled from the minute.
		hour hourLayout
	}{
		// Minutes the version before wrote part of go on in its layout:
		// the host sums it began, or its move of the cells and host sums
		// past the limits, then pieces.
		{"one tag begun by the version before", 5, [][]layoutSeries{oneTag("app", 3, 8)}, 0,
			[]string{"", "\x00H"}, []string{"\x00", "\x00T"}, 8,
			keyedSmall},
		{"past the limits with the version before", 600, [][]layoutSeries{oneTag("app", 590, 610)}, 0,
			[]string{"\x00H", "\x00P ×25", "\x00h", "\x00t"}, []string{"\x00N", "\x00P"}, 0,
			keyedPieces},
		{"one tag, no labels: host-keyed", 0, [][]layoutSeries{oneTag("app", 0, 5), oneTag("app", 3, 8)}, 0,
			[]string{"", "\x00H"}, []string{"\x00", "\x00C", "\x00T"}, 0,
			keyedSmall},
		{"a second tag in a later batch", 0, [][]layoutSeries{oneTag("app", 0, 5), append(oneTag("app", 3, 6), oneTag("nginx", 6, 8)...)}, 0,
			[]string{"", "\x00H", "\x00t"}, []string{"\x00"}, 8,
			hourLayout{[]string{"", "\x00H", "\x00t"}, []string{"\x00"}, 8}},
		{"a labelled series in a later batch", 0, [][]layoutSeries{oneTag("app", 0, 5),
			{{host: 1, tag: "app", labels: []string{"app", "shop"}, count: 4}, {host: 6, tag: "app", count: 2}}}, 0,
			[]string{"", "\x00H", "\x00l:app"}, []string{"\x00", "\x00T", "\x00l"}, 6,
			hourLayout{[]string{"", "\x00H", "\x00l:app", "\x00n"}, []string{"\x00", "\x00T", "\x00l"}, 6}},
		{"the overflow series", 0, [][]layoutSeries{oneTag("app", 0, 10), oneTag("app", 8, 14)}, 10,
			[]string{"", "\x00H", "\x00t"}, []string{"\x00"}, 11,
			hourLayout{[]string{"", "\x00H", "\x00t"}, []string{"\x00"}, 11}},
		{"two tags from the first batch", 0, [][]layoutSeries{append(oneTag("app", 0, 3), oneTag("nginx", 3, 5)...)}, 0,
			[]string{"", "\x00H", "\x00t"}, []string{"\x00"}, 5,
			hourLayout{[]string{"", "\x00H", "\x00t"}, []string{"\x00"}, 5}},
		// Past window.HostSumsMax cells the cells move into pieces (25 with
		// the default limit of series): the window hash is gone.
		{"host-keyed past the hash's limit: pieces", 0, [][]layoutSeries{oneTag("app", 0, 300), oneTag("app", 200, 700)}, 0,
			[]string{"\x00H", "\x00P ×25"}, []string{"\x00", "\x00C", "\x00N", "\x00P", "\x00T"}, 0,
			keyedPieces},
		{"pieces from the first batch", 0, [][]layoutSeries{oneTag("app", 0, 600)}, 0,
			[]string{"\x00H", "\x00P ×25"}, []string{"\x00", "\x00C", "\x00N", "\x00P", "\x00T"}, 0,
			keyedPieces},
		{"pieces, then a second tag", 0, [][]layoutSeries{oneTag("app", 0, 600), oneTag("nginx", 600, 610)}, 0,
			[]string{"\x00H", "\x00P ×25", "\x00h", "\x00t"}, []string{"\x00N", "\x00P"}, 0,
			zsetPieces},
		{"pieces, then labelled series", 0, [][]layoutSeries{oneTag("app", 0, 600),
			{{host: 7, tag: "app", labels: []string{"app", "shop"}, count: 4}, {host: 8, tag: "app", labels: []string{"app", "cart"}, count: 2}, {host: 700, tag: "app", count: 1}}}, 0,
			[]string{"\x00H", "\x00P ×25", "\x00h", "\x00l:app", "\x00t"}, []string{"\x00N", "\x00P"}, 0,
			hourLayout{[]string{"\x00H", "\x00P ×16", "\x00h", "\x00l:app", "\x00n", "\x00t"}, []string{"\x00N", "\x00P"}, 0}},
		{"pieces, then the overflow series", 0, [][]layoutSeries{oneTag("app", 0, 550), oneTag("app", 500, 650)}, 600,
			[]string{"\x00H", "\x00P ×16", "\x00h", "\x00t"}, []string{"\x00N", "\x00P"}, 0,
			zsetPieces},
		{"two tags past the limit in one batch", 0, [][]layoutSeries{append(oneTag("app", 0, 300), oneTag("nginx", 300, 600)...)}, 0,
			[]string{"\x00H", "\x00P ×25", "\x00h", "\x00t"}, []string{"\x00N", "\x00P"}, 0,
			zsetPieces},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			ctx := context.Background()
			now := nowMinute()
			writeAsBefore(t, rdb, window.NewKeys(testStream), kw, now, tt.before)
			r := start(t, Options{Client: rdb, BatchSize: 5000, Retention: time.Hour, MaxSeriesPerMinute: tt.maxSeries})
			b := 0
			for _, batch := range tt.batches {
				var es []stream.Entry
				for _, sr := range batch {
					e := entry(b, "Exception", fmt.Sprintf("web-%04d", sr.host), sr.tag, now, sr.count)
					es = append(es, v3(labelled(e, sr.labels...), sr.host, 1))
					b++
				}
				xadd(t, rdb, es...)
				drained(t, rdb, "keyalertd")
			}
			r.stop()

			s := window.NewStore(rdb, testStream)
			k := s.Keys()
			w := k.Window(kw, now)
			if got := minuteKeys(t, rdb, w); !reflect.DeepEqual(got, tt.keys) {
				t.Errorf("keys %q, want %q", got, tt.keys)
			}
			meta, hosts := hostSumsFields(t, rdb, k.HostSums(kw, now))
			if !reflect.DeepEqual(meta, tt.meta) || hosts != tt.hostSums {
				t.Errorf("host sums: %q and %d hosts, want %q and %d", meta, hosts, tt.meta, tt.hostSums)
			}
			for _, key := range rdb.Keys(ctx, w+"*").Val() {
				if ttl := rdb.TTL(ctx, key).Val(); ttl <= 0 || ttl > time.Hour+2*time.Minute {
					t.Errorf("%q: TTL %v, want the window's expiry", key, ttl)
				}
			}
			cells := rawCells(t, rdb, w)
			checkReads(t, s, kw, now, 60, cells)

			// The hour rolled up from the minute: its layout, its cells
			// the minute's, and every read of it through the tiers.
			hour := window.HourStart(now)
			if _, _, err := s.RollHour(ctx, kw, hour, time.Now().Unix()+3600); err != nil {
				t.Fatal(err)
			}
			hw := k.HourWindow(kw, hour)
			if got := minuteKeys(t, rdb, hw); !reflect.DeepEqual(got, tt.hour.keys) {
				t.Errorf("hour keys %q, want %q", got, tt.hour.keys)
			}
			meta, hosts = hostSumsFields(t, rdb, k.HourHostSums(kw, hour))
			if !reflect.DeepEqual(meta, tt.hour.meta) || hosts != tt.hour.hosts {
				t.Errorf("hour host sums: %q and %d hosts, want %q and %d", meta, hosts, tt.hour.meta, tt.hour.hosts)
			}
			for _, key := range rdb.Keys(ctx, hw+"*").Val() {
				if ttl := rdb.TTL(ctx, key).Val(); ttl <= 0 || ttl > time.Hour+time.Minute {
					t.Errorf("%q: TTL %v, want the hour's expiry", key, ttl)
				}
			}
			if got := rawCells(t, rdb, hw); !reflect.DeepEqual(got, cells) {
				t.Errorf("the hour rolled up holds %d cells, want the minute's %d", len(got), len(cells))
			}
			checkReads(t, s, kw, hour, 3600, cells)

			// The same hour as the version before rolled it reads the same.
			rdb.Del(ctx, rdb.Keys(ctx, hw+"*").Val()...)
			writeHourAsBefore(t, rdb, k, kw, hour, cells)
			checkReads(t, s, kw, hour, 3600, cells)
		})
	}
}

// writeHourAsBefore writes kw's hour of cells as the roll-up of the version
// before did: the cells hash, the host zset (with the total and the
// labelled count), the tag zset and the label rollups with their names.
func writeHourAsBefore(t *testing.T, rdb redis.UniversalClient, k window.Keys, kw string, hour int64, cells map[string]int64) {
	t.Helper()
	ctx := context.Background()
	hw := k.HourWindow(kw, hour)
	pipe := rdb.Pipeline()
	for f, n := range cells {
		host, tag, labels := window.SplitField(f)
		pipe.HSet(ctx, hw, f, n)
		pipe.ZIncrBy(ctx, k.HourHostTotals(kw, hour), float64(n), host)
		pipe.ZIncrBy(ctx, k.HourHostTotals(kw, hour), float64(n), window.TotalMember)
		pipe.ZIncrBy(ctx, k.HourTagTotals(kw, hour), float64(n), tag)
		if len(labels) > 0 {
			pipe.ZIncrBy(ctx, k.HourHostTotals(kw, hour), float64(n), window.LabelledMember)
		}
		for _, l := range labels {
			pipe.ZIncrBy(ctx, hw+"\x00l:"+l.Name, float64(n), l.Value)
			pipe.ZIncrBy(ctx, hw+"\x00l:"+l.Name, float64(n), window.TotalMember)
			pipe.SAdd(ctx, k.HourLabelNames(kw, hour), l.Name)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

// hourLayout is the keys of an hour by their suffix after the hour's
// cells key (as minuteKeys lists them), its host sums' fields starting with
// NUL and its number of host fields.
type hourLayout struct {
	keys  []string
	meta  []string
	hosts int
}

// writeAsBefore writes hosts web-<i> (i < hosts) of tag app into kw's
// minute m as the version before host-keyed minutes and pieces did: cells
// in the window hash, host sums with the one tag while at most
// window.HostSumsMax hosts, else the host and tag zsets.
func writeAsBefore(t *testing.T, rdb redis.UniversalClient, k window.Keys, kw string, m int64, hosts int) {
	t.Helper()
	if hosts == 0 {
		return
	}
	ctx := context.Background()
	pipe := rdb.Pipeline()
	var total int64
	for h := range hosts {
		host, n := fmt.Sprintf("web-%04d", h), int64(1+h%5)
		pipe.HSet(ctx, k.Window(kw, m), window.Field(host, "app"), n)
		if hosts > window.HostSumsMax {
			pipe.ZAdd(ctx, k.HostTotals(kw, m), redis.Z{Score: float64(n), Member: host})
		} else {
			pipe.HSet(ctx, k.HostSums(kw, m), host, n)
		}
		total += n
	}
	if hosts > window.HostSumsMax {
		pipe.ZAdd(ctx, k.HostTotals(kw, m), redis.Z{Score: float64(total), Member: window.TotalMember})
		pipe.ZAdd(ctx, k.TagTotals(kw, m), redis.Z{Score: float64(total), Member: "app"})
	} else {
		pipe.HSet(ctx, k.HostSums(kw, m), window.TotalMember, total, window.SingleTagField, "app")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

// minuteKeys lists the keys of the minute of window key w by their suffix,
// the pieces as one: "\x00P ×<pieces>".
func minuteKeys(t *testing.T, rdb redis.UniversalClient, w string) []string {
	t.Helper()
	var out []string
	pieces := 0
	for _, key := range rdb.Keys(context.Background(), w+"*").Val() {
		if strings.HasPrefix(key, w+"\x00P") {
			pieces++
			continue
		}
		out = append(out, strings.TrimPrefix(key, w))
	}
	if pieces > 0 {
		out = append(out, fmt.Sprintf("\x00P ×%d", pieces))
	}
	sort.Strings(out)
	return out
}

// hostSumsFields is the host sums hash's fields starting with NUL, sorted,
// and the number of the others (hosts).
func hostSumsFields(t *testing.T, rdb redis.UniversalClient, key string) (meta []string, hosts int) {
	t.Helper()
	for f := range rdb.HGetAll(context.Background(), key).Val() {
		if strings.HasPrefix(f, "\x00") {
			meta = append(meta, f)
		} else {
			hosts++
		}
	}
	sort.Strings(meta)
	return meta, hosts
}

// rawCells is every cell of the minute of window key w as Redis holds it:
// the window hash and its pieces, read without the window package.
func rawCells(t *testing.T, rdb redis.UniversalClient, w string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	out := map[string]int64{}
	for _, key := range append([]string{w}, rdb.Keys(ctx, w+"\x00P*").Val()...) {
		var n int64
		for f, v := range rdb.HGetAll(ctx, key).Val() {
			if _, err := fmt.Sscan(v, &n); err != nil {
				t.Fatalf("%q field %q: %q", key, f, v)
			}
			out[f] += n
		}
	}
	return out
}

// checkReads compares every read of kw's minute m (step 60) or hour m
// (step 3600, read through the hourly tier) with the cells.
func checkReads(t *testing.T, s *window.Store, kw string, m, step int64, cells map[string]int64) {
	t.Helper()
	ctx := context.Background()
	type cell struct {
		host, tag string
		labels    []stream.Label
		n         int64
	}
	var all []cell
	var total int64
	hosts, tags := map[string]bool{"nobody": true}, map[string]bool{"none": true}
	for f, n := range cells {
		h, tg, ls := window.SplitField(f)
		all = append(all, cell{h, tg, ls, n})
		hosts[h], tags[tg] = true, true
		total += n
	}
	split := m // minutes only
	if step == 3600 {
		split = m + step // the hour only
	}
	sum := func(keep func(c cell) bool) int64 {
		var n int64
		for _, c := range all {
			if keep(c) {
				n += c.n
			}
		}
		return n
	}
	count := func(f window.Filter, maxCells int64) {
		t.Helper()
		want := sum(func(c cell) bool {
			return (!f.HostSet || c.host == f.Host) && (!f.TagSet || c.tag == f.Tag) && (f.Series == nil || f.Series(c.host, c.tag, c.labels))
		})
		got, err := s.CountsTiered(ctx, kw, m, m+step, split, f, maxCells)
		var n int64
		if len(got) == 1 {
			n = got[0].Count
		}
		if err != nil || len(got) > 1 || n != want {
			t.Errorf("counts of host %q tag %q series filter %v: %v %v, want %d", f.Host, f.Tag, f.Series != nil, got, err, want)
		}
	}
	// Rollups answer these (a limit of one cell): a host-keyed minute's
	// host is its cell, read as such.
	count(window.Filter{}, 1)
	for h := range hosts {
		count(window.Filter{Host: h, HostSet: true}, 1)
		for tg := range tags {
			count(window.Filter{Host: h, HostSet: true, Tag: tg, TagSet: true}, int64(len(cells)+1))
		}
	}
	for tg := range tags {
		count(window.Filter{Tag: tg, TagSet: true}, 1)
	}
	odd := func(host, _ string, _ []stream.Label) bool { return strings.HasSuffix(host, "1") }
	count(window.Filter{Series: odd}, int64(len(cells)))

	top := func(by string, dim func(c cell) string, f window.Filter) {
		t.Helper()
		want := map[string]int64{}
		var wantTotal int64
		for _, c := range all {
			if (!f.HostSet || c.host == f.Host) && (f.Series == nil || f.Series(c.host, c.tag, c.labels)) {
				want[dim(c)] += c.n
				wantTotal += c.n
			}
		}
		gs, n, err := s.TopFiltered(ctx, kw, m, m+step, split, by, f, 10000, int64(len(cells)+len(want)+1))
		got := map[string]int64{}
		for _, g := range gs {
			got[g.Value] = g.Count
		}
		if err != nil || n != wantTotal || !reflect.DeepEqual(got, want) {
			t.Errorf("top by %s (filter %v): %d groups total %d %v, want %d total %d", by, f.Series != nil, len(got), n, err, len(want), wantTotal)
		}
	}
	byHost := func(c cell) string { return c.host }
	byTag := func(c cell) string { return c.tag }
	byApp := func(c cell) string { return window.LabelValue(c.labels, "app") }
	top("host", byHost, window.Filter{})
	top("tag", byTag, window.Filter{})
	if slices.ContainsFunc(all, func(c cell) bool { return len(c.labels) > 0 }) {
		top("app", byApp, window.Filter{}) // (without labels, no group at all)
	}
	top("host", byHost, window.Filter{Series: odd})

	bySplit, err := s.SplitTiered(ctx, kw, m, m+step, split, "host", window.Filter{}, 100000, int64(len(cells)))
	gotSplit := map[string]int64{}
	for _, d := range bySplit {
		gotSplit[d.Value] = d.Total
	}
	wantSplit := map[string]int64{}
	for _, c := range all {
		wantSplit[c.host] += c.n
	}
	if err != nil || !reflect.DeepEqual(gotSplit, wantSplit) {
		t.Errorf("split by host: %d hosts %v, want %d", len(gotSplit), err, len(wantSplit))
	}
	if step == 60 { // (Cells reads minutes only)
		got, err := s.Cells(ctx, kw, m, m+60)
		gotCells := map[string]int64{}
		for _, c := range got {
			gotCells[window.Field(c.Host, c.Tag, c.Labels...)] += c.Count
		}
		if err != nil || !reflect.DeepEqual(gotCells, cells) {
			t.Errorf("cells: %d %v, want %d", len(gotCells), err, len(cells))
		}
	}
	if sum(func(cell) bool { return true }) != total || !slices.ContainsFunc(all, func(c cell) bool { return c.n > 0 }) {
		t.Errorf("no cells written")
	}
}

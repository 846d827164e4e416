package window

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

func TestParseWindowTakesTheMinuteAfterTheLastColon(t *testing.T) {
	k := NewKeys(stream.DefaultStream)
	tests := []struct {
		key    string
		kw     string
		minute int64
		ok     bool
	}{
		{k.Window("substring:Error", 1714557600), "substring:Error", 1714557600, true},
		{k.Window("regex/i:a:b{2}", 1714557660), "regex/i:a:b{2}", 1714557660, true},
		{k.HostTotals("substring:Error", 1714557600), "", 0, false},
		{k.TagTotals("substring:Error", 1714557600), "", 0, false},
		{k.HourWindow("substring:Error", 1714557600), "", 0, false},
		{k.Seen(1714557600), "", 0, false},
		{k.prefix + "w:substring:Error:12", "", 0, false}, // not a minute start
		{k.Piece("substring:Error", 1714557600, 11), "substring:Error", 1714557600, true},
		{k.HostSums("substring:Error", 1714557600), "", 0, false},
		{k.Window("substring:Error", 1714557600) + "\x00Px", "", 0, false},
	}
	for _, tt := range tests {
		kw, m, ok := k.parseWindow(tt.key)
		if kw != tt.kw || m != tt.minute || ok != tt.ok {
			t.Errorf("%q: %q %d %v, want %q %d %v", tt.key, kw, m, ok, tt.kw, tt.minute, tt.ok)
		}
	}
}

func TestKeywordsByHourListsTheKeywordsWithMinutesInEachHour(t *testing.T) {
	rdb := redistest.Start(t).Client()
	s := NewStore(rdb, stream.DefaultStream)
	const h = 1714557600
	fleet{hosts: 2, minutes: 1, base: h + 59*60}.write(t, rdb, s.Keys(), "regex:a:b", true)
	fleet{hosts: 2, minutes: 2, base: h + 3600}.write(t, rdb, s.Keys(), "substring:x", true)
	fleet{hosts: 2, minutes: 1, base: h}.write(t, rdb, s.Keys(), "substring:x", true)
	fleet{hosts: 2, minutes: 1, base: h - 3600}.write(t, rdb, s.Keys(), "substring:old", true)
	// A minute whose cells are all in pieces has no window hash left.
	fleet{hosts: 2, minutes: 1, base: h + 3600 + 120, keyed: true, pieces: 3}.write(t, rdb, s.Keys(), "substring:pieced", true)
	// Other keys of the slot, and another stream's windows, are not windows of it.
	rdb.Set(context.Background(), s.Keys().HourWindow("substring:y", h), 1, 0)
	other := NewKeys("other:events")
	rdb.HSet(context.Background(), other.Window("substring:z", h), "a", 1)

	got, err := s.KeywordsByHour(context.Background(), h, h+2*3600)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64][]string{h: {"regex:a:b", "substring:x"}, h + 3600: {"substring:pieced", "substring:x"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// (For every layout of the minutes: three tags, host-keyed, host-keyed in
// pieces.)
func TestCountsAndTopThroughBothTiersEqualTheMinutesTheyCameFrom(t *testing.T) {
	const h = 1714557600
	for _, fl := range []fleet{
		{hosts: 30, minutes: 180, base: h},
		{hosts: 30, minutes: 180, base: h, keyed: true},
		{hosts: 30, minutes: 180, base: h, keyed: true, pieces: 4},
	} {
		t.Run(fmt.Sprintf("keyed %v, %d pieces", fl.keyed, fl.pieces), func(t *testing.T) { throughBothTiers(t, fl) })
	}
}

func throughBothTiers(t *testing.T, fl fleet) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	const kw, h = "substring:x", 1714557600
	// Three hours of 30 hosts; the first two are rolled up, then their
	// minutes are gone.
	fl.write(t, rdb, s.Keys(), kw, true)
	for _, hour := range []int64{h, h + 3600} {
		if _, _, err := s.RollHour(ctx, kw, hour, 1<<40); err != nil {
			t.Fatal(err)
		}
		for m := hour; m < hour+3600; m += 60 {
			rdb.Del(ctx, rdb.Keys(ctx, globEscape(s.keys.Window(kw, m))+"*").Val()...)
		}
	}
	filters := []Filter{{}, {Host: fl.host(7), HostSet: true}, {Tag: fl.tag(1), TagSet: true}, {Host: fl.host(4), HostSet: true, Tag: fl.tag(4), TagSet: true}}
	for _, f := range filters {
		want := []Point{}
		var hourSum [2]int64
		for _, mc := range fl.counts(f) {
			if i := (mc.Minute - h) / 3600; i < 2 {
				hourSum[i] += mc.Count
			} else {
				want = append(want, Point{mc.Minute, 60, mc.Count})
			}
		}
		want = append([]Point{{h, 3600, hourSum[0]}, {h + 3600, 3600, hourSum[1]}}, want...)
		// From inside the first hour: it is answered whole.
		got, err := s.CountsTiered(ctx, kw, h+600, h+3*3600, h+2*3600, f, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("filter %+v: got %v, want %v", f, got, want)
		}
	}
	groups, total, err := s.TopTiered(ctx, kw, h, h+3*3600, h+2*3600, "tag", 10, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var wantTotal int64
	wantTags := map[string]int64{}
	for m := range fl.minutes {
		for hst := range fl.hosts {
			wantTotal += fl.count(hst, m)
			wantTags[fl.tag(hst)] += fl.count(hst, m)
		}
	}
	gotTags := map[string]int64{}
	for _, g := range groups {
		gotTags[g.Value] = g.Count
	}
	if total != wantTotal || !reflect.DeepEqual(gotTags, wantTags) {
		t.Errorf("top by tag %v total %d, want %v total %d", gotTags, total, wantTags, wantTotal)
	}
	// Each hour counts as a cell of a counts call.
	if _, err := s.CountsTiered(ctx, kw, h, h+3*3600, h+2*3600, Filter{}, 1); err == nil {
		t.Error("two hours with a limit of one cell: no error")
	}
}

// The hourly tier keeps labelled series as series and rolls them up by
// label: a top by a label, and a label filter, read through both tiers equal
// the minutes they came from; a re-run that no longer sees a label drops
// its rollup.
func TestHourlyTierKeepsLabels(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	const kw, h = "substring:x", 1714557600
	ns := func(v string) []stream.Label {
		return []stream.Label{{Name: "app", Value: "web"}, {Name: "namespace", Value: v}}
	}
	for m := int64(h); m < h+3600; m += 600 {
		rdb.HIncrBy(ctx, s.keys.Window(kw, m), Field("node-1", "t", ns("shop")...), 3)
		rdb.HIncrBy(ctx, s.keys.Window(kw, m), Field("node-2", "t", ns("billing")...), 2)
		rdb.HIncrBy(ctx, s.keys.Window(kw, m), Field("node-1", "t"), 1)
	}
	if _, _, err := s.RollHour(ctx, kw, h, 1<<40); err != nil {
		t.Fatal(err)
	}
	if got := rdb.HGet(ctx, s.keys.HourWindow(kw, h), Field("node-1", "t", ns("shop")...)).Val(); got != "18" {
		t.Errorf("hourly labelled cell = %q, want 18", got)
	}
	for m := int64(h); m < h+3600; m += 60 {
		rdb.Del(ctx, s.keys.Window(kw, m))
	}
	groups, total, err := s.TopTiered(ctx, kw, h, h+3600, h+3600, "namespace", 10, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Group{{"shop", 18}, {"billing", 12}, {"", 6}}; !reflect.DeepEqual(groups, want) || total != 36 {
		t.Errorf("top by namespace %v total %d, want %v total 36", groups, total, want)
	}
	f := Filter{Series: func(_, _ string, l []stream.Label) bool { return LabelValue(l, "namespace") == "billing" }}
	pts, err := s.CountsTiered(ctx, kw, h, h+3600, h+3600, f, 1000)
	if err != nil || !reflect.DeepEqual(pts, []Point{{h, 3600, 12}}) {
		t.Errorf("counts of billing %v %v, want one hour of 12", pts, err)
	}
	// The labels are gone from the hour's minutes: the re-run drops them.
	rdb.HIncrBy(ctx, s.keys.Window(kw, h), Field("node-1", "t"), 1)
	if _, _, err := s.RollHour(ctx, kw, h, 1<<40); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, s.keys.HourWindow(kw, h)+"\x00l:namespace", s.keys.HourLabelNames(kw, h)).Val(); n != 0 {
		t.Errorf("%d label keys left after a re-run without labels", n)
	}
}

// An hour of more cells than the roll holds at a time (20 minutes of 600
// series, past Redis's compact hash; 500 sums held at most, so a flush a minute) rolls to the
// exact sums of its cells, host, tag and label rollups: what it adds to
// Redis a piece at a time adds up to what the whole hour holds.
func TestRollHourInPagesSumsExactly(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	const kw, h, hosts, maxCells = "substring:x", 1714557600, 600, 500
	cells := map[string]int64{}
	hostSums, tagSums, nsSums := map[string]int64{}, map[string]int64{}, map[string]int64{}
	var total int64
	for m := int64(h); m < h+3600; m += 180 { // 20 minutes
		pipe := rdb.Pipeline()
		for i := range hosts {
			host, tag := fmt.Sprintf("host-%04d", i), fmt.Sprintf("t%d", i%3)
			var labels []stream.Label
			if i%4 == 0 {
				labels = []stream.Label{{Name: "namespace", Value: fmt.Sprintf("ns-%d", i%5)}}
			}
			n := int64(1 + (i+int(m/60))%7)
			f := Field(host, tag, labels...)
			pipe.HIncrBy(ctx, s.keys.Window(kw, m), f, n)
			cells[f] += n
			hostSums[host] += n
			tagSums[tag] += n
			total += n
			if labels != nil {
				hostSums[LabelledMember] += n
				nsSums[labels[0].Value] += n
				nsSums[TotalMember] += n
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	hostSums[TotalMember] = total
	rdb.ConfigResetStat(ctx)
	n, sum, err := s.RollHourBounded(ctx, kw, h, 1<<40, maxCells)
	if err != nil || n != len(cells) || sum != total {
		t.Fatalf("rolled %d cells, total %d, %v; want %d, %d", n, sum, err, len(cells), total)
	}
	// Each flush is at least 2 calls (cells, hosts, tags, a label: 4).
	if calls := commandCalls(t, rdb)["evalsha"]; calls < 4*10 {
		t.Errorf("%d script calls adding sums, want flushes of at most %d sums", calls, maxCells)
	}
	// Flushed before its end, the hour has its cells in pieces.
	if got := hourCells(t, rdb, s.keys, kw, h); !reflect.DeepEqual(got, cells) {
		t.Errorf("hourly cells differ: %d of them, want %d", len(got), len(cells))
	}
	meta := rdb.HGetAll(ctx, s.keys.HourHostSums(kw, h)).Val()
	if want := map[string]string{PiecesField: "16", PieceCellsField: strconv.Itoa(len(cells))}; !reflect.DeepEqual(meta, want) {
		t.Errorf("host sums %q, want %q (the hosts in the zset)", meta, want)
	}
	zset := func(key string) map[string]int64 {
		out := map[string]int64{}
		for _, z := range rdb.ZRangeWithScores(ctx, key, 0, -1).Val() {
			out[z.Member.(string)] = int64(z.Score)
		}
		return out
	}
	for _, c := range []struct {
		what string
		key  string
		want map[string]int64
	}{
		{"hosts", s.keys.HourHostTotals(kw, h), hostSums},
		{"tags", s.keys.HourTagTotals(kw, h), tagSums},
		{"namespace", s.keys.HourWindow(kw, h) + "\x00l:namespace", nsSums},
	} {
		if got := zset(c.key); !reflect.DeepEqual(got, c.want) {
			t.Errorf("hourly %s rollup differs: %d members, want %d", c.what, len(got), len(c.want))
		}
	}
	if left := rdb.Keys(ctx, s.keys.prefix+"rolltmp:*").Val(); len(left) != 0 {
		t.Errorf("temporary keys left: %q", left)
	}
}

// hourCells is every cell of kw's hour h as Redis holds it: the hour's
// cells hash and its pieces.
func hourCells(t *testing.T, rdb redis.UniversalClient, k Keys, kw string, h int64) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	w := k.HourWindow(kw, h)
	out := map[string]int64{}
	for _, key := range append([]string{w}, rdb.Keys(ctx, globEscape(w)+"\x00P*").Val()...) {
		for f, v := range rdb.HGetAll(ctx, key).Val() {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("%q field %q: %q", key, f, v)
			}
			out[f] += n
		}
	}
	return out
}

// An hour rolled again (late entries, or minutes gone) is replaced whole:
// its keys are those of the same minutes rolled once, none of the first
// roll's left over (pieces past the new count, zsets, label rollups,
// the cells hash of an hour now in pieces), each with the hour's expiry.
func TestAnHourRolledAgainIsReplacedWhole(t *testing.T) {
	const h = 1714557600
	// cells writes hosts [0, n) of tag app into minute h+60*m, a second tag
	// and labels on every tenth host when mixed.
	type minutes func(t *testing.T, rdb redis.UniversalClient, k Keys, kw string)
	cells := func(n int, mixed bool, m int64) minutes {
		return func(t *testing.T, rdb redis.UniversalClient, k Keys, kw string) {
			pipe := rdb.Pipeline()
			for i := range n {
				tag, labels := "app", []stream.Label(nil)
				if mixed && i%10 == 0 {
					tag, labels = "nginx", []stream.Label{{Name: "ns", Value: fmt.Sprintf("ns-%d", i%3)}}
				}
				pipe.HIncrBy(context.Background(), k.Window(kw, h+60*m), Field(fmt.Sprintf("web-%05d", i), tag, labels...), int64(1+i%4))
			}
			if _, err := pipe.Exec(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name          string
		first, second []minutes // the minutes written before each roll
		drop          bool      // the first minutes are gone before the second roll
	}{
		{"late hosts: a hash into pieces, host-keyed", []minutes{cells(300, false, 1)}, []minutes{cells(900, false, 2)}, false},
		{"late tags and labels: host-keyed into host sums", []minutes{cells(40, false, 1)}, []minutes{cells(40, true, 2)}, false},
		{"late labels past the limit: the zsets", []minutes{cells(600, false, 1)}, []minutes{cells(700, true, 2)}, false},
		{"fewer pieces", []minutes{cells(7000, true, 1)}, []minutes{cells(600, false, 2)}, true},
		{"pieces into a hash", []minutes{cells(900, true, 1)}, []minutes{cells(30, false, 2)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			ctx := context.Background()
			s := NewStore(rdb, stream.DefaultStream)
			const kw, once = "substring:twice", "substring:once"
			expireAt := time.Now().Unix() + 7200
			for _, w := range tt.first {
				w(t, rdb, s.keys, kw)
			}
			if _, _, err := s.RollHour(ctx, kw, h, expireAt); err != nil {
				t.Fatal(err)
			}
			if tt.drop {
				rdb.Del(ctx, rdb.Keys(ctx, globEscape(s.keys.prefix+"w:")+"*").Val()...)
			}
			for _, w := range tt.second {
				w(t, rdb, s.keys, kw)
			}
			ws := tt.second
			if !tt.drop {
				ws = append(slices.Clone(tt.first), tt.second...)
			}
			for _, w := range ws {
				w(t, rdb, s.keys, once)
			}
			if _, _, err := s.RollHour(ctx, kw, h, expireAt); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.RollHour(ctx, once, h, expireAt); err != nil {
				t.Fatal(err)
			}
			got, want := dumpHour(t, rdb, s.keys.HourWindow(kw, h)), dumpHour(t, rdb, s.keys.HourWindow(once, h))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the hour rolled twice has keys %q,\nwant those of one roll %q", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
			}
			for _, key := range rdb.Keys(ctx, globEscape(s.keys.HourWindow(kw, h))+"*").Val() {
				if at := rdb.ExpireTime(ctx, key).Val(); at != time.Duration(expireAt)*time.Second {
					t.Errorf("%q expires at %v, want %d", key, at, expireAt)
				}
			}
			if left := rdb.Keys(ctx, s.keys.prefix+"rolltmp:*").Val(); len(left) != 0 {
				t.Errorf("temporary keys left: %q", left)
			}
		})
	}
}

// dumpHour is every key of the hour of cells key hw, by its suffix, as its
// type and contents.
func dumpHour(t *testing.T, rdb redis.UniversalClient, hw string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, key := range rdb.Keys(ctx, globEscape(hw)+"*").Val() {
		var v any
		switch typ := rdb.Type(ctx, key).Val(); typ {
		case "hash":
			v = rdb.HGetAll(ctx, key).Val()
		case "zset":
			v = rdb.ZRangeWithScores(ctx, key, 0, -1).Val()
		case "set":
			v = slices.Sorted(slices.Values(rdb.SMembers(ctx, key).Val()))
		default:
			t.Fatalf("%q: type %s", key, typ)
		}
		out[strings.TrimPrefix(key, hw)] = fmt.Sprint(v)
	}
	return out
}

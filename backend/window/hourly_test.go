package window

import (
	"context"
	"reflect"
	"testing"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
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
	// Other keys of the slot, and another stream's windows, are not windows of it.
	rdb.Set(context.Background(), s.Keys().HourWindow("substring:y", h), 1, 0)
	other := NewKeys("other:events")
	rdb.HSet(context.Background(), other.Window("substring:z", h), "a", 1)

	got, err := s.KeywordsByHour(context.Background(), h, h+2*3600)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64][]string{h: {"regex:a:b", "substring:x"}, h + 3600: {"substring:x"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestCountsAndTopThroughBothTiersEqualTheMinutesTheyCameFrom(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	const kw, h = "substring:x", 1714557600
	// Three hours of 30 hosts; the first two are rolled up, then their
	// minutes are gone.
	fl := fleet{hosts: 30, minutes: 180, base: h}
	fl.write(t, rdb, s.Keys(), kw, true)
	for _, hour := range []int64{h, h + 3600} {
		if _, _, err := s.RollHour(ctx, kw, hour, 1<<40); err != nil {
			t.Fatal(err)
		}
		for m := hour; m < hour+3600; m += 60 {
			rdb.Del(ctx, s.keys.Window(kw, m), s.keys.HostTotals(kw, m), s.keys.TagTotals(kw, m))
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

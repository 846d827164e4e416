package window

import (
	"context"
	"reflect"
	"testing"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/streamshard"
)

// A sharded store sums the shards: here every shard holds the same fleet
// (as after changes of the shard count, a host's cells can be in several),
// one of them without rollups, so every read must answer three times one
// shard's.
func TestShardedReadsSumEveryShard(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	const streamKey, kw, shards = "ev", "substring:x", 3
	fl := fleet{hosts: 40, minutes: 4, base: 1_700_000_040}
	for i := 0; i < shards; i++ {
		fl.write(t, rdb, NewKeys(streamshard.Key(streamKey, i)), kw, i != 1)
	}
	s := NewShardedStore(rdb, streamKey, func() int { return shards })
	from, to := fl.base, fl.base+int64(fl.minutes)*60
	times := func(n int64) int64 { return n * shards }

	for _, f := range []Filter{{}, {Host: fl.host(3), HostSet: true}, {Tag: fl.tag(2), TagSet: true}, {Host: fl.host(4), HostSet: true, Tag: fl.tag(4), TagSet: true}} {
		got, err := s.Counts(ctx, kw, from, to, f, 1e6)
		if err != nil {
			t.Fatal(err)
		}
		want := fl.counts(f)
		for i := range want {
			want[i].Count = times(want[i].Count)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("counts %+v: got %v, want %v", f, got, want)
		}
		pts, err := s.CountsTiered(ctx, kw, from, to, from, f, 1e6)
		if err != nil || len(pts) != len(want) {
			t.Fatalf("counts tiered %+v: %v, %v", f, pts, err)
		}
		for i, p := range pts {
			if p.Count != want[i].Count || p.Start != want[i].Minute {
				t.Errorf("counts tiered %+v: point %d = %+v, want %+v", f, i, p, want[i])
			}
		}
	}
	for _, by := range []string{"host", "tag"} {
		got, total, err := s.Top(ctx, kw, from, to, by, 5, 1e6)
		if err != nil {
			t.Fatal(err)
		}
		want, wantTotal := fl.top(by, 5)
		for i := range want {
			want[i].Count = times(want[i].Count)
		}
		if !reflect.DeepEqual(got, want) || total != times(wantTotal) {
			t.Errorf("top by %s: got %v (total %d), want %v (total %d)", by, got, total, want, times(wantTotal))
		}
	}
	cells, err := s.Cells(ctx, kw, from, from+60)
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != fl.hosts {
		t.Fatalf("%d cells in a minute, want one per host: %d", len(cells), fl.hosts)
	}
	for h, c := range cells {
		if c.Host != fl.host(h) || c.Count != times(fl.count(h, 0)) {
			t.Errorf("cell %d = %+v, want host %s count %d", h, c, fl.host(h), times(fl.count(h, 0)))
		}
	}
	// The cell limit counts the cells of every shard.
	if _, _, err := s.Top(ctx, kw, from, to, "host", 5, int64(fl.hosts*fl.minutes)); err == nil {
		t.Error("top over the cell limit of one shard's worth answered")
	}
}

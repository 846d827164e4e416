package ingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
)

// The counts API reads the rollups the script keeps instead of the cells:
// they must say what the cells say, duplicates included, and expire with
// them.
func TestRollupsAgreeWithTheCellsAndExpireWithThem(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	now := nowMinute()
	var es []stream.Entry
	for b := 0; b < 30; b++ {
		es = append(es, entry(b, "Exception", fmt.Sprintf("web-%d", b%5), []string{"app", "nginx"}[b%2], now-int64(b%3)*60, int64(1+b%4)))
	}
	xadd(t, rdb, es...)
	xadd(t, rdb, es[:10]...) // plugin retries: counted once
	start(t, Options{Client: rdb, BatchSize: 7, Retention: time.Hour})
	drained(t, rdb, "keyalertd")

	s := window.NewStore(rdb, testStream)
	kw := "substring:Exception"
	from, to := now-3*60, now+60
	cells, err := s.Cells(ctx, kw, from, to)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []window.Filter{{}, {Host: "web-3", HostSet: true}, {Tag: "nginx", TagSet: true}} {
		want := map[int64]int64{}
		for _, c := range cells {
			if (!f.HostSet || c.Host == f.Host) && (!f.TagSet || c.Tag == f.Tag) {
				want[c.Minute] += c.Count
			}
		}
		got, err := s.Counts(ctx, kw, from, to, f, 1) // a limit of 1: rollups only, no cell scan
		if err != nil {
			t.Fatalf("filter %+v: %v", f, err)
		}
		if len(got) != len(want) {
			t.Errorf("filter %+v: %v, want %v", f, got, want)
		}
		for _, mc := range got {
			if want[mc.Minute] != mc.Count {
				t.Errorf("filter %+v minute %d: rollup %d, cells %d", f, mc.Minute, mc.Count, want[mc.Minute])
			}
		}
	}
	k := s.Keys()
	for _, key := range []string{k.HostTotals(kw, now), k.TagTotals(kw, now)} {
		ttl, err := rdb.TTL(ctx, key).Result()
		if err != nil || ttl <= 0 || ttl > time.Hour+2*time.Minute {
			t.Errorf("%q: TTL %v, %v; want the window's expiry", key, ttl, err)
		}
	}
}

package main

import (
	"context"
	"fmt"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/api"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// keyalertd counts entries into minutes, rolls the complete hours up, and
// once those hours are past the minute retention its counts API answers them
// from the hourly tier, the minutes being gone. The clock is injected;
// Redis's own clock only expires keys, all of which lie in its future here.
func TestRollupServesHoursPastTheMinuteRetention(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	env := baseEnv(srv.URL())
	env["KEYALERT_RETENTION"] = "4h"
	env["KEYALERT_HOURLY_RETENTION"] = "2d"
	env["KEYALERT_ROLLUP_DELAY"] = "1m"
	env["KEYALERT_ROLLUP_INTERVAL"] = "1s"
	env["KEYALERT_LEASE_TTL"] = "1s"
	h3 := time.Unix(window.HourStart(time.Now().Unix())-3*3600, 0).UTC() // an hour 3 hours ago
	h2 := h3.Add(time.Hour)
	// Until the entries are counted, the hour is not complete.
	clk := &clock{}
	clk.Set(h2.Add(20 * time.Second))
	p := startInProc(t, env, clk.Now)

	spec := keyword.Spec{Text: "Exception"}
	entries := []stream.Entry{}
	var want3 int64
	for i, m := range []int{0, 7, 59} {
		for h := range 3 {
			n := int64(10*i + h + 1)
			entries = append(entries, stream.Entry{Batch: fmt.Sprintf("%032x", 100*i+h), Keyword: spec, Tag: "app",
				Host: fmt.Sprintf("web-%d", h), Minute: h3.Add(time.Duration(m) * time.Minute).Unix(), Count: n})
			want3 += n
		}
	}
	entries = append(entries, stream.Entry{Batch: fmt.Sprintf("%032x", 999), Keyword: spec, Tag: "app",
		Host: "web-0", Minute: h2.Unix(), Count: 5})
	for _, e := range entries {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream.DefaultStream, Values: e.AppendValues(nil)}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	q := url.Values{"keyword": {"Exception"}, "from": {h3.Add(-time.Hour).Format(time.RFC3339)}}
	counts := func(to time.Time) api.CountsResponse {
		q.Set("to", to.Format(time.RFC3339))
		var r api.CountsResponse
		apiJSON(t, p.addr, "GET", "/api/v1/counts?"+q.Encode(), nil, 200, &r)
		return r
	}
	eventually(t, 15*time.Second, "entries counted", func() bool { return counts(h2.Add(time.Minute)).Total == want3+5 })

	// Hour h3 is complete plus the delay: the roller's first pass.
	keys := window.NewKeys(stream.DefaultStream)
	clk.Set(h2.Add(90 * time.Second))
	eventually(t, 15*time.Second, "hour rolled up", func() bool {
		v, _ := rdb.HGet(ctx, keys.HourHostSums(spec.ID(), h3.Unix()), window.TotalMember).Int64()
		return v == want3
	})

	// And h2, an hour later.
	clk.Set(h2.Add(time.Hour + 90*time.Second))
	eventually(t, 15*time.Second, "next hour rolled up", func() bool {
		v, _ := rdb.HGet(ctx, keys.HourHostSums(spec.ID(), h2.Unix()), window.TotalMember).Int64()
		return v == 5
	})

	// Two hours on, h3 and h2 are older than the minute tier (which now
	// starts an hour before the clock's); h3's minutes are gone as if expired.
	clk.Set(time.Now().Add(2 * time.Hour))
	for m := h3; m.Before(h2); m = m.Add(time.Minute) {
		rdb.Del(ctx, keys.Window(spec.ID(), m.Unix()), keys.HostTotals(spec.ID(), m.Unix()), keys.TagTotals(spec.ID(), m.Unix()))
	}
	want := []api.Point{{Minute: h3, Count: want3, Step: 3600}, {Minute: h2, Count: 5, Step: 3600}}
	var got api.CountsResponse
	eventually(t, 15*time.Second, "counts from the hourly tier", func() bool {
		got = counts(clk.Now())
		return reflect.DeepEqual(got.Points, want)
	})
	if !reflect.DeepEqual(got.Points, want) {
		t.Fatalf("points %+v, want %+v", got.Points, want)
	}
	if got.Total != want3+5 {
		t.Errorf("total %d, want %d", got.Total, want3+5)
	}
}

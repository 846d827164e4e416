package ingest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
)

// TestStorageBytesPerSeriesMinute measures what Redis keeps per series and
// minute for series flushed every second (one chunk per host and second,
// one entry per keyword), by kind of key, and logs the table that
// bench/storage.md quotes:
//
//	go test -count=1 -v -run TestStorageBytesPerSeriesMinute ./backend/ingest/
//
// Counts and rollups are measured over the minutes written; the dedup state
// is per chunk, kept for the dedup window (1 h: 3,600 chunks per producer
// flushing every second) whatever the retention, and the sample lists are
// one per series: both are spread over the retention's minutes (7 days) of
// the series, which is what they cost per series-minute once the retention
// is full.
func TestStorageBytesPerSeriesMinute(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 30,000 entries per shape")
	}
	retentionMinutes := float64(window.DefaultRetention / time.Minute)
	heldChunks := int(DefaultDedupWindow / time.Second) // per producer, one chunk a second
	perChunk := chunkIDBytes(t, heldChunks)
	t.Logf("a producer holding the %d chunk ids of a window: %.1f bytes each", heldChunks, perChunk)
	perEntry := seenIDBytes(t, 3600)
	t.Logf("version 2 entries: %.1f bytes per dedup id; one id per entry kept for the retention (the layout before version 3) is %.0f bytes per series-minute of a series flushed every second",
		perEntry, 60*perEntry)
	for _, shape := range []struct {
		hosts, keywords, minutes int
	}{
		{1, 1, 5},    // a lone series
		{10, 10, 5},  // 10 hosts x 10 keywords
		{100, 1, 5},  // 100 hosts of one keyword
		{500, 1, 3},  // past Redis's listpack size for zsets (128), under the hashes' (512)
		{1000, 1, 2}, // past both
	} {
		minutes := int64(shape.minutes)
		t.Run(fmt.Sprintf("%d hosts x %d keywords", shape.hosts, shape.keywords), func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client()
			ctx := context.Background()
			srv.SetAOF("off")
			now := nowMinute()
			var kws []string
			for k := range shape.keywords {
				kws = append(kws, fmt.Sprintf("keyword-%02d", k))
			}
			line := strings.Repeat("2024-05-01 10:00:00 worker-7 request failed with Exception ", 3)[:120]
			r := start(t, Options{Client: rdb})
			var es []stream.Entry
			for sec := 0; sec < 60*int(minutes); sec++ {
				minute := now - minutes*60 + int64(sec/60)*60
				for h := 0; h < shape.hosts; h++ {
					for _, e := range chunkOf(sec*shape.hosts+h, h, 1, fmt.Sprintf("host-%03d", h), minute, kws...) {
						e.Tag, e.Samples = "app.log", []string{line}
						es = append(es, e)
					}
				}
				if len(es) >= 2000 {
					xadd(t, rdb, es...)
					es = es[:0]
				}
			}
			if len(es) > 0 {
				xadd(t, rdb, es...)
			}
			drained(t, rdb, "keyalertd")
			r.stop()
			by := map[string]int64{}
			it := rdb.Scan(ctx, 0, "*", 1000).Iterator()
			for it.Next(ctx) {
				k := it.Val()
				n := rdb.MemoryUsage(ctx, k, 0).Val()
				switch {
				case k == testStream || k == DeadStream(testStream):
					by["stream"] += n
				case strings.Contains(k, ":p:"):
					by["dedup"] += n
				case strings.Contains(k, ":s:"):
					by["samples"] += n
				case strings.HasSuffix(k, "\x00H") || strings.HasSuffix(k, "\x00h") || strings.HasSuffix(k, "\x00t"):
					by["rollups"] += n
				case strings.Contains(k, ":w:"):
					by["counts"] += n
				default:
					by["other"] += n
				}
			}
			series := float64(shape.hosts * shape.keywords)
			sm := series * float64(minutes)
			dedup := perChunk * float64(heldChunks*shape.hosts) / (series * retentionMinutes)
			samples := float64(by["samples"]) / (series * retentionMinutes)
			counts, rollups := float64(by["counts"])/sm, float64(by["rollups"])/sm
			t.Logf("per series-minute: counts hash %.1f B, rollups %.1f B, dedup %.1f B, samples %.2f B: %.1f B",
				counts, rollups, dedup, samples, counts+rollups+dedup+samples)
		})
	}
}

// seenIDBytes applies n version 2 entries of one event hour and returns the
// bytes of their seen set per entry.
func seenIDBytes(t *testing.T, n int) float64 {
	rdb := redistest.Start(t).Client()
	minute := nowMinute() / 3600 * 3600
	r := start(t, Options{Client: rdb})
	var es []stream.Entry
	for b := range n {
		es = append(es, entry(b, "err", "h", "t", minute, 1))
	}
	xadd(t, rdb, es...)
	drained(t, rdb, "keyalertd")
	r.stop()
	return float64(rdb.MemoryUsage(context.Background(), window.NewKeys(testStream).Seen(minute), 0).Val()) / float64(n)
}

// chunkIDBytes applies n one-entry chunks of one producer and returns the
// bytes its dedup keys take per chunk id (MEMORY USAGE, all fields).
func chunkIDBytes(t *testing.T, n int) float64 {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	minute := nowMinute()
	r := start(t, Options{Client: rdb})
	var es []stream.Entry
	for b := range n {
		es = append(es, chunkOf(b, 1, 1, "h", minute, "err")...)
	}
	xadd(t, rdb, es...)
	drained(t, rdb, "keyalertd")
	r.stop()
	key := window.NewKeys(testStream).Producer(v3(stream.Entry{}, 1, 1).Producer)
	var sum int64
	for _, k := range rdb.Keys(ctx, key+"*").Val() {
		sum += rdb.MemoryUsage(ctx, k, 0).Val()
	}
	return float64(sum) / float64(n)
}

package ingest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// Reading by cursor: every entry counted once, whether one consumer reads or
// several race on the same stream (each batch only one of them applies; the
// others read again from the moved cursor), by cursor or by the group side by
// side (an upgrade with an older keyalertd still running), with entries
// arriving while they run.
func TestCursorCountsEachEntryOnce(t *testing.T) {
	for _, reads := range [][]string{{ReadCursor}, {ReadCursor, ReadCursor, ReadCursor}, {ReadCursor, ReadGroup}, {ReadGroup, ReadCursor, ReadGroup, ReadCursor}} {
		t.Run(strings.Join(reads, "+"), func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			now := nowMinute()
			want := map[series]int64{}
			var es []stream.Entry
			for b := 0; b < 400; b++ {
				for i, kw := range []string{"Exception", "timeout"} {
					host := fmt.Sprintf("web-%d", (b+i)%4)
					n := int64(1 + (b*7+i)%13)
					es = append(es, entry(b, kw, host, "app", now-int64((b%5)*60), n))
					want[series{keyword.Spec{Text: kw}.ID(), host, "app"}] += n
				}
			}
			xadd(t, rdb, es[:len(es)/2]...)
			for k, read := range reads {
				start(t, Options{Client: rdb, BatchSize: 7, Read: read, Consumer: fmt.Sprintf("c%d", k)})
			}
			time.Sleep(20 * time.Millisecond)
			xadd(t, rdb, es[len(es)/2:]...)
			drained(t, rdb, "keyalertd")
			got := totals(t, rdb, []string{"substring:Exception", "substring:timeout"}, now-3600, now+60)
			if len(got) != len(want) {
				t.Fatalf("got %d series, want %d: %v", len(got), len(want), got)
			}
			for k, n := range want {
				if got[k] != n {
					t.Errorf("%v: got %d, want %d", k, got[k], n)
				}
			}
		})
	}
}

// An upgrade: a keyalertd reading by the group died with a batch pending;
// the one reading by cursor that replaces it claims that batch once idle
// and reads on after the group's id, so every entry counts once and nothing
// stays pending.
func TestCursorAppliesEntriesLeftPendingByTheGroup(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	now := nowMinute()
	if err := rdb.XGroupCreateMkStream(ctx, testStream, DefaultGroup, "0").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		xadd(t, rdb, entry(i, "err", "h", "t", now, 1))
	}
	// The old process read 10 and died.
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: DefaultGroup, Consumer: "old",
		Streams: []string{testStream, ">"}, Count: 10}).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	r := start(t, Options{Client: rdb, Read: ReadCursor, BatchSize: 4, ClaimIdle: 100 * time.Millisecond, ClaimInterval: 50 * time.Millisecond})
	drained(t, rdb, DefaultGroup)
	r.stop()
	if got := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; got != 30 {
		t.Errorf("counted %d, want 30", got)
	}
	if n := testutil.ToFloat64(r.c.m.claimed); n != 10 {
		t.Errorf("claimed %v, want the 10 left pending", n)
	}
}

package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
)

// rejectN enqueues n triggers the receiver refuses (400), all for one key so
// that they are sent, and set aside, in order, waits until the sender has set
// all of them aside, and returns their ids in that order.
func rejectN(t *testing.T, ob *outbox.Outbox, n int) []string {
	t.Helper()
	recv := pdreceiver.Start(t)
	ctx := context.Background()
	for i := range n {
		m := triggerMsg("k")
		m.Summary = fmt.Sprint(i)
		m.Target = "short"
		if err := ob.Enqueue(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	pending, err := ob.ListPending(ctx)
	if err != nil || len(pending) != n {
		t.Fatalf("pending %d, %v", len(pending), err)
	}
	var ids []string
	for _, p := range pending {
		ids = append(ids, p.ID)
	}
	stop := runSender(t, ob, recv.URL)
	deadline := time.Now().Add(15 * time.Second)
	// The receiver counts an attempt before the sender has read its answer
	// and set the event aside: wait until nothing is pending.
	for {
		left, err := ob.ListPending(ctx)
		if err == nil && len(left) == 0 && recv.Attempts() >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d attempts, %d still pending (%v)", recv.Attempts(), n, len(left), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	return ids
}

func TestRejectedEventsAreBounded(t *testing.T) {
	tests := []struct {
		name      string
		max, n    int
		ttl, wait time.Duration
		want      int // kept: the last ones rejected
	}{
		{"after max+10 rejections only the newest max remain", 5, 15, time.Hour, 0, 5},
		{"fewer than max are all kept", 50, 3, time.Hour, 0, 3},
		{"rejections older than the ttl are gone", 50, 3, 300 * time.Millisecond, 600 * time.Millisecond, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client()
			o := fastOptions(nil)
			o.FailedMax, o.FailedTTL = tt.max, tt.ttl
			ob := outbox.New(rdb, o, quiet)
			ids := rejectN(t, ob, tt.n)
			time.Sleep(tt.wait)
			failed, err := ob.Failed(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, f := range failed {
				got[f.ID] = true
			}
			want := map[string]bool{}
			for _, id := range ids[len(ids)-tt.want:] {
				want[id] = true
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("kept %v, want the last %d rejected: %v", got, tt.want, want)
			}
			ctx := context.Background()
			for _, k := range []string{ob.Key() + ":failed", ob.Key() + ":failed:at"} {
				n, _ := rdb.Exists(ctx, k).Result()
				ttl, _ := rdb.PTTL(ctx, k).Result()
				switch {
				case tt.want == 0 && n != 0:
					t.Errorf("%s still exists after its ttl", k)
				case tt.want > 0 && (ttl <= 0 || ttl > tt.ttl):
					t.Errorf("%s expires in %v, want within %v", k, ttl, tt.ttl)
				}
			}
			if tt.want > 0 {
				if n := rdb.HLen(ctx, ob.Key()+":failed").Val(); n != int64(tt.want) {
					t.Errorf("failed hash holds %d records, want %d", n, tt.want)
				}
			}
		})
	}
}

package alert

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/redis/go-redis/v9"
)

func boundedStore(t *testing.T, opt StoreOptions, now func() time.Time) (*Store, *redis.Client) {
	t.Helper()
	rdb := redistest.Start(t).Client()
	return NewStoreOptions(rdb, outbox.New(rdb, outbox.Options{}, quiet), RuleKeys{}, now, quiet, opt), rdb
}

// setState writes alert id in state st through the store's transaction, with
// one history entry, and a routing key as a trigger leaves.
func setState(t *testing.T, s *Store, id string, st State, at time.Time) *Alert {
	t.Helper()
	a, err := s.change(context.Background(), id, nil, func(cur *Alert) (*Alert, write, error) {
		next := &Alert{ID: id, RuleID: "r"}
		if cur != nil {
			next = cur.clone()
		}
		next.State, next.UpdatedAt = st, at
		next.record(at, string(st), "")
		var w write
		if st == Firing {
			w.routingKey = "R0123456789abcdef0123456789ABCDE"
		}
		return next, w, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestResolvedAlertsExpire(t *testing.T) {
	const ttl = time.Hour
	tests := []struct {
		name        string
		states      []State
		wantTTL     bool
		wantRouting bool
	}{
		{"a firing alert does not expire", []State{Firing}, false, true},
		{"a resolved alert expires and forgets its routing key", []State{Firing, Resolved}, true, false},
		{"an alert firing again loses its expiry", []State{Firing, Resolved, Firing}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rdb := boundedStore(t, StoreOptions{ResolvedTTL: ttl}, nil)
			ctx := context.Background()
			for _, st := range tt.states {
				setState(t, s, "a1", st, time.Now())
			}
			got := rdb.PTTL(ctx, alertKey("a1")).Val()
			if tt.wantTTL && (got <= 0 || got > ttl) || !tt.wantTTL && got != -1 {
				t.Errorf("alert key expires in %v, want expiry %v within %v", got, tt.wantTTL, ttl)
			}
			if has := rdb.HExists(ctx, KeyRoutingKeys, "a1").Val(); has != tt.wantRouting {
				t.Errorf("routing entry kept: %v, want %v", has, tt.wantRouting)
			}
			if _, err := s.Get(ctx, "a1"); err != nil {
				t.Errorf("the API can no longer read the alert: %v", err)
			}
		})
	}
}

func TestHistoryIsCappedWithADropCount(t *testing.T) {
	tests := []struct {
		name        string
		history     int
		transitions int
		wantLen     int
		wantDropped int
	}{
		{"200 transitions keep the last 50 by default", 0, 200, DefaultHistory, 200 - DefaultHistory},
		{"a short history is kept whole", 0, 10, 10, 0},
		{"the setting is honoured", 5, 20, 5, 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := boundedStore(t, StoreOptions{History: tt.history}, nil)
			t0 := time.Unix(1_700_000_000, 0)
			for i := range tt.transitions {
				setState(t, s, "a1", []State{Firing, Acknowledged}[i%2], t0.Add(time.Duration(i)*time.Second))
			}
			a, err := s.Get(context.Background(), "a1")
			if err != nil {
				t.Fatal(err)
			}
			if len(a.History) != tt.wantLen || a.HistoryDropped != tt.wantDropped {
				t.Fatalf("history of %d, %d dropped; want %d, %d dropped", len(a.History), a.HistoryDropped, tt.wantLen, tt.wantDropped)
			}
			if last := a.History[len(a.History)-1].At; !last.Equal(t0.Add(time.Duration(tt.transitions-1) * time.Second)) {
				t.Errorf("last entry at %v: the newest entries must be kept", last)
			}
		})
	}
}

func TestPruneRemovesIdsOfExpiredAlertsOnly(t *testing.T) {
	const ttl = time.Hour
	now := time.Now()
	clock := func() time.Time { return now }
	s, rdb := boundedStore(t, StoreOptions{ResolvedTTL: ttl}, clock)
	ctx := context.Background()
	old := now.Add(-2 * ttl)
	// PruneBatch+20 resolved alerts that expired, old active ones in between
	// (kept, stepped over), and a recent resolved one (kept).
	for i := range PruneBatch + 20 {
		setState(t, s, fmt.Sprintf("gone%d", i), Resolved, old)
		rdb.Del(ctx, alertKey(fmt.Sprintf("gone%d", i))) // as its TTL would
	}
	for i := range 3 {
		setState(t, s, fmt.Sprintf("active%d", i), Firing, old.Add(-time.Minute))
	}
	setState(t, s, "recent", Resolved, now)
	// A resolved alert from before alerts expired: no TTL, past it.
	setState(t, s, "legacy", Resolved, old)
	rdb.Persist(ctx, alertKey("legacy"))

	removed := 0
	for range 4 { // bounded work per call: more than one call is needed
		n, err := s.Prune(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n > PruneBatch {
			t.Fatalf("one step removed %d ids, more than PruneBatch", n)
		}
		removed += n
	}
	if want := PruneBatch + 21; removed != want {
		t.Errorf("removed %d ids, want %d", removed, want)
	}
	ids := rdb.ZRange(ctx, KeyIndex, 0, -1).Val()
	if fmt.Sprint(ids) != "[active0 active1 active2 recent]" {
		t.Errorf("index %v, want the active alerts and the recent one", ids)
	}
	if rdb.Exists(ctx, alertKey("legacy")).Val() != 0 {
		t.Error("the legacy resolved alert was not deleted")
	}
	list, err := s.List(ctx, "", 0)
	if err != nil || len(list) != 4 {
		t.Fatalf("list: %d alerts, %v", len(list), err)
	}
}

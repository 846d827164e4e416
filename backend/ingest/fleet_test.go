package ingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/streamshard"
	"github.com/redis/go-redis/v9"
)

// runFleet starts a fleet and returns its stop func.
func runFleet(t *testing.T, rdb redis.UniversalClient, name string, shards int) (*Fleet, func()) {
	t.Helper()
	f, err := NewFleet(Options{Client: rdb, Consumer: name, Shards: shards, Block: 50 * time.Millisecond,
		ClaimIdle: 300 * time.Millisecond, ClaimInterval: 100 * time.Millisecond, Logger: quietLogger()},
		lease.Options{TTL: 600 * time.Millisecond}, name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return f, stop
}

// xaddShards writes n entries of distinct hosts, each to its host's shard.
func xaddShards(t *testing.T, rdb redis.UniversalClient, first, n, shards int, minute int64) {
	t.Helper()
	pipe := rdb.Pipeline()
	for i := first; i < first+n; i++ {
		e := entry(i, "err", fmt.Sprintf("host-%d", i%50), "app", minute, 1)
		pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: streamshard.Key(testStream, streamshard.Of(e.Host, shards)), Values: e.AppendValues(nil)})
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func fleetDrained(t *testing.T, rdb redis.UniversalClient, shards int) {
	t.Helper()
	for i := 0; i < shards; i++ {
		key := streamshard.Key(testStream, i)
		deadline := time.Now().Add(15 * time.Second)
		for {
			gs, err := rdb.XInfoGroups(context.Background(), key).Result()
			if err == nil && len(gs) == 1 && gs[0].Lag == 0 && gs[0].Pending == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("shard %s not drained: %+v %v", key, gs, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Two fleets share three shards under leases; when one stops, the other
// takes its shards over, and the sharded window store reads every entry once.
func TestFleetSpreadsShardsAndTakesOverAStoppedOne(t *testing.T) {
	rdb := redistest.Start(t).Client()
	minute := nowMinute()
	a, stopA := runFleet(t, rdb, "a", 3)
	b, _ := runFleet(t, rdb, "b", 3)
	xaddShards(t, rdb, 0, 300, 3, minute)
	deadline := time.Now().Add(10 * time.Second)
	for len(a.Owned()) == 0 || len(b.Owned()) == 0 || len(a.Owned())+len(b.Owned()) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("shards not split: a %v, b %v", a.Owned(), b.Owned())
		}
		time.Sleep(20 * time.Millisecond)
	}
	fleetDrained(t, rdb, 3)
	stopA()
	xaddShards(t, rdb, 300, 300, 3, minute)
	deadline = time.Now().Add(10 * time.Second)
	for len(b.Owned()) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("b holds %v after a stopped, want all 3", b.Owned())
		}
		time.Sleep(20 * time.Millisecond)
	}
	fleetDrained(t, rdb, 3)
	store := window.NewShardedStore(rdb, testStream, b.Width)
	kw := keyword.Spec{Text: "err"}.ID()
	cs, err := store.Counts(context.Background(), kw, minute, minute+60, window.Filter{}, 1e6)
	if err != nil || len(cs) != 1 || cs[0].Count != 600 {
		t.Fatalf("counts %+v, %v; want 600 in one minute", cs, err)
	}
	if err := b.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

// The most shards ever configured stay consumed and read: a fleet started
// with fewer still drains the higher shards.
func TestFleetKeepsConsumingShardsAboveALoweredCount(t *testing.T) {
	rdb := redistest.Start(t).Client()
	minute := nowMinute()
	_, stop := runFleet(t, rdb, "three", 3)
	xaddShards(t, rdb, 0, 90, 3, minute)
	fleetDrained(t, rdb, 3)
	stop()
	// Retries of chunks first sent under three shards still arrive there.
	xaddShards(t, rdb, 90, 90, 3, minute)
	one, _ := runFleet(t, rdb, "one", 1)
	fleetDrained(t, rdb, 3)
	if one.Width() != 3 {
		t.Errorf("Width %d after lowering to 1, want the 3 ever used", one.Width())
	}
	store := window.NewShardedStore(rdb, testStream, one.Width)
	cells, err := store.Cells(context.Background(), keyword.Spec{Text: "err"}.ID(), minute, minute+60)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, c := range cells {
		sum += c.Count
	}
	if sum != 180 || len(cells) != 50 {
		t.Errorf("%d cells summing to %d, want 50 hosts and 180", len(cells), sum)
	}
}

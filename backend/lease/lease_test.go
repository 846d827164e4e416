package lease

import (
	"context"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
)

func TestLeaseIsExclusiveUntilReleased(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	a := New(rdb, "ka:{alerts}:lease:x", "a", time.Second)
	b := New(rdb, "ka:{alerts}:lease:x", "b", time.Second)
	if ok, err := a.TryAcquire(ctx); !ok || err != nil {
		t.Fatalf("a acquire: %v %v", ok, err)
	}
	if ok, _ := b.TryAcquire(ctx); ok {
		t.Fatal("b acquired a held lease")
	}
	if ok, _ := a.TryAcquire(ctx); !ok {
		t.Fatal("re-acquiring our own lease must succeed")
	}
	if !a.Held() || b.Held() {
		t.Fatal("Held disagrees with ownership")
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := a.Renew(ctx); !ok {
		t.Fatal("b's release must not free a's lease")
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.TryAcquire(ctx); !ok {
		t.Fatal("b could not take a released lease")
	}
	if ok, _ := a.Renew(ctx); ok || a.Held() {
		t.Fatal("a renewed a lease it lost")
	}
}

func TestLeaseExpiresWithoutRenewal(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	a := New(rdb, "k", "a", 300*time.Millisecond)
	b := New(rdb, "k", "b", 300*time.Millisecond)
	if ok, _ := a.TryAcquire(ctx); !ok {
		t.Fatal("a acquire")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if ok, _ := b.TryAcquire(ctx); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never took over an expired lease")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a.Held() {
		t.Fatal("a still believes it holds an expired lease")
	}
}

func TestHoldCancelsWorkWhenTheLeaseIsLost(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rdb := redistest.Start(t).Client()
	l := New(rdb, "k", "a", 300*time.Millisecond)
	started := make(chan struct{}, 4)
	stopped := make(chan struct{}, 4)
	go l.Hold(ctx, func(ctx context.Context) {
		started <- struct{}{}
		<-ctx.Done()
		stopped <- struct{}{}
	})
	wait := func(ch chan struct{}, what string) {
		select {
		case <-ch:
		case <-time.After(3 * time.Second):
			t.Fatalf("timed out waiting for work to be %s", what)
		}
	}
	wait(started, "started")
	// Someone else takes the key: the next renewal fails and work stops.
	if err := rdb.Set(ctx, "k", "intruder", time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	wait(stopped, "stopped")
	// Once the intruder's lease expires, the work starts again.
	wait(started, "restarted")
	cancel()
	wait(stopped, "stopped at shutdown")
}

func TestShardsSpreadFairlyAndTakeOverAKilledReplica(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	set := Options{TTL: 600 * time.Millisecond, Shards: 6}
	reps := []*Shards{
		NewShards(srv.Client(), "ka:{alerts}:lease", "r1", set, nil),
		NewShards(srv.Client(), "ka:{alerts}:lease", "r2", set, nil),
		NewShards(srv.Client(), "ka:{alerts}:lease", "r3", set, nil),
	}
	step := func(rs []*Shards) {
		for _, r := range rs {
			if err := r.Step(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(rs []*Shards, wantEach int) bool {
		owner := map[int]int{}
		for k, r := range rs {
			for _, i := range r.Owned() {
				if _, dup := owner[i]; dup {
					t.Fatalf("shard %d held twice", i)
				}
				owner[i] = k
			}
			if wantEach > 0 && len(r.Owned()) != wantEach {
				return false
			}
		}
		return len(owner) == set.Shards
	}
	ok := false
	for round := 0; round < 10 && !ok; round++ {
		step(reps)
		ok = check(reps, 2)
	}
	if !ok {
		t.Fatalf("shares never settled at 2 each: %v %v %v", reps[0].Owned(), reps[1].Owned(), reps[2].Owned())
	}
	// r3 is killed: it stops renewing. The others cover its shards within
	// a bounded time and never overlap meanwhile.
	killed := time.Now()
	live := reps[:2]
	for !check(live, 0) {
		if time.Since(killed) > 5*time.Second {
			t.Fatalf("shards of the killed replica not taken over: %v %v", live[0].Owned(), live[1].Owned())
		}
		time.Sleep(set.TTL / 3)
		step(live)
	}
	t.Logf("takeover after %s (ttl %s)", time.Since(killed).Round(10*time.Millisecond), set.TTL)
}

func TestShardOfIsStableAndInRange(t *testing.T) {
	for _, id := range []string{"", "r1", "r0123456789abcdef"} {
		a, b := ShardOf(id, 16), ShardOf(id, 16)
		if a != b || a < 0 || a >= 16 {
			t.Fatalf("ShardOf(%q) = %d, %d", id, a, b)
		}
	}
}

func TestZeroOptionsTakeTheDefaults(t *testing.T) {
	s := NewShards(nil, "p", "o", Options{}, nil)
	if s.N() != DefaultShards || s.ttl != DefaultTTL || s.Lease(0).ttl != DefaultTTL {
		t.Errorf("zero Options: %d shards, ttl %v, lease ttl %v; want %d, %v", s.N(), s.ttl, s.Lease(0).ttl, DefaultShards, DefaultTTL)
	}
	if l := New(nil, "k", "o", 0); l.ttl != DefaultTTL {
		t.Errorf("New with ttl 0: ttl %v, want %v", l.ttl, DefaultTTL)
	}
}

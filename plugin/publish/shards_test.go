package publish

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/pkg/streamshard"
	"github.com/redis/go-redis/v9"
)

// hostEntries is one chunk of entries from n hosts.
func hostEntries(batch string, n int) []stream.Entry {
	out := make([]stream.Entry, n)
	for i := range out {
		out[i] = stream.Entry{Batch: batch, Keyword: keyword.Spec{Text: "Exception"}, Tag: "app",
			Host: fmt.Sprintf("host-%d", i), Minute: 60, Count: 1}
	}
	return out
}

// shardLens returns the length of each of the n shard streams of key.
func shardLens(t *testing.T, rdb redis.Cmdable, key string, n int) []int64 {
	t.Helper()
	out := make([]int64, n)
	for i := range out {
		l, err := rdb.XLen(context.Background(), streamshard.Key(key, i)).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = l
	}
	return out
}

func TestEntriesGoToTheShardOfTheirHost(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	for _, n := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("%d shards", n), func(t *testing.T) {
			key := fmt.Sprintf("s%d", n)
			p := NewWith(rdb, key, Options{Shards: func() int { return n }})
			es := hostEntries("0123456789abcdef0123456789abcdef", 60)
			if err := p.Publish(ctx, es); err != nil {
				t.Fatal(err)
			}
			lens := shardLens(t, rdb, key, n)
			var sum int64
			for i, l := range lens {
				sum += l
				if l == 0 {
					t.Errorf("shard %d got no entries of 60 hosts", i)
				}
				msgs, _ := rdb.XRange(ctx, streamshard.Key(key, i), "-", "+").Result()
				for _, m := range msgs {
					e, err := stream.Parse(m.Values)
					if err != nil {
						t.Fatal(err)
					}
					if got := streamshard.Of(e.Host, n); got != i {
						t.Errorf("entry of %s in shard %d, its shard is %d", e.Host, i, got)
					}
				}
			}
			if sum != 60 {
				t.Errorf("%d entries in the shards, want 60", sum)
			}
		})
	}
}

// A chunk whose publish failed is retried with the shard count of its first
// attempt, so each host's entries meet the dedup state of the shard that may
// hold the first copy; once it succeeded, it is forgotten.
func TestRetryKeepsTheShardCountOfTheFirstAttempt(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	ctx := context.Background()
	var shards atomic.Int32
	shards.Store(1)
	p := NewWith(rdb, "ev", Options{Shards: func() int { return int(shards.Load()) }})

	srv.Stop() // the first attempt fails
	if err := p.Publish(ctx, hostEntries("a0000000000000000000000000000000", 30)); err == nil {
		t.Fatal("publish to a stopped Redis succeeded")
	}
	if p.Remembered() != 1 {
		t.Fatalf("%d chunks remembered after a failure, want 1", p.Remembered())
	}
	srv.Restart()
	shards.Store(3) // the count changes before the retry
	if err := p.Publish(ctx, hostEntries("a0000000000000000000000000000000", 30)); err != nil {
		t.Fatal(err)
	}
	if lens := shardLens(t, rdb, "ev", 3); lens[0] != 30 || lens[1]+lens[2] != 0 {
		t.Errorf("retry went to shards %v, want all 30 in shard 0 as its first attempt", lens)
	}
	if p.Remembered() != 0 {
		t.Errorf("%d chunks remembered after the retry succeeded, want 0", p.Remembered())
	}
	// A new chunk takes the current count.
	if err := p.Publish(ctx, hostEntries("b0000000000000000000000000000000", 30)); err != nil {
		t.Fatal(err)
	}
	if lens := shardLens(t, rdb, "ev", 3); lens[1] == 0 || lens[2] == 0 {
		t.Errorf("new chunk over 3 shards left shards %v", lens)
	}
}

func TestWaitReplicasFailsWithoutEnoughReplicas(t *testing.T) {
	rdb := redistest.Start(t).Client() // no replica at all
	ctx := context.Background()
	tests := []struct {
		name    string
		replica int
		wantErr bool
	}{
		{"no wait succeeds", 0, false},
		{"waiting for a replica that does not exist fails", 1, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewWith(rdb, fmt.Sprintf("w%d", i), Options{WaitReplicas: tt.replica, WaitTimeout: 50 * time.Millisecond})
			err := p.Publish(ctx, hostEntries(fmt.Sprintf("c%031d", i), 3))
			if tt.wantErr != (err != nil) {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, ErrReplicas) {
				t.Fatalf("err = %v, want ErrReplicas", err)
			}
			// The entries are written either way: a retry's copy is dropped
			// by the backend.
			if n, _ := rdb.XLen(ctx, fmt.Sprintf("w%d", i)).Result(); n != 3 {
				t.Errorf("stream has %d entries, want 3", n)
			}
		})
	}
}

func TestWaitReplicasOnAClusterWaitsPerShard(t *testing.T) {
	cl := redistest.StartClusterWith(t, redistest.ClusterOptions{Masters: 3, Replicas: 1})
	rdb := cl.Client()
	ctx := context.Background()
	p := NewWith(rdb, "keyalert:events", Options{Shards: func() int { return 3 }, WaitReplicas: 1, WaitTimeout: time.Second})
	if err := p.Publish(ctx, hostEntries("d0000000000000000000000000000000", 60)); err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, l := range shardLens(t, rdb, "keyalert:events", 3) {
		sum += l
	}
	if sum != 60 {
		t.Errorf("%d entries in the shards, want 60", sum)
	}
}

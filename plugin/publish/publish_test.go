package publish

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

func entries(n int) []stream.Entry {
	out := make([]stream.Entry, n)
	for i := range out {
		out[i] = stream.Entry{
			Batch:   "0123456789abcdef0123456789abcdef",
			Keyword: keyword.Spec{Text: fmt.Sprintf("kw%d", i)},
			Tag:     "app",
			Host:    "h",
			Minute:  60 * int64(i),
			Count:   int64(i + 1),
			Samples: []string{fmt.Sprintf("line %d", i)},
		}
	}
	return out
}

func TestPublish(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	tests := []struct {
		name    string
		n       int
		maxLen  int64
		repeat  int
		wantMax int64 // stream length bound after all publishes; 0 = exactly n*repeat
	}{
		{"empty publishes nothing", 0, 0, 1, 0},
		{"entries round-trip through stream.Parse", 5, 0, 1, 0},
		{"approximate trimming bounds the stream", 50, 10, 10, 200},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("s%d", i)
			p := New(rdb, key, tt.maxLen)
			before := time.Now().UnixMilli()
			for r := 0; r < tt.repeat; r++ {
				es := entries(tt.n)
				if err := p.Publish(ctx, es); err != nil {
					t.Fatal(err)
				}
				for _, e := range es {
					if e.SentMs < before || e.SentMs > time.Now().UnixMilli() {
						t.Fatalf("SentMs %d not set at publish", e.SentMs)
					}
				}
			}
			n, err := rdb.XLen(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantMax == 0 {
				if n != int64(tt.n*tt.repeat) {
					t.Fatalf("stream has %d entries, want %d", n, tt.n*tt.repeat)
				}
			} else if n > tt.wantMax || n < tt.maxLen {
				t.Fatalf("stream has %d entries, want between %d and %d", n, tt.maxLen, tt.wantMax)
			}
			if tt.n == 0 || tt.maxLen != 0 {
				return
			}
			msgs, err := rdb.XRange(ctx, key, "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			want := entries(tt.n)
			for j, m := range msgs {
				got, err := stream.Parse(m.Values)
				if err != nil {
					t.Fatalf("entry %d: %v", j, err)
				}
				if got.Keyword != want[j].Keyword || got.Count != want[j].Count || got.Minute != want[j].Minute ||
					got.Samples[0] != want[j].Samples[0] || got.SentMs == 0 || got.DedupID() != want[j].DedupID() {
					t.Errorf("entry %d: %+v, want %+v", j, got, want[j])
				}
			}
		})
	}
}

func TestPublishFailsWhenRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	p := New(rdb, "s", 0)
	ctx := context.Background()
	if err := p.Publish(ctx, entries(2)); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	err := p.Publish(ctx, entries(2))
	if err == nil {
		t.Fatal("publish to a dead server succeeded")
	}
	t.Logf("error as expected: %v", err)
	srv.Restart()
	if err := p.Publish(ctx, entries(2)); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if n := srv.Client().XLen(ctx, "s").Val(); n != 4 {
		t.Fatalf("%d entries after restart, want 4 (append-only persistence)", n)
	}
}

func TestPublishHonoursDeadline(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	defer rdb.Close()
	// Paused writes keep the transaction from completing in time.
	if err := srv.Client().Do(context.Background(), "CLIENT", "PAUSE", "1500", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := New(rdb, "s", 0).Publish(ctx, entries(1))
	if err == nil {
		t.Fatal("publish succeeded while writes were paused")
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("publish returned after %v, deadline was 200ms", d)
	}
}

func TestPublishNamesOutOfMemoryBehindExecAbort(t *testing.T) {
	srv := redistest.StartMaxMemory(t, 3<<20)
	srv.FillMemory()
	err := New(srv.Client(), "s", 0).Publish(context.Background(), entries(3))
	if !redisoom.Is(err) {
		t.Fatalf("publish to a full Redis: %v, want an OOM error", err)
	}
}

// Every Publish is one attempt: its entries share a fresh attempt id, read
// back as version 3, and keep the producer they were given (or the
// publisher's own when they had none), so the backend can tell a retry of a
// chunk from the rest of one write.
func TestEveryPublishIsAnAttemptOfItsOwn(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	tests := []struct {
		name     string
		producer string // given to the entries; "" leaves it to the publisher
	}{
		{"producer set by the plugin", stream.ProducerID("host-a identity")},
		{"no producer: the publisher's own", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("attempts%d", i)
			p := New(rdb, key, 0)
			for range 2 { // the same chunk twice: a retry
				es := entries(3)
				for j := range es {
					es[j].Producer = tt.producer
				}
				if err := p.Publish(ctx, es); err != nil {
					t.Fatal(err)
				}
			}
			msgs, err := rdb.XRange(ctx, key, "-", "+").Result()
			if err != nil || len(msgs) != 6 {
				t.Fatalf("%d entries, %v; want 6", len(msgs), err)
			}
			attempts, producers := map[string]int{}, map[string]bool{}
			for _, m := range msgs {
				if m.Values[stream.FieldVersion] != stream.Version {
					t.Fatalf("entry version %v, want %s", m.Values[stream.FieldVersion], stream.Version)
				}
				e, err := stream.Parse(m.Values)
				if err != nil {
					t.Fatal(err)
				}
				attempts[e.Attempt]++
				producers[e.Producer] = true
			}
			if len(attempts) != 2 || len(producers) != 1 {
				t.Errorf("attempts %v, producers %v: want two attempts of 3 entries, one producer", attempts, producers)
			}
			if tt.producer != "" && !producers[tt.producer] {
				t.Errorf("producers %v, want the entries' own %s", producers, tt.producer)
			}
		})
	}
}

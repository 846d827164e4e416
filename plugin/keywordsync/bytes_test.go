package keywordsync

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/redis/go-redis/v9"
)

// netOut returns the server's total_net_output_bytes less the INFO replies
// that measured it, so deltas count only what the other clients received.
type netOut struct {
	rdb  *redis.Client
	info int64 // bytes of INFO replies sent so far, not yet reported by the server
}

func (n *netOut) read(t testing.TB) int64 {
	t.Helper()
	s, err := n.rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_net_output_bytes:"); ok {
			total, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	// The server counts this reply only after reporting the total: the
	// next read includes it. RESP bulk string: $<len>\r\n<body>\r\n.
	prev := n.info
	n.info += int64(len(s) + len(strconv.Itoa(len(s))) + 5)
	return total - prev
}

func bigSpecs(n int) []keyword.Spec {
	specs := make([]keyword.Spec, n)
	for i := range specs {
		specs[i] = keyword.Spec{Text: fmt.Sprintf("keyword number %06d of a large published set", i)}
	}
	return specs
}

// A follower of an unchanged 10,000-keyword set transfers a few bytes per
// poll (the document's sum) when keyalertd publishes sums, and the whole
// document per poll when it does not (older keyalertd: the fallback).
// Reproduce the numbers in the README with
//
//	KEYALERT_REQUIRE_REDIS=1 go test -count=1 -v -run TestUnchangedSetCostsOnlyTheSum ./plugin/keywordsync/
func TestUnchangedSetCostsOnlyTheSum(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	specs := bigSpecs(10000)
	summed, err := keyword.EncodeSet(specs)
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := json.Marshal(keyword.Set{V: keyword.SetVersion, Keywords: specs}) // no sum
	if err != nil {
		t.Fatal(err)
	}
	const polls = 50
	tests := []struct {
		name         string
		doc          []byte
		maxTotal     int64 // bytes for all polls
		minTotal     int64
		wantFallback bool
	}{
		{"summed document: only the sum is read", summed, 4 << 10, 0, false},
		{"document without sum (older keyalertd): read whole every poll", legacy, 1 << 40, polls * int64(len(legacy)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			admin := srv.Client()
			admin.Set(ctx, "ks", tt.doc, 0)
			follower := srv.Client()
			f, _ := New(follower, Options{Key: "ks", Interval: time.Hour, Timeout: 5 * time.Second,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			defer f.Stop()
			if err := f.Poll(ctx); err != nil { // the first read transfers the set
				t.Fatal(err)
			}
			if f.Matcher().Len() != len(specs) {
				t.Fatalf("matcher has %d keywords, want %d", f.Matcher().Len(), len(specs))
			}
			n := &netOut{rdb: admin}
			before := n.read(t)
			for i := 0; i < polls; i++ {
				if err := f.Poll(ctx); err != nil {
					t.Fatal(err)
				}
			}
			got := n.read(t) - before
			t.Logf("document %d bytes; %d unchanged polls transferred %d bytes (%d per poll)",
				len(tt.doc), polls, got, got/polls)
			if got > tt.maxTotal || got < tt.minTotal {
				t.Errorf("%d polls transferred %d bytes, want between %d and %d", polls, got, tt.minTotal, tt.maxTotal)
			}

			// A change is picked up by the next poll.
			admin.Set(ctx, "ks", mustEncode(t, keyword.Spec{Text: "changed"}), 0)
			if err := f.Poll(ctx); err != nil {
				t.Fatal(err)
			}
			if got := ids(f.Matcher()); got != "substring:changed" {
				t.Errorf("after a change: keywords %s", got)
			}
		})
	}
}

// A summed set replaced while the follower runs reaches the matcher within
// one interval.
func TestSummedChangeWithinOneInterval(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	rdb.Set(ctx, "ks", mustEncode(t, bigSpecs(10000)...), 0)
	const interval = 200 * time.Millisecond
	f, _ := New(rdb, Options{Key: "ks", Interval: interval, Timeout: 5 * time.Second,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.Start()
	defer f.Stop()
	rdb.Set(ctx, "ks", mustEncode(t, keyword.Spec{Text: "new"}), 0)
	// One interval plus the time to compile; the poll itself is a GETRANGE.
	waitFor(t, interval+300*time.Millisecond, func() bool { return ids(f.Matcher()) == "substring:new" })
}

func mustEncode(t testing.TB, specs ...keyword.Spec) []byte {
	t.Helper()
	b, err := keyword.EncodeSet(specs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package keywordsync

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
)

// The shard count keyalertd publishes in the keyword set reaches the
// follower with the keywords; a document without it (an older keyalertd, or
// KEYALERT_STREAM_SHARDS 1) or a missing key means the one stream.
func TestShardsFollowThePublishedSet(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	f, err := New(rdb, Options{Key: "kw", Interval: time.Second, Timeout: time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	set := func(shards int) string {
		b, err := keyword.EncodeSetShards([]keyword.Spec{sub("Exception")}, shards)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name string
		doc  string // "" deletes the key
		want int
	}{
		{"no key: one shard", "", 1},
		{"three shards", set(3), 3},
		{"back to one: the field is left out", set(1), 1},
		{"a hand-written set without a sum", `{"v":1,"shards":2,"keywords":[{"text":"x","match":"substring","ignore_case":false}]}`, 2},
		{"over the limit: previous kept", set(65), 2},
		{"key deleted: one shard", "", 1},
	}
	for _, tt := range tests {
		if tt.doc == "" {
			rdb.Del(ctx, "kw")
		} else {
			rdb.Set(ctx, "kw", tt.doc, 0)
		}
		if err := f.Poll(ctx); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := f.Shards(); got != tt.want {
			t.Errorf("%s: Shards() = %d, want %d", tt.name, got, tt.want)
		}
	}
}

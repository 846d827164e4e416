package redisoom_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/redis/go-redis/v9"
)

func TestFullRedisIsRecognisedAndNamedOncePerInterval(t *testing.T) {
	srv := redistest.StartMaxMemory(t, 3<<20)
	rdb := srv.Client()
	rdb.AddHook(redisoom.Hook{})
	srv.FillMemory()
	ctx := context.Background()
	_, txErr := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "k", "v", 0)
		return nil
	})
	getErr := rdb.Get(ctx, "absent").Err()

	var logs bytes.Buffer
	var counted int
	r := redisoom.NewReporter(rdb, slog.New(slog.NewTextHandler(&logs, nil)), time.Hour, func() { counted++ })
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"EXECABORT of a refused MULTI is OOM", txErr, true},
		{"a refused write is OOM", rdb.Set(ctx, "k", "v", 0).Err(), true},
		{"a read is served", getErr, false},
		{"another error is not OOM", errors.New("connection refused"), false},
		{"no error is not OOM", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Note(ctx, tt.err); got != tt.want {
				t.Fatalf("Note(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if counted != 2 {
		t.Errorf("counted %d OOM errors, want 2", counted)
	}
	if n := strings.Count(logs.String(), "Redis is out of memory (maxmemory "); n != 1 {
		t.Errorf("named %d times, want once per interval:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "unknown") {
		t.Errorf("memory figures not read:\n%s", logs.String())
	}
	var nilReporter *redisoom.Reporter
	if nilReporter.Note(ctx, txErr) {
		t.Error("a nil reporter handled an error")
	}
}

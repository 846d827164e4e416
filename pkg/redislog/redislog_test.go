package redislog

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestPrintfWritesOneStructuredLineAtTheLevel(t *testing.T) {
	var buf bytes.Buffer
	l := Logger{log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), level: slog.LevelWarn}
	l.Printf(context.Background(), "redis: %s failed: %v\n", "dial", "connection refused")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON line: %q (%v)", buf.String(), err)
	}
	if rec["msg"] != "redis: dial failed: connection refused" || rec["level"] != "WARN" || rec["component"] != "go-redis" {
		t.Errorf("record = %v", rec)
	}
}

func TestPrintfBelowTheHandlerLevelWritesNothing(t *testing.T) {
	var buf bytes.Buffer
	l := Logger{log: slog.New(slog.NewJSONHandler(&buf, nil)), level: slog.LevelDebug}
	l.Printf(context.Background(), "redis: noisy")
	if buf.Len() != 0 {
		t.Errorf("wrote %q below the level", buf.String())
	}
}

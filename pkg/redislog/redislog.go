// Package redislog routes go-redis's internal log lines (reconnects, pool
// and cluster messages) into log/slog, so they reach the program's own
// structured log instead of raw "redis: ..." lines on stderr. go-redis has
// one logger per process, so both halves call Route once at start.
package redislog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Route sends go-redis's messages to log at level, tagged component=go-redis.
// keyalertd uses Debug: while Redis is down go-redis repeats, per connection
// attempt, what the consumer and API already report once.
func Route(log *slog.Logger, level slog.Level) {
	redis.SetLogger(Logger{log: log, level: level})
}

// Logger implements go-redis's Logging interface (redis.SetLogger).
type Logger struct {
	log   *slog.Logger
	level slog.Level
}

// Printf logs one go-redis message.
func (l Logger) Printf(ctx context.Context, format string, v ...any) {
	if !l.log.Enabled(ctx, l.level) {
		return
	}
	l.log.Log(ctx, l.level, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "go-redis")
}

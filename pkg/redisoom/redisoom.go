// Package redisoom recognises a Redis that refuses writes because it reached
// its maxmemory (with the noeviction policy), and names it in the log once per
// interval instead of one "EXECABORT Transaction discarded" line per failure.
package redisoom

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultInterval is how often a Reporter logs while Redis stays full.
const DefaultInterval = 30 * time.Second

// Message starts every log line a Reporter writes, so people and tests can
// find it.
const Message = "Redis is out of memory"

// Is reports whether err (wrapped or not) is Redis refusing a command for
// lack of memory ("OOM command not allowed when used memory > 'maxmemory'").
func Is(err error) bool {
	if err == nil {
		return false
	}
	if redis.IsOOMError(err) {
		return true
	}
	// Replies read by other clients than go-redis (package respconn).
	var e redis.Error
	return errors.As(err, &e) && strings.HasPrefix(e.Error(), "OOM ")
}

// Tx returns the error of a MULTI/EXEC pipeline with its cause: when Redis
// refused a queued command for lack of memory, EXEC answers only "EXECABORT
// Transaction discarded because of previous errors"; the OOM is on the
// command (go-redis keeps each queued command's error), so it is joined in.
func Tx(cmds []redis.Cmder, err error) error {
	if err == nil || Is(err) {
		return err
	}
	for _, c := range cmds {
		if e := c.Err(); Is(e) {
			return fmt.Errorf("%w (cause: %w)", err, e)
		}
	}
	return err
}

// Reporter logs OOM errors at most once per interval. The zero value is not
// usable: use NewReporter.
type Reporter struct {
	rdb      redis.Cmdable
	log      *slog.Logger
	interval time.Duration
	onOOM    func() // counts every OOM error, logged or not; may be nil

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// NewReporter returns a reporter reading memory figures from rdb; interval
// 0 means DefaultInterval; onOOM, if not nil, is called for every OOM error.
func NewReporter(rdb redis.Cmdable, log *slog.Logger, interval time.Duration, onOOM func()) *Reporter {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = slog.Default()
	}
	return &Reporter{rdb: rdb, log: log, interval: interval, onOOM: onOOM}
}

// Note reports whether err is an OOM error. If so it counts it and, at most
// once per interval, logs "Redis is out of memory (maxmemory <n>, used <m>)"
// with what it refused, the figures read with INFO memory (a read, which a
// full Redis still serves). A nil Reporter reports nothing and returns false,
// so the caller logs err as it otherwise would.
func (r *Reporter) Note(ctx context.Context, err error, attrs ...any) bool {
	if r == nil || !Is(err) {
		return false
	}
	if r.onOOM != nil {
		r.onOOM()
	}
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < r.interval {
		r.suppressed++
		r.mu.Unlock()
		return true
	}
	r.last = now
	suppressed := r.suppressed
	r.suppressed = 0
	r.mu.Unlock()

	maxmem, used := r.memory(ctx)
	r.log.Error(fmt.Sprintf("%s (maxmemory %s, used %s)", Message, maxmem, used),
		append(attrs, "err", err, "refused_since_last_report", suppressed,
			"note", "writes are refused until memory is freed or maxmemory raised; reads still work; this is logged once per "+r.interval.String())...)
	return true
}

// memory returns maxmemory and used_memory as Redis prints them ("2.00M"),
// or "unknown".
func (r *Reporter) memory(ctx context.Context) (maxmem, used string) {
	maxmem, used = "unknown", "unknown"
	if r.rdb == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	info, err := r.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return
	}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "maxmemory_human":
			maxmem = v
		case "used_memory_human":
			used = v
		}
	}
	return
}

// Hook makes every MULTI/EXEC pipeline of a client return its OOM cause
// (see Tx), so that stores using TxPipelined need not each unwrap it:
// rdb.AddHook(redisoom.Hook{}).
type Hook struct{}

// DialHook implements redis.Hook.
func (Hook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (Hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

// ProcessPipelineHook implements redis.Hook.
func (Hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		return Tx(cmds, next(ctx, cmds))
	}
}

// Package sendonce sends Redis commands that go-redis must not send again
// by itself after a timeout or a broken connection, because the first one
// may have run: scripts that add to counts. Their callers retry in a way
// that is safe (a fresh roll, a fence the script checks), never unchanged.
package sendonce

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Cmd is a command go-redis sends at most once (also inside a pipeline:
// a pipeline holding one is not replayed).
type Cmd struct{ *redis.Cmd }

// NoRetry tells go-redis not to resend the command.
func (Cmd) NoRetry() bool { return true }

// Processor is a client, a connection or a pipeline.
type Processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// Eval sends EVAL or EVALSHA (name) of script (the source or its SHA-1)
// once through p and returns the command; in a pipeline its reply is there
// after Exec.
func Eval(ctx context.Context, p Processor, name, script string, keys []string, args []any) *redis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, name, script, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	cmd := redis.NewCmd(ctx, a...)
	if len(keys) > 0 {
		cmd.SetFirstKeyPos(3)
	}
	_ = p.Process(ctx, Cmd{cmd})
	return cmd
}

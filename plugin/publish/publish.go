// Package publish writes one chunk's entries to the Redis stream in a single
// round trip: a MULTI/EXEC pipeline of XADD <stream> MAXLEN ~ n * fields.
// The transaction makes a chunk's entries appear together or not at all; a
// failed publish is retried as a whole by Fluent Bit. Every Publish stamps
// its entries with a fresh attempt id, so the backend can tell a retry of a
// chunk it has applied (same batch and producer, another attempt) from the
// rest of the same attempt, and count the chunk once.
package publish

import (
	"context"
	"fmt"
	"time"

	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// Publisher appends entries to one stream. It is safe for concurrent use.
type Publisher struct {
	rdb      redis.Cmdable
	stream   string
	maxLen   int64 // 0: no trimming
	producer string
	now      func() time.Time
}

// New returns a publisher writing to streamKey on rdb, trimming the stream to
// about maxLen entries (0 disables trimming). Entries without a Producer get
// a random one, fixed for the publisher's life: the plugin sets a stable one
// (stream.ProducerID of its identity) so that a retry after a restart is
// still recognised.
func New(rdb redis.Cmdable, streamKey string, maxLen int64) *Publisher {
	return &Publisher{rdb: rdb, stream: streamKey, maxLen: maxLen, producer: stream.NewAttempt(), now: time.Now}
}

// Publish writes entries, setting their SentMs and a fresh Attempt (and the
// Producer if empty), in one transaction. Nothing is sent for an empty slice.
func (p *Publisher) Publish(ctx context.Context, entries []stream.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	sent := p.now().UnixMilli()
	attempt := stream.NewAttempt()
	var vals []any
	cmds, err := p.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for i := range entries {
			entries[i].SentMs, entries[i].Attempt = sent, attempt
			if entries[i].Producer == "" {
				entries[i].Producer = p.producer
			}
			start := len(vals)
			vals = entries[i].AppendValues(vals)
			pipe.XAdd(ctx, &redis.XAddArgs{
				Stream: p.stream,
				MaxLen: p.maxLen,
				Approx: p.maxLen > 0,
				ID:     "*",
				Values: vals[start:len(vals):len(vals)],
			})
		}
		return nil
	})
	// A full Redis refuses the XADDs and EXEC says only EXECABORT: name the cause.
	if err = redisoom.Tx(cmds, err); err != nil {
		return fmt.Errorf("xadd %d entries to %s: %w", len(entries), p.stream, err)
	}
	return nil
}

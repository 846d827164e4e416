// Package publish writes one chunk's entries to the Redis stream in a single
// round trip: a MULTI/EXEC pipeline of XADD <stream> MAXLEN ~ n * fields.
// The transaction makes a chunk's entries appear together or not at all; a
// failed publish is retried as a whole by Fluent Bit. Every Publish stamps
// its entries with a fresh attempt id, so the backend can tell a retry of a
// chunk it has applied (same batch and producer, another attempt) from the
// rest of the same attempt, and count the chunk once.
//
// Sharded streams (package streamshard): with N shards each entry goes to
// the shard of its host, one MULTI/EXEC per shard (a transaction cannot span
// cluster slots), so a chunk is in each shard wholly or not at all, and the
// backend's retry check runs per shard. A chunk whose publish failed keeps
// the shard count of its first attempt for its retries: were N to change in
// between, a host's entries could otherwise land on a shard whose dedup
// state never saw the chunk, and count twice. That memory is per process
// and bounded (MaxRemembered chunks): a retry after a plugin restart that
// coincides with a change of N may count twice.
//
// Replication: with WaitReplicas > 0, each shard's transaction is followed,
// on the same connection, by WAIT n timeout; fewer replicas than n is an
// error (the chunk is retried), so a success means n replicas hold the
// entries.
package publish

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/pkg/streamshard"
	"github.com/redis/go-redis/v9"
)

// MaxRemembered bounds the failed chunks whose shard count is kept for their
// retries; beyond it the oldest are forgotten (and retried with the current
// shard count).
const MaxRemembered = 16384

// DefaultWaitTimeout bounds a WAIT when Options.WaitTimeout is zero.
const DefaultWaitTimeout = time.Second

// Options of a Publisher; the zero value writes the one stream as before
// shards existed.
type Options struct {
	// MaxLen trims each stream shard to about this many entries; 0: no
	// trimming.
	MaxLen int64
	// Shards returns the shard count to spread a new chunk over (the one the
	// backend publishes, keywordsync.Follower.Shards); nil: 1.
	Shards func() int
	// WaitReplicas replicas must acknowledge a shard's transaction (WAIT);
	// 0 does not wait.
	WaitReplicas int
	// WaitTimeout bounds one WAIT; 0: DefaultWaitTimeout.
	WaitTimeout time.Duration
}

// ErrReplicas is wrapped by Publish when fewer replicas than WaitReplicas
// acknowledged a write in time.
var ErrReplicas = errors.New("too few replicas acknowledged the write")

// Publisher appends entries to one stream (or its shards). It is safe for
// concurrent use.
type Publisher struct {
	rdb      redis.Cmdable
	stream   string
	o        Options
	producer string
	now      func() time.Time

	mu      sync.Mutex
	pending map[string]int // batch -> shard count of its first attempt, while it fails
	order   []string       // batches of pending, oldest first
}

// New returns a publisher writing to streamKey on rdb, trimming the stream to
// about maxLen entries (0 disables trimming). Entries without a Producer get
// a random one, fixed for the publisher's life: the plugin sets a stable one
// (stream.ProducerID of its identity) so that a retry after a restart is
// still recognised.
func New(rdb redis.Cmdable, streamKey string, maxLen int64) *Publisher {
	return NewWith(rdb, streamKey, Options{MaxLen: maxLen})
}

// NewWith is New with shards and replica waits.
func NewWith(rdb redis.Cmdable, streamKey string, o Options) *Publisher {
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	return &Publisher{rdb: rdb, stream: streamKey, o: o, producer: stream.NewAttempt(), now: time.Now,
		pending: map[string]int{}}
}

// shardsFor returns the shard count of the chunk batch: the one of its first
// failed attempt if any, else the current one.
func (p *Publisher) shardsFor(batch string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, ok := p.pending[batch]; ok {
		return n
	}
	if p.o.Shards == nil {
		return 1
	}
	return min(max(p.o.Shards(), 1), streamshard.Max)
}

// settle forgets batch after a success, or remembers its shard count after
// a failure.
func (p *Publisher) settle(batch string, n int, failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, known := p.pending[batch]
	switch {
	case !failed && known:
		delete(p.pending, batch) // its order slot is dropped when it comes up
	case failed && !known:
		p.pending[batch] = n
		p.order = append(p.order, batch)
		for len(p.pending) > MaxRemembered && len(p.order) > 0 {
			delete(p.pending, p.order[0])
			p.order = p.order[1:]
		}
	}
	// Keep order from growing with batches that succeeded since.
	if len(p.order) > 2*MaxRemembered || (len(p.order) > 64 && len(p.order) > 4*len(p.pending)) {
		kept := p.order[:0]
		for _, b := range p.order {
			if _, ok := p.pending[b]; ok {
				kept = append(kept, b)
			}
		}
		p.order = kept
	}
}

// Remembered is how many failed chunks keep their shard count for retries.
func (p *Publisher) Remembered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// Publish writes entries, setting their SentMs and a fresh Attempt (and the
// Producer if empty), one transaction per shard. Nothing is sent for an
// empty slice. The entries are one chunk's: they share one Batch.
func (p *Publisher) Publish(ctx context.Context, entries []stream.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	sent := p.now().UnixMilli()
	attempt := stream.NewAttempt()
	for i := range entries {
		entries[i].SentMs, entries[i].Attempt = sent, attempt
		if entries[i].Producer == "" {
			entries[i].Producer = p.producer
		}
	}
	batch := entries[0].Batch
	n := p.shardsFor(batch)
	var err error
	if n == 1 {
		err = p.write(ctx, p.stream, entries)
	} else {
		groups := make([][]stream.Entry, n)
		for i := range entries {
			s := streamshard.Of(entries[i].Host, n)
			groups[s] = append(groups[s], entries[i])
		}
		// Shards live on different nodes: write them at once.
		errs := make([]error, n)
		var wg sync.WaitGroup
		for s, g := range groups {
			if len(g) == 0 {
				continue
			}
			wg.Go(func() { errs[s] = p.write(ctx, streamshard.Key(p.stream, s), g) })
		}
		wg.Wait()
		err = errors.Join(errs...)
	}
	p.settle(batch, n, err != nil)
	return err
}

// write appends entries to key in one transaction, then waits for replicas
// if asked to.
func (p *Publisher) write(ctx context.Context, key string, entries []stream.Entry) error {
	var c redis.Cmdable = p.rdb
	var conn *redis.Conn
	if p.o.WaitReplicas > 0 {
		// WAIT counts the replicas that have this connection's writes, so
		// the transaction and the WAIT must share one connection to the
		// master of the key's slot.
		var err error
		if conn, err = p.conn(ctx, key); err != nil {
			return fmt.Errorf("xadd %d entries to %s: %w", len(entries), key, err)
		}
		defer conn.Close()
		c = conn
	}
	var vals []any
	cmds, err := c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for i := range entries {
			start := len(vals)
			vals = entries[i].AppendValues(vals)
			pipe.XAdd(ctx, &redis.XAddArgs{
				Stream: key,
				MaxLen: p.o.MaxLen,
				Approx: p.o.MaxLen > 0,
				ID:     "*",
				Values: vals[start:len(vals):len(vals)],
			})
		}
		return nil
	})
	// A full Redis refuses the XADDs and EXEC says only EXECABORT: name the cause.
	if err = redisoom.Tx(cmds, err); err != nil {
		p.reload(ctx, err)
		return fmt.Errorf("xadd %d entries to %s: %w", len(entries), key, err)
	}
	if p.o.WaitReplicas == 0 {
		return nil
	}
	got, err := conn.Wait(ctx, p.o.WaitReplicas, p.o.WaitTimeout).Result()
	if err != nil {
		p.reload(ctx, err)
		return fmt.Errorf("wait %d replicas for %s: %w", p.o.WaitReplicas, key, err)
	}
	if got < int64(p.o.WaitReplicas) {
		return fmt.Errorf("wait %d replicas for %s: %d acknowledged within %v: %w", p.o.WaitReplicas, key, got, p.o.WaitTimeout, ErrReplicas)
	}
	return nil
}

// conn returns a connection of its own to the master serving key.
func (p *Publisher) conn(ctx context.Context, key string) (*redis.Conn, error) {
	switch c := p.rdb.(type) {
	case *redis.ClusterClient:
		node, err := c.MasterForKey(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("master of %s: %w", key, err)
		}
		return node.Conn(), nil
	case *redis.Client:
		return c.Conn(), nil
	}
	return nil, fmt.Errorf("Redis_Wait_Replicas needs a single server or a cluster client, not %T", p.rdb)
}

// reload refreshes a cluster client's slot map after a failed write, so the
// retry goes to the new master after a failover: a transaction that could
// not reach its node (or that bypassed redirections, the WAIT path) does not
// make go-redis reload it by itself.
func (p *Publisher) reload(ctx context.Context, err error) {
	if cc, ok := p.rdb.(*redis.ClusterClient); ok && err != nil {
		cc.ReloadState(ctx)
	}
}

package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/pkg/streamshard"
	"github.com/redis/go-redis/v9"
)

// A Fleet consumes every shard of a sharded stream (package streamshard):
// one Consumer per shard, each with the shard's own consumer group, fence,
// dedup state and windows in the shard's slot, so each shard is applied
// exactly once on its own, as an unsharded stream is.
//
// Which replica consumes which shard is decided by leases (package lease,
// keys ka:{<stream>}:ingest:shard:<i>): each replica holds a fair share and
// takes over the shards of a replica that died once their leases expire
// (KEYALERT_LEASE_TTL); the entries the dead one held are claimed after
// KEYALERT_CLAIM_IDLE. Two replicas consuming one shard for a moment (a
// lease handed over while the old holder drains) is harmless: the group and
// the apply script make it exactly once whoever reads. With one shard and
// reading by the group (KEYALERT_INGEST_READ=group) there are no leases:
// every replica consumes the stream, the group sharing its entries out.
// Reading by cursor, one shard has a lease like any other: replicas reading
// one stream by cursor would each read every entry, one of them applying
// each batch.
//
// The shards consumed (and read, see Width) are the most ever configured, not
// only Shards: lowering KEYALERT_STREAM_SHARDS leaves entries (retries of
// chunks first sent under the higher count, agents that have not yet seen the
// change) and counts in the higher shards. That most is kept at
// ka:{<stream>}:shards, raised by every replica at start and read every lease
// step.
type Fleet struct {
	o      Options
	lo     lease.Options
	owner  string
	log    *slog.Logger
	record string // ka:{<stream>}:shards

	width atomic.Int32 // shards consumed and read
	ok    atomic.Int64 // Unix nanoseconds of the last lease step that succeeded

	mu        sync.Mutex
	consumers map[int]*Consumer // one per shard, created on first use
	running   map[int]*run
	draining  map[int]chan struct{} // runs stopped, finishing their batches
	one       *Consumer             // the consumer of an unsharded stream (width 1)
}

type run struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// RecordKey is where the most shards ever configured for streamKey is kept.
func RecordKey(streamKey string) string { return "ka:" + stream.HashTag(streamKey) + ":shards" }

// LeasePrefix is the prefix of streamKey's shard leases.
func LeasePrefix(streamKey string) string { return "ka:" + stream.HashTag(streamKey) + ":ingest" }

// NewFleet checks o (as New does) and returns a fleet; owner is this
// replica's lease token, lo the lease TTL (its Shards is ignored: the
// stream's shards are o.Shards).
func NewFleet(o Options, lo lease.Options, owner string) (*Fleet, error) {
	o = o.withDefaults()
	o.shared = newMetrics(o.Registerer) // one set for all the shards
	if _, err := New(o); err != nil {   // checks o
		return nil, err
	}
	if err := streamshard.Check(o.Shards); err != nil {
		return nil, fmt.Errorf("ingest: Options.Shards %d: %w", o.Shards, err)
	}
	f := &Fleet{o: o, lo: lo, owner: owner, log: o.Logger.With("stream", o.Stream), record: RecordKey(o.Stream),
		consumers: map[int]*Consumer{}, running: map[int]*run{}, draining: map[int]chan struct{}{}}
	f.width.Store(int32(o.Shards))
	return f, nil
}

// Width is how many shards are consumed and must be read: the most ever
// configured, at least Options.Shards.
func (f *Fleet) Width() int { return int(f.width.Load()) }

// Shards is the shard count this replica was configured with (the one
// published to the plugins).
func (f *Fleet) Shards() int { return f.o.Shards }

// raiseScript sets KEYS[1] to ARGV[1] if that is more, returns the result.
var raiseScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local n = tonumber(ARGV[1])
if n > cur then redis.call('SET', KEYS[1], n) return n end
return cur`)

// Sync raises the record to Options.Shards and reads it back into Width.
func (f *Fleet) Sync(ctx context.Context) error {
	n, err := raiseScript.Run(ctx, f.o.Client, []string{f.record}, f.o.Shards).Int()
	if err != nil {
		return fmt.Errorf("shard record %s: %w", f.record, err)
	}
	n = min(max(n, f.o.Shards), streamshard.Max)
	if old := f.Width(); n != old {
		f.width.Store(int32(n))
		f.log.Info("stream shards consumed", "shards", n, "configured", f.o.Shards, "before", old)
	}
	return nil
}

// consumer returns shard i's consumer, creating it on first use. The
// consumers share one set of metrics: the process's totals.
func (f *Fleet) consumer(i int) (*Consumer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.consumers[i]; ok {
		return c, nil
	}
	o := f.o
	o.Stream = streamshard.Key(f.o.Stream, i)
	c, err := New(o)
	if err != nil {
		return nil, err
	}
	f.consumers[i] = c
	return c, nil
}

// Run consumes until ctx ends; then the consumers finish their batches in
// flight and the leases are released. Redis failures are retried.
func (f *Fleet) Run(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if err := f.Sync(sctx); err != nil {
		f.log.Warn("stream shard record not read; consuming the configured shards until it is", "err", err)
	}
	cancel()
	if f.Width() == 1 && f.o.Read == ReadGroup {
		if err := f.runOne(ctx); err != nil || ctx.Err() != nil {
			return err
		}
	}
	f.lead(ctx)
	return nil
}

// runOne consumes the unsharded stream, every replica alike, until ctx ends
// or the record says another replica was configured with shards: then it
// stops, and the caller switches to leases.
func (f *Fleet) runOne(ctx context.Context) error {
	c, err := f.consumer(0)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.one = c
	f.mu.Unlock()
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(octx) }()
	ttl := f.lo.TTL
	if ttl <= 0 {
		ttl = lease.DefaultTTL
	}
	t := time.NewTicker(ttl)
	defer t.Stop()
	for f.Width() == 1 {
		select {
		case <-ctx.Done():
			<-done
			return nil
		case <-t.C:
			if err := f.Sync(ctx); err != nil && ctx.Err() == nil {
				f.log.Debug("stream shard record", "err", err)
			}
		}
	}
	cancel()
	<-done
	f.mu.Lock()
	f.one = nil
	f.mu.Unlock()
	return nil
}

// lead runs the shard leases: a consumer per shard held, stopped when its
// lease goes.
func (f *Fleet) lead(ctx context.Context) {
	lo := f.lo
	lo.Shards = f.Width()
	shards := lease.NewShards(f.o.Client, LeasePrefix(f.o.Stream), f.owner, lo, f.log)
	ttl := lo.TTL
	if ttl <= 0 {
		ttl = lease.DefaultTTL
	}
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		err := shards.Step(ctx)
		if err == nil {
			err = f.Sync(ctx)
		}
		if err == nil {
			f.ok.Store(time.Now().UnixNano())
		} else if ctx.Err() == nil && !f.o.OOM.Note(ctx, err, "what", "ingest shard leases") {
			f.log.Warn("ingest shard leases", "err", err)
		}
		if w := f.Width(); w != shards.N() {
			// More shards than the leases cover (another replica raised the
			// record): start over with leases for all of them.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			shards.ReleaseAll(rctx)
			cancel()
			lo.Shards = w
			shards = lease.NewShards(f.o.Client, LeasePrefix(f.o.Stream), f.owner, lo, f.log)
			continue
		}
		f.follow(ctx, shards)
		select {
		case <-ctx.Done():
			f.stopAll()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			shards.ReleaseAll(rctx)
			cancel()
			return
		case <-t.C:
		}
	}
}

// follow starts the consumers of the shards held and stops the others.
func (f *Fleet) follow(ctx context.Context, shards *lease.Shards) {
	owned := map[int]bool{}
	for _, i := range shards.Owned() {
		owned[i] = true
	}
	f.mu.Lock()
	var stop []*run
	for i, r := range f.running {
		select {
		case <-r.done: // ended by itself (it cannot, but then start it anew)
			delete(f.running, i)
			continue
		default:
		}
		if !owned[i] || i >= shards.N() {
			stop = append(stop, r)
			delete(f.running, i)
			f.draining[i] = r.done
			f.log.Info("stopped consuming a stream shard", "shard", i)
		}
	}
	f.mu.Unlock()
	for _, r := range stop {
		r.cancel() // it drains its batches in flight in the background
	}
	for i := range owned {
		f.mu.Lock()
		_, on := f.running[i]
		if d, ok := f.draining[i]; ok && !on {
			// A consumer runs once at a time: wait for the last run to
			// finish its batches in flight (a later round starts it).
			select {
			case <-d:
				delete(f.draining, i)
			default:
				on = true
			}
		}
		f.mu.Unlock()
		if on {
			continue
		}
		c, err := f.consumer(i)
		if err != nil {
			f.log.Error("stream shard consumer", "shard", i, "err", err)
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		r := &run{cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			_ = c.Run(rctx)
		}()
		f.mu.Lock()
		f.running[i] = r
		f.mu.Unlock()
		f.log.Info("consuming a stream shard", "shard", i, "key", streamshard.Key(f.o.Stream, i))
	}
}

// stopAll cancels every consumer and waits for their batches in flight,
// those of runs stopped earlier included.
func (f *Fleet) stopAll() {
	f.mu.Lock()
	rs := make([]*run, 0, len(f.running))
	for i, r := range f.running {
		rs = append(rs, r)
		delete(f.running, i)
	}
	var draining []chan struct{}
	for i, d := range f.draining {
		draining = append(draining, d)
		delete(f.draining, i)
	}
	f.mu.Unlock()
	for _, r := range rs {
		r.cancel()
	}
	for _, r := range rs {
		<-r.done
	}
	for _, d := range draining {
		<-d
	}
}

// Owned lists the shards this replica consumes now (all of one for an
// unsharded stream).
func (f *Fleet) Owned() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.one != nil {
		return []int{0}
	}
	out := make([]int, 0, len(f.running))
	for i := 0; i < streamshard.Max; i++ {
		if _, ok := f.running[i]; ok {
			out = append(out, i)
		}
	}
	return out
}

// CaughtUp reports whether every shard consumer this process runs has
// applied the backlog it found at start (Consumer.CaughtUp). Holding no
// shard once the leases were stepped, it has nothing to wait for (other
// replicas' backlogs are theirs).
func (f *Fleet) CaughtUp() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.one != nil {
		return f.one.CaughtUp()
	}
	if len(f.running) == 0 {
		return f.ok.Load() != 0
	}
	for i := range f.running {
		if !f.consumers[i].CaughtUp() {
			return false
		}
	}
	return true
}

// Ready reports whether consuming works: the unsharded consumer is ready,
// or the leases were stepped recently and every shard consumer held is.
func (f *Fleet) Ready() error {
	f.mu.Lock()
	one := f.one
	var cs []*Consumer
	for i := range f.running {
		cs = append(cs, f.consumers[i])
	}
	f.mu.Unlock()
	if one != nil {
		return one.Ready()
	}
	last := f.ok.Load()
	if last == 0 {
		return errors.New("consumer not running")
	}
	ttl := f.lo.TTL
	if ttl <= 0 {
		ttl = lease.DefaultTTL
	}
	if age := time.Since(time.Unix(0, last)); age > max(3*ttl, 10*time.Second) {
		return fmt.Errorf("ingest shard leases not renewed for %v", age.Round(time.Second))
	}
	for _, c := range cs {
		if err := c.Ready(); err != nil {
			return err
		}
	}
	return nil
}

// Package ingest consumes the keyword stream and applies each batch exactly
// once: one Lua script per batch checks that the batch is still this
// reader's to apply, drops plugin retries of chunks already applied, adds the
// counts to the per-minute windows and moves the stream's cursor past the
// batch (or acknowledges it) atomically, so a crash at any point neither
// loses nor double-counts.
//
// New entries are read by cursor (cursor.go, the default): XRANGE after the
// consumer group's last-delivered-id, which the script checks and moves, so
// a stalled or second reader applies nothing another applied. Entries
// delivered by the group (Options.Read = ReadGroup, or left pending by an
// older keyalertd) are applied while still pending for their consumer.
//
// Retries are recognised per chunk, not per entry: a version 3 entry names
// its producer (plugin instance) and publish attempt, and each producer keeps
// chunk -> attempt for the chunks it had applied within DedupWindow, at most
// DedupMaxPerProducer of them. Memory is then bounded by producers × window,
// whatever the number of entries or the retention. Version 1 and 2 entries
// (older plugins) keep one dedup id per entry, for the same window.
//
// A consumer first re-applies its own pending entries, then reads new ones,
// and periodically claims entries left idle in the group by dead consumers. Entries that do
// not parse, were delivered too often, or cannot be counted go to the
// dead-letter stream with their reason and are acknowledged.
package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/backoff"
	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/keyalert/keyalert/pkg/sendonce"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Defaults of the Options fields left zero.
const (
	DefaultGroup         = "keyalertd"
	DefaultBatchSize     = 1000
	DefaultBlock         = 2 * time.Second
	DefaultClaimIdle     = time.Minute
	DefaultClaimInterval = 15 * time.Second
	DefaultMaxDeliveries = 10
	DefaultSamples       = 20
	DefaultDeadMaxLen    = 100000
	// DefaultPruneIdle is the least PruneIdle default: it is the larger of
	// this and 10 times ClaimIdle.
	DefaultPruneIdle    = time.Hour
	DefaultWorkers      = 4
	DefaultDrainTimeout = 10 * time.Second
	// DefaultDedupWindow covers Fluent Bit's retry schedule: its scheduler
	// waits at most scheduler.cap (2000 s by default) between two attempts.
	DefaultDedupWindow         = time.Hour
	DefaultDedupMaxPerProducer = 10000
	// DefaultMaxSeriesPerMinute bounds the distinct series (host, tag,
	// labels) of one keyword in one minute; past it counts go to the
	// overflow series.
	DefaultMaxSeriesPerMinute = 10000
	DefaultWaitTimeout        = time.Second
	DefaultShards             = 1
)

// MaxBatchSize bounds BatchSize: the script unpacks a batch's ids onto the
// Lua C stack, which must hold them.
const MaxBatchSize = 5000

// Options configures a Consumer. The zero value of every field but Client
// and Consumer is usable: a zero field means the package default, the
// Default constant of the same name.
type Options struct {
	Client   redis.UniversalClient // required
	Stream   string                // 0: stream.DefaultStream
	Group    string                // 0: DefaultGroup
	Consumer string                // required: this process's name in the group

	Retention time.Duration // how long windows are kept
	// DedupWindow is how long a chunk applied is remembered, so that a
	// plugin retry of it is not counted again: a retry arriving later than
	// this after the first attempt was applied counts twice.
	DedupWindow time.Duration
	// DedupMaxPerProducer bounds the chunks remembered per producer: past
	// half of it within a window, the older half is forgotten early.
	DedupMaxPerProducer int
	BatchSize           int           // entries per read and script call, up to MaxBatchSize
	Block               time.Duration // how long one read waits for new entries
	ClaimIdle           time.Duration // an entry pending this long elsewhere is claimed
	ClaimInterval       time.Duration // how often idle entries are looked for
	MaxDeliveries       int64         // more deliveries than this: dead letter
	// Samples is how many sample lines are kept per keyword; 0 means
	// DefaultSamples. NoSamples keeps none, whatever Samples says.
	Samples    int
	NoSamples  bool
	DeadMaxLen int64 // approximate length cap of the dead-letter stream
	// MaxSeriesPerMinute bounds the distinct series (host, tag, labels) of
	// one keyword in one minute: the counts of further series go to the
	// overflow series, whose every part is stream.OverflowValue. 0:
	// DefaultMaxSeriesPerMinute.
	MaxSeriesPerMinute int
	// PruneIdle: a consumer of the group with nothing pending that has been
	// silent this long is removed. 0: the larger of DefaultPruneIdle and
	// 10*ClaimIdle.
	PruneIdle time.Duration
	// Workers is how many read-apply loops run at once: while one waits for
	// its script, others read and prepare the next batches, so that Redis
	// always has work queued.
	Workers int
	// DrainTimeout bounds how long, after Run's context ends, the batches
	// already read keep being retried while Redis fails.
	DrainTimeout time.Duration

	// Shards is how many stream shards the plugins spread their entries
	// over (package streamshard); a Fleet consumes them all. 0: 1, the
	// stream alone. A Consumer reads Stream only.
	Shards int
	// WaitReplicas: after each apply, WAIT for this many replicas before
	// OnApplied sees the batch, so alerts fire on counts that a failover
	// to one of those replicas keeps; 0 does not wait. WaitTimeout bounds
	// the WAIT (0: DefaultWaitTimeout); a short count is logged and
	// counted, and the batch goes on (it is applied on the master already).
	WaitReplicas int
	WaitTimeout  time.Duration

	Logger     *slog.Logger          // nil: slog.Default()
	Registerer prometheus.Registerer // nil: a private registry
	// OOM, if set, reports failures that are Redis out of memory once per
	// interval instead of a warning per retry; nil: warned like the rest.
	OOM *redisoom.Reporter

	// OnApplied is called after each committed batch with the entries newly
	// counted (not duplicates). Calls never overlap, but they run on the
	// consumer's workers: keep it quick or hand the work off. A panic in it is
	// recovered and logged.
	OnApplied func(ctx context.Context, applied []stream.Entry)

	Now func() time.Time // nil: time.Now

	// Read is how new entries are read: ReadCursor (the default) with
	// XRANGE after the group's last-delivered-id, which the apply script
	// checks and moves with the counts; ReadGroup by the group's delivery,
	// each entry pending until the script acknowledges it. Entries pending
	// in the group (left by an older keyalertd, or claimed) go through the
	// group's path in both.
	Read string

	// shared are the metrics of the Fleet this consumer is one shard of:
	// one set per process, not per shard.
	shared *metrics
}

// withDefaults fills the zero fields.
func (o Options) withDefaults() Options {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.Stream == "" {
		o.Stream = stream.DefaultStream
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	def(&o.Retention, window.DefaultRetention)
	def(&o.DedupWindow, DefaultDedupWindow)
	if o.DedupMaxPerProducer <= 0 {
		o.DedupMaxPerProducer = DefaultDedupMaxPerProducer
	}
	def(&o.Block, DefaultBlock)
	def(&o.ClaimIdle, DefaultClaimIdle)
	def(&o.ClaimInterval, DefaultClaimInterval)
	def(&o.DrainTimeout, DefaultDrainTimeout)
	def(&o.PruneIdle, max(DefaultPruneIdle, 10*o.ClaimIdle))
	def(&o.WaitTimeout, DefaultWaitTimeout)
	if o.Shards <= 0 {
		o.Shards = DefaultShards
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.MaxDeliveries <= 0 {
		o.MaxDeliveries = DefaultMaxDeliveries
	}
	switch {
	case o.NoSamples:
		o.Samples = 0
	case o.Samples <= 0:
		o.Samples = DefaultSamples
	}
	if o.DeadMaxLen <= 0 {
		o.DeadMaxLen = DefaultDeadMaxLen
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxSeriesPerMinute <= 0 {
		o.MaxSeriesPerMinute = DefaultMaxSeriesPerMinute
	}
	if o.Read == "" {
		o.Read = ReadCursor
	}
	return o
}

// Consumer is one member of the consumer group.
type Consumer struct {
	o         Options
	plan      planner
	m         *metrics
	log       *slog.Logger
	running   atomic.Bool
	lastOK    atomic.Int64 // Unix nanoseconds of the last successful read or commit
	nextClaim atomic.Int64 // Unix nanoseconds when idle entries are next claimed
	claiming  sync.Mutex   // one worker claims at a time
	hook      sync.Mutex   // serializes OnApplied
	// overflowWarned is when (Unix nanoseconds) the last overflow warning
	// was logged.
	overflowWarned atomic.Int64
	// caughtUp: since it started, a read found nothing new while no batch
	// was being applied (CaughtUp); inflight counts the batches applying.
	caughtUp atomic.Bool
	inflight atomic.Int64
	// replySize is the length of the last raw read reply: the next read's
	// buffer is sized from it.
	replySize atomic.Int64
}

// CaughtUp reports whether the consumer has applied the backlog it found
// at start: a read since then found no new entry while none of its batches
// was being applied. Until then the counts lack entries written while
// keyalertd was down, and absence cannot be told from them.
func (c *Consumer) CaughtUp() bool { return c.caughtUp.Load() }

// New checks o and returns a consumer; Run starts it.
func New(o Options) (*Consumer, error) {
	if o.Client == nil {
		return nil, errors.New("ingest: Options.Client is required")
	}
	if o.Consumer == "" {
		return nil, errors.New("ingest: Options.Consumer is required")
	}
	if o.BatchSize > MaxBatchSize {
		return nil, fmt.Errorf("ingest: Options.BatchSize %d over the limit of %d", o.BatchSize, MaxBatchSize)
	}
	if o.Read != "" && o.Read != ReadCursor && o.Read != ReadGroup {
		return nil, fmt.Errorf("ingest: Options.Read %q: want %q or %q", o.Read, ReadCursor, ReadGroup)
	}
	o = o.withDefaults()
	m := o.shared
	if m == nil {
		m = newMetrics(o.Registerer)
	}
	c := &Consumer{o: o, m: m, log: o.Logger.With("stream", o.Stream, "group", o.Group, "consumer", o.Consumer)}
	m.trimmed.WithLabelValues(o.Stream) // reported at 0 from the start
	c.plan = planner{
		keys:       window.NewKeys(o.Stream),
		stream:     o.Stream,
		dead:       DeadStream(o.Stream),
		group:      o.Group,
		consumer:   o.Consumer,
		retention:  o.Retention,
		window:     o.DedupWindow,
		maxPerProd: o.DedupMaxPerProducer,
		// The batch's id range may also hold the consumer's other batches
		// in flight, and a claimed batch's range older ones.
		pendingMax: (o.Workers+2)*o.BatchSize + 16,
		sampleCap:  o.Samples,
		sampleTTL:  int64(o.Retention / time.Second),
		deadMaxLen: o.DeadMaxLen,
		maxDeliv:   o.MaxDeliveries,
		maxSeries:  o.MaxSeriesPerMinute,
	}
	return c, nil
}

// DeadStream names the dead-letter stream of streamKey; it carries the
// stream's hash tag so the apply script can write it in the stream's slot.
func DeadStream(streamKey string) string { return stream.HashTag(streamKey) + ":dead" }

// Ready reports whether the consumer is running and has talked to Redis
// successfully recently.
func (c *Consumer) Ready() error {
	if !c.running.Load() {
		return errors.New("consumer not running")
	}
	last := time.Unix(0, c.lastOK.Load())
	limit := max(3*c.o.Block, 10*time.Second)
	if age := time.Since(last); age > limit {
		return fmt.Errorf("consumer has had no successful Redis call for %v", age.Round(time.Second))
	}
	return nil
}

func (c *Consumer) ok() { c.lastOK.Store(time.Now().UnixNano()) }

// Run consumes until ctx ends, then finishes and acknowledges the batches
// already read and returns nil. Redis failures are logged and retried; bad
// entries are dead-lettered; nothing in the data makes Run fail.
func (c *Consumer) Run(ctx context.Context) error {
	c.running.Store(true)
	defer c.running.Store(false)
	defer c.m.setGauges(c, 0, 0) // a shard given up is another replica's to report
	// Redis calls of read batches, and their retries, outlive ctx by
	// DrainTimeout: a batch in flight is finished, not abandoned, unless
	// Redis keeps failing that long.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	defer context.AfterFunc(ctx, func() {
		t := time.NewTimer(c.o.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancelWork()
		case <-work.Done():
		}
	})()
	if !c.retry(ctx, "group", func() error { return c.ensureGroup(work) }) {
		return nil
	}
	c.ok()
	go c.observe(ctx, work)
	c.reapplyOwnPending(ctx, work)
	if c.o.Read == ReadCursor {
		c.runCursor(ctx, work)
		return nil
	}
	var wg sync.WaitGroup
	for i := 0; i < c.o.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.work(ctx, work)
		}()
	}
	wg.Wait()
	return nil
}

// masterConn returns a connection of its own to the master of the stream's
// slot.
func (c *Consumer) masterConn(ctx context.Context) (*redis.Conn, error) {
	switch cl := c.o.Client.(type) {
	case *redis.ClusterClient:
		node, err := cl.MasterForKey(ctx, c.o.Stream)
		if err != nil {
			return nil, fmt.Errorf("master of %s: %w", c.o.Stream, err)
		}
		return node.Conn(), nil
	case *redis.Client:
		return cl.Conn(), nil
	}
	return nil, fmt.Errorf("KEYALERT_WAIT_REPLICAS needs a single server or a cluster client, not %T", c.o.Client)
}

// reapplyOwnPending applies the entries a previous run under the same
// consumer name read but did not acknowledge.
func (c *Consumer) reapplyOwnPending(ctx, work context.Context) {
	start := "0"
	for ctx.Err() == nil {
		var msgs []message
		if !c.retry(ctx, "read", func() (err error) {
			msgs, err = c.rereadOwn(work, start)
			return err
		}) {
			return
		}
		c.ok()
		if len(msgs) == 0 {
			return
		}
		c.log.Info("re-applying own pending entries", "entries", len(msgs))
		// No fence: the script checks that each entry is still pending, in
		// case that other process applied it meanwhile.
		c.apply(work, c.plan.build("pending", msgs, c.deliveries(work, msgs), c.o.Now(), ""))
		start = msgs[len(msgs)-1].id
	}
}

// rereadOwn moves the group's fence and reads this consumer's pending
// entries from after start, in one transaction: another process under this
// name may still hold them in flight (stopped, not dead), and must see the
// fence move; a read of its between the two would trust the fence, while
// the re-read delivers its entries too.
func (c *Consumer) rereadOwn(ctx context.Context, start string) ([]message, error) {
	var read *redis.XStreamSliceCmd
	_, err := c.o.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, c.plan.keys.Fence(c.o.Group))
		read = p.XReadGroup(ctx, &redis.XReadGroupArgs{Group: c.o.Group, Consumer: c.o.Consumer,
			Streams: []string{c.o.Stream, start}, Count: int64(c.o.BatchSize), Block: -1})
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		if strings.Contains(err.Error(), "NOGROUP") { // stream or group deleted under us
			if gerr := c.ensureGroup(ctx); gerr != nil {
				return nil, gerr
			}
		}
		return nil, fmt.Errorf("fence and xreadgroup %s %s %s: %w", c.o.Stream, c.o.Group, start, err)
	}
	res := read.Val()
	if len(res) == 0 {
		return nil, nil
	}
	return fromXMessages(res[0].Messages), nil
}

// work is one read-apply loop: new entries, and idle ones when a claim is
// due.
func (c *Consumer) work(ctx, work context.Context) {
	retry := backoff.New(backoff.Policy{})
	for ctx.Err() == nil {
		now := time.Now().UnixNano()
		if next := c.nextClaim.Load(); now >= next && c.claiming.TryLock() {
			if c.nextClaim.CompareAndSwap(next, now+int64(c.o.ClaimInterval)) {
				c.claim(ctx, work)
				c.pruneConsumers(work)
			}
			c.claiming.Unlock()
		}
		// Drain a backlog without blocking; block only once it is empty.
		fence := c.fence(work)
		// Counted from before the read to the end of its apply, so that a
		// worker finding nothing new knows no other holds entries unapplied.
		c.inflight.Add(1)
		msgs, err := c.readGroup(work, ">", -1)
		if err == nil && len(msgs) == 0 {
			if c.inflight.Add(-1) == 0 {
				c.caughtUp.Store(true)
			}
			block := min(c.o.Block, max(time.Duration(c.nextClaim.Load()-time.Now().UnixNano()), time.Millisecond))
			msgs, err = c.readGroup(work, ">", block)
			c.inflight.Add(1)
		}
		if err != nil {
			c.inflight.Add(-1)
			c.m.errors.WithLabelValues("read").Inc()
			c.log.Warn("xreadgroup failed; retrying", "err", err, "attempt", retry.Attempt()+1)
			retry.Wait(ctx) // an error is ctx's end, which ends the loop
			continue
		}
		retry.Reset()
		c.ok()
		if len(msgs) > 0 {
			c.apply(work, c.plan.build("new", msgs, nil, c.o.Now(), fence))
		}
		c.inflight.Add(-1)
	}
}

// apply commits pl, retrying while Redis fails, until work ends
// (DrainTimeout after ctx): then it gives up, leaving the entries pending for
// a later run.
func (c *Consumer) apply(work context.Context, pl *plan) {
	retry := backoff.New(backoff.Policy{})
	for !c.commit(work, pl) {
		// The failed call may have run (a reply lost with its connection,
		// a master that died after replicating the apply): the retry must
		// check each entry is still pending rather than trust the fence.
		if len(pl.args) > argFence {
			pl.args[argFence] = ""
		}
		if retry.Wait(work) != nil {
			c.log.Warn("giving up on a batch at shutdown; it stays pending and is applied later", "entries", pl.size)
			return
		}
	}
}

func (c *Consumer) ensureGroup(ctx context.Context) error {
	// "0": entries written before the first keyalertd started are counted too.
	err := c.o.Client.XGroupCreateMkStream(ctx, c.o.Stream, c.o.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("xgroup create %s %s: %w", c.o.Stream, c.o.Group, err)
	}
	return nil
}

// retry runs f until it succeeds (true) or ctx ends (false), with backoff.
func (c *Consumer) retry(ctx context.Context, op string, f func() error) bool {
	return backoff.Retry(ctx, backoff.Policy{}, func(context.Context) error { return f() }, func(err error, attempt int) {
		c.m.errors.WithLabelValues(op).Inc()
		if !c.o.OOM.Note(ctx, err, "what", op) {
			c.log.Warn("redis call failed; retrying", "op", op, "err", err, "attempt", attempt)
		}
	}) == nil
}

// fence reads the group's fence before a read of new entries: while it does
// not move, the batch stays wholly this consumer's. "" if it cannot be read
// (the script then checks each entry).
func (c *Consumer) fence(ctx context.Context) string {
	v, err := c.o.Client.Get(ctx, c.plan.keys.Fence(c.o.Group)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "0"
	case err != nil:
		return ""
	}
	return v
}

// readGroup reads from id ("0"-style: own pending; ">": new). block < 0
// means do not block.
//
// Non-blocking reads, the ones that drain a backlog, take the raw reply and
// parse it without go-redis's map per entry. Blocking reads and error
// replies go through go-redis's typed command: it applies the read timeout
// for the block and follows Redis Cluster redirections.
func (c *Consumer) readGroup(ctx context.Context, id string, block time.Duration) ([]message, error) {
	if block < 0 {
		// A buffer of its own per read, sized from the last reply (ReadFrom
		// wants 512 bytes free past what it holds): the messages' strings
		// are views of it, so the reply is copied once, not twice.
		buf := bytes.NewBuffer(make([]byte, 0, c.replySize.Load()*9/8+1024))
		cmd := redis.NewRawWriteToCmd(ctx, buf, "XREADGROUP", "GROUP", c.o.Group, c.o.Consumer,
			"COUNT", c.o.BatchSize, "STREAMS", c.o.Stream, id)
		if err := c.o.Client.Process(ctx, cmd); err != nil {
			return nil, fmt.Errorf("xreadgroup %s %s %s: %w", c.o.Stream, c.o.Group, id, err)
		}
		raw := buf.Bytes()
		c.replySize.Store(int64(len(raw)))
		// buf is not written again, and nothing keeps a reference to raw
		// but the strings: they may share its bytes.
		msgs, err := parseReply(unsafe.String(unsafe.SliceData(raw), len(raw)))
		if err == nil {
			return msgs, nil
		}
		if _, isReply := err.(errorReply); !isReply {
			// Cannot happen with a real Redis. Entries that reply delivered
			// stay pending and come back through a claim.
			c.m.errors.WithLabelValues("read").Inc()
			c.log.Warn("unreadable xreadgroup reply; reading again", "err", err)
		}
	}
	res, err := c.o.Client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    c.o.Group,
		Consumer: c.o.Consumer,
		Streams:  []string{c.o.Stream, id},
		Count:    int64(c.o.BatchSize),
		Block:    block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "NOGROUP") { // stream or group deleted under us
			if gerr := c.ensureGroup(ctx); gerr != nil {
				return nil, gerr
			}
		}
		return nil, fmt.Errorf("xreadgroup %s %s %s: %w", c.o.Stream, c.o.Group, id, err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	return fromXMessages(res[0].Messages), nil
}

// deliveries returns the delivery counts of msgs (now owned by this
// consumer). On error it returns what it has: unknown counts are not
// dead-lettered, the entry is simply applied.
func (c *Consumer) deliveries(ctx context.Context, msgs []message) map[string]int64 {
	// The range may also hold this consumer's in-flight entries: leave room.
	n := int64(len(msgs) + (c.o.Workers+1)*c.o.BatchSize + 16)
	res, err := c.o.Client.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: c.o.Stream, Group: c.o.Group, Consumer: c.o.Consumer,
		Start: msgs[0].id, End: msgs[len(msgs)-1].id, Count: n,
	}).Result()
	if err != nil {
		c.m.errors.WithLabelValues("pending").Inc()
		c.log.Warn("xpending failed; delivery counts unknown for this batch", "err", err)
		return nil
	}
	d := make(map[string]int64, len(res))
	for _, p := range res {
		d[p.ID] = p.RetryCount
	}
	return d
}

// claim takes over entries idle longer than ClaimIdle and applies them, a
// bounded number of batches per call so new entries are not starved.
func (c *Consumer) claim(ctx, work context.Context) {
	cursor := "0-0"
	for round := 0; round < 20 && ctx.Err() == nil; round++ {
		msgs, deleted, next, err := c.xautoclaim(work, cursor)
		if err != nil {
			c.m.errors.WithLabelValues("claim").Inc()
			c.log.Warn("xautoclaim failed", "err", err)
			return
		}
		if len(deleted) > 0 {
			// Redis 7 has dropped them from the pending list: whoever read
			// them finds them no longer its own and applies nothing, so
			// this is the one place that sees them lost.
			c.log.Error("pending entries were trimmed from the stream before they were applied: their counts are lost; raise the plugin's Max_Len, add stream shards (KEYALERT_STREAM_SHARDS), or keep keyalertd up",
				"lost", len(deleted), "first_id", deleted[0].id)
			c.apply(work, c.plan.build("claim", deleted, nil, c.o.Now(), ""))
		}
		if len(msgs) > 0 {
			c.m.claimed.Add(float64(len(msgs)))
			c.log.Info("claimed idle entries", "entries", len(msgs))
			// No fence: the entries may be held by another batch of this
			// very consumer (a worker stalled past ClaimIdle), so the script
			// checks that each is still pending.
			c.apply(work, c.plan.build("claim", msgs, c.deliveries(work, msgs), c.o.Now(), ""))
		}
		if next == "0-0" || next == "" {
			return
		}
		cursor = next
	}
}

// xautoclaim moves the group's fence and claims up to BatchSize entries
// idle past ClaimIdle from cursor on, in one transaction: the consumers
// whose entries this takes must see the fence move, and no read may come
// between the two (a read after the fence moved trusts it, and an entry it
// delivers can be claimed if its reader then stalls past ClaimIdle while
// the claim is still on its way, or taken at once if the stream is trimmed
// past it). Besides the entries, it returns those Redis 7 found deleted
// from the stream and removed from the pending list (as messages without
// values): go-redis's XAutoClaim drops them.
func (c *Consumer) xautoclaim(ctx context.Context, cursor string) (msgs, deleted []message, next string, err error) {
	var claim *redis.Cmd
	_, err = c.o.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, c.plan.keys.Fence(c.o.Group))
		claim = p.Do(ctx, "XAUTOCLAIM", c.o.Stream, c.o.Group, c.o.Consumer,
			c.o.ClaimIdle.Milliseconds(), cursor, "COUNT", c.o.BatchSize)
		return nil
	})
	if err != nil {
		return nil, nil, "", fmt.Errorf("fence and xautoclaim %s %s: %w", c.o.Stream, c.o.Group, err)
	}
	v, err := claim.Slice()
	if err != nil {
		return nil, nil, "", fmt.Errorf("xautoclaim %s %s: %w", c.o.Stream, c.o.Group, err)
	}
	bad := func(what string) error {
		return fmt.Errorf("xautoclaim %s %s: unexpected reply: %s", c.o.Stream, c.o.Group, what)
	}
	if len(v) < 2 {
		return nil, nil, "", bad(fmt.Sprintf("%d elements", len(v)))
	}
	next, _ = v[0].(string)
	xs, _ := v[1].([]any)
	for _, x := range xs {
		e, _ := x.([]any)
		if len(e) < 1 {
			continue // Redis 6.2: a deleted entry is nil; it stays pending and is read again as deleted
		}
		id, _ := e[0].(string)
		m := message{id: id}
		if len(e) > 1 {
			kv, _ := e[1].([]any)
			for _, f := range kv {
				s, _ := f.(string)
				m.kv = append(m.kv, s)
			}
		}
		msgs = append(msgs, m)
	}
	if len(v) > 2 {
		ids, _ := v[2].([]any)
		for _, x := range ids {
			if id, ok := x.(string); ok {
				deleted = append(deleted, message{id: id, gone: true})
			}
		}
	}
	return msgs, deleted, next, nil
}

// pruneConsumers deletes consumers that have nothing pending and have been
// silent for PruneIdle, so restarts do not pile up names in the group. Live
// consumers poll every Block, so only names of stopped processes go.
func (c *Consumer) pruneConsumers(ctx context.Context) {
	cs, err := c.o.Client.XInfoConsumers(ctx, c.o.Stream, c.o.Group).Result()
	if err != nil {
		c.m.errors.WithLabelValues("info").Inc()
		return
	}
	for _, x := range cs {
		if x.Name == c.o.Consumer || x.Pending > 0 || x.Idle < c.o.PruneIdle {
			continue
		}
		// DELCONSUMER drops the consumer's pending entries too: recheck that
		// there are none in the same step.
		n, err := pruneScript.Run(ctx, c.o.Client, []string{c.o.Stream}, c.o.Group, x.Name).Int()
		if err != nil {
			c.m.errors.WithLabelValues("prune").Inc()
			return
		}
		if n == 1 {
			c.log.Info("removed idle consumer from the group", "removed", x.Name, "idle", x.Idle.Round(time.Second).String())
		}
	}
}

var pruneScript = redis.NewScript(`
local cs = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(cs) do
  local name, pending
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] elseif c[i] == 'pending' then pending = c[i + 1] end
  end
  if name == ARGV[2] then
    if pending == 0 then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
      return 1
    end
    return 0
  end
end
return 0
`)

// commit runs the apply script for pl; false means retry later.
func (c *Consumer) commit(ctx context.Context, pl *plan) bool {
	if len(pl.entries)+len(pl.dead)+len(pl.expired)+len(pl.repeats) == 0 {
		return true
	}
	t0 := time.Now()
	var sc sendonce.Processor = c.o.Client
	var conn *redis.Conn
	if c.o.WaitReplicas > 0 {
		// WAIT counts the replicas holding this connection's writes: the
		// script and the WAIT share one connection to the stream's master.
		var err error
		if conn, err = c.masterConn(ctx); err != nil {
			c.m.errors.WithLabelValues("apply").Inc()
			c.log.Warn("no connection to the stream's master; retrying the batch", "err", err)
			return false
		}
		defer conn.Close()
		sc = conn
	}
	v, err := runApply(ctx, sc, pl.keys, pl.args).Result()
	if err != nil {
		if cc, ok := c.o.Client.(*redis.ClusterClient); ok && conn != nil {
			cc.ReloadState(ctx) // the direct connection follows no redirection
		}
		c.m.errors.WithLabelValues("apply").Inc()
		if !c.o.OOM.Note(ctx, err, "what", "apply batch") {
			c.log.Warn("apply script failed; retrying the batch", "source", pl.source, "entries", pl.size, "err", err)
		}
		return false
	}
	c.m.applySecs.Observe(time.Since(t0).Seconds())
	c.ok()
	if conn != nil {
		got, err := conn.Wait(ctx, c.o.WaitReplicas, c.o.WaitTimeout).Result()
		if err != nil || got < int64(c.o.WaitReplicas) {
			c.m.waitShort.Inc()
			c.log.Warn("too few replicas acknowledged an applied batch; going on (a failover now may roll it back, and it is applied again from the entries)",
				"wait_replicas", c.o.WaitReplicas, "acknowledged", got, "err", err, "entries", pl.size)
		}
	}
	c.finish(ctx, pl, v)
	return true
}

// finish reports an applied batch from the script's reply v: metrics, logs,
// failed entries, OnApplied.
func (c *Consumer) finish(ctx context.Context, pl *plan, v any) {
	r, err := parseResult(pl, v)
	if err != nil { // cannot happen with apply.lua; the batch is acknowledged
		c.log.Error("apply script result", "err", err)
		return
	}
	c.m.batches.Inc()
	c.m.applied.Add(float64(len(r.applied)))
	c.m.duplicates.Add(float64(r.duplicates + len(pl.repeats)))
	if r.stale > 0 {
		c.m.stale.Add(float64(r.stale))
		c.log.Info("skipped entries another consumer took over", "source", pl.source, "entries", r.stale)
	}
	c.m.expired.Add(float64(len(pl.expired)))
	c.overflowed(r.overflow)
	deadFailed := map[int]bool{}
	for _, f := range r.deadFailed {
		deadFailed[f.index] = true
		c.log.Error("dead-letter write failed; the entry stays pending", "id", pl.dead[f.index].id, "err", f.err)
	}
	for _, i := range r.deadStale {
		deadFailed[i] = true
	}
	if len(r.deadStale) > 0 {
		c.m.stale.Add(float64(len(r.deadStale)))
		c.log.Info("skipped dead entries another process of this name took care of", "source", pl.source, "entries", len(r.deadStale))
	}
	for i, d := range pl.dead {
		if !deadFailed[i] {
			c.m.dead.WithLabelValues(d.kind).Inc()
			if d.kind == ReasonDeleted { // trimmed while pending: lost like the unread ones
				c.m.trimmed.WithLabelValues(c.o.Stream).Inc()
			}
			c.log.Warn("entry dead-lettered", "id", d.id, "reason", d.reason)
		}
	}
	nowMs := c.o.Now().UnixMilli()
	for i := range r.applied {
		if s := r.applied[i].SentMs; s > 0 && s <= nowMs {
			c.m.delaySecs.Observe(float64(nowMs-s) / 1000)
		}
	}
	if len(r.failed) > 0 {
		if pl.args[argCursorPrev] != "" {
			c.reportFailed(pl, r)
		} else {
			c.buryFailed(ctx, pl, r.failed)
		}
	}
	if len(r.applied) > 0 && c.o.OnApplied != nil {
		detach(r.applied)
		c.callOnApplied(ctx, r.applied)
	}
}

// runApply runs the apply script as Script.Run does (EVALSHA, then EVAL if
// the server does not have it), each call sent at most once. go-redis must
// not send it again by itself after a timeout or a broken connection: a
// call sent again unchanged carries the fence its batch was read with, so
// the script trusts the batch is still its own and counts it a second time
// (version 3 and later entries: a chunk seen under the same attempt is not
// a retry). Only commit's caller retries, with the fence cleared, which
// makes the script check each entry is still pending.
func runApply(ctx context.Context, p sendonce.Processor, keys []string, args []any) *redis.Cmd {
	cmd := sendonce.Eval(ctx, p, "evalsha", applyScript.Hash(), keys, args)
	if err := cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		cmd = sendonce.Eval(ctx, p, "eval", applySource, keys, args)
	}
	return cmd
}

// buryFailed dead-letters entries the script could not count (a key of the
// wrong type, a counter overflow). They stay pending if that fails too, and
// come back through a claim.
func (c *Consumer) buryFailed(ctx context.Context, pl *plan, failed []failure) {
	dl := &plan{source: "apply-failure"}
	for _, f := range failed {
		if f.index < 0 || f.index >= len(pl.msgs) {
			continue
		}
		dl.dead = append(dl.dead, deadOf(pl.msgs[f.index], ReasonApply, "apply: "+f.err))
	}
	dl.size = len(dl.dead)
	c.plan.layout(dl)
	if !c.commit(ctx, dl) {
		c.log.Error("could not dead-letter entries that failed to apply; they stay pending", "entries", len(dl.dead))
	}
}

// detach copies the entries' strings out of the read reply they are
// substrings of, so that what OnApplied keeps does not pin whole replies.
// The copies go into one buffer per batch, and the samples' headers into one
// slice, instead of an allocation per string: two allocations a batch, not
// three an entry. A string equal to the previous entry's same field (a
// chunk's entries are adjacent and share its id, host, tag, producer and
// attempt) shares its copy. What OnApplied keeps of one entry keeps the
// batch's buffer (the applied entries' strings, not the whole reply).
func detach(es []stream.Entry) {
	size, nSamples := 0, 0
	for i := range es {
		e := &es[i]
		size += len(e.Batch) + len(e.Keyword.Text) + len(e.Tag) + len(e.Host) + len(e.Producer) + len(e.Attempt)
		for _, l := range e.Labels {
			size += len(l.Name) + len(l.Value)
		}
		for _, s := range e.Samples {
			size += len(s)
		}
		nSamples += len(e.Samples)
	}
	buf := make([]byte, 0, size)
	clone := func(s string) string {
		if s == "" {
			return ""
		}
		off := len(buf)
		buf = append(buf, s...) // within cap: never moves what earlier strings point to
		return unsafe.String(&buf[off], len(s))
	}
	// last returns the copy of s made for the previous entry's same field,
	// or a new one.
	last := func(prev *string, s string) string {
		if *prev != s {
			*prev = clone(s)
		}
		return *prev
	}
	var pBatch, pTag, pHost, pProducer, pAttempt, pKeyword string
	var pLabels []stream.Label // copies of the previous entries' labels, by index
	samples := make([]string, nSamples)
	for i := range es {
		e := &es[i]
		e.Batch, e.Keyword.Text = last(&pBatch, e.Batch), last(&pKeyword, e.Keyword.Text)
		e.Tag, e.Host = last(&pTag, e.Tag), last(&pHost, e.Host)
		e.Producer, e.Attempt = last(&pProducer, e.Producer), last(&pAttempt, e.Attempt)
		for j := range e.Labels {
			if j == len(pLabels) {
				pLabels = append(pLabels, stream.Label{})
			}
			l := &e.Labels[j]
			l.Name, l.Value = last(&pLabels[j].Name, l.Name), last(&pLabels[j].Value, l.Value)
		}
		if e.Samples != nil {
			// A slice of its own (the plan's entries may share the old one),
			// capped so that an append to it cannot reach the next entry's.
			ss := samples[:len(e.Samples):len(e.Samples)]
			samples = samples[len(e.Samples):]
			for j, s := range e.Samples {
				ss[j] = clone(s)
			}
			e.Samples = ss
		}
	}
}

func (c *Consumer) callOnApplied(ctx context.Context, applied []stream.Entry) {
	c.hook.Lock()
	defer c.hook.Unlock()
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("OnApplied panicked", "panic", fmt.Sprint(p))
		}
	}()
	c.o.OnApplied(ctx, applied)
}

// observe checks for entries trimmed unread and refreshes the lag and
// pending gauges every few seconds.
func (c *Consumer) observe(ctx, work context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		c.refreshGauges(work)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

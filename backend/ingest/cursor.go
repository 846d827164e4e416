package ingest

// Reading by cursor (Options.Read = ReadCursor, the default). New entries are
// read with XRANGE after the group's last-delivered-id, the cursor; the apply
// script counts a batch only if the cursor is still the id the batch was read
// after, and moves it to the batch's last id in the same atomic step
// (apply.lua, "Cursor mode"). No entry is delivered or pending: no
// XREADGROUP delivery, no XPENDING, no XACK, which is most of what the
// group's path costs Redis per entry. A reader stalled past its batch, a
// second reader, a batch sent twice: each fails the check and reads again,
// so a batch is applied once whoever sends it.
//
// Batches of a stream apply in order: one reader reads and plans the next
// batches while one applier sends those ready, several per round trip.
// Entries the script cannot count are dead-lettered by the script itself,
// in the step that moves the cursor past them. A batch whose script fails
// with an error reply is read again at half the size, down to one entry;
// an entry that fails alone cursorMaxFailures times is dead-lettered alone,
// so one entry never holds the stream up.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/keyalert/keyalert/pkg/backoff"
	"github.com/keyalert/keyalert/pkg/respconn"
	"github.com/keyalert/keyalert/pkg/sendonce"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// How new entries are read (Options.Read).
const (
	ReadCursor = "cursor" // XRANGE after the group's id, checked and moved by the apply script
	ReadGroup  = "group"  // the group's delivery and pending list, acknowledged by the apply script
)

// cursorDepth is how many planned batches wait for the applier, and how many
// scripts are in flight (or sent in one go-redis pipeline). With the batch
// being read, the one being written, the one whose reply is handled and the
// 2*cursorDepth applied ones waiting to be reported, a stream holds at most
// 5*cursorDepth batches (KEYALERT_BATCH_SIZE's documented bound).
const cursorDepth = 4

// cursorMaxFailures: an entry whose script fails this many times alone is
// dead-lettered.
const cursorMaxFailures = 3

// readBatch is a planned batch on its way to the applier; epoch is the
// reader's start it was read in: batches of an older start are dropped.
type readBatch struct {
	pl    *plan
	epoch int64
	after string // the cursor it was read after
	last  string // its last entry's id
	t0    time.Time
}

// cursorState is what the applier tells the reader when it must start
// again: the cursor, and the most entries to read per batch.
type cursorState struct {
	cursor string
	limit  int   // 0: BatchSize
	epoch  int64 // set by startAgain
}

// runCursor consumes new entries by the cursor until ctx ends, then
// finishes the batches already sent. Entries pending in the group are
// claimed on the side (claimLoop).
func (c *Consumer) runCursor(ctx, work context.Context) {
	var cursor string
	if !c.retry(ctx, "cursor", func() (err error) {
		cursor, err = c.groupCursor(work)
		return err
	}) {
		return
	}
	c.log.Debug("consuming by cursor", "cursor", cursor)
	// The applier sends EVALSHA only (in pipelines, where go-redis cannot
	// fall back to EVAL): load the script first, on every master.
	c.retry(ctx, "script load", func() error { return c.loadScript(work) })

	r := &cursorRun{c: c, restart: make(chan cursorState, 1)}
	batches := make(chan readBatch, cursorDepth)
	done := make(chan func(), 2*cursorDepth)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		defer close(batches)
		r.read(ctx, work, cursorState{cursor: cursor, limit: c.o.BatchSize}, batches)
	}()
	go func() { // reports and OnApplied, off the applier's path
		defer wg.Done()
		for f := range done {
			f()
		}
	}()
	go func() {
		defer wg.Done()
		c.claimLoop(ctx, work)
	}()
	r.apply(work, batches, done)
	close(done)
	wg.Wait()
}

// claimLoop claims, every ClaimInterval, entries pending in the group that
// their consumer left idle (an older keyalertd reading by the group that
// stopped), and prunes consumers gone.
func (c *Consumer) claimLoop(ctx, work context.Context) {
	t := time.NewTicker(c.o.ClaimInterval)
	defer t.Stop()
	for {
		c.claim(ctx, work)
		c.pruneConsumers(work)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// cursorRun is the state the reader and the applier share.
type cursorRun struct {
	c *Consumer
	// reader is the reader's connection of its own (cursor_raw.go), nil
	// until dialled and after it failed.
	reader *respconn.Conn
	// epoch counts the applier's restarts; the reader tags batches with it.
	mu      sync.Mutex
	epoch   int64
	restart chan cursorState // the latest restart, for the reader
}

func (r *cursorRun) currentEpoch() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epoch
}

// startAgain drops the batches in flight and has the reader start again
// from st.
func (r *cursorRun) startAgain(st cursorState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.epoch++
	st.epoch = r.epoch
	select {
	case <-r.restart:
	default:
	}
	r.restart <- st
}

// read reads and plans batches after st.cursor until ctx ends, starting
// again from where the applier says.
func (r *cursorRun) read(ctx, work context.Context, st cursorState, out chan<- readBatch) {
	c := r.c
	ep := r.currentEpoch()
	retry := backoff.New(backoff.Policy{})
	raw := c.rawConns()
	defer func() {
		if r.reader != nil {
			r.reader.Close()
		}
	}()
	for ctx.Err() == nil {
		select {
		case s := <-r.restart:
			st, ep = s, s.epoch
		default:
		}
		// Counted from before the read to the end of its apply, so that a
		// read finding nothing new knows no batch is left unapplied.
		if st.limit <= 0 {
			st.limit = c.o.BatchSize
		}
		c.inflight.Add(1)
		var msgs []message
		var err error
		if raw {
			msgs, err = r.readRangeRaw(work, st.cursor, st.limit)
		} else {
			msgs, err = c.readRange(work, st.cursor, st.limit)
		}
		if err == nil && len(msgs) == 0 {
			if c.inflight.Add(-1) == 0 {
				c.caughtUp.Store(true)
			}
			msgs, err = c.readBlocking(ctx, st.cursor, st.limit)
			c.inflight.Add(1)
		}
		if err != nil {
			c.inflight.Add(-1)
			if ctx.Err() != nil {
				return
			}
			c.m.errors.WithLabelValues("read").Inc()
			if !c.o.OOM.Note(ctx, err, "what", "read") {
				c.log.Warn("cursor read failed; retrying", "err", err, "cursor", st.cursor, "attempt", retry.Attempt()+1)
			}
			if strings.Contains(err.Error(), "no such key") {
				// The stream was deleted: its group goes with it.
				_ = c.ensureGroup(work)
			}
			retry.Wait(ctx)
			continue
		}
		retry.Reset()
		c.ok()
		if len(msgs) == 0 {
			c.inflight.Add(-1)
			continue
		}
		pl := c.plan.build("new", msgs, nil, c.o.Now(), "")
		last := msgs[len(msgs)-1].id
		pl.args[argCursorPrev], pl.args[argCursorLast], pl.args[argCursorRead] = st.cursor, last, len(msgs)
		b := readBatch{pl: pl, epoch: ep, after: st.cursor, last: last}
		// Batches cut small to find an entry that fails the script grow
		// back as they pass.
		st.cursor, st.limit = last, min(c.o.BatchSize, 2*st.limit)
		select {
		case out <- b:
		case <-ctx.Done():
			c.inflight.Add(-1)
			return
		}
	}
}

// readRange reads up to limit entries after cursor with XRANGE, the reply
// parsed as readGroup does (one copy of the reply, strings viewing it).
func (c *Consumer) readRange(ctx context.Context, cursor string, limit int) ([]message, error) {
	buf := bytes.NewBuffer(make([]byte, 0, c.replySize.Load()*9/8+1024))
	cmd := redis.NewRawWriteToCmd(ctx, buf, "XRANGE", c.o.Stream, "("+cursor, "+", "COUNT", limit)
	if err := c.o.Client.Process(ctx, cmd); err != nil {
		return nil, fmt.Errorf("xrange %s (%s: %w", c.o.Stream, cursor, err)
	}
	raw := buf.Bytes()
	c.replySize.Store(int64(len(raw)))
	msgs, err := parseRangeReply(unsafe.String(unsafe.SliceData(raw), len(raw)))
	if err != nil {
		return nil, fmt.Errorf("xrange %s (%s: %w", c.o.Stream, cursor, err)
	}
	return msgs, nil
}

// readBlocking waits up to Block for entries after cursor (XREAD BLOCK),
// less when a claim is due sooner.
func (c *Consumer) readBlocking(ctx context.Context, cursor string, limit int) ([]message, error) {
	res, err := c.o.Client.XRead(ctx, &redis.XReadArgs{Streams: []string{c.o.Stream, cursor},
		Count: int64(limit), Block: c.o.Block}).Result()
	if errors.Is(err, redis.Nil) || (err != nil && ctx.Err() != nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("xread %s %s: %w", c.o.Stream, cursor, err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	return fromXMessages(res[0].Messages), nil
}

// apply sends the planned batches in order until in is closed: on a
// connection of its own with several scripts in flight (applyRaw), or with
// go-redis, those ready together in one pipeline per round trip (with
// KEYALERT_WAIT_REPLICAS, whose WAIT must follow on the scripts' connection,
// and for clients other than a single server or a cluster).
func (r *cursorRun) apply(work context.Context, in <-chan readBatch, done chan<- func()) {
	a := &replies{r: r, retry: backoff.New(backoff.Policy{}), done: done}
	if r.c.o.WaitReplicas == 0 && r.c.rawConns() {
		a.applyRaw(work, in)
		return
	}
	for b := range in {
		group := []readBatch{b}
	more:
		for len(group) < cursorDepth {
			select {
			case b, ok := <-in:
				if !ok {
					break more
				}
				group = append(group, b)
			default:
				break more
			}
		}
		ep := r.currentEpoch()
		var sent []readBatch
		for _, b := range group {
			if b.epoch != ep {
				r.drop(b)
				continue
			}
			sent = append(sent, b)
		}
		if len(sent) == 0 {
			continue
		}
		for k, cmd := range r.c.sendBatches(work, sent) {
			v, err := cmd.Result()
			a.handle(work, sent[k], v, err)
		}
	}
}

func (r *cursorRun) drop(readBatch) { r.c.inflight.Add(-1) }

// replies handles the applier's replies, in the order the batches were
// sent.
type replies struct {
	r     *cursorRun
	retry *backoff.Backoff
	done  chan<- func()
	// failAt is the cursor of the last batch of one entry that failed the
	// script, failures how many times in a row it did.
	failAt   string
	failures int
	// lastCur is the group's cursor as last read after a failure: batches
	// that failed with it (sent before the restart) are checked against it.
	lastCur string
}

// handle takes batch b's reply v or error err. A batch applied is
// reported (whatever the reader's epoch: it was applied). The first
// failure among the batches of the reader's current epoch makes the reader
// start again; the batches sent after it fail as expected and are dropped.
func (a *replies) handle(work context.Context, b readBatch, v any, err error) {
	r, c := a.r, a.r.c
	if err == nil {
		if cur, moved := cursorMoved(v); moved {
			r.drop(b)
			if b.epoch == r.currentEpoch() {
				r.startAgain(*r.movedUnder(work, b, cur))
			}
			return
		}
		c.m.applySecs.Observe(time.Since(b.t0).Seconds())
		c.ok()
		a.retry.Reset()
		pl := b.pl
		a.done <- func() { c.finish(work, pl, v); c.inflight.Add(-1) }
		return
	}
	r.drop(b)
	var rerr redis.Error
	reply := errors.As(err, &rerr) // else the call may or may not have run
	if b.epoch != r.currentEpoch() {
		if !reply {
			r.lostReply(work, b, a.lastCur, a.done)
		}
		return
	}
	fault := reply && scriptFault(err)
	noscript := strings.HasPrefix(err.Error(), "NOSCRIPT")
	switch {
	case noscript: // Redis restarted or flushed its scripts: not an error
		c.log.Info("apply script not loaded in Redis; loading it and reading again", "err", err)
		if lerr := c.loadScript(work); lerr != nil {
			c.log.Warn("apply script load failed", "err", lerr)
		}
	case c.o.OOM.Note(work, err, "what", "apply batch"):
		c.m.errors.WithLabelValues("apply").Inc()
	case fault:
		c.m.errors.WithLabelValues("apply").Inc()
		c.log.Warn("apply script failed; reading the batch again at half the size", "err", err,
			"entries", b.pl.size, "after", b.after)
	default:
		c.m.errors.WithLabelValues("apply").Inc()
		c.log.Warn("apply script failed; reading again from the cursor", "err", err, "entries", b.pl.size)
	}
	// Start again from the group's cursor (the check makes a resend safe).
	cur, gerr := c.groupCursor(work)
	for gerr != nil {
		if a.retry.Wait(work) != nil {
			c.log.Warn("giving up at shutdown; the entries after the cursor are read by the next run", "cursor", b.after)
			return
		}
		cur, gerr = c.groupCursor(work)
	}
	a.lastCur = cur
	if !reply {
		r.lostReply(work, b, cur, a.done)
	}
	st := cursorState{cursor: cur}
	wait := (!fault && !noscript) || b.pl.size == 1
	if fault && cur == b.after {
		st.limit = max(1, b.pl.size/2)
		if b.pl.size == 1 {
			if cur != a.failAt {
				a.failAt, a.failures = cur, 0
			}
			if a.failures++; a.failures >= cursorMaxFailures {
				c.buryAlone(work, b, err)
				a.failAt, a.failures, st.limit = "", 0, 0
				if cur, gerr = c.groupCursor(work); gerr == nil {
					st.cursor = cur
				}
			}
		}
	}
	if wait {
		a.retry.Wait(work)
	}
	r.startAgain(st)
}

// movedUnder handles a batch whose check failed: the group's cursor was
// cur, not the id the batch was read after (another reader went past it).
// The reader starts again at cur.
func (r *cursorRun) movedUnder(work context.Context, b readBatch, cur string) *cursorState {
	c := r.c
	c.m.stale.Add(float64(b.pl.size))
	c.log.Debug("cursor moved under the batch; reading again", "cursor", cur, "batch_after", b.after)
	if cur == "" { // no group: the stream was deleted and written again
		if err := c.ensureGroup(work); err != nil {
			c.log.Warn("re-creating the consumer group", "err", err)
		}
		cur = "0-0"
	}
	return &cursorState{cursor: cur}
}

// lostReply hands OnApplied the entries of a batch whose call failed
// without a reply but whose range the cursor has passed since: the call
// ran (the apply is sent once, never resent by the client). Its entries
// may include plugin retries the script did not count; the engine's
// wake-up for those is harmless, a batch never seen is a late minute never
// judged.
func (r *cursorRun) lostReply(work context.Context, b readBatch, cur string, done chan<- func()) {
	c := r.c
	if c.o.OnApplied == nil || !idLess(b.after, cur) || idLess(cur, b.last) || len(b.pl.entries) == 0 {
		return
	}
	c.log.Info("a batch's reply was lost, but the batch was applied", "entries", b.pl.size, "last", b.last)
	es := append([]stream.Entry(nil), b.pl.entries...)
	done <- func() { detach(es); c.callOnApplied(work, es) }
}

// sendBatches sends the batches' scripts in one pipeline, on the stream's
// master with a WAIT after them when WaitReplicas asks for it.
func (c *Consumer) sendBatches(work context.Context, bs []readBatch) []*redis.Cmd {
	var p redis.Pipeliner
	var conn *redis.Conn
	if c.o.WaitReplicas > 0 {
		var err error
		if conn, err = c.masterConn(work); err != nil {
			cmds := make([]*redis.Cmd, len(bs))
			for k := range cmds {
				cmds[k] = redis.NewCmd(work)
				cmds[k].SetErr(err)
			}
			return cmds
		}
		defer conn.Close()
		p = conn.Pipeline()
	} else {
		p = c.o.Client.Pipeline()
	}
	cmds := make([]*redis.Cmd, len(bs))
	for k := range bs {
		bs[k].t0 = time.Now()
		// Sent once: a resend is safe (it fails the check) but would hide
		// from lostReply that the first one ran.
		cmds[k] = sendonce.Eval(work, p, "evalsha", applyScript.Hash(), bs[k].pl.keys, bs[k].pl.args)
	}
	_, _ = p.Exec(work) // errors per command
	if conn != nil && cmds[len(cmds)-1].Err() == nil {
		got, err := conn.Wait(work, c.o.WaitReplicas, c.o.WaitTimeout).Result()
		if err != nil || got < int64(c.o.WaitReplicas) {
			c.m.waitShort.Inc()
			c.log.Warn("too few replicas acknowledged applied batches; going on (a failover now may roll them back, and they are applied again from the entries)",
				"wait_replicas", c.o.WaitReplicas, "acknowledged", got, "err", err, "batches", len(bs))
		}
	}
	if cc, ok := c.o.Client.(*redis.ClusterClient); ok && conn != nil {
		for _, cmd := range cmds {
			if cmd.Err() != nil {
				cc.ReloadState(work) // the direct connection follows no redirection
				break
			}
		}
	}
	return cmds
}

// cursorMoved reports whether v is the script's answer to a failed cursor
// check, {"c", cursor}, and the cursor it found ("" for no group).
func cursorMoved(v any) (string, bool) {
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 {
		return "", false
	}
	if f, _ := arr[0].(string); f != "c" {
		return "", false
	}
	cur, _ := arr[1].(string)
	return cur, true
}

// scriptFault reports whether err, an error reply to the apply script, may
// come from the batch's data (the script itself failing on it) rather than
// from the server's state, which reading a smaller batch would not help.
func scriptFault(err error) bool {
	msg := err.Error()
	for _, p := range []string{"NOSCRIPT", "OOM", "BUSY", "LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN",
		"TRYAGAIN", "MOVED", "ASK", "NOREPLICAS", "NOGROUP", "MISCONF"} {
		if strings.HasPrefix(msg, p) {
			return false
		}
	}
	return !strings.Contains(msg, "no such key")
}

// buryAlone dead-letters b's first entry, which failed the script alone
// cursorMaxFailures times, and moves the cursor past it in one step.
func (c *Consumer) buryAlone(work context.Context, b readBatch, cause error) {
	m := b.pl.msgs[0]
	dl := &plan{source: "apply-failure"}
	dl.dead = append(dl.dead, deadOf(m, ReasonApply, fmt.Sprintf("apply: failed %d times alone: %v", cursorMaxFailures, cause)))
	dl.size = 1
	c.plan.layout(dl)
	dl.args[argCursorPrev], dl.args[argCursorLast], dl.args[argCursorRead] = b.after, m.id, 1
	v, err := runApply(work, c.o.Client, dl.keys, dl.args).Result()
	if err != nil {
		c.m.errors.WithLabelValues("apply").Inc()
		c.log.Error("could not dead-letter an entry that fails to apply; trying again", "id", m.id, "err", err)
		return
	}
	if _, moved := cursorMoved(v); moved {
		return // another reader went past it
	}
	c.finish(work, dl, v)
}

// reportFailed logs and counts, in cursor mode, the entries the script
// could not count: it dead-lettered them itself, or lost them if that
// failed too.
func (c *Consumer) reportFailed(pl *plan, r result) {
	lost := map[int]string{}
	for _, f := range r.lost {
		lost[f.index] = f.err
	}
	for _, f := range r.failed {
		id := pl.msgs[f.index].id
		if e, ok := lost[f.index]; ok {
			c.m.errors.WithLabelValues("dead").Inc()
			c.log.Error("entry could not be counted nor dead-lettered: it is lost", "id", id, "err", f.err, "dead_letter_err", e)
			continue
		}
		c.m.dead.WithLabelValues(ReasonApply).Inc()
		c.log.Warn("entry dead-lettered", "id", id, "reason", "apply: "+f.err)
	}
}

// loadScript loads the apply script (on every master of a cluster).
func (c *Consumer) loadScript(ctx context.Context) error {
	if err := applyScript.Load(ctx, c.o.Client).Err(); err != nil {
		return fmt.Errorf("script load: %w", err)
	}
	return nil
}

// groupCursor is the group's last-delivered-id, the group created if it is
// missing.
func (c *Consumer) groupCursor(ctx context.Context) (string, error) {
	for try := 0; ; try++ {
		gs, err := c.o.Client.XInfoGroups(ctx, c.o.Stream).Result()
		if err != nil && (try > 0 || !strings.Contains(err.Error(), "no such key")) {
			return "", fmt.Errorf("xinfo groups %s: %w", c.o.Stream, err)
		}
		for _, g := range gs {
			if g.Name == c.o.Group {
				return g.LastDeliveredID, nil
			}
		}
		if try > 0 {
			return "", fmt.Errorf("xinfo groups %s: no group %s", c.o.Stream, c.o.Group)
		}
		if err := c.ensureGroup(ctx); err != nil {
			return "", err
		}
	}
}

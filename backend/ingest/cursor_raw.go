package ingest

// The cursor's reads and applies on connections of their own to the
// stream's master (package respconn) instead of go-redis's: the reader's
// XRANGE reply is read whole into one buffer, and the applier writes each
// script as soon as it is planned, up to cursorDepth ahead of their replies,
// so Redis goes from one batch to the next without waiting for keyalertd.
// One connection keeps the scripts in the order the batches were read,
// which the cursor check needs. go-redis's copy of each bulk string and
// its boxed arguments were ~1.4 µs of keyalertd's CPU per entry
// (bench/backend.md).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keyalert/keyalert/pkg/respconn"
	"github.com/redis/go-redis/v9"
)

// rawConns reports whether the client lets the cursor open connections of
// its own: a single server (sentinel's failover client included) or a
// cluster.
func (c *Consumer) rawConns() bool {
	switch c.o.Client.(type) {
	case *redis.Client, *redis.ClusterClient:
		return true
	}
	return false
}

// dialMaster opens a connection of its own to the master of the stream's
// slot.
func (c *Consumer) dialMaster(ctx context.Context) (*respconn.Conn, error) {
	var o *redis.Options
	switch cl := c.o.Client.(type) {
	case *redis.ClusterClient:
		node, err := cl.MasterForKey(ctx, c.o.Stream)
		if err != nil {
			return nil, fmt.Errorf("master of %s: %w", c.o.Stream, err)
		}
		o = node.Options()
	case *redis.Client:
		o = cl.Options()
	default:
		return nil, fmt.Errorf("no connection of its own with a %T", c.o.Client)
	}
	return respconn.Dial(ctx, o)
}

// elsewhere reports whether err says the stream is served elsewhere now
// (a cluster's slot moved, a master became a replica): the connection is
// dropped and the next one dialled to the master of now.
func (c *Consumer) elsewhere(ctx context.Context, err error) bool {
	msg := err.Error()
	for _, p := range []string{"MOVED", "ASK", "READONLY", "CLUSTERDOWN", "TRYAGAIN"} {
		if strings.HasPrefix(msg, p) {
			if cc, ok := c.o.Client.(*redis.ClusterClient); ok {
				cc.ReloadState(ctx)
			}
			return true
		}
	}
	return false
}

// readRangeRaw is readRange on the reader's connection of its own.
func (r *cursorRun) readRangeRaw(ctx context.Context, cursor string, limit int) ([]message, error) {
	c := r.c
	if r.reader == nil {
		rc, err := c.dialMaster(ctx)
		if err != nil {
			return nil, fmt.Errorf("xrange %s: %w", c.o.Stream, err)
		}
		r.reader = rc
	}
	rc := r.reader
	rc.Command(6)
	rc.String("XRANGE")
	rc.String(c.o.Stream)
	rc.String("(" + cursor)
	rc.String("+")
	rc.String("COUNT")
	rc.Arg(limit)
	err := rc.Flush()
	var raw []byte
	if err == nil {
		// A buffer of its own per read, sized from the last reply: the
		// messages' strings are views of it.
		raw, err = rc.ReadRaw(make([]byte, 0, c.replySize.Load()*9/8+1024))
	}
	if err != nil {
		var rerr redis.Error
		if !errors.As(err, &rerr) || c.elsewhere(ctx, err) {
			rc.Close()
			r.reader = nil
		}
		return nil, fmt.Errorf("xrange %s (%s: %w", c.o.Stream, cursor, err)
	}
	c.replySize.Store(int64(len(raw)))
	msgs, err := parseRangeReply(unsafe.String(unsafe.SliceData(raw), len(raw)))
	if err != nil {
		return nil, fmt.Errorf("xrange %s (%s: %w", c.o.Stream, cursor, err)
	}
	return msgs, nil
}

// inFlight is a batch written on conn (nil: the dial failed with err).
type inFlight struct {
	b    readBatch
	conn *respconn.Conn
	err  error
}

// applyRaw sends the batches on a connection of its own, each written as
// soon as it comes and flushed when no other is waiting, up to cursorDepth
// ahead of their replies, which it reads in order. A connection that fails
// is closed (by the reader of the replies, or at the writer's flush), its
// batches in flight fail with it, and the next batch goes on a new one.
func (a *replies) applyRaw(work context.Context, in <-chan readBatch) {
	r, c := a.r, a.r.c
	flight := make(chan inFlight, cursorDepth)
	var dead atomic.Pointer[respconn.Conn] // the last connection the replies' reader closed
	sha := applyScript.Hash()
	go func() { // the writer
		defer close(flight)
		var conn *respconn.Conn
		defer func() {
			if conn != nil {
				conn.Flush()
			}
		}()
		var failed error // the last flush's error: the batches after it fail too
		flush := func() {
			if conn != nil && conn.Buffered() > 0 {
				if err := conn.Flush(); err != nil {
					failed = err
					conn.Close() // the reader's next read on it fails at once
				}
			}
		}
		for {
			var b readBatch
			var ok bool
			select {
			case b, ok = <-in:
			default:
				flush()
				b, ok = <-in
			}
			if !ok {
				return
			}
			if b.epoch != r.currentEpoch() {
				r.drop(b)
				continue
			}
			if failed != nil || (conn != nil && dead.Load() == conn) {
				conn, failed = nil, nil
			}
			if conn == nil {
				var err error
				if conn, err = c.dialMaster(work); err != nil {
					conn = nil
					flight <- inFlight{b: b, err: fmt.Errorf("apply: %w", err)}
					continue
				}
			}
			b.t0 = time.Now()
			conn.Command(3 + len(b.pl.keys) + len(b.pl.args))
			conn.String("EVALSHA")
			conn.String(sha)
			conn.Arg(len(b.pl.keys))
			for _, k := range b.pl.keys {
				conn.String(k)
			}
			for _, v := range b.pl.args {
				conn.Arg(v)
			}
			select {
			case flight <- inFlight{b: b, conn: conn}:
			default:
				flush()
				flight <- inFlight{b: b, conn: conn}
			}
		}
	}()
	for f := range flight {
		var v any
		err := f.err
		if f.conn != nil {
			v, err = f.conn.Read()
			var rerr redis.Error
			if err != nil && (!errors.As(err, &rerr) || c.elsewhere(work, err)) {
				f.conn.Close()
				dead.Store(f.conn) // the writer dials anew for its next batch
			}
		}
		a.handle(work, f.b, v, err)
	}
}

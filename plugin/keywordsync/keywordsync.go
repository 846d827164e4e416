// Package keywordsync follows the keyword set the backend publishes in Redis.
// A Follower polls the set key, and whenever the document changes it compiles
// the static keywords plus the published ones into a new matcher and swaps it
// in atomically; flushes pick up the current matcher without locking. A bad
// document is logged and the previous matcher kept; an unreachable Redis
// leaves the last good matcher (at first: the static keywords) in place.
//
// A poll first reads only the document's sum (keyword.SumPrefixLen bytes,
// GETRANGE) and reads the whole document only when the sum differs from the
// one last applied, so an unchanged set costs about 50 bytes per poll instead
// of the whole document. A document without a verified sum (an older
// keyalertd, or one written by hand) is read whole at every poll, as before.
//
// The document also carries the stream shard count keyalertd consumes
// (KEYALERT_STREAM_SHARDS); Shards reports the last one read, 1 until a
// document names more, so a change of it reaches every agent within one
// Rules_Interval with no key of its own.
package keywordsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/match"
	"github.com/keyalert/keyalert/pkg/streamshard"
	"github.com/redis/go-redis/v9"
)

// Follower keeps the effective matcher: static ∪ published keywords.
type Follower struct {
	rdb      redis.Cmdable
	key      string // "" when not following
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger
	static   []keyword.Spec

	cur    atomic.Pointer[match.Matcher]
	shards atomic.Int32 // stream shards of the last document applied; 0 means 1

	mu          sync.Mutex // serialises polls and guards the fields below
	seen        bool       // a poll has read the key (present or missing)
	lastMissing bool       // the key was missing at the last read
	lastDoc     []byte     // the document last applied or rejected, kept only without lastSum
	lastSum     string     // verified sum of that document; "" when it had none
	failing     bool       // the last poll could not reach Redis

	// ctx is cancelled by Stop; polls derive from it, so Stop also cuts a
	// poll in flight short.
	ctx      context.Context
	cancel   context.CancelFunc
	running  atomic.Bool
	stopOnce sync.Once
	done     chan struct{}
}

// Options configure a follower.
type Options struct {
	Static []keyword.Spec
	// Key is the Redis key holding the published set; "" disables following.
	Key      string
	Interval time.Duration
	// Timeout bounds one poll.
	Timeout time.Duration
	Log     *slog.Logger
}

// New compiles the static keywords. It does not touch Redis; call Start.
func New(rdb redis.Cmdable, opt Options) (*Follower, error) {
	m, err := match.Compile(opt.Static)
	if err != nil {
		return nil, fmt.Errorf("static keywords: %w", err)
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	f := &Follower{
		rdb: rdb, key: opt.Key, interval: opt.Interval, timeout: opt.Timeout, log: opt.Log,
		static: opt.Static, done: make(chan struct{}),
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.cur.Store(m)
	return f, nil
}

// Matcher returns the current matcher; it never returns nil.
func (f *Follower) Matcher() *match.Matcher { return f.cur.Load() }

// Shards is the stream shard count of the last document applied: 1 before
// any, for a missing key, and without following.
func (f *Follower) Shards() int { return max(int(f.shards.Load()), 1) }

// Start polls once right away (so published keywords apply to the first
// flush when Redis is up) and then every interval in a goroutine, until Stop.
// Without a key it does nothing. Call it at most once.
func (f *Follower) Start() {
	if f.key == "" || f.ctx.Err() != nil {
		return
	}
	if err := f.pollWithTimeout(); err != nil && f.ctx.Err() == nil {
		f.log.Warn("keyword set not read at start; using the static keywords until it is",
			"rules_key", f.key, "static", len(f.static), "err", err)
	}
	f.running.Store(true)
	go f.run()
}

func (f *Follower) run() {
	defer close(f.done)
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
			f.pollWithTimeout()
		}
	}
}

// Stop ends the polling goroutine and waits for it. It is safe to call more
// than once, and without Start.
func (f *Follower) Stop() {
	f.stopOnce.Do(func() {
		f.cancel()
		if f.running.Load() {
			<-f.done
		}
	})
}

func (f *Follower) pollWithTimeout() error {
	ctx, cancel := context.WithTimeout(f.ctx, f.timeout)
	defer cancel()
	return f.Poll(ctx)
}

// Poll reads the set key once and swaps in a new matcher if the document
// changed. It returns an error only when Redis could not be read; a bad
// document is logged and leaves the matcher as it was.
func (f *Follower) Poll(ctx context.Context) error {
	if f.key == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen && f.lastSum != "" {
		prefix, err := f.rdb.GetRange(ctx, f.key, 0, int64(keyword.SumPrefixLen-1)).Bytes()
		if err != nil {
			return f.readFailed(err)
		}
		f.readOK()
		if sum, ok := keyword.PeekSum(prefix); ok && sum == f.lastSum {
			return nil // unchanged: nothing to transfer or compile
		}
	}
	doc, err := f.rdb.Get(ctx, f.key).Bytes()
	missing := errors.Is(err, redis.Nil)
	if err != nil && !missing {
		return f.readFailed(err)
	}
	f.readOK()
	sum, summed := keyword.VerifiedSum(doc)
	if f.seen && missing == f.lastMissing && (summed && sum == f.lastSum || !summed && f.lastSum == "" && bytes.Equal(doc, f.lastDoc)) {
		return nil // unchanged: nothing to compile
	}
	f.seen, f.lastMissing, f.lastSum, f.lastDoc = true, missing, sum, doc
	if summed {
		f.lastDoc = nil // the sum stands for it; do not keep a large set twice
	}

	var published []keyword.Spec
	shards := 1
	if !missing {
		set, err := keyword.DecodeSetDoc(doc)
		if err == nil && set.Shards > streamshard.Max {
			err = fmt.Errorf("shards %d over the limit of %d", set.Shards, streamshard.Max)
		}
		if err != nil {
			f.log.Error("bad keyword set document; keeping the previous keywords", "rules_key", f.key, "err", err)
			return nil
		}
		published, shards = set.Keywords, set.Shards
	}
	if old := f.Shards(); old != shards {
		f.shards.Store(int32(shards))
		f.log.Info("stream shards changed", "rules_key", f.key, "shards", shards, "before", old)
	}
	specs := Union(f.static, published)
	m, err := match.Compile(specs)
	if err != nil {
		f.log.Error("keyword set does not compile; keeping the previous keywords", "rules_key", f.key, "err", err)
		return nil
	}
	f.cur.Store(m)
	f.log.Info("keywords updated", "rules_key", f.key, "static", len(f.static),
		"published", len(published), "effective", len(specs), "key_missing", missing)
	return nil
}

func (f *Follower) readFailed(err error) error {
	if f.ctx.Err() != nil {
		return err // stopping: not an outage
	}
	if !f.failing {
		f.failing = true
		f.log.Warn("cannot read the keyword set; keeping the current keywords", "rules_key", f.key, "err", err)
	}
	return fmt.Errorf("get %s: %w", f.key, err)
}

func (f *Follower) readOK() {
	if f.failing {
		f.failing = false
		f.log.Info("keyword set readable again", "rules_key", f.key)
	}
}

// Union is static followed by published, canonical, without repeating an ID.
func Union(static, published []keyword.Spec) []keyword.Spec {
	out := make([]keyword.Spec, 0, len(static)+len(published))
	seen := make(map[string]bool, cap(out))
	for _, list := range [][]keyword.Spec{static, published} {
		for _, s := range list {
			s = s.Canonical()
			if id := s.ID(); !seen[id] {
				seen[id] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// Package outbox delivers notifications durably: a message is stored in a
// Redis stream before anything is sent and deleted only once the receiver
// accepted it, so it survives a crash or restart. Messages with the same key
// (a PagerDuty dedup key) go out one at a time in the order they were stored,
// so a trigger is never overtaken by its resolve; different keys go out in
// parallel. Temporary failures are retried with exponential backoff and
// jitter; a permanent rejection is set aside with its reason.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Settings of the outbox.
type Settings struct {
	// Key is the stream holding pending messages; its retry and failed
	// hashes share its hash tag. It must share the alert keys' hash tag so an
	// alert transition and its message commit in one transaction.
	Key string
	// BackoffMin and BackoffMax bound the retry delay
	// (KEYALERT_OUTBOX_BACKOFF_MIN, KEYALERT_OUTBOX_BACKOFF_MAX).
	BackoffMin, BackoffMax time.Duration
	// Concurrency bounds sends in flight, each for a different key
	// (KEYALERT_OUTBOX_CONCURRENCY).
	Concurrency int
}

// DefaultKey is the default stream key.
const DefaultKey = "ka:{alerts}:outbox"

// DefaultSettings returns the defaults.
func DefaultSettings() Settings {
	return Settings{Key: DefaultKey, BackoffMin: time.Second, BackoffMax: 5 * time.Minute, Concurrency: 4}
}

// Validate names the bad setting.
func (s Settings) Validate() error {
	switch {
	case s.Key == "":
		return errors.New("outbox key: must not be empty")
	case s.BackoffMin <= 0:
		return fmt.Errorf("KEYALERT_OUTBOX_BACKOFF_MIN=%s: want a positive duration", s.BackoffMin)
	case s.BackoffMax < s.BackoffMin:
		return fmt.Errorf("KEYALERT_OUTBOX_BACKOFF_MAX=%s: want at least KEYALERT_OUTBOX_BACKOFF_MIN (%s)", s.BackoffMax, s.BackoffMin)
	case s.Concurrency < 1 || s.Concurrency > 64:
		return fmt.Errorf("KEYALERT_OUTBOX_CONCURRENCY=%d: want between 1 and 64", s.Concurrency)
	}
	return nil
}

// Message is one notification to deliver.
type Message struct {
	// Key orders messages: same key, strict order (the dedup key).
	Key string
	// Kind describes the message for people ("trigger", "resolve").
	Kind string
	// Body is sent as is.
	Body []byte
}

// Outcome of one delivery attempt.
type Outcome int

// Outcomes.
const (
	// Delivered: accepted (202); the message is deleted.
	Delivered Outcome = iota
	// Retry: rate limited, server or network error; tried again later.
	Retry
	// Reject: the receiver will never accept it (400); set aside.
	Reject
)

// Delivery is the result of one attempt.
type Delivery struct {
	Outcome Outcome
	Status  int    // HTTP status, 0 for a network error
	Reason  string // why it was not delivered
	// RetryAfter is the receiver's requested delay, if any.
	RetryAfter time.Duration
}

// Sender delivers one message body.
type Sender interface {
	Send(ctx context.Context, body []byte) Delivery
}

// Stats are counters for metrics.
type Stats struct {
	Pending   int64 // messages waiting in this sender (0 when not sending)
	Delivered int64
	Retries   int64
	Rejected  int64
}

// Outbox stores and sends messages.
type Outbox struct {
	rdb redis.UniversalClient
	set Settings
	log *slog.Logger

	pending, delivered, retries, rejected atomic.Int64
}

// New returns an outbox.
func New(rdb redis.UniversalClient, set Settings, log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.Default()
	}
	return &Outbox{rdb: rdb, set: set, log: log}
}

// Key is the stream key.
func (o *Outbox) Key() string { return o.set.Key }

func (o *Outbox) retryKey() string  { return o.set.Key + ":retry" }
func (o *Outbox) failedKey() string { return o.set.Key + ":failed" }

// Stats returns the counters.
func (o *Outbox) Stats() Stats {
	return Stats{Pending: o.pending.Load(), Delivered: o.delivered.Load(), Retries: o.retries.Load(), Rejected: o.rejected.Load()}
}

// Enqueue stores m; the sender (in whichever replica holds it) picks it up
// at once.
func (o *Outbox) Enqueue(ctx context.Context, m Message) (string, error) {
	id, err := o.rdb.XAdd(ctx, o.xadd(m)).Result()
	if err != nil {
		return "", fmt.Errorf("xadd %s: %w", o.set.Key, err)
	}
	return id, nil
}

// AddTo queues the store of m in a caller's MULTI transaction, so that a
// state change and its notification commit together.
func (o *Outbox) AddTo(ctx context.Context, p redis.Pipeliner, m Message) {
	p.XAdd(ctx, o.xadd(m))
}

func (o *Outbox) xadd(m Message) *redis.XAddArgs {
	return &redis.XAddArgs{Stream: o.set.Key, Values: []any{
		"key", m.Key, "kind", m.Kind, "body", m.Body, "at", strconv.FormatInt(time.Now().UnixMilli(), 10),
	}}
}

// retryState is what is kept about a message that failed temporarily.
type retryState struct {
	Attempts  int       `json:"attempts"`
	Next      time.Time `json:"next_attempt"`
	LastError string    `json:"last_error"`
}

// Pending is a stored message not yet delivered, as the API shows it.
type Pending struct {
	ID          string    `json:"id"`
	Key         string    `json:"key"`
	Kind        string    `json:"kind"`
	EnqueuedAt  time.Time `json:"enqueued_at"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// Failure is a message the receiver rejected for good. The body stays in
// Redis for a manual replay but is not shown: it carries the routing key.
type Failure struct {
	ID         string    `json:"id"`
	Key        string    `json:"key"`
	Kind       string    `json:"kind"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	FailedAt   time.Time `json:"failed_at"`
	Status     int       `json:"status"`
	Reason     string    `json:"reason"`
	Attempts   int       `json:"attempts"`
	Body       []byte    `json:"-"`
}

type failureDoc struct {
	Failure
	Body []byte `json:"body"`
}

// ListPending returns stored messages not yet delivered, oldest first.
func (o *Outbox) ListPending(ctx context.Context) ([]Pending, error) {
	items, err := o.load(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Pending, len(items))
	for i, it := range items {
		out[i] = Pending{ID: it.id, Key: it.key, Kind: it.kind, EnqueuedAt: it.at, Attempts: it.attempts, NextAttempt: it.next, LastError: it.lastErr}
	}
	return out, nil
}

// Failed returns the rejected messages, the latest first.
func (o *Outbox) Failed(ctx context.Context) ([]Failure, error) {
	m, err := o.rdb.HGetAll(ctx, o.failedKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("hgetall %s: %w", o.failedKey(), err)
	}
	out := make([]Failure, 0, len(m))
	for id, doc := range m {
		var f failureDoc
		if err := json.Unmarshal([]byte(doc), &f); err != nil {
			o.log.Error("skipping undecodable outbox failure", "id", id, "err", err)
			continue
		}
		f.Failure.Body = f.Body
		out = append(out, f.Failure)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FailedAt.After(out[j].FailedAt) })
	return out, nil
}

type item struct {
	id, key, kind string
	body          []byte
	at            time.Time
	attempts      int
	next          time.Time
	lastErr       string
}

func parseItem(msg redis.XMessage) *item {
	it := &item{id: msg.ID}
	it.key, _ = msg.Values["key"].(string)
	it.kind, _ = msg.Values["kind"].(string)
	body, _ := msg.Values["body"].(string)
	it.body = []byte(body)
	ms, _ := strconv.ParseInt(fmt.Sprint(msg.Values["at"]), 10, 64)
	it.at = time.UnixMilli(ms).UTC()
	return it
}

// load reads every stored message with its retry state, oldest first.
func (o *Outbox) load(ctx context.Context) ([]*item, error) {
	var items []*item
	start := "-"
	for {
		msgs, err := o.rdb.XRangeN(ctx, o.set.Key, start, "+", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("xrange %s: %w", o.set.Key, err)
		}
		for _, m := range msgs {
			items = append(items, parseItem(m))
		}
		if len(msgs) < 1000 {
			break
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	states, err := o.rdb.HGetAll(ctx, o.retryKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("hgetall %s: %w", o.retryKey(), err)
	}
	for _, it := range items {
		if doc, ok := states[it.id]; ok {
			var st retryState
			if json.Unmarshal([]byte(doc), &st) == nil {
				it.attempts, it.next, it.lastErr = st.Attempts, st.Next, st.LastError
			}
		}
	}
	return items, nil
}

// Run sends stored messages until ctx ends. Exactly one process should run it
// at a time (hold the outbox lease), or per-key order is lost.
func (o *Outbox) Run(ctx context.Context, sender Sender) error {
	items, err := o.load(ctx)
	if err != nil {
		return err
	}
	r := &runner{o: o, sender: sender, queues: map[string][]*item{}, inflight: map[string]bool{},
		results: make(chan result), fresh: make(chan []*item)}
	lastID := "0-0"
	for _, it := range items {
		r.add(it)
		lastID = it.id
	}
	defer o.pending.Store(0)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The follower is not waited for: a blocked XREAD ignores cancellation
	// unless the client enables context timeouts, and it ends by itself
	// within one block period.
	go o.follow(rctx, lastID, r.fresh)
	var wg sync.WaitGroup
	r.loop(rctx, &wg)
	cancel()
	wg.Wait()
	return ctx.Err()
}

// follow blocks on the stream for messages after lastID and hands them over:
// a new message wakes the sender at once, without polling.
func (o *Outbox) follow(ctx context.Context, lastID string, out chan<- []*item) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		res, err := o.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{o.set.Key, lastID}, Count: 100, Block: 5 * time.Second}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				o.log.Warn("outbox: reading new messages", "stream", o.set.Key, "err", err)
				sleep(ctx, delay)
				delay = min(2*delay, 5*time.Second)
			}
			continue
		}
		delay = 100 * time.Millisecond
		var batch []*item
		for _, s := range res {
			for _, m := range s.Messages {
				batch = append(batch, parseItem(m))
				lastID = m.ID
			}
		}
		select {
		case out <- batch:
		case <-ctx.Done():
		}
	}
}

type result struct {
	it *item
	d  Delivery
}

type runner struct {
	o        *Outbox
	sender   Sender
	queues   map[string][]*item
	inflight map[string]bool
	results  chan result
	fresh    chan []*item
}

func (r *runner) add(it *item) {
	r.queues[it.key] = append(r.queues[it.key], it)
	r.o.pending.Add(1)
}

func (r *runner) loop(ctx context.Context, wg *sync.WaitGroup) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wake := r.dispatch(ctx, wg)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if !wake.IsZero() {
			timer.Reset(max(time.Until(wake), 0))
		}
		select {
		case <-ctx.Done():
			return
		case batch := <-r.fresh:
			for _, it := range batch {
				r.add(it)
			}
		case res := <-r.results:
			r.handle(ctx, res)
		case <-timer.C:
		}
	}
}

// dispatch starts a send for every key whose head is due and not in flight,
// within the concurrency bound; it returns when the next head falls due.
func (r *runner) dispatch(ctx context.Context, wg *sync.WaitGroup) time.Time {
	now := time.Now()
	var wake time.Time
	for key, q := range r.queues {
		if r.inflight[key] {
			continue
		}
		head := q[0]
		if head.next.After(now) {
			if wake.IsZero() || head.next.Before(wake) {
				wake = head.next
			}
			continue
		}
		if len(r.inflight) >= r.o.set.Concurrency {
			return now.Add(time.Hour) // a result wakes the loop
		}
		r.inflight[key] = true
		wg.Add(1)
		go func(it *item) {
			defer wg.Done()
			d := r.sender.Send(ctx, it.body)
			select {
			case r.results <- result{it, d}:
			case <-ctx.Done():
			}
		}(head)
	}
	return wake
}

func (r *runner) handle(ctx context.Context, res result) {
	it, d := res.it, res.d
	o := r.o
	delete(r.inflight, it.key)
	switch d.Outcome {
	case Delivered:
		// Removed only now; retried until Redis takes it, holding back the
		// key's next message so that a restart never resends out of order.
		o.retryRedis(ctx, "delete delivered message", func() error {
			_, err := o.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.XDel(ctx, o.set.Key, it.id)
				p.HDel(ctx, o.retryKey(), it.id)
				return nil
			})
			return err
		})
		o.delivered.Add(1)
		r.pop(it)
	case Reject:
		f := failureDoc{Failure: Failure{ID: it.id, Key: it.key, Kind: it.kind, EnqueuedAt: it.at, FailedAt: time.Now().UTC(),
			Status: d.Status, Reason: d.Reason, Attempts: it.attempts + 1}, Body: it.body}
		doc, _ := json.Marshal(f)
		o.retryRedis(ctx, "set aside rejected message", func() error {
			_, err := o.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.HSet(ctx, o.failedKey(), it.id, doc)
				p.XDel(ctx, o.set.Key, it.id)
				p.HDel(ctx, o.retryKey(), it.id)
				return nil
			})
			return err
		})
		o.rejected.Add(1)
		o.log.Error("outbox: message rejected, not retried", "id", it.id, "key", it.key, "kind", it.kind, "status", d.Status, "reason", d.Reason)
		r.pop(it)
	default:
		it.attempts++
		delay := max(o.backoff(it.attempts), d.RetryAfter)
		it.next = time.Now().Add(delay)
		it.lastErr = d.Reason
		o.retries.Add(1)
		doc, _ := json.Marshal(retryState{Attempts: it.attempts, Next: it.next.UTC(), LastError: d.Reason})
		if err := o.rdb.HSet(ctx, o.retryKey(), it.id, doc).Err(); err != nil && ctx.Err() == nil {
			o.log.Warn("outbox: recording retry state", "id", it.id, "err", err) // only informational
		}
		o.log.Warn("outbox: delivery failed, will retry", "id", it.id, "key", it.key, "kind", it.kind,
			"status", d.Status, "reason", d.Reason, "attempt", it.attempts, "retry_in", delay.Round(time.Millisecond))
	}
}

func (r *runner) pop(it *item) {
	q := r.queues[it.key]
	if len(q) > 0 && q[0] == it {
		q = q[1:]
	}
	if len(q) == 0 {
		delete(r.queues, it.key)
	} else {
		r.queues[it.key] = q
	}
	r.o.pending.Add(-1)
}

// backoff is exponential from BackoffMin, capped at BackoffMax, with "equal
// jitter": half fixed, half random, so retries spread out but never come
// sooner than half the nominal delay.
func (o *Outbox) backoff(attempt int) time.Duration {
	d := o.set.BackoffMin
	for i := 1; i < attempt && d < o.set.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, o.set.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

func (o *Outbox) retryRedis(ctx context.Context, what string, fn func() error) {
	delay := 50 * time.Millisecond
	for {
		err := fn()
		if err == nil || ctx.Err() != nil {
			return
		}
		o.log.Warn("outbox: "+what, "err", err)
		sleep(ctx, delay)
		delay = min(2*delay, 5*time.Second)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

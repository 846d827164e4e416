// Package outbox delivers notifications durably: a notification is stored in
// a Redis stream before anything is sent and deleted only once the receiver
// accepted it, so it survives a crash or restart. Messages with the same key
// (the alert's dedup key) go out one at a time in the order they were stored,
// so a trigger is never overtaken by its resolve; different keys go out in
// parallel. Temporary failures are retried with exponential backoff and
// jitter; a permanent rejection is set aside with its reason.
//
// A stream entry holds the notification value (notify.Marshal's versioned
// JSON) and the integration it is for; it is encoded to the receiver's wire
// format only when sent, by the notifier registered under that name. Entries
// written before that format (field "body": PagerDuty wire bytes) are still
// read and sent as they are.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/pkg/backoff"
	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Defaults of a zero Options.
const (
	// DefaultKey is the stream key.
	DefaultKey = "ka:{alerts}:outbox"
	// DefaultBackoffMin and DefaultBackoffMax bound a message's retry delay.
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = 5 * time.Minute
	// DefaultConcurrency bounds sends in flight.
	DefaultConcurrency = 4
	// DefaultIntegration is the integration every notification is stored for
	// unless Options.Integrations says otherwise, and the one entries of the
	// old format (PagerDuty wire bytes) belong to.
	DefaultIntegration = "pagerduty"
	// DefaultFailedMax bounds the rejected messages kept (the oldest go).
	DefaultFailedMax = 1000
	// DefaultFailedTTL is how long a rejected message is kept.
	DefaultFailedTTL = 30 * 24 * time.Hour
)

// Options of the outbox. The zero value is usable: a zero field means the
// default above.
type Options struct {
	// Key is the stream holding pending messages; its retry and failed
	// hashes share its hash tag. It must share the alert keys' hash tag so an
	// alert transition and its message commit in one transaction.
	Key string
	// BackoffMin and BackoffMax bound the retry delay of a message; a max
	// below the min is raised to it.
	BackoffMin, BackoffMax time.Duration
	// Concurrency bounds sends in flight, each for a different key.
	Concurrency int
	// Integrations are the names each notification is stored for, one entry
	// each (the notifiers registered for Run); nil: DefaultIntegration.
	Integrations []string
	// FailedMax bounds the rejected messages kept for inspection and manual
	// replay, each with its body; the oldest are dropped beyond it.
	FailedMax int
	// FailedTTL is how long a rejected message is kept.
	FailedTTL time.Duration
	// Registerer takes the outbox's metrics; nil: not registered.
	Registerer prometheus.Registerer
	// OOM, if set, reports Redis writes refused for lack of memory once per
	// interval instead of a warning per retry; nil: warned like the rest.
	OOM *redisoom.Reporter
}

func (o Options) withDefaults() Options {
	if o.Key == "" {
		o.Key = DefaultKey
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if len(o.Integrations) == 0 {
		o.Integrations = []string{DefaultIntegration}
	}
	if o.FailedMax <= 0 {
		o.FailedMax = DefaultFailedMax
	}
	if o.FailedTTL <= 0 {
		o.FailedTTL = DefaultFailedTTL
	}
	return o
}

// Notification results, the values of keyalert_notifications_total's
// result label.
const (
	ResultSent     = "sent"     // the receiver accepted it
	ResultRetry    = "retry"    // failed temporarily, rescheduled
	ResultRejected = "rejected" // refused for good, set aside
)

type metrics struct {
	notes   *prometheus.CounterVec
	latency *prometheus.HistogramVec
	pending prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, integrations []string) *metrics {
	m := &metrics{
		notes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyalert_notifications_total",
			Help: "Delivery attempts of notifications by this replica's outbox sender, by integration, event " +
				"(trigger, acknowledge, resolve) and result: sent (accepted), retry (failed temporarily: 429, 5xx, " +
				"network; rescheduled with backoff) or rejected (refused for good, set aside in the failed list).",
		}, []string{"integration", "event", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keyalert_notification_latency_seconds",
			Help:    "Time from storing a notification in the outbox to the receiver accepting it, retries included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"integration"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keyalert_outbox_pending",
			Help: "Notifications waiting in this replica's outbox sender (0 unless it holds the sender lease).",
		}),
	}
	// Every series exists from the start, so a rate() sees the first event.
	for _, in := range integrations {
		for _, ev := range []notify.Action{notify.Trigger, notify.Acknowledge, notify.Resolve} {
			for _, res := range []string{ResultSent, ResultRetry, ResultRejected} {
				m.notes.WithLabelValues(in, string(ev), res)
			}
		}
		m.latency.WithLabelValues(in)
	}
	if reg != nil {
		reg.MustRegister(m.notes, m.latency, m.pending)
	}
	return m
}

// Outbox stores and sends messages.
type Outbox struct {
	rdb redis.UniversalClient
	opt Options
	log *slog.Logger
	met *metrics
}

// New returns an outbox.
func New(rdb redis.UniversalClient, opt Options, log *slog.Logger) *Outbox {
	if log == nil {
		log = slog.Default()
	}
	opt = opt.withDefaults()
	return &Outbox{rdb: rdb, opt: opt, log: log, met: newMetrics(opt.Registerer, opt.Integrations)}
}

// Key is the stream key.
func (o *Outbox) Key() string { return o.opt.Key }

func (o *Outbox) retryKey() string  { return o.opt.Key + ":retry" }
func (o *Outbox) failedKey() string { return o.opt.Key + ":failed" }

// failedAtKey is a sorted set of the failed hash's ids by time set aside
// (ms), so the oldest can be found and dropped without reading the bodies.
func (o *Outbox) failedAtKey() string { return o.opt.Key + ":failed:at" }

// setAsideScript moves a rejected message from the stream to the failed
// hash and keeps that hash bounded: ids set aside before FailedTTL and the
// oldest beyond FailedMax are dropped (at most 1000 per call, so one call's
// work is bounded; each call drops more than it adds until within bounds).
// Records from before the index existed are indexed as of now, once. Both
// keys expire FailedTTL after the last rejection, so a quiet outbox ends up
// with none.
//
// KEYS: stream, retry hash, failed hash, failed index.
// ARGV: id, document, now (ms), ttl (ms), max.
var setAsideScript = redis.NewScript(`
local stream, retry, failed, idx = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, doc, now, ttl, max = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('HLEN', failed) > redis.call('ZCARD', idx) then
  for _, f in ipairs(redis.call('HKEYS', failed)) do redis.call('ZADD', idx, 'NX', now, f) end
end
redis.call('HSET', failed, id, doc)
redis.call('ZADD', idx, now, id)
redis.call('XDEL', stream, id)
redis.call('HDEL', retry, id)
local drop = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. (now - ttl), 'LIMIT', 0, 1000)
local over = redis.call('ZCARD', idx) - #drop - max
if over > 0 then
  drop = redis.call('ZRANGE', idx, 0, #drop + math.min(over, 1000) - 1)
end
if #drop > 0 then
  redis.call('HDEL', failed, unpack(drop))
  redis.call('ZREM', idx, unpack(drop))
end
redis.call('PEXPIRE', failed, ttl)
redis.call('PEXPIRE', idx, ttl)
return #drop`)

// Enqueue stores n, one entry per integration; the sender (in whichever
// replica holds it) picks it up at once.
func (o *Outbox) Enqueue(ctx context.Context, n notify.Notification) error {
	_, err := o.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error { return o.AddTo(ctx, p, n) })
	if err != nil {
		return fmt.Errorf("xadd %s: %w", o.opt.Key, err)
	}
	return nil
}

// AddTo queues the store of n in a caller's MULTI transaction, so that a
// state change and its notification commit together.
func (o *Outbox) AddTo(ctx context.Context, p redis.Pipeliner, n notify.Notification) error {
	doc, err := notify.Marshal(n)
	if err != nil {
		return err
	}
	at := strconv.FormatInt(time.Now().UnixMilli(), 10)
	for _, in := range o.opt.Integrations {
		p.XAdd(ctx, &redis.XAddArgs{Stream: o.opt.Key, Values: []any{
			"key", n.DedupKey, "kind", string(n.Action), "integration", in, "note", doc, "at", at,
		}})
	}
	return nil
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
	Integration string    `json:"integration"`
	EnqueuedAt  time.Time `json:"enqueued_at"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// Failure is a message the receiver rejected for good. The body (the stored
// notification, or an old entry's wire bytes) stays in Redis for a manual
// replay but is not shown: it carries the routing key.
type Failure struct {
	ID          string    `json:"id"`
	Key         string    `json:"key"`
	Kind        string    `json:"kind"`
	Integration string    `json:"integration"`
	EnqueuedAt  time.Time `json:"enqueued_at"`
	FailedAt    time.Time `json:"failed_at"`
	Status      int       `json:"status"`
	Reason      string    `json:"reason"`
	Attempts    int       `json:"attempts"`
	Body        []byte    `json:"-"`
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
		out[i] = Pending{ID: it.id, Key: it.key, Kind: it.kind, Integration: it.integration, EnqueuedAt: it.at,
			Attempts: it.attempts, NextAttempt: it.next, LastError: it.lastErr}
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
		if time.Since(f.FailedAt) > o.opt.FailedTTL {
			continue // expired, dropped at the next rejection
		}
		f.Failure.Body = f.Body
		if f.Integration == "" {
			f.Integration = DefaultIntegration // set aside before integrations were named
		}
		out = append(out, f.Failure)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FailedAt.After(out[j].FailedAt) })
	return out, nil
}

type item struct {
	id, key, kind, integration string
	// note is the stored notification; wire is an old entry's encoded body,
	// sent as is.
	note, wire []byte
	at         time.Time
	attempts   int
	next       time.Time
	lastErr    string
}

func parseItem(msg redis.XMessage) *item {
	it := &item{id: msg.ID}
	it.key, _ = msg.Values["key"].(string)
	it.kind, _ = msg.Values["kind"].(string)
	it.integration, _ = msg.Values["integration"].(string)
	if note, ok := msg.Values["note"].(string); ok {
		it.note = []byte(note)
	} else {
		// The format before notification values: PagerDuty wire bytes.
		body, _ := msg.Values["body"].(string)
		it.wire = []byte(body)
	}
	if it.integration == "" {
		it.integration = DefaultIntegration
	}
	ms, _ := strconv.ParseInt(fmt.Sprint(msg.Values["at"]), 10, 64)
	it.at = time.UnixMilli(ms).UTC()
	return it
}

// body is what a failure record keeps for a replay.
func (it *item) body() []byte {
	if it.note != nil {
		return it.note
	}
	return it.wire
}

// load reads every stored message with its retry state, oldest first.
func (o *Outbox) load(ctx context.Context) ([]*item, error) {
	var items []*item
	start := "-"
	for {
		msgs, err := o.rdb.XRangeN(ctx, o.opt.Key, start, "+", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("xrange %s: %w", o.opt.Key, err)
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

// Run sends stored messages through the notifiers of reg until ctx ends.
// Exactly one process should run it at a time (hold the outbox lease), or
// per-key order is lost.
func (o *Outbox) Run(ctx context.Context, reg *notify.Registry) error {
	items, err := o.load(ctx)
	if err != nil {
		return err
	}
	r := &runner{o: o, reg: reg, queues: map[string][]*item{}, inflight: map[string]bool{},
		results: make(chan result), fresh: make(chan []*item)}
	lastID := "0-0"
	for _, it := range items {
		r.add(it)
		lastID = it.id
	}
	defer o.met.pending.Set(0)
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
	bo := backoff.New(backoff.Policy{})
	for ctx.Err() == nil {
		res, err := o.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{o.opt.Key, lastID}, Count: 100, Block: 5 * time.Second}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				o.log.Warn("outbox: reading new messages", "stream", o.opt.Key, "err", err)
				_ = bo.Wait(ctx)
			}
			continue
		}
		bo.Reset()
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
	d  notify.Delivery
}

type runner struct {
	o        *Outbox
	reg      *notify.Registry
	queues   map[string][]*item
	inflight map[string]bool
	results  chan result
	fresh    chan []*item
}

func (r *runner) add(it *item) {
	r.queues[it.key] = append(r.queues[it.key], it)
	r.o.met.pending.Inc()
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
		if len(r.inflight) >= r.o.opt.Concurrency {
			return now.Add(time.Hour) // a result wakes the loop
		}
		r.inflight[key] = true
		wg.Add(1)
		go func(it *item) {
			defer wg.Done()
			d := r.send(ctx, it)
			select {
			case r.results <- result{it, d}:
			case <-ctx.Done():
			}
		}(head)
	}
	return wake
}

// send encodes the item for its integration, now rather than when stored,
// and delivers it. What can never be sent (no such integration, a record of
// an unknown version, an event the encoder refuses) is rejected: retrying
// would hold back the key's later messages forever.
func (r *runner) send(ctx context.Context, it *item) notify.Delivery {
	n, ok := r.reg.Lookup(it.integration)
	if !ok {
		return notify.Delivery{Outcome: notify.Reject, Reason: fmt.Sprintf("no notifier registered as %q", it.integration)}
	}
	body := it.wire
	if it.note != nil {
		note, err := notify.Unmarshal(it.note)
		if err != nil {
			return notify.Delivery{Outcome: notify.Reject, Reason: err.Error()}
		}
		if body, err = n.Encode(note); err != nil {
			return notify.Delivery{Outcome: notify.Reject, Reason: err.Error()}
		}
	}
	return n.Send(ctx, body)
}

func (r *runner) handle(ctx context.Context, res result) {
	it, d := res.it, res.d
	o := r.o
	delete(r.inflight, it.key)
	switch d.Outcome {
	case notify.Delivered:
		// Removed only now; retried until Redis takes it, holding back the
		// key's next message so that a restart never resends out of order.
		o.retryRedis(ctx, "delete delivered message", func(ctx context.Context) error {
			_, err := o.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.XDel(ctx, o.opt.Key, it.id)
				p.HDel(ctx, o.retryKey(), it.id)
				return nil
			})
			return err
		})
		o.met.notes.WithLabelValues(it.integration, it.kind, ResultSent).Inc()
		o.met.latency.WithLabelValues(it.integration).Observe(time.Since(it.at).Seconds())
		// One line per delivery, so on-call can match a page to the alert
		// that sent it; the body (it holds the target) is never logged.
		o.log.Info("outbox: message delivered", "id", it.id, "key", it.key, "kind", it.kind,
			"integration", it.integration, "status", d.Status, "attempts", it.attempts+1,
			"after", time.Since(it.at).Round(time.Millisecond))
		r.pop(it)
	case notify.Reject:
		f := failureDoc{Failure: Failure{ID: it.id, Key: it.key, Kind: it.kind, Integration: it.integration, EnqueuedAt: it.at,
			FailedAt: time.Now().UTC(), Status: d.Status, Reason: d.Reason, Attempts: it.attempts + 1}, Body: it.body()}
		doc, _ := json.Marshal(f)
		o.retryRedis(ctx, "set aside rejected message", func(ctx context.Context) error {
			return setAsideScript.Run(ctx, o.rdb, []string{o.opt.Key, o.retryKey(), o.failedKey(), o.failedAtKey()},
				it.id, doc, time.Now().UnixMilli(), o.opt.FailedTTL.Milliseconds(), o.opt.FailedMax).Err()
		})
		o.met.notes.WithLabelValues(it.integration, it.kind, ResultRejected).Inc()
		o.log.Error("outbox: message rejected, not retried", "id", it.id, "key", it.key, "kind", it.kind,
			"integration", it.integration, "status", d.Status, "reason", d.Reason)
		r.pop(it)
	default:
		it.attempts++
		delay := max(o.retryDelay(it.attempts), d.RetryAfter)
		it.next = time.Now().Add(delay)
		it.lastErr = d.Reason
		o.met.notes.WithLabelValues(it.integration, it.kind, ResultRetry).Inc()
		doc, _ := json.Marshal(retryState{Attempts: it.attempts, Next: it.next.UTC(), LastError: d.Reason})
		if err := o.rdb.HSet(ctx, o.retryKey(), it.id, doc).Err(); err != nil && ctx.Err() == nil {
			o.log.Warn("outbox: recording retry state", "id", it.id, "err", err) // only informational
		}
		o.log.Warn("outbox: delivery failed, will retry", "id", it.id, "key", it.key, "kind", it.kind,
			"integration", it.integration, "status", d.Status, "reason", d.Reason, "attempt", it.attempts,
			"retry_in", delay.Round(time.Millisecond))
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
	r.o.met.pending.Dec()
}

// retryDelay is the delay before a message's next attempt after its
// attempts-th failure (attempts >= 1). The count lives with the message, so
// the policy's stateless Delay is used rather than a Backoff.
func (o *Outbox) retryDelay(attempts int) time.Duration {
	return backoff.Policy{Min: o.opt.BackoffMin, Max: o.opt.BackoffMax}.Delay(attempts - 1)
}

// redisRetry paces retries of a Redis write the sender cannot skip.
var redisRetry = backoff.Policy{Min: 50 * time.Millisecond}

func (o *Outbox) retryRedis(ctx context.Context, what string, fn func(context.Context) error) {
	_ = backoff.Retry(ctx, redisRetry, fn, func(err error, _ int) {
		if !o.opt.OOM.Note(ctx, err, "what", "outbox: "+what) {
			o.log.Warn("outbox: "+what, "err", err)
		}
	})
}

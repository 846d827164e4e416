// Package outbox delivers notifications durably: a notification is stored in
// a Redis stream before anything is sent and deleted only once the receiver
// accepted it, so it survives a crash or restart. Messages of one alert (its
// dedup key) to one receiver go out one at a time in the order they were
// stored, so a trigger is never overtaken by its resolve; different alerts
// and different receivers go out in parallel, each receiver with its own
// bound on sends in flight, so one that fails or hangs never delays another.
// Temporary failures are retried with exponential backoff and jitter (and
// the receiver's Retry-After); a permanent rejection is set aside with its
// reason. Notifiers that implement notify.Pacer are paced per destination.
//
// After an attempt whose outcome is unknown (a timeout or a connection lost
// after the request was written: the receiver may still process it, late),
// and for every message found pending at start (a crash may have abandoned
// one in flight), the last event delivered for that (receiver, alert) is
// sent once more ResendAfter later, so the receiver's final state is the
// alert's final state even if the abandoned request lands after its
// successors. The per-(receiver, alert) state behind this, and behind
// notify.Refresher's periodic re-sends, is kept in Redis (the "last" hash)
// until the alert's resolve is delivered.
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
	"slices"
	"sort"
	"strconv"
	"strings"
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
	// DefaultResendAfter is how long after an attempt of unknown outcome the
	// final event is sent again: longer than a receiver takes to process a
	// request it answered too late.
	DefaultResendAfter = 2 * time.Minute
)

// Receivers finds named receivers (package receiver) at send time.
type Receivers interface {
	// Notifier returns the named receiver's notifier and its type (the
	// integration label of the metrics); an error wrapping
	// notify.ErrNoReceiver when it does not exist.
	Notifier(ctx context.Context, name string) (notify.Notifier, string, error)
}

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
	// Concurrency bounds sends in flight per receiver (per integration for
	// notifications without receivers), each for a different alert.
	Concurrency int
	// Receivers resolves the receiver names of notifications; nil: only the
	// Integrations are used.
	Receivers Receivers
	// DefaultReceivers take the triggers of rules that name none; empty: the
	// Integrations (PagerDuty with the notification's Target).
	DefaultReceivers []string
	// ResendAfter: see the package doc; 0: DefaultResendAfter, negative:
	// never.
	ResendAfter time.Duration
	// ReceiverTypes are the integration labels of named receivers, whose
	// metric series exist from the start like the Integrations'.
	ReceiverTypes []string
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
	if o.ResendAfter == 0 {
		o.ResendAfter = DefaultResendAfter
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
	labels := append(append([]string(nil), opt.Integrations...), opt.ReceiverTypes...)
	slices.Sort(labels)
	return &Outbox{rdb: rdb, opt: opt, log: log, met: newMetrics(opt.Registerer, slices.Compact(labels))}
}

// Key is the stream key.
func (o *Outbox) Key() string { return o.opt.Key }

func (o *Outbox) retryKey() string  { return o.opt.Key + ":retry" }
func (o *Outbox) failedKey() string { return o.opt.Key + ":failed" }

// lastKey is the hash of per-(receiver, alert) delivery state (lastState).
func (o *Outbox) lastKey() string { return o.opt.Key + ":last" }

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
// ARGV: id (the stream id, or stream id/queue for one receiver of a fanned-out
// entry), document, now (ms), ttl (ms), max, stream id to delete ("" to keep
// it: other receivers of the entry are not done).
var setAsideScript = redis.NewScript(`
local stream, retry, failed, idx = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, doc, now, ttl, max, sid = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
if redis.call('HLEN', failed) > redis.call('ZCARD', idx) then
  for _, f in ipairs(redis.call('HKEYS', failed)) do redis.call('ZADD', idx, 'NX', now, f) end
end
redis.call('HSET', failed, id, doc)
redis.call('ZADD', idx, now, id)
if sid ~= '' then redis.call('XDEL', stream, sid) end
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

// Enqueue stores n (see AddTo); the sender (in whichever
// replica holds it) picks it up at once.
func (o *Outbox) Enqueue(ctx context.Context, n notify.Notification) error {
	_, err := o.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error { return o.AddTo(ctx, p, n) })
	if err != nil {
		return fmt.Errorf("xadd %s: %w", o.opt.Key, err)
	}
	return nil
}

// Fanout is the receiver field of an acknowledge or resolve entry: it goes
// to every receiver that got (or is getting) the alert's trigger.
const Fanout = "*"

// AddTo queues the store of n in a caller's MULTI transaction, so that a
// state change and its notification commit together. A trigger is stored
// once per receiver it names (else per default receiver, else per
// integration); an acknowledge or resolve once, fanned out at send time to
// the receivers of the alert's trigger.
func (o *Outbox) AddTo(ctx context.Context, p redis.Pipeliner, n notify.Notification) error {
	doc, err := notify.Marshal(n)
	if err != nil {
		return err
	}
	at := strconv.FormatInt(time.Now().UnixMilli(), 10)
	add := func(integration, receiver string) {
		p.XAdd(ctx, &redis.XAddArgs{Stream: o.opt.Key, Values: []any{
			"key", n.DedupKey, "kind", string(n.Action), "integration", integration, "receiver", receiver, "note", doc, "at", at,
		}})
	}
	if n.Action != notify.Trigger {
		add("", Fanout)
		return nil
	}
	names := n.Receivers
	if len(names) == 0 {
		names = o.opt.DefaultReceivers
	}
	for _, name := range names {
		add("", name)
	}
	if len(names) == 0 {
		for _, in := range o.opt.Integrations {
			add(in, "")
		}
	}
	return nil
}

// retryState is what is kept about a message that failed temporarily.
type retryState struct {
	// Done: this receiver of a fanned-out entry has it; after a restart the
	// entry is not sent to it again.
	Done      bool      `json:"done,omitempty"`
	Attempts  int       `json:"attempts"`
	Next      time.Time `json:"next_attempt"`
	LastError string    `json:"last_error"`
}

// Pending is a stored message not yet delivered, as the API shows it.
type Pending struct {
	ID          string    `json:"id"`
	Key         string    `json:"key"`
	Kind        string    `json:"kind"`
	Integration string    `json:"integration,omitempty"`
	Receiver    string    `json:"receiver,omitempty"`
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
	Receiver    string    `json:"receiver,omitempty"`
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
	items, states, err := o.load(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Pending, len(items))
	for i, it := range items {
		it.applyState(states, it.id)
		out[i] = Pending{ID: it.id, Key: it.key, Kind: it.kind, Integration: it.integration, Receiver: it.receiver,
			EnqueuedAt: it.at, Attempts: it.attempts, NextAttempt: it.next, LastError: it.lastErr}
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
		if f.Integration == "" && f.Receiver == "" {
			f.Integration = DefaultIntegration // set aside before integrations were named
		}
		out = append(out, f.Failure)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FailedAt.After(out[j].FailedAt) })
	return out, nil
}

type item struct {
	id, key, kind, integration, receiver string
	// qid names the item in the retry and failed hashes: the stream id, or
	// id/queue for one receiver of a fanned-out entry.
	qid string
	// qk is its queue: one per (receiver or integration, alert).
	qk string
	// note is the stored notification; wire is an old entry's encoded body,
	// sent as is.
	note, wire []byte
	at         time.Time
	attempts   int
	next       time.Time
	lastErr    string
	// fan counts the receivers of a fanned-out entry still to finish; the
	// entry is deleted when it reaches zero. nil: not fanned out.
	fan *fanout
	// synthetic: a re-send built from the queue's lastState, not in the
	// stream.
	synthetic bool
	// Set by prepare for one attempt.
	notifier notify.Notifier
	label    string // integration label of the metrics (the receiver type)
	body     []byte
	skipped  bool
	// paceKey and every, once paced is set (see notify.Pacer).
	paced   bool
	paceKey string
	every   time.Duration
}

type fanout struct {
	left int
	qids []string // of every receiver, to clear their Done marks
}

func parseItem(msg redis.XMessage) *item {
	it := &item{id: msg.ID}
	it.key, _ = msg.Values["key"].(string)
	it.kind, _ = msg.Values["kind"].(string)
	it.integration, _ = msg.Values["integration"].(string)
	it.receiver, _ = msg.Values["receiver"].(string)
	if note, ok := msg.Values["note"].(string); ok {
		it.note = []byte(note)
	} else {
		// The format before notification values: PagerDuty wire bytes.
		body, _ := msg.Values["body"].(string)
		it.wire = []byte(body)
	}
	if it.integration == "" && it.receiver == "" {
		it.integration = DefaultIntegration
	}
	it.qid = it.id
	ms, _ := strconv.ParseInt(fmt.Sprint(msg.Values["at"]), 10, 64)
	it.at = time.UnixMilli(ms).UTC()
	return it
}

// stored is what a failure record keeps for a replay.
func (it *item) stored() []byte {
	if it.note != nil {
		return it.note
	}
	return it.wire
}

// load reads every stored message, oldest first, and the retry states.
func (o *Outbox) load(ctx context.Context) ([]*item, map[string]string, error) {
	var items []*item
	start := "-"
	for {
		msgs, err := o.rdb.XRangeN(ctx, o.opt.Key, start, "+", 1000).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("xrange %s: %w", o.opt.Key, err)
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
		return nil, nil, fmt.Errorf("hgetall %s: %w", o.retryKey(), err)
	}
	return items, states, nil
}

// applyState sets the item's retry state; it reports false when the item
// is done already (one receiver of a fanned-out entry).
func (it *item) applyState(states map[string]string, qid string) bool {
	if doc, ok := states[qid]; ok {
		var st retryState
		if json.Unmarshal([]byte(doc), &st) == nil {
			if st.Done {
				return false
			}
			it.attempts, it.next, it.lastErr = st.Attempts, st.Next, st.LastError
		}
	}
	return true
}

// lastState is what the sender keeps per (receiver, alert) until the alert's
// resolve is delivered: the trigger (to render acknowledges and resolves
// with the alert's details, and to refresh it), the last event delivered
// (to send it again after an attempt of unknown outcome) and when.
type lastState struct {
	Integration string    `json:"integration,omitempty"`
	Receiver    string    `json:"receiver,omitempty"`
	Key         string    `json:"key"`
	Trigger     []byte    `json:"trigger,omitempty"`
	Last        []byte    `json:"last,omitempty"`
	LastKind    string    `json:"last_kind,omitempty"`
	SentAt      time.Time `json:"sent_at,omitzero"`
	ResendAt    time.Time `json:"resend_at,omitzero"`
	RefreshAt   time.Time `json:"refresh_at,omitzero"`
}

// due is when the state asks for a send (zero: never).
func (s *lastState) due() time.Time {
	switch {
	case s.ResendAt.IsZero():
		return s.RefreshAt
	case s.RefreshAt.IsZero() || s.ResendAt.Before(s.RefreshAt):
		return s.ResendAt
	}
	return s.RefreshAt
}

// done: nothing left to keep (the resolve delivered, no re-send due).
func (s *lastState) done() bool {
	return s.ResendAt.IsZero() && s.RefreshAt.IsZero() && (s.LastKind == string(notify.Resolve) || len(s.Last) == 0)
}

// queueKey names the queue of an item: its receiver (or integration) and
// alert.
func queueKey(integration, receiver, key string) string {
	if receiver != "" {
		return "r:" + receiver + "|" + key
	}
	return "i:" + integration + "|" + key
}

// dest is the part of a queue key that names the receiver.
func dest(qk string) string {
	for i := 0; i < len(qk); i++ {
		if qk[i] == '|' {
			return qk[:i]
		}
	}
	return qk
}

// Run sends stored messages through the notifiers of reg (and the
// receivers of Options.Receivers) until ctx ends. Exactly one process
// should run it at a time (hold the outbox lease), or order is lost.
func (o *Outbox) Run(ctx context.Context, reg *notify.Registry) error {
	items, states, err := o.load(ctx)
	if err != nil {
		return err
	}
	lasts, err := o.rdb.HGetAll(ctx, o.lastKey()).Result()
	if err != nil {
		return fmt.Errorf("hgetall %s: %w", o.lastKey(), err)
	}
	r := &runner{o: o, reg: reg, queues: map[string]*queue{}, byKey: map[string]map[string]bool{},
		destInflight: map[string]int{}, pace: map[string]time.Time{}, states: states,
		results: make(chan result), fresh: make(chan []*item)}
	for qk, doc := range lasts {
		var st lastState
		if err := json.Unmarshal([]byte(doc), &st); err != nil {
			o.log.Error("outbox: skipping undecodable delivery state", "queue", qk, "err", err)
			continue
		}
		r.queue(qk, st.Key).rec = &st
	}
	lastID := "0-0"
	for _, it := range items {
		r.add(ctx, it)
		lastID = it.id
	}
	r.states = nil
	// A crash may have abandoned a request in flight, which the receiver can
	// still process late: send the final event of every queue with pending
	// messages again later.
	if o.opt.ResendAfter > 0 {
		at := time.Now().Add(o.opt.ResendAfter)
		var dirty []string
		for qk, q := range r.queues {
			if len(q.items) > 0 {
				q.record(qk, q.items[0]).ResendAt = at
				dirty = append(dirty, qk)
			}
		}
		r.saveStates(ctx, dirty)
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

// queue is one (receiver, alert): its messages in order, whether one is in
// flight, and its delivery state.
type queue struct {
	key      string
	items    []*item
	inflight bool
	rec      *lastState
}

func (q *queue) record(qk string, it *item) *lastState {
	if q.rec == nil {
		q.rec = &lastState{Integration: it.integration, Receiver: it.receiver, Key: it.key}
		if it.receiver == "" && it.integration == "" {
			q.rec.Integration = DefaultIntegration
		}
	}
	return q.rec
}

type runner struct {
	o      *Outbox
	reg    *notify.Registry
	queues map[string]*queue
	// byKey indexes the queues of each alert, for fanning out.
	byKey        map[string]map[string]bool
	destInflight map[string]int
	pace         map[string]time.Time
	states       map[string]string // retry states, at start only
	results      chan result
	fresh        chan []*item
	order        []string // dispatch's scratch: queue keys, longest due first
}

func (r *runner) queue(qk, key string) *queue {
	q := r.queues[qk]
	if q == nil {
		q = &queue{key: key}
		r.queues[qk] = q
		if r.byKey[key] == nil {
			r.byKey[key] = map[string]bool{}
		}
		r.byKey[key][qk] = true
	}
	return q
}

func (r *runner) dropQueue(qk string) {
	q := r.queues[qk]
	if q == nil || len(q.items) > 0 || q.inflight || q.rec != nil {
		return
	}
	delete(r.queues, qk)
	if m := r.byKey[q.key]; m != nil {
		delete(m, qk)
		if len(m) == 0 {
			delete(r.byKey, q.key)
		}
	}
}

// add queues a stored message; an acknowledge or resolve is fanned out to
// the queues of its alert (else, for a notification with a target, to the
// integrations; else it has nowhere to go and is dropped).
func (r *runner) add(ctx context.Context, it *item) {
	if it.receiver != Fanout {
		it.qk = queueKey(it.integration, it.receiver, it.key)
		it.applyState(r.states, it.qid)
		r.queue(it.qk, it.key).items = append(r.queue(it.qk, it.key).items, it)
		r.o.met.pending.Inc()
		return
	}
	var targets [][2]string // integration, receiver
	for qk := range r.byKey[it.key] {
		q := r.queues[qk]
		var ref *item
		switch {
		case len(q.items) > 0:
			ref = q.items[0]
		case q.rec != nil:
			ref = &item{integration: q.rec.Integration, receiver: q.rec.Receiver}
		default:
			continue
		}
		targets = append(targets, [2]string{ref.integration, ref.receiver})
	}
	if len(targets) == 0 && it.note != nil {
		if n, err := notify.Unmarshal(it.note); err == nil && n.Target != "" {
			for _, in := range r.o.opt.Integrations {
				targets = append(targets, [2]string{in, ""})
			}
		}
	}
	if len(targets) == 0 {
		// No receiver got this alert's trigger (rejected, or before any was
		// named): nothing to acknowledge or resolve.
		r.o.retryRedis(ctx, "delete message without receivers", func(ctx context.Context) error {
			return r.o.rdb.XDel(ctx, r.o.opt.Key, it.id).Err()
		})
		r.o.log.Info("outbox: message has no receiver, dropped", "id", it.id, "key", it.key, "kind", it.kind)
		return
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i][0]+targets[i][1] < targets[j][0]+targets[j][1] })
	fan := &fanout{}
	var clones []*item
	for _, t := range targets {
		c := *it
		c.integration, c.receiver, c.fan = t[0], t[1], fan
		c.qk = queueKey(c.integration, c.receiver, c.key)
		c.qid = c.id + "/" + c.qk
		fan.qids = append(fan.qids, c.qid)
		if c.applyState(r.states, c.qid) {
			clones = append(clones, &c)
		}
	}
	fan.left = len(clones)
	for _, c := range clones {
		q := r.queue(c.qk, c.key)
		q.items = append(q.items, c)
		r.o.met.pending.Inc()
	}
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
				r.add(ctx, it)
			}
		case res := <-r.results:
			r.handle(ctx, res)
		case <-timer.C:
		}
	}
}

// dispatch starts a send for every queue whose head is due and not in
// flight, within its receiver's concurrency bound and pace; it returns when
// the next head falls due.
func (r *runner) dispatch(ctx context.Context, wg *sync.WaitGroup) time.Time {
	now := time.Now()
	var wake time.Time
	soon := func(t time.Time) {
		if wake.IsZero() || t.Before(wake) {
			wake = t
		}
	}
	// Queues take free concurrency and pace slots in the order they fell
	// due, so that one alert retrying against a failing receiver cannot
	// take every paced slot of its routing key from alerts that waited
	// longer (ranging over the map favours some queues over others).
	r.order = r.order[:0]
	for qk, q := range r.queues {
		if !q.inflight {
			r.order = append(r.order, qk)
		}
	}
	slices.SortFunc(r.order, func(a, b string) int {
		if c := r.queues[a].dueAt().Compare(r.queues[b].dueAt()); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for _, qk := range r.order {
		q := r.queues[qk]
		if q == nil || q.inflight {
			continue
		}
		if len(q.items) == 0 {
			if q.rec == nil {
				continue
			}
			due := q.rec.due()
			if due.IsZero() {
				continue
			}
			if due.After(now) {
				soon(due)
				continue
			}
			r.resendItem(ctx, qk, q, now)
			if len(q.items) == 0 {
				continue
			}
		}
		head := q.items[0]
		if head.next.After(now) {
			soon(head.next)
			continue
		}
		d := dest(qk)
		if r.destInflight[d] >= r.o.opt.Concurrency {
			continue // a result wakes the loop
		}
		// The pace key is known from an earlier attempt: check it before
		// encoding, which would cost a decode and an encode per queue and
		// pass while a storm waits for its turn.
		if head.paced && head.paceKey != "" && r.pace[head.paceKey].After(now) {
			soon(r.pace[head.paceKey])
			continue
		}
		if done, ok := r.prepare(ctx, q, head); !ok {
			r.handle(ctx, result{head, done})
			soon(now) // the queue changed: look at it again
			continue
		}
		if !head.paced {
			head.paceKey, head.every = r.paceOf(head)
			head.paced = true
		}
		if pk := head.paceKey; pk != "" {
			if next := r.pace[pk]; next.After(now) {
				soon(next)
				continue
			}
			r.pace[pk] = now.Add(head.every)
		}
		q.inflight = true
		r.destInflight[d]++
		wg.Add(1)
		go func(it *item) {
			defer wg.Done()
			d := it.notifier.Send(ctx, it.body)
			select {
			case r.results <- result{it, d}:
			case <-ctx.Done():
			}
		}(head)
	}
	return wake
}

// dueAt is when q's next send falls due: its head's next attempt (zero for
// one never tried), or the resend its state asks for.
func (q *queue) dueAt() time.Time {
	if len(q.items) > 0 {
		return q.items[0].next
	}
	if q.rec != nil {
		return q.rec.due()
	}
	return time.Time{}
}

// resendItem queues the send that q's state asks for: the last event again
// after an attempt of unknown outcome, or the trigger again to refresh it.
func (r *runner) resendItem(ctx context.Context, qk string, q *queue, now time.Time) {
	rec := q.rec
	it := &item{id: "resend", qid: "resend", key: rec.Key, integration: rec.Integration, receiver: rec.Receiver,
		qk: qk, at: now, synthetic: true}
	switch {
	case !rec.ResendAt.IsZero() && !rec.ResendAt.After(now) && len(rec.Last) > 0 && r.messenger(ctx, it):
		// A chat receiver (set at start, before its type was known): a
		// repeat would post a duplicate.
		rec.ResendAt = time.Time{}
		r.saveStates(ctx, []string{qk})
		return
	case !rec.ResendAt.IsZero() && !rec.ResendAt.After(now) && len(rec.Last) > 0:
		it.note, it.kind = rec.Last, rec.LastKind
	case !rec.RefreshAt.IsZero() && !rec.RefreshAt.After(now) && len(rec.Trigger) > 0:
		it.note, it.kind = rec.Trigger, string(notify.Trigger)
	default:
		// Nothing was delivered to send again.
		rec.ResendAt, rec.RefreshAt = time.Time{}, time.Time{}
		r.saveStates(ctx, []string{qk})
		return
	}
	q.items = append(q.items, it)
}

// messenger reports whether the item's receiver posts chat messages
// (notify.Messenger); false when it cannot be found.
func (r *runner) messenger(ctx context.Context, it *item) bool {
	var n notify.Notifier
	if it.receiver != "" && r.o.opt.Receivers != nil {
		n, _, _ = r.o.opt.Receivers.Notifier(ctx, it.receiver)
	} else {
		n, _ = r.reg.Lookup(it.integration)
	}
	m, ok := n.(notify.Messenger)
	return ok && m.Messages()
}

// prepare finds the item's notifier and encodes it, now rather than when
// stored. What can never be sent (no such receiver or integration, a record
// of an unknown version, an event the encoder refuses) is rejected:
// retrying would hold back the alert's later messages forever.
func (r *runner) prepare(ctx context.Context, q *queue, it *item) (notify.Delivery, bool) {
	it.notifier, it.body, it.skipped = nil, nil, false
	it.label = it.integration
	if it.receiver != "" {
		if r.o.opt.Receivers == nil {
			return notify.Delivery{Outcome: notify.Reject, Reason: fmt.Sprintf("receiver %q: no receivers configured", it.receiver)}, false
		}
		n, typ, err := r.o.opt.Receivers.Notifier(ctx, it.receiver)
		switch {
		case errors.Is(err, notify.ErrNoReceiver):
			return notify.Delivery{Outcome: notify.Reject, Reason: err.Error()}, false
		case err != nil:
			return notify.Delivery{Outcome: notify.Retry, Reason: err.Error()}, false
		}
		it.notifier, it.label = n, typ
	} else {
		n, ok := r.reg.Lookup(it.integration)
		if !ok {
			return notify.Delivery{Outcome: notify.Reject, Reason: fmt.Sprintf("no notifier registered as %q", it.integration)}, false
		}
		it.notifier = n
	}
	if it.note == nil {
		it.body = it.wire
		return notify.Delivery{}, true
	}
	n, err := notify.Unmarshal(it.note)
	if err != nil {
		return notify.Delivery{Outcome: notify.Reject, Reason: err.Error()}, false
	}
	if n.Action != notify.Trigger && q.rec != nil && len(q.rec.Trigger) > 0 {
		if t, err := notify.Unmarshal(q.rec.Trigger); err == nil {
			n = n.WithTrigger(t)
		}
	}
	it.body, err = it.notifier.Encode(n)
	if errors.Is(err, notify.ErrSkip) {
		it.skipped = true
		return notify.Delivery{Outcome: notify.Delivered, Reason: err.Error()}, false
	}
	if err != nil {
		return notify.Delivery{Outcome: notify.Reject, Reason: err.Error()}, false
	}
	return notify.Delivery{}, true
}

// paceOf is the pace key and interval of a prepared item.
func (r *runner) paceOf(it *item) (string, time.Duration) {
	p, ok := it.notifier.(notify.Pacer)
	if !ok || it.note == nil {
		return "", 0
	}
	n, err := notify.Unmarshal(it.note)
	if err != nil {
		return "", 0
	}
	key, every := p.Pace(n)
	if key == "" || every <= 0 {
		return "", 0
	}
	return dest(it.qk) + "|" + key, every
}

func (r *runner) handle(ctx context.Context, res result) {
	it, d := res.it, res.d
	o := r.o
	q := r.queues[it.qk]
	if q.inflight {
		q.inflight = false
		r.destInflight[dest(it.qk)]--
	}
	now := time.Now()
	// The stream entry goes when its last receiver is done with it.
	last := !it.synthetic
	if it.fan != nil {
		it.fan.left--
		last = it.fan.left == 0
	}
	switch d.Outcome {
	case notify.Delivered:
		dirty := false
		if !it.skipped && it.note != nil {
			rec := q.record(it.qk, it)
			if it.kind == string(notify.Trigger) {
				rec.Trigger = it.note
			}
			rec.Last, rec.LastKind, rec.SentAt = it.note, it.kind, now.UTC()
			if it.synthetic {
				rec.ResendAt = time.Time{}
			}
			rec.RefreshAt = time.Time{}
			if rf, ok := it.notifier.(notify.Refresher); ok && rf.RefreshEvery() > 0 && it.kind != string(notify.Resolve) {
				rec.RefreshAt = now.Add(rf.RefreshEvery()).UTC()
			}
			dirty = true
		}
		// Removed only now; retried until Redis takes it, holding back the
		// alert's next message so that a restart never resends out of order.
		o.retryRedis(ctx, "delete delivered message", func(ctx context.Context) error {
			_, err := o.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				if last {
					p.XDel(ctx, o.opt.Key, it.id)
				}
				switch {
				case it.fan != nil && last:
					p.HDel(ctx, o.retryKey(), it.fan.qids...)
				case it.fan != nil:
					doc, _ := json.Marshal(retryState{Done: true})
					p.HSet(ctx, o.retryKey(), it.qid, doc)
				case !it.synthetic:
					p.HDel(ctx, o.retryKey(), it.qid)
				}
				if dirty {
					r.stateTo(ctx, p, it.qk, q.rec)
				}
				return nil
			})
			return err
		})
		if dirty && q.rec.done() {
			q.rec = nil
		}
		if it.skipped {
			o.log.Debug("outbox: message skipped by its receiver", "id", it.id, "key", it.key, "kind", it.kind,
				"receiver", it.receiver, "reason", d.Reason)
			r.pop(it)
			return
		}
		o.met.notes.WithLabelValues(it.label, it.kind, ResultSent).Inc()
		if !it.synthetic {
			o.met.latency.WithLabelValues(it.label).Observe(time.Since(it.at).Seconds())
		}
		// One line per delivery, so on-call can match a page to the alert
		// that sent it; the body (it holds the target) is never logged.
		o.log.Info("outbox: message delivered", "id", it.id, "key", it.key, "kind", it.kind,
			"integration", it.label, "receiver", it.receiver, "status", d.Status, "attempts", it.attempts+1,
			"after", time.Since(it.at).Round(time.Millisecond))
		r.pop(it)
	case notify.Reject:
		if it.synthetic || it.kind == string(notify.Resolve) {
			// Nothing more will be sent for this alert to this receiver:
			// its delivery state goes.
			q.rec = nil
			r.saveStates(ctx, []string{it.qk})
		}
		if !it.synthetic {
			f := failureDoc{Failure: Failure{ID: it.qid, Key: it.key, Kind: it.kind, Integration: it.label, Receiver: it.receiver,
				EnqueuedAt: it.at, FailedAt: now.UTC(), Status: d.Status, Reason: d.Reason, Attempts: it.attempts + 1}, Body: it.stored()}
			doc, _ := json.Marshal(f)
			sid := ""
			if last {
				sid = it.id
			}
			o.retryRedis(ctx, "set aside rejected message", func(ctx context.Context) error {
				return setAsideScript.Run(ctx, o.rdb, []string{o.opt.Key, o.retryKey(), o.failedKey(), o.failedAtKey()},
					it.qid, doc, now.UnixMilli(), o.opt.FailedTTL.Milliseconds(), o.opt.FailedMax, sid).Err()
			})
			if it.fan != nil {
				o.retryRedis(ctx, "mark fanned-out message done", func(ctx context.Context) error {
					if last {
						return o.rdb.HDel(ctx, o.retryKey(), it.fan.qids...).Err()
					}
					doc, _ := json.Marshal(retryState{Done: true})
					return o.rdb.HSet(ctx, o.retryKey(), it.qid, doc).Err()
				})
			}
		}
		o.met.notes.WithLabelValues(it.label, it.kind, ResultRejected).Inc()
		o.log.Error("outbox: message rejected, not retried", "id", it.id, "key", it.key, "kind", it.kind,
			"integration", it.label, "receiver", it.receiver, "status", d.Status, "reason", d.Reason)
		r.pop(it)
	default:
		if it.fan != nil {
			it.fan.left++ // not done after all
		}
		it.attempts++
		delay := max(o.retryDelay(it.attempts), d.RetryAfter)
		it.next = now.Add(delay)
		it.lastErr = d.Reason
		if d.RetryAfter > 0 && it.notifier != nil {
			// The service asked for a pause: every message to it waits.
			if pk := it.paceKey; pk != "" {
				r.pace[pk] = maxTime(r.pace[pk], now.Add(d.RetryAfter))
			}
		}
		if d.Status == 0 && it.note != nil && it.notifier != nil && o.opt.ResendAfter > 0 {
			// A timeout or a connection lost: the receiver may process this
			// attempt late, after its successors. Send the final event again
			// once that can no longer happen.
			if m, ok := it.notifier.(notify.Messenger); !ok || !m.Messages() {
				q.record(it.qk, it).ResendAt = now.Add(o.opt.ResendAfter).UTC()
				r.saveStates(ctx, []string{it.qk})
			}
		}
		o.met.notes.WithLabelValues(it.label, it.kind, ResultRetry).Inc()
		if !it.synthetic {
			doc, _ := json.Marshal(retryState{Attempts: it.attempts, Next: it.next.UTC(), LastError: d.Reason})
			if err := o.rdb.HSet(ctx, o.retryKey(), it.qid, doc).Err(); err != nil && ctx.Err() == nil {
				o.log.Warn("outbox: recording retry state", "id", it.id, "err", err) // only informational
			}
		}
		o.log.Warn("outbox: delivery failed, will retry", "id", it.id, "key", it.key, "kind", it.kind,
			"integration", it.label, "receiver", it.receiver, "status", d.Status, "reason", d.Reason, "attempt", it.attempts,
			"retry_in", delay.Round(time.Millisecond))
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// stateTo queues the write of a queue's delivery state (or its removal
// when done).
func (r *runner) stateTo(ctx context.Context, p redis.Pipeliner, qk string, rec *lastState) {
	if rec == nil || rec.done() {
		p.HDel(ctx, r.o.lastKey(), qk)
		return
	}
	doc, _ := json.Marshal(rec)
	p.HSet(ctx, r.o.lastKey(), qk, doc)
}

// saveStates writes the delivery state of the queues named.
func (r *runner) saveStates(ctx context.Context, qks []string) {
	if len(qks) == 0 {
		return
	}
	r.o.retryRedis(ctx, "record delivery state", func(ctx context.Context) error {
		_, err := r.o.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, qk := range qks {
				if q := r.queues[qk]; q != nil {
					r.stateTo(ctx, p, qk, q.rec)
				} else {
					p.HDel(ctx, r.o.lastKey(), qk)
				}
			}
			return nil
		})
		return err
	})
	for _, qk := range qks {
		if q := r.queues[qk]; q != nil && q.rec != nil && q.rec.done() {
			q.rec = nil
			r.dropQueue(qk)
		}
	}
}

func (r *runner) pop(it *item) {
	q := r.queues[it.qk]
	if q == nil {
		return
	}
	if len(q.items) > 0 && q.items[0] == it {
		q.items = q.items[1:]
	}
	if !it.synthetic {
		r.o.met.pending.Dec()
	}
	r.dropQueue(it.qk)
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

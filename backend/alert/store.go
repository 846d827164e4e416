package alert

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

	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/redis/go-redis/v9"
)

// Redis keys, all in the {alerts} slot.
const (
	KeyPrefix  = "ka:{alerts}:"
	KeyTracked = KeyPrefix + "tracked" // set of ids the engine looks at every tick
	KeyIndex   = KeyPrefix + "index"   // sorted set id -> last update (ms)
	// LeasePrefix is where the shard leases live, in the same slot so an
	// alert transaction can check the lease it is fenced by.
	LeasePrefix = KeyPrefix + "lease"
	// KeyRoutingKeys maps an alert id to the routing key its last trigger
	// used, so its acknowledge and resolve go to the same integration even
	// if the rule's key changed or the rule was deleted meanwhile. Kept apart
	// from the alert documents, which the API shows.
	KeyRoutingKeys = KeyPrefix + "routing"
	// OutboxLeaseKey is the lease of the single outbox sender.
	OutboxLeaseKey = LeasePrefix + ":outbox"
	// AppliedChannel carries keyword ids of applied batches to every replica.
	AppliedChannel = KeyPrefix + "applied"
)

func alertKey(id string) string { return KeyPrefix + "a:" + id }

// ErrLeaseLost aborts a transition whose shard lease is no longer ours.
var ErrLeaseLost = errors.New("shard lease lost")

// RoutingKeys finds the routing key to page for a rule.
type RoutingKeys interface {
	RoutingKey(ctx context.Context, ruleID string) (rules.Secret, error)
}

// RuleKeys looks routing keys up in the rules store, falling back to the
// default for rules without one (or deleted since the alert fired).
type RuleKeys struct {
	Rules   *rules.Store
	Default rules.Secret
}

// RoutingKey implements RoutingKeys.
func (k RuleKeys) RoutingKey(ctx context.Context, ruleID string) (rules.Secret, error) {
	r, err := k.Rules.Get(ctx, ruleID)
	if err != nil && !errors.Is(err, rules.ErrNotFound) {
		return "", err
	}
	if err == nil && r.PagerDuty.RoutingKey != "" {
		return r.PagerDuty.RoutingKey, nil
	}
	return k.Default, nil
}

// Stage takes the notifications of a transition into the transaction that
// commits it (the outbox), so that both commit or neither does.
type Stage interface {
	AddTo(ctx context.Context, p redis.Pipeliner, n notify.Notification) error
}

// Defaults of a zero StoreOptions.
const (
	// DefaultResolvedTTL is how long a resolved alert is kept after its last
	// change.
	DefaultResolvedTTL = 30 * 24 * time.Hour
	// DefaultHistory is how many history entries an alert keeps.
	DefaultHistory = 50
	// PruneBatch bounds the index entries one prune step looks at.
	PruneBatch = 500
)

// StoreOptions bound what the store keeps. The zero value is usable: a zero
// field means the default above.
type StoreOptions struct {
	// ResolvedTTL is how long a resolved alert (one the engine no longer
	// tracks) is kept after its last change; it expires then, and its id
	// is pruned from the index.
	ResolvedTTL time.Duration
	// History is how many history entries an alert keeps, at most
	// MaxHistory; older ones are dropped and counted in HistoryDropped.
	History int
}

func (o StoreOptions) withDefaults() StoreOptions {
	if o.ResolvedTTL <= 0 {
		o.ResolvedTTL = DefaultResolvedTTL
	}
	if o.History <= 0 {
		o.History = DefaultHistory
	}
	o.History = min(o.History, MaxHistory)
	return o
}

// Store keeps alerts in Redis.
type Store struct {
	rdb    redis.UniversalClient
	outbox Stage
	keys   RoutingKeys
	now    func() time.Time
	log    *slog.Logger
	opt    StoreOptions

	pruneMu     sync.Mutex
	pruneOffset int64 // where the next prune step starts in the index's expired range
}

// NewStore returns a store with default StoreOptions; now may be nil for
// time.Now.
func NewStore(rdb redis.UniversalClient, ob Stage, keys RoutingKeys, now func() time.Time, log *slog.Logger) *Store {
	return NewStoreOptions(rdb, ob, keys, now, log, StoreOptions{})
}

// NewStoreOptions returns a store keeping what opt allows.
func NewStoreOptions(rdb redis.UniversalClient, ob Stage, keys RoutingKeys, now func() time.Time, log *slog.Logger, opt StoreOptions) *Store {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Store{rdb: rdb, outbox: ob, keys: keys, now: now, log: log, opt: opt.withDefaults()}
}

// write is what a transition stores besides the alert.
type write struct {
	notes      []notify.Notification
	routingKey rules.Secret // set with a trigger
}

// change applies fn to the current alert id (nil if absent) in a WATCH/MULTI
// transaction, retried when a concurrent writer got there first. fn returns
// the new alert (nil: nothing to change) and the notifications to store with
// it. With a fence, the transaction commits only while fence's key still
// holds our token.
func (s *Store) change(ctx context.Context, id string, fence *lease.Lease,
	fn func(cur *Alert) (*Alert, write, error)) (*Alert, error) {
	keys := []string{alertKey(id)}
	if fence != nil {
		keys = append(keys, fence.Key())
	}
	var result *Alert
	txf := func(tx *redis.Tx) error {
		var cur *Alert
		b, err := tx.Get(ctx, alertKey(id)).Bytes()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return fmt.Errorf("get alert %s: %w", id, err)
		default:
			if cur, err = decodeAlert(b); err != nil {
				return fmt.Errorf("decode alert %s: %w", id, err)
			}
		}
		if fence != nil {
			owner, err := tx.Get(ctx, fence.Key()).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return fmt.Errorf("check lease %s: %w", fence.Key(), err)
			}
			if owner != fence.Owner() {
				return ErrLeaseLost
			}
		}
		next, w, err := fn(cur)
		if err != nil {
			return err
		}
		if next == nil {
			result = cur
			return nil
		}
		next.trimHistory(s.opt.History)
		doc, err := json.Marshal(next)
		if err != nil {
			return fmt.Errorf("encode alert %s: %w", id, err)
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			if next.tracked() {
				p.Set(ctx, alertKey(id), doc, 0) // no expiry: an alert firing again loses its TTL
				p.SAdd(ctx, KeyTracked, id)
			} else {
				// Resolved for good: kept for a while for the API, then gone.
				p.Set(ctx, alertKey(id), doc, s.opt.ResolvedTTL)
				p.SRem(ctx, KeyTracked, id)
			}
			if next.State == Resolved {
				// The episode is over and its resolve (if any) built; the
				// next trigger records its routing key again.
				p.HDel(ctx, KeyRoutingKeys, id)
			}
			p.ZAdd(ctx, KeyIndex, redis.Z{Score: float64(next.UpdatedAt.UnixMilli()), Member: id})
			for _, n := range w.notes {
				if err := s.outbox.AddTo(ctx, p, n); err != nil {
					return err
				}
			}
			if w.routingKey != "" {
				p.HSet(ctx, KeyRoutingKeys, id, w.routingKey.Reveal())
			}
			return nil
		})
		result = next
		return err
	}
	for attempt := 0; attempt < 20; attempt++ {
		err := s.rdb.Watch(ctx, txf, keys...)
		if errors.Is(err, redis.TxFailedErr) {
			continue // a concurrent change: re-read and decide again
		}
		if err != nil {
			return nil, err
		}
		return result, nil
	}
	return nil, fmt.Errorf("alert %s: too much contention", id)
}

// Get returns alert id.
func (s *Store) Get(ctx context.Context, id string) (*Alert, error) {
	b, err := s.rdb.Get(ctx, alertKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get alert %s: %w", id, err)
	}
	a, err := decodeAlert(b)
	if err != nil {
		return nil, fmt.Errorf("decode alert %s: %w", id, err)
	}
	return a, nil
}

// Tracked returns the alerts the engine watches: active ones and resolved
// ones waiting to re-arm.
func (s *Store) Tracked(ctx context.Context) (map[string]*Alert, error) {
	ids, err := s.rdb.SMembers(ctx, KeyTracked).Result()
	if err != nil {
		return nil, fmt.Errorf("smembers %s: %w", KeyTracked, err)
	}
	list, err := s.mget(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Alert, len(list))
	for _, a := range list {
		out[a.ID] = a
	}
	return out, nil
}

func (s *Store) mget(ctx context.Context, ids []string) ([]*Alert, error) {
	var out []*Alert
	for len(ids) > 0 {
		n := min(len(ids), 500)
		keys := make([]string, n)
		for i, id := range ids[:n] {
			keys[i] = alertKey(id)
		}
		vals, err := s.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, fmt.Errorf("mget %d alerts: %w", n, err)
		}
		for i, v := range vals {
			str, ok := v.(string)
			if !ok {
				continue // deleted meanwhile
			}
			a, err := decodeAlert([]byte(str))
			if err != nil {
				s.log.Error("skipping undecodable alert", "alert_id", ids[i], "err", err)
				continue
			}
			out = append(out, a)
		}
		ids = ids[n:]
	}
	return out, nil
}

// List returns alerts, the most recently changed first; state "" means all.
// At most limit are returned (0: no limit).
func (s *Store) List(ctx context.Context, state State, limit int) ([]*Alert, error) {
	var ids []string
	var err error
	if state == Pending || state == Firing || state == Acknowledged {
		ids, err = s.rdb.SMembers(ctx, KeyTracked).Result()
	} else {
		ids, err = s.rdb.ZRevRange(ctx, KeyIndex, 0, -1).Result()
	}
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	all, err := s.mget(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, a := range all {
		if state == "" || a.State == state {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].UpdatedAt.Equal(out[j].UpdatedAt) {
			return out[i].UpdatedAt.After(out[j].UpdatedAt)
		}
		return out[i].ID < out[j].ID
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Ack acknowledges a firing alert and tells PagerDuty; acknowledging an
// acknowledged alert changes nothing; a resolved one is a conflict.
func (s *Store) Ack(ctx context.Context, id, by string) (*Alert, error) {
	var from State
	a, err := s.change(ctx, id, nil, func(cur *Alert) (*Alert, write, error) {
		if cur != nil {
			from = cur.State
		}
		if cur == nil {
			return nil, write{}, ErrNotFound
		}
		switch cur.State {
		case Acknowledged:
			return nil, write{}, nil
		case Resolved, Pending: // a pending alert has not paged: nothing to acknowledge
			return nil, write{}, ErrConflict
		}
		now := s.now().UTC()
		next := cur.clone()
		next.State, next.AckedAt, next.AckedBy, next.UpdatedAt = Acknowledged, now, by, now
		next.record(now, "acknowledged", "by "+orUnknown(by))
		var w write
		if next.Notified {
			w.notes = s.actionNote(ctx, next, notify.Acknowledge, now)
		}
		return next, w, nil
	})
	s.logManual(a, err, from)
	return a, err
}

// logManual logs a state change made through the API at info, as the
// engine logs its own.
func (s *Store) logManual(a *Alert, err error, from State) {
	if err != nil || a == nil || a.State == from {
		return
	}
	s.log.Info("alert state changed", "rule_id", a.RuleID, "rule", a.RuleName, "group", a.Group, "alert_id", a.ID,
		"from", string(from), "to", string(a.State), "reason", lastDetail(a))
}

// Resolve resolves an active alert by hand and tells PagerDuty. If the
// condition still holds, the alert fires again only after it has been false
// once (Rearm), so a manual resolve is not undone on the next tick.
func (s *Store) Resolve(ctx context.Context, id, by string) (*Alert, error) {
	var from State
	a, err := s.change(ctx, id, nil, func(cur *Alert) (*Alert, write, error) {
		if cur != nil {
			from = cur.State
		}
		if cur == nil {
			return nil, write{}, ErrNotFound
		}
		if cur.State == Resolved {
			return nil, write{}, nil
		}
		now := s.now().UTC()
		next := cur.clone()
		next.State, next.ResolvedAt, next.UpdatedAt = Resolved, now, now
		next.FalseSince, next.Rearm = time.Time{}, true
		next.record(now, "resolved", "by "+orUnknown(by))
		var w write
		if next.Notified {
			w.notes = s.actionNote(ctx, next, notify.Resolve, now)
		}
		next.Notified = false
		return next, w, nil
	})
	s.logManual(a, err, from)
	return a, err
}

// actionNote builds an acknowledge or resolve for an alert, to the routing
// key its trigger went to.
func (s *Store) actionNote(ctx context.Context, a *Alert, action notify.Action, now time.Time) []notify.Notification {
	var key rules.Secret
	k, err := s.rdb.HGet(ctx, KeyRoutingKeys, a.ID).Result()
	switch {
	case err == nil:
		key = rules.Secret(k)
	case errors.Is(err, redis.Nil):
		key, err = s.keys.RoutingKey(ctx, a.RuleID)
	}
	if err != nil {
		a.record(now, "not_paged", fmt.Sprintf("%s not sent: %v", action, err))
		return nil
	}
	// Without a routing key it still goes: the outbox sends it to the
	// receivers that got the alert's trigger, and drops it if none did.
	return []notify.Notification{{Action: action, AlertID: a.ID, DedupKey: a.DedupKey,
		Rule: notify.Rule{ID: a.RuleID, Name: a.RuleName, Severity: a.Severity}, Group: a.Group,
		Keywords: a.Keywords, At: now.UTC(), Target: key}}
}

func orUnknown(s string) string {
	if s == "" {
		return "api"
	}
	return s
}

// pruneScript removes from the index the ids of alerts that expired (the
// key is gone) and still carry the score they had then, so an alert written
// again meanwhile keeps its entry. A resolved, untracked alert stored before
// resolved alerts expired (no TTL) and past the TTL is deleted here too.
//
// KEYS: index, tracked set, routing hash, then one alert key per id.
// ARGV: cutoff (ms), then the ids.
var pruneScript = redis.NewScript(`
local cutoff = tonumber(ARGV[1])
local removed = 0
for i = 2, #ARGV do
  local id, key = ARGV[i], KEYS[i + 2]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= cutoff then
    local gone = redis.call('EXISTS', key) == 0
    if not gone and redis.call('PTTL', key) == -1 and redis.call('SISMEMBER', KEYS[2], id) == 0 then
      local ok, a = pcall(cjson.decode, redis.call('GET', key))
      if ok and type(a) == 'table' and a.state == 'resolved' and not a.rearm then
        redis.call('DEL', key)
        gone = true
      end
    end
    if gone then
      redis.call('ZREM', KEYS[1], id)
      redis.call('HDEL', KEYS[3], id)
      removed = removed + 1
    end
  end
end
return removed`)

// Prune does one bounded step of index upkeep: it looks at up to PruneBatch
// ids whose last change is older than the resolved-alert TTL and removes
// those whose alert has expired, so the index does not keep ids of expired
// alerts forever. Alerts still kept there (active ones that have not changed
// for that long) are stepped over on the next call. It returns how many ids
// it removed.
func (s *Store) Prune(ctx context.Context) (int, error) {
	s.pruneMu.Lock()
	defer s.pruneMu.Unlock()
	cutoff := s.now().Add(-s.opt.ResolvedTTL).UnixMilli()
	ids, err := s.rdb.ZRangeByScore(ctx, KeyIndex, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(cutoff, 10),
		Offset: s.pruneOffset, Count: PruneBatch}).Result()
	if err != nil {
		return 0, fmt.Errorf("prune %s: %w", KeyIndex, err)
	}
	if len(ids) == 0 {
		s.pruneOffset = 0
		return 0, nil
	}
	keys := append(make([]string, 0, len(ids)+3), KeyIndex, KeyTracked, KeyRoutingKeys)
	args := append(make([]any, 0, len(ids)+1), cutoff)
	for _, id := range ids {
		keys = append(keys, alertKey(id))
		args = append(args, id)
	}
	n, err := pruneScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("prune %s: %w", KeyIndex, err)
	}
	if len(ids) < PruneBatch {
		s.pruneOffset = 0 // reached the end of the range: start over next time
	} else {
		s.pruneOffset += int64(len(ids) - n) // step over the ids kept
	}
	return n, nil
}

// RunPruner calls Prune every interval until ctx ends.
func (s *Store) RunPruner(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultEvalInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := s.Prune(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("prune alert index", "err", err)
			} else if n > 0 {
				s.log.Debug("pruned expired alerts from the index", "ids", n)
			}
		}
	}
}

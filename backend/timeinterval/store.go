package timeinterval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key is the Redis hash name -> interval JSON. It lives in the {alerts}
// slot with the silences, which the engine reads in the same round.
const Key = "ka:{alerts}:time-intervals"

// DefaultMaxIntervals bounds the stored intervals when Options.Max is zero.
const DefaultMaxIntervals = 100

// ErrNotFound is returned for an unknown interval name.
var ErrNotFound = errors.New("time interval not found")

// LimitError is a write refused because Max intervals are stored.
type LimitError struct{ Max int }

func (e *LimitError) Error() string {
	return fmt.Sprintf("%d time intervals stored, the limit (KEYALERT_MAX_TIME_INTERVALS); delete one first", e.Max)
}

// Options of the store; the zero value is usable.
type Options struct {
	Max    int          // most intervals stored; zero: DefaultMaxIntervals
	Logger *slog.Logger // nil: slog.Default()
}

// Store keeps time intervals in Redis.
type Store struct {
	rdb redis.UniversalClient
	max int
	now func() time.Time
	log *slog.Logger
}

// NewStore returns a store; now may be nil for time.Now.
func NewStore(rdb redis.UniversalClient, o Options, now func() time.Time) *Store {
	if o.Max == 0 {
		o.Max = DefaultMaxIntervals
	}
	if now == nil {
		now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Store{rdb: rdb, max: o.Max, now: now, log: o.Logger}
}

// putScript stores ARGV[2] under ARGV[1] unless that would pass the limit
// ARGV[3]; it returns the previous document or false, or -1 past the limit.
// In one script so two concurrent creations cannot both slip under it.
var putScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return old`)

// Put creates or replaces the interval of ti.Name; created says which.
func (s *Store) Put(ctx context.Context, ti TimeInterval) (stored TimeInterval, created bool, err error) {
	now := s.now().UTC().Truncate(time.Millisecond)
	ti.CreatedAt, ti.UpdatedAt = now, now
	if old, err := s.Get(ctx, ti.Name); err == nil {
		ti.CreatedAt = old.CreatedAt
	} else if !errors.Is(err, ErrNotFound) {
		return ti, false, err
	}
	doc, err := json.Marshal(ti)
	if err != nil {
		return ti, false, fmt.Errorf("encode time interval %s: %w", ti.Name, err)
	}
	res, err := putScript.Run(ctx, s.rdb, []string{Key}, ti.Name, doc, s.max).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return ti, true, nil
	case err != nil:
		return ti, false, fmt.Errorf("put time interval %s: %w", ti.Name, err)
	}
	if n, ok := res.(int64); ok && n == -1 {
		return ti, false, &LimitError{Max: s.max}
	}
	return ti, false, nil
}

// Get returns the interval called name.
func (s *Store) Get(ctx context.Context, name string) (TimeInterval, error) {
	doc, err := s.rdb.HGet(ctx, Key, name).Bytes()
	if errors.Is(err, redis.Nil) {
		return TimeInterval{}, ErrNotFound
	}
	if err != nil {
		return TimeInterval{}, fmt.Errorf("hget %s %s: %w", Key, name, err)
	}
	var ti TimeInterval
	if err := json.Unmarshal(doc, &ti); err != nil {
		return TimeInterval{}, fmt.Errorf("decode time interval %s: %w", name, err)
	}
	return ti, nil
}

// List returns every interval by name.
func (s *Store) List(ctx context.Context) ([]TimeInterval, error) {
	m, err := s.rdb.HGetAll(ctx, Key).Result()
	if err != nil {
		return nil, fmt.Errorf("hgetall %s: %w", Key, err)
	}
	out := make([]TimeInterval, 0, len(m))
	for name, doc := range m {
		var ti TimeInterval
		if err := json.Unmarshal([]byte(doc), &ti); err != nil {
			// One corrupt document must not stop the others (nor the
			// engine's round, which reads them all).
			s.log.Error("skipping undecodable time interval", "name", name, "err", err)
			continue
		}
		ti.Prepare()
		out = append(out, ti)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Map returns every interval by name, for the engine's round.
func (s *Store) Map(ctx context.Context) (map[string]*TimeInterval, error) {
	list, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]*TimeInterval, len(list))
	for i := range list {
		m[list[i].Name] = &list[i]
	}
	return m, nil
}

// Delete removes the interval called name.
func (s *Store) Delete(ctx context.Context, name string) error {
	n, err := s.rdb.HDel(ctx, Key, name).Result()
	if err != nil {
		return fmt.Errorf("hdel %s %s: %w", Key, name, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// AnyContains reports whether t is inside any of the named intervals;
// names not in m (deleted since) are not inside, so nothing stays muted by
// an interval that no longer exists.
func AnyContains(m map[string]*TimeInterval, names []string, t time.Time) bool {
	for _, n := range names {
		if ti, ok := m[n]; ok && ti.Contains(t) {
			return true
		}
	}
	return false
}

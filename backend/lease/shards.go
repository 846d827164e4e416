package lease

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/redis/go-redis/v9"
	"github.com/zeebo/xxh3"
)

// ShardOf maps an id (a rule id) to one of n shards.
func ShardOf(id string, n int) int {
	return int(xxh3.HashString(id) % uint64(n))
}

// Shards holds a fair share of n shard leases. Replicas announce themselves
// in a members sorted set (scored by expiry); each aims for ceil(n/live)
// shards, releasing extras so a newcomer gets its share, and takes a free
// shard beyond its share once it has seen it free twice in a row, so no shard
// stays orphaned when the member count is stale.
type Shards struct {
	rdb    redis.UniversalClient
	prefix string
	owner  string
	ttl    time.Duration
	log    *slog.Logger
	oom    *redisoom.Reporter
	leases []*Lease

	mu       sync.Mutex
	seenFree map[int]bool
}

// NewShards returns a manager for o.Shards shard leases under prefix (keys
// prefix:shard:<i> and prefix:members).
func NewShards(rdb redis.UniversalClient, prefix, owner string, o Options, log *slog.Logger) *Shards {
	if log == nil {
		log = slog.Default()
	}
	o = o.withDefaults()
	s := &Shards{rdb: rdb, prefix: prefix, owner: owner, ttl: o.TTL, log: log, oom: o.OOM, seenFree: map[int]bool{}}
	for i := 0; i < o.Shards; i++ {
		s.leases = append(s.leases, New(rdb, prefix+":shard:"+strconv.Itoa(i), owner, o.TTL))
	}
	return s
}

// N is the number of shards.
func (s *Shards) N() int { return len(s.leases) }

// Lease returns shard i's lease.
func (s *Shards) Lease(i int) *Lease { return s.leases[i] }

// Owns reports whether shard i is certainly held now.
func (s *Shards) Owns(i int) bool { return s.leases[i].Held() }

// Owned lists the shards certainly held now.
func (s *Shards) Owned() []int {
	var out []int
	for i, l := range s.leases {
		if l.Held() {
			out = append(out, i)
		}
	}
	return out
}

// Run steps every TTL/3 until ctx ends, then releases every shard.
func (s *Shards) Run(ctx context.Context) {
	t := time.NewTicker(s.ttl / 3)
	defer t.Stop()
	for {
		if err := s.Step(ctx); err != nil && ctx.Err() == nil && (s.oom == nil || !s.oom.Note(ctx, err, "what", "shard leases")) {
			s.log.Warn("shard leases", "err", err)
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			s.ReleaseAll(rctx)
			cancel()
			return
		case <-t.C:
		}
	}
}

// Step does one round: heartbeat, renew held shards, release extras, take
// free ones up to the fair share.
func (s *Shards) Step(ctx context.Context) error {
	members := s.prefix + ":members"
	now := time.Now()
	var live *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, members, redis.Z{Score: float64(now.Add(s.ttl).UnixMilli()), Member: s.owner})
		p.ZRemRangeByScore(ctx, members, "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
		live = p.ZCard(ctx, members)
		return nil
	})
	if err != nil {
		return fmt.Errorf("heartbeat %s: %w", members, err)
	}
	n := len(s.leases)
	share := (n + int(live.Val()) - 1) / max(int(live.Val()), 1)

	var held []int
	for i, l := range s.leases {
		if !l.Held() {
			continue
		}
		ok, err := l.Renew(ctx)
		if err != nil {
			s.log.Warn("renew shard lease", "shard", i, "err", err)
		}
		if ok || l.Held() {
			held = append(held, i)
		}
	}
	// Release extras, the highest shards first, so a newcomer gets its share.
	sort.Ints(held)
	for len(held) > share {
		i := held[len(held)-1]
		held = held[:len(held)-1]
		if err := s.leases[i].Release(ctx); err != nil {
			return err
		}
	}
	// Try free shards, starting at an offset of our own so that replicas
	// starting together do not all race for shard 0.
	s.mu.Lock()
	defer s.mu.Unlock()
	start := int(xxh3.HashString(s.owner) % uint64(n))
	for k := 0; k < n; k++ {
		i := (start + k) % n
		l := s.leases[i]
		if l.Held() {
			continue
		}
		if len(held) >= share && !s.seenFree[i] {
			// Beyond our share: take it only if it was free last round too.
			free, err := s.rdb.Exists(ctx, l.key).Result()
			if err != nil {
				return fmt.Errorf("check shard %d: %w", i, err)
			}
			s.seenFree[i] = free == 0
			continue
		}
		ok, err := l.TryAcquire(ctx)
		if err != nil {
			return err
		}
		delete(s.seenFree, i)
		if ok {
			held = append(held, i)
		}
	}
	return nil
}

// ReleaseAll gives up every shard and the membership, for a clean shutdown
// that lets the other replicas take over at once.
func (s *Shards) ReleaseAll(ctx context.Context) {
	for i, l := range s.leases {
		if err := l.Release(ctx); err != nil {
			s.log.Warn("release shard lease", "shard", i, "err", err)
		}
	}
	s.rdb.ZRem(ctx, s.prefix+":members", s.owner)
}

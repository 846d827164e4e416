// Package lease gives a replica exclusive, expiring ownership of a name in
// Redis: one Lease for a single role (the outbox sender), Shards for a fair
// share of N shard leases (rule evaluation). A lease is a key holding the
// owner's token with a TTL; it is renewed well before it expires, and a
// replica that dies loses it when the TTL runs out, so another takes over
// within about one TTL.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/keyalert/keyalert/pkg/backoff"
	"github.com/keyalert/keyalert/pkg/redisoom"
	"github.com/redis/go-redis/v9"
)

// Defaults of the Options fields left zero.
const (
	DefaultTTL    = 5 * time.Second
	DefaultShards = 16
)

// Options of leases. The zero value is usable: a zero field means its
// Default constant.
type Options struct {
	// TTL is how long a lease outlives its last renewal; a killed replica's
	// work is taken over after about this long.
	TTL time.Duration
	// Shards is how many evaluation shards rules are spread over; each
	// replica holds a fair share. Every replica must use the same number.
	Shards int
	// OOM, if set, reports the step failures that are Redis out of memory
	// (once per interval) instead of a warning per step; not a setting.
	OOM *redisoom.Reporter
}

func (o Options) withDefaults() Options {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Shards <= 0 {
		o.Shards = DefaultShards
	}
	return o
}

// NewOwner returns a token unique to this process: the host name for people
// reading Redis, plus randomness so a restarted replica does not inherit the
// leases of its previous life.
func NewOwner() string {
	host, _ := os.Hostname()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return host + "/" + hex.EncodeToString(b[:])
}

var (
	// acquire takes a free lease or extends our own. ARGV: owner, ttl ms.
	acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0`)
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

// Lease is one named lease held by one owner.
type Lease struct {
	rdb   redis.UniversalClient
	key   string
	owner string
	ttl   time.Duration

	mu    sync.Mutex
	until time.Time // local deadline of the last successful renewal
}

// New returns a lease on key for owner; nothing is taken until TryAcquire.
// A ttl of 0 means DefaultTTL.
func New(rdb redis.UniversalClient, key, owner string, ttl time.Duration) *Lease {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Lease{rdb: rdb, key: key, owner: owner, ttl: ttl}
}

// Key is the Redis key; transactions that must only commit while the lease
// is held WATCH it and compare its value with Owner.
func (l *Lease) Key() string { return l.key }

// Owner is the token stored in the key while we hold it.
func (l *Lease) Owner() string { return l.owner }

// TryAcquire takes the lease if it is free or ours, extending it by the TTL.
func (l *Lease) TryAcquire(ctx context.Context) (bool, error) {
	return l.run(ctx, acquireScript)
}

// Renew extends the lease if we still hold it; false means it was lost.
func (l *Lease) Renew(ctx context.Context) (bool, error) {
	return l.run(ctx, renewScript)
}

func (l *Lease) run(ctx context.Context, s *redis.Script) (bool, error) {
	start := time.Now()
	n, err := s.Run(ctx, l.rdb, []string{l.key}, l.owner, l.ttl.Milliseconds()).Int()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		// Unknown outcome: keep the old deadline, which runs out by itself.
		return false, fmt.Errorf("lease %s: %w", l.key, err)
	}
	if n == 1 {
		// Counted from before the call, less a margin for clock rate drift,
		// so we stop believing we hold it before Redis expires it.
		l.until = start.Add(l.ttl - l.ttl/5)
		return true, nil
	}
	l.until = time.Time{}
	return false, nil
}

// Release gives the lease up if we hold it.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	l.until = time.Time{}
	l.mu.Unlock()
	if err := releaseScript.Run(ctx, l.rdb, []string{l.key}, l.owner).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}

// Held reports whether the last renewal is recent enough that the lease is
// certainly still ours. Work that must be exclusive also checks Owner inside
// its Redis transaction; Held only avoids starting doomed work.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Now().Before(l.until)
}

// Hold keeps trying to take the lease and, while it is held, runs work with a
// context cancelled as soon as the lease is lost or ctx ends. It returns when
// ctx ends, releasing the lease.
func (l *Lease) Hold(ctx context.Context, work func(ctx context.Context)) {
	interval := l.ttl / 3
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		l.Release(rctx)
		cancel()
	}()
	for {
		if ok, _ := l.TryAcquire(ctx); ok {
			wctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); work(wctx) }()
			l.keep(wctx, interval)
			cancel()
			<-done
		}
		if backoff.Sleep(ctx, interval) != nil {
			return
		}
	}
}

// keep renews until the lease is lost or ctx ends.
func (l *Lease) keep(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ok, err := l.Renew(ctx)
			if !ok && (err == nil || !l.Held()) {
				return
			}
		}
	}
}

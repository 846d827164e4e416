// Package redisguard makes Redis data loss loud. At start it checks that
// every Redis master persists its data (AOF, or at least RDB snapshots) and
// refuses a volatile one unless told otherwise; while running it watches
// epoch keys it wrote, one in each cluster slot keyalertd keeps data in, and
// when one disappears or changes (FLUSHALL, a restart without persistence, a
// failover to an empty replica) it logs an error, counts the loss, turns
// readiness off for a while and calls OnLoss (which republishes the keyword
// set), so that a wipe is never silent.
package redisguard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Defaults of the Options fields left zero.
const (
	DefaultInterval   = 3 * time.Second
	DefaultUnreadyFor = 10 * time.Minute
)

// DefaultSlots are the hash tags of the slots keyalertd's alerting data lives
// in; the server adds the stream's. In a Redis Cluster a master that loses
// its data loses only its own slots, so each slot gets its own epoch key.
var DefaultSlots = []string{"{alerts}", "{rules}", "{silences}"}

// ErrVolatile is wrapped by Start and Run when a Redis master keeps its data
// in memory only and AllowVolatile is false.
var ErrVolatile = errors.New("redis has no persistence")

// Options of the guard. The zero value is usable: a zero field means its
// Default constant.
type Options struct {
	// AllowVolatile accepts a Redis without AOF or RDB, with a warning.
	AllowVolatile bool
	// UnreadyFor is how long Ready fails after a data loss was detected.
	UnreadyFor time.Duration
	// Interval is how often the epoch keys are checked.
	Interval time.Duration
	// Slots are hash tags such as "{alerts}"; empty: DefaultSlots. The epoch
	// key of tag t is "ka:" + t + ":epoch".
	Slots []string

	// Set by keyalertd when it wires the guard.
	Registerer prometheus.Registerer       // nil: no metrics registered
	Logger     *slog.Logger                // nil: slog.Default()
	Now        func() time.Time            // nil: time.Now
	OnLoss     func(context.Context) error // after a loss; retried each check until nil
}

func (o Options) withDefaults() Options {
	if o.UnreadyFor <= 0 {
		o.UnreadyFor = DefaultUnreadyFor
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if len(o.Slots) == 0 {
		o.Slots = DefaultSlots
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Guard checks persistence once and watches the epoch keys.
type Guard struct {
	rdb  redis.UniversalClient
	o    Options
	keys []string
	loss prometheus.Counter

	mu         sync.Mutex
	checked    bool              // Start succeeded
	epochs     map[string]string // key -> the value this process expects
	lostAt     time.Time         // last detected loss; zero: none
	lostReason string
	onLossDue  bool // OnLoss has not yet succeeded since the last loss
}

// New returns a guard on rdb; nothing runs until Start or Run.
func New(rdb redis.UniversalClient, o Options) (*Guard, error) {
	o = o.withDefaults()
	g := &Guard{rdb: rdb, o: o, epochs: map[string]string{}}
	seen := map[string]bool{}
	for _, t := range o.Slots {
		if k := EpochKey(t); !seen[k] {
			seen[k] = true
			g.keys = append(g.keys, k)
		}
	}
	g.loss = prometheus.NewCounter(prometheus.CounterOpts{Name: "keyalert_redis_data_loss_total",
		Help: "Times this replica found an epoch key gone or changed: Redis lost its data."})
	if o.Registerer != nil {
		if err := o.Registerer.Register(g.loss); err != nil {
			return nil, fmt.Errorf("register redisguard metrics: %w", err)
		}
	}
	return g, nil
}

// EpochKey is the epoch key in the slot of hash tag tag ("{alerts}").
func EpochKey(tag string) string { return "ka:" + tag + ":epoch" }

// Keys are the epoch keys the guard watches.
func (g *Guard) Keys() []string { return append([]string(nil), g.keys...) }

// Start checks every master's persistence and writes the epoch keys that are
// missing. It wraps ErrVolatile when a master has no persistence and
// AllowVolatile is false; any other error is Redis failing to answer, and
// Run tries again.
func (g *Guard) Start(ctx context.Context) error {
	nodes, err := Inspect(ctx, g.rdb)
	if err != nil {
		return err
	}
	if err := g.judge(nodes); err != nil {
		return err
	}
	if err := g.establish(ctx, g.keys); err != nil {
		return err
	}
	g.mu.Lock()
	g.checked = true
	g.mu.Unlock()
	return nil
}

// judge refuses or warns about the persistence of nodes.
func (g *Guard) judge(nodes []Node) error {
	for _, n := range nodes {
		switch n.Mode() {
		case ModeNone:
			msg := fmt.Sprintf("redis %s has no persistence (appendonly no, save \"\"; read by %s): a restart loses every count, rule, alert and pending page", n.Addr, n.Source)
			if !g.o.AllowVolatile {
				return fmt.Errorf("%w: %s; set `appendonly yes` and `appendfsync everysec` in redis.conf (or CONFIG SET appendonly yes, then CONFIG REWRITE), or set KEYALERT_ALLOW_VOLATILE_REDIS=true to accept the loss",
					ErrVolatile, msg)
			}
			g.o.Logger.Warn(msg+"; accepted because KEYALERT_ALLOW_VOLATILE_REDIS=true", "redis", n.Addr)
		case ModeRDB:
			g.o.Logger.Warn("redis persists by RDB snapshots only: a restart loses the writes since the last snapshot; set `appendonly yes` and `appendfsync everysec` in redis.conf",
				"redis", n.Addr, "loss_window", n.LossWindow())
		}
	}
	return nil
}

// establish writes a new epoch at each key that has none and adopts the
// value found there, so replicas racing after a loss agree on every key.
func (g *Guard) establish(ctx context.Context, keys []string) error {
	id := newEpoch()
	gets := make([]*redis.StringCmd, len(keys))
	_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			p.SetNX(ctx, k, id, 0)
			gets[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write epoch keys: %w", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, k := range keys {
		g.epochs[k] = gets[i].Val()
	}
	return nil
}

// Check reads the epoch keys once; when one is gone or changed it handles
// the loss and reports it (true). An error is Redis not answering, which is
// not a loss. Before Start has succeeded it does nothing.
func (g *Guard) Check(ctx context.Context) (bool, error) {
	g.mu.Lock()
	checked := g.checked
	g.mu.Unlock()
	if !checked {
		return false, nil
	}
	gets := make([]*redis.StringCmd, len(g.keys))
	_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range g.keys {
			gets[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("read epoch keys: %w", err)
	}
	var lost, what []string
	g.mu.Lock()
	for i, k := range g.keys {
		v, err := gets[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
			lost, what = append(lost, k), append(what, k+" missing")
		case err != nil:
			g.mu.Unlock()
			return false, fmt.Errorf("read %s: %w", k, err)
		case v != g.epochs[k]:
			lost, what = append(lost, k), append(what, k+" changed")
		}
	}
	g.mu.Unlock()
	if len(lost) > 0 {
		now := g.o.Now()
		reason := fmt.Sprintf("redis lost its data at about %s (%s): counts, rules, alerts and pending pages written before may be gone",
			now.UTC().Format(time.RFC3339), strings.Join(what, ", "))
		g.loss.Inc()
		g.o.Logger.Error(reason+"; make Redis persistent (appendonly yes, appendfsync everysec) and recreate the rules",
			"epoch_keys", lost, "not_ready_for", g.o.UnreadyFor.String())
		g.mu.Lock()
		g.lostAt, g.lostReason, g.onLossDue = now, reason, true
		for _, k := range lost {
			delete(g.epochs, k)
		}
		g.mu.Unlock()
		if err := g.establish(ctx, lost); err != nil {
			return true, err
		}
	}
	g.runOnLoss(ctx)
	return len(lost) > 0, nil
}

func (g *Guard) runOnLoss(ctx context.Context) {
	g.mu.Lock()
	due := g.onLossDue
	g.mu.Unlock()
	if !due || g.o.OnLoss == nil {
		return
	}
	if err := g.o.OnLoss(ctx); err != nil {
		g.o.Logger.Warn("after redis data loss", "err", err) // tried again next check
		return
	}
	g.mu.Lock()
	g.onLossDue = false
	g.mu.Unlock()
}

// Run checks the epoch keys every Interval until ctx ends. While Start has
// not succeeded (Redis unreachable when keyalertd started) it retries Start
// instead; it returns an error wrapping ErrVolatile if that finds a master
// without persistence, and nil when ctx ends.
func (g *Guard) Run(ctx context.Context) error {
	t := time.NewTicker(g.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		g.mu.Lock()
		checked := g.checked
		g.mu.Unlock()
		if !checked {
			err := g.Start(ctx)
			if errors.Is(err, ErrVolatile) {
				return err
			}
			if err != nil {
				g.o.Logger.Debug("redis persistence check", "err", err)
			}
			continue
		}
		if _, err := g.Check(ctx); err != nil && ctx.Err() == nil {
			g.o.Logger.Debug("redis epoch check", "err", err) // readiness reports an unreachable Redis
		}
	}
}

// Ready fails until the persistence check has passed, and for UnreadyFor
// after a data loss, with the reason.
func (g *Guard) Ready() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.checked {
		return errors.New("redis persistence not checked yet")
	}
	if !g.lostAt.IsZero() {
		if until := g.lostAt.Add(g.o.UnreadyFor); g.o.Now().Before(until) {
			return fmt.Errorf("%s; ready again at %s or on restart", g.lostReason, until.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

func newEpoch() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// Mode is how a Redis node keeps its data.
type Mode string

const (
	ModeAOF  Mode = "aof"
	ModeRDB  Mode = "rdb"
	ModeNone Mode = "none"
)

// Node is the persistence of one Redis master.
type Node struct {
	Addr   string
	AOF    bool
	Save   string // the `save` rules ("900 1 60 100"); "" none or unknown
	RDB    bool   // snapshots are taken (from Save, or INFO's rdb_* fields)
	Source string // "CONFIG GET" or "INFO persistence" (CONFIG disabled or renamed)
}

// Mode is the strongest persistence the node has.
func (n Node) Mode() Mode {
	switch {
	case n.AOF:
		return ModeAOF
	case n.RDB:
		return ModeRDB
	}
	return ModeNone
}

// LossWindow describes what a restart of an RDB-only node loses, from its
// save rules: the writes since the last snapshot, taken after S seconds when
// at least C keys changed.
func (n Node) LossWindow() string {
	f := strings.Fields(n.Save)
	if len(f) == 0 || len(f)%2 != 0 {
		return "the writes since the last snapshot (save rules unknown)"
	}
	type rule struct{ secs, changes int }
	var rs []rule
	for i := 0; i < len(f); i += 2 {
		s, _ := strconv.Atoi(f[i])
		c, _ := strconv.Atoi(f[i+1])
		rs = append(rs, rule{s, c})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].secs < rs[j].secs })
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("up to %ds of writes once %d keys change", r.secs, r.changes))
	}
	return strings.Join(parts, ", ") + fmt.Sprintf(" (save %s)", n.Save)
}

// Inspect reads the persistence of every master: the one server, or each
// master of a Redis Cluster.
func Inspect(ctx context.Context, rdb redis.UniversalClient) ([]Node, error) {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		var mu sync.Mutex
		var nodes []Node
		err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			n, err := inspectNode(ctx, m)
			if err != nil {
				return err
			}
			mu.Lock()
			nodes = append(nodes, n)
			mu.Unlock()
			return nil
		})
		sort.Slice(nodes, func(i, j int) bool { return nodes[i].Addr < nodes[j].Addr })
		return nodes, err
	case *redis.Client:
		n, err := inspectNode(ctx, c)
		if err != nil {
			return nil, err
		}
		return []Node{n}, nil
	}
	return nil, fmt.Errorf("redis persistence check: unsupported client %T", rdb)
}

func inspectNode(ctx context.Context, c *redis.Client) (Node, error) {
	n := Node{Addr: c.Options().Addr, Source: "CONFIG GET"}
	ao, errA := c.ConfigGet(ctx, "appendonly").Result()
	sv, errS := c.ConfigGet(ctx, "save").Result()
	aof, okA := ao["appendonly"]
	save, okS := sv["save"]
	if errA == nil && errS == nil && okA && okS {
		n.AOF, n.Save, n.RDB = aof == "yes", save, strings.TrimSpace(save) != ""
		return n, nil
	}
	// CONFIG is often disabled or renamed on managed Redis; INFO tells
	// whether AOF is on, and whether snapshots have ever been taken.
	info, err := c.Info(ctx, "persistence").Result()
	if err != nil {
		return n, fmt.Errorf("redis %s persistence: CONFIG GET: %v; INFO persistence: %w", n.Addr, firstErr(errA, errS), err)
	}
	n.Source = "INFO persistence"
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "aof_enabled":
			n.AOF = v == "1"
		case "rdb_saves":
			if x, _ := strconv.Atoi(v); x > 0 {
				n.RDB = true
			}
		case "rdb_last_bgsave_time_sec":
			if x, _ := strconv.Atoi(v); x >= 0 {
				n.RDB = true
			}
		}
	}
	return n, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return errors.New("no value")
}

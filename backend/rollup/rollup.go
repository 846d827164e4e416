// Package rollup keeps the hourly tier of counts: a background roller that,
// under a lease so that one replica does it, sums each hour's minute windows
// into the hourly keys of package window (window.Store.RollHour). Ingest is
// not touched: the apply script writes minutes only.
//
// Each hour is rolled twice, both times by overwriting (never incrementing),
// so any re-run is harmless:
//
//   - the first pass once the hour is complete plus Delay (late entries
//     and agents behind in time), so the hourly tier is there early;
//   - the final pass FinalLead before the hour's first minute expires
//     (Retention after it), so entries that came later than Delay are in.
//
// A keyword-hour is summed in memory up to MaxCells sums, then added to
// Redis and dropped, so keyalertd holds O(MaxCells) of an hour however many
// hosts and minutes it has.
//
// Two cursors in Redis (window.Keys.RollupState) say which hours are done.
// A pass rolls at most HoursPerPass hours, final passes first (their minutes
// are about to expire), then first passes, oldest first.
//
// Failure cases:
//
//   - Crash mid-roll: an hour's keys of one keyword are replaced in one
//     transaction (RollHour), and a cursor moves only after every keyword of
//     the hour is rolled, so the next pass (here or on another replica)
//     rolls the hour again from its minutes.
//   - keyalertd down for days: the cursors are behind. Hours whose minutes
//     have begun to expire cannot be summed any more: they are skipped
//     (keyalert_rollup_hours_missed_total counts those never rolled at all;
//     those with a first pass keep it). The rest are caught up at
//     HoursPerPass per Interval.
//   - Late entries: the final pass includes entries that arrived up to
//     FinalLead before the minute retention ran out; entries even later
//     are only in the minute tier (until it expires).
//   - Redis wipe: the cursors are gone with the data; the next pass starts
//     again from the oldest hour still complete in the minute tier, i.e.
//     from whatever ingest writes after the wipe.
package rollup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Defaults of the Options fields left zero.
const (
	// DefaultDelay is how long after an hour ends its first pass runs: late
	// entries and the alert engine's evaluation delay are well within it.
	DefaultDelay = 5 * time.Minute
	// DefaultInterval is how often a pass runs.
	DefaultInterval = time.Minute
	// DefaultHoursPerPass bounds one pass: catching up a week of hours
	// takes 168/6 = 28 passes.
	DefaultHoursPerPass = 6
	// FinalLead is how long before an hour's first minute expires its final
	// pass is due; a pass missing it by up to this much still rolls the hour.
	FinalLead = 30 * time.Minute
	// expirySafety keeps a pass from reading an hour whose first minute
	// expires while it reads.
	expirySafety = 2 * time.Minute
)

// Options of the roller. The zero value is usable (Retention and
// HourlyRetention default to the window package's).
type Options struct {
	// Retention is the minute tier's retention (KEYALERT_RETENTION).
	Retention time.Duration
	// HourlyRetention is how long hourly counts are kept after their hour.
	HourlyRetention time.Duration
	// Delay is how long after an hour's end its first pass runs.
	Delay time.Duration
	// Interval is how often a pass runs while this replica holds the lease.
	Interval time.Duration
	// HoursPerPass bounds the hours one pass rolls (every keyword of each).
	HoursPerPass int
	// MaxCells bounds the sums (cells, hosts, tags, label values) held in
	// memory while one keyword-hour is rolled; past it they are added to
	// Redis and dropped (window.Store.RollHourBounded). Zero:
	// window.DefaultRollMaxCells.
	MaxCells int
	// LeaseTTL is the roller lease's TTL; zero: lease.DefaultTTL.
	LeaseTTL time.Duration

	Registerer prometheus.Registerer // nil: prometheus.DefaultRegisterer
	Logger     *slog.Logger          // nil: slog.Default()
	Now        func() time.Time      // nil: time.Now; passes still tick on the real clock
}

func (o Options) withDefaults() Options {
	if o.Retention <= 0 {
		o.Retention = window.DefaultRetention
	}
	if o.HourlyRetention <= 0 {
		o.HourlyRetention = window.DefaultHourlyRetention
	}
	if o.HourlyRetention < o.Retention {
		o.HourlyRetention = o.Retention
	}
	if o.Delay <= 0 {
		o.Delay = DefaultDelay
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.HoursPerPass <= 0 {
		o.HoursPerPass = DefaultHoursPerPass
	}
	if o.MaxCells <= 0 {
		o.MaxCells = window.DefaultRollMaxCells
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.DefaultRegisterer
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Roller rolls minutes up into hours.
type Roller struct {
	rdb   redis.UniversalClient
	store *window.Store
	keys  window.Keys
	lease *lease.Lease
	o     Options
	m     metrics
}

type metrics struct {
	hours       *prometheus.CounterVec
	kwHours     prometheus.Counter
	missed      prometheus.Counter
	failures    prometheus.Counter
	lag         prometheus.Gauge
	passSeconds prometheus.Histogram
}

// New returns a roller of the windows of streamKey; owner is this replica's
// lease token (lease.NewOwner). It registers its metrics.
func New(rdb redis.UniversalClient, streamKey, owner string, o Options) (*Roller, error) {
	o = o.withDefaults()
	store := window.NewStore(rdb, streamKey)
	r := &Roller{rdb: rdb, store: store, keys: store.Keys(), o: o}
	r.lease = lease.New(rdb, r.keys.RollupLease(), owner, o.LeaseTTL)
	r.m = metrics{
		hours: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyalert_rollup_hours_total",
			Help: "Hours rolled up into the hourly tier, by pass (first, final)."}, []string{"pass"}),
		kwHours: prometheus.NewCounter(prometheus.CounterOpts{Name: "keyalert_rollup_keyword_hours_total",
			Help: "Keyword-hours written to the hourly tier (one per keyword of each rolled hour)."}),
		missed: prometheus.NewCounter(prometheus.CounterOpts{Name: "keyalert_rollup_hours_missed_total",
			Help: "Hours the roller could not roll any more (their minutes had begun to expire) and had not rolled before, with or without counts: keyalertd was down for about the retention or longer."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "keyalert_rollup_failures_total",
			Help: "Roll-up passes that failed (Redis errors); the next pass retries."}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "keyalert_rollup_lag_seconds",
			Help: "How long the oldest hour due for a first pass has been waiting (0 when none); set by the replica holding the roller lease."}),
		passSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "keyalert_rollup_pass_seconds",
			Help: "Wall time of one roll-up pass that had work.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
	}
	for _, c := range []prometheus.Collector{r.m.hours, r.m.kwHours, r.m.missed, r.m.failures, r.m.lag, r.m.passSeconds} {
		if err := o.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("rollup metrics: %w", err)
		}
	}
	r.m.hours.WithLabelValues("first")
	r.m.hours.WithLabelValues("final")
	return r, nil
}

// Run rolls up while this replica holds the roller lease, one pass per
// Interval, until ctx ends.
func (r *Roller) Run(ctx context.Context) {
	r.lease.Hold(ctx, func(ctx context.Context) {
		r.o.Logger.Info("hourly roll-up started")
		defer r.o.Logger.Info("hourly roll-up stopped")
		t := time.NewTicker(r.o.Interval)
		defer t.Stop()
		for {
			if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
				r.m.failures.Inc()
				r.o.Logger.Warn("hourly roll-up pass", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

// Result is what one pass did.
type Result struct {
	First, Final []int64 // hour starts rolled by each pass
	KeywordHours int     // keyword-hours written
	Missed       int     // hours never rolled, skipped because their minutes expired
}

// dueFirst is when hour's first pass is due; lastSafe the last moment its
// minutes can still be read whole.
func (r *Roller) dueFirst(hour int64) int64 { return hour + 3600 + secs(r.o.Delay) }
func (r *Roller) lastSafe(hour int64) int64 {
	return hour + 60 + secs(r.o.Retention) - secs(expirySafety)
}

func secs(d time.Duration) int64 { return int64(d / time.Second) }

// Pass runs one bounded pass: at most HoursPerPass hours. It is what Run
// calls each Interval; exported for tests and tools, it does not check the
// lease.
func (r *Roller) Pass(ctx context.Context) (Result, error) {
	var res Result
	now := r.o.Now().Unix()
	st, err := r.rdb.HMGet(ctx, r.keys.RollupState(), "first", "final").Result()
	if err != nil {
		return res, fmt.Errorf("rollup state %s: %w", r.keys.RollupState(), err)
	}
	first, firstOK := cursor(st[0])
	final, finalOK := cursor(st[1])
	// The oldest hour whose minutes can all still be read.
	oldest := window.HourStart(now-secs(r.o.Retention)+secs(expirySafety)-60) + 3600
	if !finalOK {
		final = oldest
	}
	if !firstOK {
		first = final
	}
	if final < oldest {
		// Hours from the first cursor on were never rolled, and their
		// minutes have begun to expire: whatever they held is lost to the
		// hourly tier.
		if never := max(first, final); never < oldest {
			res.Missed = int((oldest - never) / 3600)
		}
		final = oldest
	}
	first = max(first, final)
	if res.Missed > 0 {
		r.m.missed.Add(float64(res.Missed))
		r.o.Logger.Warn("hours skipped by the hourly roll-up: their minutes expired before they were rolled", "hours", res.Missed)
	}

	// Due: first passes for hours ending Delay ago, final passes for hours
	// whose first minute expires within FinalLead (both exclusive ends).
	firstEnd := window.HourStart(now-3600-secs(r.o.Delay)) + 3600
	finalEnd := min(firstEnd, window.HourStart(now-secs(r.o.Retention)+secs(FinalLead))+3600)
	if first < firstEnd {
		r.m.lag.Set(float64(now - r.dueFirst(first)))
	} else {
		r.m.lag.Set(0)
	}
	if final >= finalEnd && first >= firstEnd {
		return res, r.saveCursors(ctx, first, final)
	}
	start := time.Now()
	defer func() { r.m.passSeconds.Observe(time.Since(start).Seconds()) }()
	// One walk of the keyspace finds the hours that have minutes, so hours
	// without any (a quiet night, or a cursor far behind) cost nothing.
	kws, err := r.store.KeywordsByHour(ctx, min(first, final), firstEnd)
	if err != nil {
		return res, err
	}
	hours := make([]int64, 0, len(kws))
	for h := range kws {
		hours = append(hours, h)
	}
	slices.Sort(hours)
	budget := r.o.HoursPerPass
	roll := func(h int64) error {
		for _, kw := range kws[h] {
			// Read no hour whose first minute may expire while we read it:
			// its sums would be partial and replace complete ones.
			if r.o.Now().Unix() >= r.lastSafe(h) {
				return errExpired
			}
			if _, _, err := r.store.RollHourBounded(ctx, kw, h, window.HourlyExpireAt(h, r.o.HourlyRetention), r.o.MaxCells); err != nil {
				return err
			}
			res.KeywordHours++
			r.m.kwHours.Inc()
		}
		return nil
	}
	next := finalEnd
	for _, h := range hours {
		if h < final || h >= finalEnd {
			continue
		}
		if budget == 0 {
			next = h
			break
		}
		budget--
		if err := roll(h); errors.Is(err, errExpired) {
			if h >= first { // no first pass either
				res.Missed++
				r.m.missed.Inc()
			}
		} else if err != nil {
			return res, errors.Join(err, r.saveCursors(ctx, first, final))
		} else {
			res.Final = append(res.Final, h)
			r.m.hours.WithLabelValues("final").Inc()
		}
		final = h + 3600
	}
	final = max(final, next)
	first = max(first, final)
	next = firstEnd
	for _, h := range hours {
		if h < first || h >= firstEnd {
			continue
		}
		if budget == 0 {
			next = h
			break
		}
		budget--
		if err := roll(h); errors.Is(err, errExpired) {
			res.Missed++
			r.m.missed.Inc()
		} else if err != nil {
			return res, errors.Join(err, r.saveCursors(ctx, first, final))
		} else {
			res.First = append(res.First, h)
			r.m.hours.WithLabelValues("first").Inc()
		}
		first = h + 3600
	}
	first = max(first, next)
	return res, r.saveCursors(ctx, first, final)
}

var errExpired = errors.New("the hour's minutes expired")

// saveCursorsScript moves the cursors forward only, so a replica that lost
// the lease without noticing cannot move them back (which would only cost
// work again, never counts).
var saveCursorsScript = redis.NewScript(`
for i, f in ipairs({'first', 'final'}) do
  local cur = tonumber(redis.call('HGET', KEYS[1], f) or '')
  if cur == nil or tonumber(ARGV[i]) > cur then
    redis.call('HSET', KEYS[1], f, ARGV[i])
  end
end
return 1`)

func (r *Roller) saveCursors(ctx context.Context, first, final int64) error {
	err := saveCursorsScript.Run(context.WithoutCancel(ctx), r.rdb, []string{r.keys.RollupState()}, first, final).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("rollup state %s: %w", r.keys.RollupState(), err)
	}
	return nil
}

func cursor(v any) (int64, bool) {
	s, ok := v.(string)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

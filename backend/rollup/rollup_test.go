package rollup

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/metrictest"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

const streamKey = "keyalert:events"

// clock is an injected clock tests move by hand.
type clock struct{ t atomic.Int64 }

func (c *clock) Now() time.Time      { return time.Unix(c.t.Load(), 0) }
func (c *clock) Set(unix int64)      { c.t.Store(unix) }
func newClock(unix int64) *clock     { c := &clock{}; c.Set(unix); return c }
func hourAgo(n int) int64            { return window.HourStart(time.Now().Unix()) - int64(n)*3600 }
func (c *clock) after(h int64) int64 { return h + 3600 + int64(DefaultDelay/time.Second) }

// count adds n to a cell the way the ingest script does: the window hash and
// its host and tag rollups with the minute's total. No expiry: the tests
// move the clock, not Redis's.
func count(t *testing.T, rdb redis.UniversalClient, kw string, minute int64, host, tag string, n int64) {
	t.Helper()
	ctx := context.Background()
	k := window.NewKeys(streamKey)
	p := rdb.TxPipeline()
	p.HIncrBy(ctx, k.Window(kw, minute), window.Field(host, tag), n)
	p.ZIncrBy(ctx, k.HostTotals(kw, minute), float64(n), host)
	p.ZIncrBy(ctx, k.HostTotals(kw, minute), float64(n), window.TotalMember)
	p.ZIncrBy(ctx, k.TagTotals(kw, minute), float64(n), tag)
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
}

// history writes a deterministic hour of counts of kw: hosts × tags cells
// in some minutes, and returns their per-cell sums.
func history(t *testing.T, rdb redis.UniversalClient, kw string, hour int64, hosts int) map[string]string {
	t.Helper()
	sums := map[string]int64{}
	for m := 0; m < 60; m += 7 {
		for h := range hosts {
			host, tag := fmt.Sprintf("web-%d", h), fmt.Sprintf("app-%d", (h+m)%3)
			n := int64((h*7+m*13)%11 + 1)
			count(t, rdb, kw, hour+int64(m)*60, host, tag, n)
			sums[window.Field(host, tag)] += n
		}
	}
	out := map[string]string{}
	for f, n := range sums {
		out[f] = fmt.Sprint(n)
	}
	return out
}

func newRoller(t *testing.T, rdb redis.UniversalClient, c *clock, edit func(*Options)) (*Roller, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o := Options{Registerer: reg, Logger: slog.New(slog.DiscardHandler), Now: c.Now, Interval: 10 * time.Millisecond}
	if edit != nil {
		edit(&o)
	}
	r, err := New(rdb, streamKey, fmt.Sprintf("test-%p", reg), o)
	if err != nil {
		t.Fatal(err)
	}
	return r, reg
}

func hgetall(t *testing.T, rdb redis.UniversalClient, key string) map[string]string {
	t.Helper()
	m, err := rdb.HGetAll(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// hourTop is kw's hour h read through the hourly tier as sums by host
// (with the total as window.TotalMember) or by tag, whatever its layout.
func hourTop(t *testing.T, rdb redis.UniversalClient, kw string, h int64, by string) map[string]float64 {
	t.Helper()
	gs, total, err := window.NewStore(rdb, streamKey).TopTiered(context.Background(), kw, h, h+3600, h+3600, by, 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, g := range gs {
		out[g.Value] = float64(g.Count)
	}
	if by == "host" && total != 0 {
		out[window.TotalMember] = float64(total)
	}
	return out
}

// rollups derives the host and tag rollups a cell map must have.
func rollups(cells map[string]string) (hosts, tags map[string]float64) {
	hosts, tags = map[string]float64{}, map[string]float64{}
	for f, v := range cells {
		var n float64
		fmt.Sscan(v, &n)
		h, tg, _ := window.SplitField(f)
		hosts[h] += n
		tags[tg] += n
		hosts[window.TotalMember] += n
	}
	return hosts, tags
}

func TestFirstPassWritesTheSumOfTheHoursMinutes(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	k := window.NewKeys(streamKey)
	h := hourAgo(3)
	wantA := history(t, rdb, "substring:Error", h, 40)
	wantB := history(t, rdb, "regex/i:disk.*full", h, 3)
	// Minutes of the next hours must not leak into h.
	count(t, rdb, "substring:Error", h+3600, "web-0", "app-0", 1000)

	c := newClock(h + 3600 + int64(DefaultDelay/time.Second)) // h is just due
	r, _ := newRoller(t, rdb, c, nil)
	res, err := r.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.First, []int64{h}) || res.KeywordHours != 2 {
		t.Fatalf("pass %+v: want the first pass of hour %d with 2 keywords", res, h)
	}
	for kw, want := range map[string]map[string]string{"substring:Error": wantA, "regex/i:disk.*full": wantB} {
		if got := hgetall(t, rdb, k.HourWindow(kw, h)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: hour cells %v, want %v", kw, got, want)
		}
		hosts, tags := rollups(want)
		if got := hourTop(t, rdb, kw, h, "host"); !reflect.DeepEqual(got, hosts) {
			t.Errorf("%s: host rollup %v, want %v", kw, got, hosts)
		}
		if got := hourTop(t, rdb, kw, h, "tag"); !reflect.DeepEqual(got, tags) {
			t.Errorf("%s: tag rollup %v, want %v", kw, got, tags)
		}
		ttl := rdb.TTL(ctx, k.HourWindow(kw, h)).Val()
		if want := time.Until(time.Unix(window.HourlyExpireAt(h, window.DefaultHourlyRetention), 0)); ttl < want-time.Minute || ttl > want+time.Minute {
			t.Errorf("%s: ttl %v, want about %v", kw, ttl, want)
		}
	}
	if n := rdb.Exists(ctx, k.HourWindow("substring:Error", h+3600)).Val(); n != 0 {
		t.Errorf("hour %d rolled before it was due", h+3600)
	}
	if keys := rdb.Keys(ctx, "*rolltmp*").Val(); len(keys) != 0 {
		t.Errorf("temporary keys left: %q", keys)
	}
}

func TestRollingAgainOverwritesWithTheSameSums(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	k := window.NewKeys(streamKey)
	h := hourAgo(3)
	want := history(t, rdb, "substring:Error", h, 10)
	c := newClock(c0(h))
	r, _ := newRoller(t, rdb, c, nil)
	if _, err := r.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		// As after a crash before the cursor moved: the hour again.
		if err := rdb.Del(ctx, k.RollupState()).Err(); err != nil {
			t.Fatal(err)
		}
		res, err := r.Pass(ctx)
		if err != nil || len(res.First) != 1 {
			t.Fatalf("re-run %d: %+v %v", i, res, err)
		}
		if got := hgetall(t, rdb, k.HourWindow("substring:Error", h)); !reflect.DeepEqual(got, want) {
			t.Fatalf("re-run %d: cells %v, want %v", i, got, want)
		}
		hosts, _ := rollups(want)
		if got := hourTop(t, rdb, "substring:Error", h, "host"); !reflect.DeepEqual(got, hosts) {
			t.Fatalf("re-run %d: host rollup %v, want %v", i, got, hosts)
		}
	}
}

func c0(h int64) int64 { return h + 3600 + int64(DefaultDelay/time.Second) }

func TestFinalPassIncludesALateEntry(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	k := window.NewKeys(streamKey)
	const retention = 24 * time.Hour
	h := hourAgo(30)
	count(t, rdb, "substring:Error", h+60, "web-1", "app", 5)
	c := newClock(c0(h))
	r, _ := newRoller(t, rdb, c, func(o *Options) { o.Retention = retention })
	if res, err := r.Pass(ctx); err != nil || !reflect.DeepEqual(res.First, []int64{h}) {
		t.Fatalf("first pass %+v %v", res, err)
	}
	// A late entry for the hour, after its first pass.
	count(t, rdb, "substring:Error", h+59*60, "web-2", "app", 7)
	c.Set(h + int64(retention/time.Second) - int64(FinalLead/time.Second) - 60)
	if res, err := r.Pass(ctx); err != nil || len(res.Final) != 0 {
		t.Fatalf("before the final pass is due: %+v %v", res, err)
	}
	c.Set(h + int64(retention/time.Second) - int64(FinalLead/time.Second))
	res, err := r.Pass(ctx)
	if err != nil || !reflect.DeepEqual(res.Final, []int64{h}) {
		t.Fatalf("final pass %+v %v", res, err)
	}
	want := map[string]string{window.Field("web-1", "app"): "5", window.Field("web-2", "app"): "7"}
	if got := hgetall(t, rdb, k.HourWindow("substring:Error", h)); !reflect.DeepEqual(got, want) {
		t.Errorf("cells after the final pass %v, want %v", got, want)
	}
	if got := hourTop(t, rdb, "substring:Error", h, "host")[window.TotalMember]; got != 12 {
		t.Errorf("total %v, want 12", got)
	}
}

func TestCatchUpIsBoundedPerPassAndSkipsExpiredHours(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	const retention = 24 * time.Hour
	// Minutes every hour of the last 30 hours; the roller comes up with a
	// cursor 40 hours behind (down since then).
	for i := 1; i <= 30; i++ {
		count(t, rdb, "substring:Error", hourAgo(i), "web-1", "app", int64(i))
	}
	if err := rdb.HSet(ctx, window.NewKeys(streamKey).RollupState(), "first", hourAgo(40), "final", hourAgo(40)).Err(); err != nil {
		t.Fatal(err)
	}
	c := newClock(time.Now().Unix())
	r, reg := newRoller(t, rdb, c, func(o *Options) { o.Retention = retention; o.HoursPerPass = 4 })
	res, err := r.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.First) + len(res.Final); n != 4 {
		t.Errorf("first pass rolled %d hours (%+v), want the bound of 4", n, res)
	}
	if res.Missed < 15 {
		t.Errorf("missed %d hours, want the ~16 hours whose minutes are expiring", res.Missed)
	}
	passes := 1
	for ; passes < 20; passes++ {
		res, err := r.Pass(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.First)+len(res.Final) == 0 {
			break
		}
	}
	if passes > 10 {
		t.Errorf("caught up in %d passes, want about 24/4", passes)
	}
	if got := testutil.ToFloat64(r.m.missed); got != float64(res.Missed) {
		t.Errorf("missed metric %v, want %d", got, res.Missed)
	}
	_ = reg
}

func TestTwoRollersUnderTheLeaseRollEachHourOnce(t *testing.T) {
	rdb := redistest.Start(t).Client()
	k := window.NewKeys(streamKey)
	for i := 2; i <= 5; i++ {
		history(t, rdb, "substring:Error", hourAgo(i), 5)
		history(t, rdb, "substring:Timeout", hourAgo(i), 2)
	}
	// The cursors start at the oldest hour still complete in the minutes.
	c := newClock(time.Now().Unix())
	opt := func(o *Options) { o.Retention = 6 * time.Hour; o.HoursPerPass = 1 }
	a, _ := newRoller(t, rdb, c, opt)
	b, _ := newRoller(t, rdb, c, opt)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(ctx) })
	wg.Go(func() { b.Run(ctx) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		first, _ := rdb.HGet(context.Background(), k.RollupState(), "first").Int64()
		if first >= hourAgo(1) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // more ticks: nothing left to do
	cancel()
	wg.Wait()
	total := testutil.ToFloat64(a.m.kwHours) + testutil.ToFloat64(b.m.kwHours)
	hours := testutil.ToFloat64(a.m.hours.WithLabelValues("first")) + testutil.ToFloat64(b.m.hours.WithLabelValues("first")) +
		testutil.ToFloat64(a.m.hours.WithLabelValues("final")) + testutil.ToFloat64(b.m.hours.WithLabelValues("final"))
	if total == 0 || (testutil.ToFloat64(a.m.kwHours) != 0 && testutil.ToFloat64(b.m.kwHours) != 0) {
		t.Errorf("keyword-hours rolled by a: %v, by b: %v; want all by one", testutil.ToFloat64(a.m.kwHours), testutil.ToFloat64(b.m.kwHours))
	}
	// Hours 5..2 ago: each first-passed once, and those within FinalLead of
	// expiry final-passed once, two keywords each.
	if total != 2*hours || hours < 4 {
		t.Errorf("%v keyword-hours over %v hour passes, want 2 per hour and at least 4 hours", total, hours)
	}
	for i := 2; i <= 5; i++ {
		if rdb.Exists(context.Background(), k.HourWindow("substring:Timeout", hourAgo(i))).Val() != 1 {
			t.Errorf("hour %d ago not rolled", i)
		}
	}
}

func TestAfterARedisWipeRollingStartsAgainFromNewMinutes(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	k := window.NewKeys(streamKey)
	h := hourAgo(3)
	history(t, rdb, "substring:Error", h, 2)
	c := newClock(c0(h))
	r, _ := newRoller(t, rdb, c, nil)
	if res, err := r.Pass(ctx); err != nil || len(res.First) != 1 {
		t.Fatalf("before the wipe: %+v %v", res, err)
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// Counted again after the wipe: the next hour.
	want := history(t, rdb, "substring:Error", h+3600, 2)
	c.Set(c0(h + 3600))
	res, err := r.Pass(ctx)
	if err != nil || !reflect.DeepEqual(res.First, []int64{h + 3600}) || res.Missed != 0 {
		t.Fatalf("after the wipe: %+v %v", res, err)
	}
	if got := hgetall(t, rdb, k.HourWindow("substring:Error", h+3600)); !reflect.DeepEqual(got, want) {
		t.Errorf("cells %v, want %v", got, want)
	}
}

func TestMetricsHaveTheirNamesAndLabels(t *testing.T) {
	rdb := redistest.Start(t).Client()
	_, reg := newRoller(t, rdb, newClock(time.Now().Unix()), nil)
	got := metrictest.Shapes(t, reg)
	want := map[string]string{
		"keyalert_rollup_hours_total":         "COUNTER pass",
		"keyalert_rollup_keyword_hours_total": "COUNTER ",
		"keyalert_rollup_hours_missed_total":  "COUNTER ",
		"keyalert_rollup_failures_total":      "COUNTER ",
		"keyalert_rollup_lag_seconds":         "GAUGE ",
	}
	for name, shape := range want {
		if got[name] != shape {
			t.Errorf("%s: %q, want %q", name, got[name], shape)
		}
	}
}

func TestACrashMidHourIsRepairedByTheNextPass(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	k := window.NewKeys(streamKey)
	h := hourAgo(3)
	wantA := history(t, rdb, "substring:A", h, 4)
	wantB := history(t, rdb, "substring:B", h, 4)
	// What a replica killed mid-hour leaves: keyword A's hour from an older
	// pass (fewer entries), B's sums half written into a temporary key that
	// was never renamed, and the cursors before the hour.
	if err := rdb.HSet(ctx, k.HourWindow("substring:A", h), window.Field("web-0", "app-0"), 1).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.HSet(ctx, "ka:{keyalert:events}:rolltmp:0123456789abcdef", window.Field("web-1", "app-1"), 99)
	rdb.Expire(ctx, "ka:{keyalert:events}:rolltmp:0123456789abcdef", 10*time.Minute)
	r, _ := newRoller(t, rdb, newClock(c0(h)), nil)
	if res, err := r.Pass(ctx); err != nil || !reflect.DeepEqual(res.First, []int64{h}) || res.KeywordHours != 2 {
		t.Fatalf("pass after the crash: %+v %v", res, err)
	}
	for kw, want := range map[string]map[string]string{"substring:A": wantA, "substring:B": wantB} {
		if got := hgetall(t, rdb, k.HourWindow(kw, h)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: cells %v, want %v", kw, got, want)
		}
	}
}

package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

const testStream = "keyalert:events"

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// batchID makes a valid 32-hex batch id from n.
func batchID(n int) string { return fmt.Sprintf("%032x", n) }

func values(e stream.Entry) []any { return e.AppendValues(nil) }

// valuesV1 are e's values as a version 1 plugin wrote them.
func valuesV1(e stream.Entry) []any { return e.AppendValuesV1(nil) }

func entry(batch int, kw, host, tag string, minute, count int64) stream.Entry {
	return stream.Entry{
		Batch:   batchID(batch),
		Keyword: keyword.Spec{Text: kw},
		Host:    host, Tag: tag, Minute: minute, Count: count,
	}
}

func xadd(t testing.TB, rdb redis.UniversalClient, es ...stream.Entry) {
	t.Helper()
	pipe := rdb.Pipeline()
	for i := range es {
		pipe.XAdd(context.Background(), &redis.XAddArgs{Stream: testStream, Values: es[i].AppendValues(nil)})
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatalf("xadd: %v", err)
	}
}

func xaddRaw(t testing.TB, rdb redis.UniversalClient, values ...any) string {
	t.Helper()
	id, err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: testStream, Values: values}).Result()
	if err != nil {
		t.Fatalf("xadd: %v", err)
	}
	return id
}

// running is a consumer started in the background for a test.
type running struct {
	c      *Consumer
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t testing.TB, o Options) *running {
	t.Helper()
	if o.Stream == "" {
		o.Stream = testStream
	}
	if o.Consumer == "" {
		o.Consumer = "test-1"
	}
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	if o.Block == 0 {
		o.Block = 50 * time.Millisecond
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); c.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.cancel()
	<-r.done
}

// drained waits until the group has read everything and acknowledged it.
func drained(t testing.TB, rdb redis.UniversalClient, group string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		gs, err := rdb.XInfoGroups(context.Background(), testStream).Result()
		if err == nil {
			for _, g := range gs {
				if g.Name == group && g.Lag == 0 && g.Pending == 0 {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("group %s not drained after 15s", group)
}

type series struct{ kw, host, tag string }

// totals sums the windows per (keyword, host, tag) over [from, to).
func totals(t testing.TB, rdb redis.UniversalClient, kwIDs []string, from, to int64) map[series]int64 {
	t.Helper()
	m, err := window.NewStore(rdb, testStream).CellsMany(context.Background(), kwIDs, from, to)
	if err != nil {
		t.Fatal(err)
	}
	out := map[series]int64{}
	for kw, cells := range m {
		for _, c := range cells {
			out[series{kw, c.Host, c.Tag}] += c.Count
		}
	}
	return out
}

func nowMinute() int64 { return time.Now().Unix() / 60 * 60 }

func TestEntriesCountedExactly(t *testing.T) {
	for _, tt := range []struct {
		name  string
		redis func(t *testing.T) redis.UniversalClient
	}{
		{"one server", func(t *testing.T) redis.UniversalClient { return redistest.Start(t).Client() }},
		// Configuration alone: the same consumer on a cluster client.
		{"a cluster of three", func(t *testing.T) redis.UniversalClient { return redistest.StartCluster(t, 3).Client() }},
	} {
		t.Run(tt.name, func(t *testing.T) { countsExactly(t, tt.redis(t)) })
	}
}

func countsExactly(t *testing.T, rdb redis.UniversalClient) {
	now := nowMinute()
	want := map[series]int64{}
	var es []stream.Entry
	kws := []string{"Exception", "timeout", "disk full"}
	for b := 0; b < 40; b++ {
		for i, kw := range kws {
			host := fmt.Sprintf("web-%d", (b+i)%4)
			tag := []string{"app", "nginx"}[b%2]
			minute := now - int64((b%7)*60) // late entries land in their own minute
			n := int64(1 + (b*7+i)%13)
			es = append(es, entry(b, kw, host, tag, minute, n))
			want[series{keyword.Spec{Text: kw}.ID(), host, tag}] += n
		}
	}
	xadd(t, rdb, es...)
	start(t, Options{Client: rdb, BatchSize: 17})
	drained(t, rdb, "keyalertd")
	ids := []string{"substring:Exception", "substring:timeout", "substring:disk full"}
	got := totals(t, rdb, ids, now-3600, now+60)
	if len(got) != len(want) {
		t.Fatalf("got %d series, want %d: %v", len(got), len(want), got)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%v: got %d, want %d", k, got[k], n)
		}
	}
	// Each entry's minute holds its own counts.
	cells, _ := window.NewStore(rdb, testStream).Cells(context.Background(), "substring:Exception", now-6*60, now-6*60+60)
	var sum int64
	for _, c := range cells {
		sum += c.Count
	}
	var wantLate int64
	for _, e := range es {
		if e.Keyword.Text == "Exception" && e.Minute == now-6*60 {
			wantLate += e.Count
		}
	}
	if sum != wantLate || sum == 0 {
		t.Errorf("late minute: got %d, want %d", sum, wantLate)
	}
}

func TestDuplicateDedupIDCountsOnce(t *testing.T) {
	now := nowMinute()
	applyFirst := func(t *testing.T, rdb redis.UniversalClient, es ...stream.Entry) {
		xadd(t, rdb, es...)
		r := start(t, Options{Client: rdb})
		drained(t, rdb, "keyalertd")
		r.stop()
	}
	tests := []struct {
		name string
		// feed writes the same series several times, possibly with a
		// consumer run in between.
		feed func(t *testing.T, rdb redis.UniversalClient)
		// batchSize of the consumer that reads what feed left (0: default).
		batchSize int
		want      int64 // count of err/h/t
		applied   int   // most entries OnApplied may see
	}{
		{"same batch twice in one read", func(t *testing.T, rdb redis.UniversalClient) {
			xadd(t, rdb, entry(1, "err", "h", "t", now, 5), entry(1, "err", "h", "t", now, 5))
		}, 0, 5, 1},
		{"same batch twice in two reads", func(t *testing.T, rdb redis.UniversalClient) {
			xadd(t, rdb, entry(1, "err", "h", "t", now, 5), entry(1, "err", "h", "t", now, 5))
		}, 1, 5, 1},
		{"retry after the first was applied", func(t *testing.T, rdb redis.UniversalClient) {
			applyFirst(t, rdb, entry(1, "err", "h", "t", now, 5))
			xadd(t, rdb, entry(1, "err", "h", "t", now, 5))
		}, 1, 5, 0},
		{"retry in one cell with a new entry", func(t *testing.T, rdb redis.UniversalClient) {
			applyFirst(t, rdb, entry(1, "err", "h", "t", now, 5))
			xadd(t, rdb, entry(2, "err", "h", "t", now, 7), entry(1, "err", "h", "t", now, 5), entry(3, "err", "h", "t", now, 11))
		}, 0, 23, 2},
		{"retry with a different sent_ms and samples", func(t *testing.T, rdb redis.UniversalClient) {
			a := entry(1, "err", "h", "t", now, 5)
			b := a
			a.SentMs, b.SentMs = 1000, 2000
			b.Samples = []string{"x err y"}
			xadd(t, rdb, a, b)
		}, 1, 5, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			tt.feed(t, rdb)
			var mu sync.Mutex
			var applied int
			start(t, Options{Client: rdb, BatchSize: tt.batchSize, OnApplied: func(_ context.Context, es []stream.Entry) {
				mu.Lock()
				applied += len(es)
				mu.Unlock()
			}})
			drained(t, rdb, "keyalertd")
			got := totals(t, rdb, []string{"substring:err"}, now, now+60)
			if n := got[series{"substring:err", "h", "t"}]; n != tt.want {
				t.Errorf("count = %d, want %d", n, tt.want)
			}
			mu.Lock()
			defer mu.Unlock()
			if applied > tt.applied {
				t.Errorf("OnApplied saw %d entries, want at most %d", applied, tt.applied)
			}
		})
	}
}

func TestMalformedEntriesDeadLetteredRestCounted(t *testing.T) {
	now := nowMinute()
	good := values(entry(1, "err", "h", "t", now, 2))
	with := func(field, value string) []any {
		v := valuesV1(entry(9, "err", "h", "t", now, 1))
		for i := 0; i < len(v); i += 2 {
			if v[i] == field {
				v[i+1] = value
				return v
			}
		}
		return append(v, field, value)
	}
	without := func(field string) []any {
		v := valuesV1(entry(9, "err", "h", "t", now, 1))
		var out []any
		for i := 0; i < len(v); i += 2 {
			if v[i] != field {
				out = append(out, v[i], v[i+1])
			}
		}
		return out
	}
	tests := []struct {
		name   string
		values []any
		reason string // substring of the dead-letter reason
	}{
		{"unknown version", with(stream.FieldVersion, "9"), "unsupported entry version"},
		{"payload not JSON", []any{stream.FieldVersion, stream.Version, stream.FieldEntry, "[1,"}, `field "e"`},
		{"payload with a zero count", []any{stream.FieldVersion, stream.Version2, stream.FieldEntry,
			strings.Replace(values(entry(9, "err", "h", "t", now, 1))[3].(string), ",1,[]", ",0,[]", 1)}, `field "e": count = 0`},
		{"missing count", without(stream.FieldCount), `missing field "count"`},
		{"count not a number", with(stream.FieldCount, "many"), `"count"`},
		{"negative count", with(stream.FieldCount, "-3"), "positive count"},
		{"minute not aligned", with(stream.FieldMinute, "61"), "multiple of 60"},
		{"bad batch", with(stream.FieldBatch, "xyz"), `"batch"`},
		{"bad regex", valuesV1(stream.Entry{Batch: batchID(9), Keyword: keyword.Spec{Text: "((", Match: keyword.Regex}, Host: "h", Tag: "t", Minute: now, Count: 1}), `"kw"`},
		{"a field given twice", append(with(stream.FieldMatch, "regex"), stream.FieldKeyword, "x"), `field "kw" given twice`},
		{"bad samples", with(stream.FieldSamples, "[1,"), `"samples"`},
		{"minute far in the future", with(stream.FieldMinute, fmt.Sprint(now+3*86400)), "ahead of the consumer's clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			xaddRaw(t, rdb, good...)
			bad := xaddRaw(t, rdb, tt.values...)
			xadd(t, rdb, entry(2, "err", "h", "t", now, 3))
			start(t, Options{Client: rdb})
			drained(t, rdb, "keyalertd")
			if n := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; n != 5 {
				t.Errorf("count = %d, want 5 (the good entries of the batch)", n)
			}
			dead, err := rdb.XRange(context.Background(), DeadStream(testStream), "-", "+").Result()
			if err != nil || len(dead) != 1 {
				t.Fatalf("dead letters: %v, %v; want 1", dead, err)
			}
			d := dead[0].Values
			if d["source_id"] != bad || !strings.Contains(d["reason"].(string), tt.reason) {
				t.Errorf("dead letter %v: want source_id %s and a reason containing %q", d, bad, tt.reason)
			}
			var fields map[string]any
			if err := json.Unmarshal([]byte(d["fields"].(string)), &fields); err != nil || fields["v"] == nil {
				t.Errorf("dead letter fields %q: want the original values as JSON", d["fields"])
			}
		})
	}
}

func TestEntryDeliveredTooOftenIsDeadLettered(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	now := nowMinute()
	if err := rdb.XGroupCreateMkStream(ctx, testStream, "keyalertd", "0").Err(); err != nil {
		t.Fatal(err)
	}
	xadd(t, rdb, entry(1, "err", "h", "t", now, 4))
	xadd(t, rdb, entry(2, "err", "h", "t", now, 1))
	// A consumer that died twice on these entries: read, never acknowledged.
	msgs, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "keyalertd", Consumer: "ghost", Streams: []string{testStream, ">"}, Count: 2}).Result()
	if err != nil {
		t.Fatal(err)
	}
	poison := msgs[0].Messages[0].ID
	if err := rdb.Do(ctx, "XCLAIM", testStream, "keyalertd", "ghost", 0, poison, "RETRYCOUNT", 50).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	start(t, Options{Client: rdb, ClaimIdle: 100 * time.Millisecond, ClaimInterval: 50 * time.Millisecond, MaxDeliveries: 5})
	drained(t, rdb, "keyalertd")
	if n := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; n != 1 {
		t.Errorf("count = %d, want 1 (the claimed entry that was not poison)", n)
	}
	dead, _ := rdb.XRange(ctx, DeadStream(testStream), "-", "+").Result()
	if len(dead) != 1 || dead[0].Values["source_id"] != poison || !strings.Contains(dead[0].Values["reason"].(string), "delivered 51 times") {
		t.Errorf("dead letters %v: want %s delivered 51 times", dead, poison)
	}
}

func TestOwnPendingEntriesReappliedAtStart(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	now := nowMinute()
	rdb.XGroupCreateMkStream(ctx, testStream, "keyalertd", "0")
	xadd(t, rdb, entry(1, "err", "h", "t", now, 7))
	// A previous run of "c1" read the entry and died before applying it.
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "keyalertd", Consumer: "c1", Streams: []string{testStream, ">"}}).Err(); err != nil {
		t.Fatal(err)
	}
	// ClaimIdle is long: only the own-pending pass can pick it up.
	start(t, Options{Client: rdb, Consumer: "c1", ClaimIdle: time.Hour})
	drained(t, rdb, "keyalertd")
	if n := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; n != 7 {
		t.Errorf("count = %d, want 7", n)
	}
}

func TestEntryOlderThanRetentionAcknowledgedNotCounted(t *testing.T) {
	rdb := redistest.Start(t).Client()
	now := nowMinute()
	old := now - 3*3600
	xadd(t, rdb, entry(1, "err", "h", "t", old, 7), entry(2, "err", "h", "t", now, 1))
	start(t, Options{Client: rdb, Retention: time.Hour})
	drained(t, rdb, "keyalertd")
	got := totals(t, rdb, []string{"substring:err"}, old-60, now+60)
	if got[series{"substring:err", "h", "t"}] != 1 {
		t.Errorf("got %v, want only the recent entry", got)
	}
	if n, _ := rdb.XLen(context.Background(), DeadStream(testStream)).Result(); n != 0 {
		t.Errorf("%d dead letters; an expired entry is not an error", n)
	}
}

// Windows live for the retention; what dedup keeps lives for the dedup
// window (a producer's generation up to twice that), whatever the retention.
func TestWindowsExpireAfterRetentionDedupAfterItsWindow(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	now := nowMinute()
	xadd(t, rdb, entry(1, "err", "h", "t", now-120, 1), v3(entry(2, "err", "h", "t", now-120, 1), 1, 1))
	start(t, Options{Client: rdb, Retention: 2 * time.Hour, DedupWindow: 10 * time.Minute})
	drained(t, rdb, "keyalertd")
	k := window.NewKeys(testStream)
	near := func(what string, got, want time.Duration) {
		if d := got - want; d < -5*time.Second || d > 5*time.Second {
			t.Errorf("%s TTL %v, want about %v", what, got, want)
		}
	}
	near("window", rdb.TTL(ctx, k.Window("substring:err", now-120)).Val(), time.Until(time.Unix(now-120+60, 0).Add(2*time.Hour)))
	near("seen set", rdb.TTL(ctx, k.Seen(now-120)).Val(), 10*time.Minute)
	prod := k.Producer(v3(stream.Entry{}, 1, 1).Producer)
	near("producer state", rdb.TTL(ctx, prod).Val(), 20*time.Minute)
	shards := rdb.Keys(ctx, prod+":0:*").Val() // generation 0, cut into shards by default
	if len(shards) != 1 {
		t.Fatalf("generation 0 of one chunk is in %d shards %q, want 1", len(shards), shards)
	}
	near("producer generation", rdb.TTL(ctx, shards[0]).Val(), 20*time.Minute)
}

// sampledEntries are ten batches of "err" at minute, from host(i), each
// with the samples "line <i> a" and "line <i> b".
func sampledEntries(minute int64, host func(i int) string) []stream.Entry {
	var es []stream.Entry
	for i := 0; i < 10; i++ {
		e := entry(i, "err", host(i), "t", minute, 2)
		e.Samples = []string{fmt.Sprintf("line %d a", i), fmt.Sprintf("line %d b", i)}
		es = append(es, e)
	}
	return es
}

func oneHost(int) string { return "h" }

func seriesSamples(t *testing.T, rdb redis.UniversalClient, host string) []window.Sample {
	t.Helper()
	got, err := window.NewStore(rdb, testStream).Samples(context.Background(), []window.Series{{KeywordID: "substring:err", Host: host, Tag: "t"}}, 10)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestSamplesNewestFirstAndCappedPerSeries(t *testing.T) {
	rdb := redistest.Start(t).Client()
	now := nowMinute()
	es := sampledEntries(now, oneHost)
	const sampleCap = 4 // a batch adds at most cap/4 = 1 sample per series
	r := start(t, Options{Client: rdb, Samples: sampleCap})
	for _, e := range es {
		xadd(t, rdb, e)
		drained(t, rdb, "keyalertd")
	}
	r.stop()
	got := seriesSamples(t, rdb, "h")
	var want []window.Sample
	for i := 9; i > 9-sampleCap; i-- {
		want = append(want, window.Sample{Minute: now, Host: "h", Tag: "t", Line: fmt.Sprintf("line %d b", i)})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("samples = %v, want %v", got, want)
	}
	ttl := rdb.TTL(context.Background(), window.NewKeys(testStream).Samples("substring:err", "h", "t")).Val()
	if ttl < window.DefaultRetention-time.Minute || ttl > window.DefaultRetention {
		t.Errorf("sample list TTL %v, want the retention %v", ttl, window.DefaultRetention)
	}
}

func TestBusyHostDoesNotCrowdOutQuietOne(t *testing.T) {
	rdb := redistest.Start(t).Client()
	now := nowMinute()
	quiet := entry(100, "err", "quiet", "t", now, 1)
	quiet.Samples = []string{"quiet line"}
	r := start(t, Options{Client: rdb, Samples: 4})
	xadd(t, rdb, quiet)
	drained(t, rdb, "keyalertd")
	for _, e := range sampledEntries(now, func(i int) string { return "busy" }) {
		xadd(t, rdb, e)
		drained(t, rdb, "keyalertd")
	}
	r.stop()
	if got, want := seriesSamples(t, rdb, "quiet"), []window.Sample{{Minute: now, Host: "quiet", Tag: "t", Line: "quiet line"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("quiet host's samples = %v, want %v", got, want)
	}
	if got := seriesSamples(t, rdb, "busy"); len(got) != 4 || got[0].Line != "line 9 b" {
		t.Errorf("busy host's samples = %v, want the newest 4 from line 9 b", got)
	}
}

func TestBacklogBatchAddsAQuarterOfTheCap(t *testing.T) {
	rdb := redistest.Start(t).Client()
	now := nowMinute()
	es := sampledEntries(now, oneHost)
	xadd(t, rdb, es...) // one read batch
	start(t, Options{Client: rdb, Samples: 8})
	drained(t, rdb, "keyalertd")
	got := seriesSamples(t, rdb, "h")
	want := []window.Sample{{Minute: now, Host: "h", Tag: "t", Line: "line 9 b"}, {Minute: now, Host: "h", Tag: "t", Line: "line 9 a"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("samples = %v, want the batch's newest two %v", got, want)
	}
}

func TestEntryThatCannotBeAppliedIsDeadLetteredAlone(t *testing.T) {
	for _, read := range []string{ReadCursor, ReadGroup} {
		t.Run(read, func(t *testing.T) { cannotBeApplied(t, read) })
	}
}

func cannotBeApplied(t *testing.T, read string) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	now := nowMinute()
	k := window.NewKeys(testStream)
	// A foreign value of the wrong type where one keyword's window goes.
	rdb.Set(ctx, k.Window("substring:broken", now), "not a hash", 0)
	xadd(t, rdb, entry(1, "err", "h", "t", now, 2), entry(1, "broken", "h", "t", now, 5), entry(2, "err", "h", "t", now, 3))
	start(t, Options{Client: rdb, Read: read})
	drained(t, rdb, "keyalertd")
	if n := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; n != 5 {
		t.Errorf("count = %d, want 5", n)
	}
	dead, _ := rdb.XRange(ctx, DeadStream(testStream), "-", "+").Result()
	if len(dead) != 1 || !strings.Contains(dead[0].Values["reason"].(string), "WRONGTYPE") {
		t.Fatalf("dead letters %v: want one WRONGTYPE", dead)
	}
	checkDeadFields(t, rdb, dead[0])
	// Its dedup id was undone: once the key is fixed, a retry counts.
	rdb.Del(ctx, k.Window("substring:broken", now))
	xadd(t, rdb, entry(1, "broken", "h", "t", now, 5))
	drained(t, rdb, "keyalertd")
	if n := totals(t, rdb, []string{"substring:broken"}, now, now+60)[series{"substring:broken", "h", "t"}]; n != 5 {
		t.Errorf("retried count = %d, want 5", n)
	}
}

// checkDeadFields checks that dead letter d carries the fields of the entry
// it names, as JSON.
func checkDeadFields(t *testing.T, rdb *redis.Client, d redis.XMessage) {
	t.Helper()
	id, _ := d.Values["source_id"].(string)
	src, err := rdb.XRange(context.Background(), testStream, id, id).Result()
	if err != nil || len(src) != 1 {
		t.Fatalf("dead letter's source %q: %v, %v", id, src, err)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(d.Values["fields"].(string)), &fields); err != nil {
		t.Fatalf("dead letter's fields %q: %v", d.Values["fields"], err)
	}
	if fmt.Sprint(fields) != fmt.Sprint(src[0].Values) {
		t.Errorf("dead letter's fields %v, want the entry's %v", fields, src[0].Values)
	}
}

// An entry that makes the apply script fail as a whole every time (here a
// count that is not an integer where its series goes) is found by reading
// smaller batches and dead-lettered alone, whatever the batch size; every
// other entry counts once.
func TestCursorEntryFailingTheScriptIsDeadLetteredAlone(t *testing.T) {
	for _, size := range []int{1, 4, 1000} {
		t.Run(fmt.Sprint("batch=", size), func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			ctx := context.Background()
			now := nowMinute()
			// A first entry creates the series' field; it is then spoiled.
			xadd(t, rdb, entry(0, "broken", "h", "t", now, 1))
			r := start(t, Options{Client: rdb, Read: ReadCursor, BatchSize: size})
			drained(t, rdb, DefaultGroup)
			key := window.NewKeys(testStream).Window("substring:broken", now)
			fields, err := rdb.HKeys(ctx, key).Result()
			if err != nil || len(fields) != 1 {
				t.Fatalf("window %s fields %v, %v", key, fields, err)
			}
			rdb.HSet(ctx, key, fields[0], "spoiled")
			var es []stream.Entry
			for i := 1; i <= 9; i++ {
				es = append(es, entry(i, "err", "h", "t", now, int64(i)))
				if i == 5 {
					es = append(es, entry(100, "broken", "h", "t", now, 7))
				}
			}
			xadd(t, rdb, es...)
			drained(t, rdb, DefaultGroup)
			r.stop()
			if n := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; n != 45 {
				t.Errorf("count = %d, want 45", n)
			}
			dead, _ := rdb.XRange(ctx, DeadStream(testStream), "-", "+").Result()
			if len(dead) != 1 || !strings.Contains(dead[0].Values["reason"].(string), "not an integer") {
				t.Fatalf("dead letters %v: want one, not an integer", dead)
			}
			if size == 1 && !strings.Contains(dead[0].Values["reason"].(string), "alone") {
				t.Errorf("reason %q: want it failed alone", dead[0].Values["reason"])
			}
			checkDeadFields(t, rdb, dead[0])
		})
	}
}

func TestStopFinishesTheBatchInFlight(t *testing.T) {
	rdb := redistest.Start(t).Client()
	now := nowMinute()
	var es []stream.Entry
	for i := 0; i < 3000; i++ {
		es = append(es, entry(i, "err", "h", "t", now, 1))
	}
	xadd(t, rdb, es...)
	first := make(chan struct{}, 1)
	r := start(t, Options{Client: rdb, BatchSize: 100, OnApplied: func(context.Context, []stream.Entry) {
		select {
		case first <- struct{}{}:
		default:
		}
	}})
	<-first
	r.stop()
	ctx := context.Background()
	pending, err := rdb.XPending(ctx, testStream, "keyalertd").Result()
	if err != nil {
		t.Fatal(err)
	}
	if pending.Count != 0 {
		t.Errorf("%d entries pending after stop, want 0", pending.Count)
	}
	// What was acknowledged is exactly what was counted.
	var acked int64
	gs, _ := rdb.XInfoGroups(ctx, testStream).Result()
	for _, g := range gs {
		acked = g.EntriesRead - g.Pending
	}
	if n := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; n != acked {
		t.Errorf("counted %d, acknowledged %d", n, acked)
	}
}

func TestKeepsConsumingAcrossRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	now := nowMinute()
	xadd(t, rdb, entry(1, "err", "h", "t", now, 1))
	r := start(t, Options{Client: rdb})
	drained(t, rdb, "keyalertd")
	srv.Restart() // script cache and connections are gone; data stays (AOF)
	xadd(t, rdb, entry(2, "err", "h", "t", now, 2))
	drained(t, rdb, "keyalertd")
	if n := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; n != 3 {
		t.Errorf("count = %d, want 3", n)
	}
	if err := r.c.Ready(); err != nil {
		t.Errorf("Ready after restart: %v", err)
	}
}

func TestRegexKeywordEntriesValidatedEveryTime(t *testing.T) {
	rdb := redistest.Start(t).Client()
	now := nowMinute()
	re := func(b int, expr string) stream.Entry {
		e := entry(b, "", "h", "t", now, 2)
		e.Keyword = keyword.Spec{Text: expr, Match: keyword.Regex, IgnoreCase: true}
		return e
	}
	// The same valid and invalid expressions twice: a cached verdict must
	// not let the second invalid one through.
	xadd(t, rdb, re(1, `disk\s+full`), re(2, `disk\s+full`))
	xaddRaw(t, rdb, valuesV1(re(3, "(unclosed"))...)
	xaddRaw(t, rdb, values(re(4, "(unclosed"))...)
	start(t, Options{Client: rdb})
	drained(t, rdb, "keyalertd")
	id := keyword.Spec{Text: `disk\s+full`, Match: keyword.Regex, IgnoreCase: true}.ID()
	if n := totals(t, rdb, []string{id}, now, now+60)[series{id, "h", "t"}]; n != 4 {
		t.Errorf("count = %d, want 4", n)
	}
	if n, _ := rdb.XLen(context.Background(), DeadStream(testStream)).Result(); n != 2 {
		t.Errorf("%d dead letters, want the 2 bad regexes", n)
	}
}

func TestStoppedConsumersWithNothingPendingArePruned(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	now := nowMinute()
	rdb.XGroupCreateMkStream(ctx, testStream, "keyalertd", "0")
	rdb.XGroupCreateConsumer(ctx, testStream, "keyalertd", "gone-idle")
	// "busy" still holds an entry: it must stay until that is claimed.
	xadd(t, rdb, entry(1, "err", "h", "t", now, 1))
	rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "keyalertd", Consumer: "busy", Streams: []string{testStream, ">"}})
	time.Sleep(300 * time.Millisecond)
	start(t, Options{Client: rdb, ClaimIdle: time.Hour, ClaimInterval: 50 * time.Millisecond, PruneIdle: 200 * time.Millisecond})
	deadline := time.Now().Add(5 * time.Second)
	for {
		cs, _ := rdb.XInfoConsumers(ctx, testStream, "keyalertd").Result()
		names := map[string]bool{}
		for _, c := range cs {
			names[c.Name] = true
		}
		if !names["gone-idle"] && names["busy"] && names["test-1"] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumers %v: want gone-idle pruned, busy and test-1 kept", names)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// failEval makes every script call of rdb fail while it is on, counting them.
type failEval struct {
	on    atomic.Bool
	fails atomic.Int64
}

func (h *failEval) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *failEval) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *failEval) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.on.Load() && isApply(cmd) {
			h.fails.Add(1)
			err := errors.New("injected failure")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func TestBatchRetriedAtShutdownGivesUpAfterDrainTimeout(t *testing.T) {
	for _, read := range []string{ReadGroup, ReadCursor} {
		t.Run(read, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			xadd(t, rdb, entry(1, "err", "h", "t", nowMinute(), 1))
			// Reading by cursor the call goes on a connection of the
			// consumer's own: a proxy fails it instead of a go-redis hook.
			client, fails := rdb, func() int64 { return 0 }
			if read == ReadCursor {
				p := startApplyProxy(t, rdb.Options().Addr)
				p.fail.Store(true)
				client, fails = p.client(t, rdb), p.calls.Load
			} else {
				hook := &failEval{}
				hook.on.Store(true)
				rdb.AddHook(hook)
				fails = hook.fails.Load
			}
			const drain = 200 * time.Millisecond
			r := start(t, Options{Client: client, Read: read, DrainTimeout: drain})
			// Five failures in, the next wait is around a second: shutdown must not
			// sit it out.
			for deadline := time.Now().Add(10 * time.Second); fails() < 5; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("apply attempted %d times in 10s", fails())
				}
			}
			t0 := time.Now()
			r.stop()
			if d := time.Since(t0); d > drain+500*time.Millisecond {
				t.Errorf("Run returned %v after its context ended, want about the drain timeout %v", d, drain)
			}
			// Left for the next run: pending in the group, or after the cursor.
			gs, err := rdb.XInfoGroups(context.Background(), testStream).Result()
			if err != nil || len(gs) != 1 || gs[0].Pending+gs[0].Lag != 1 {
				t.Errorf("group after giving up = %+v, %v; want the entry still pending or unread", gs, err)
			}
		})
	}
}

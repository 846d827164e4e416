package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/pkg/streamshard"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// xaddTrimmed adds es to key as the plugin does, but with an exact MAXLEN so
// that what is trimmed is known.
func xaddTrimmed(t testing.TB, rdb redis.UniversalClient, key string, maxLen int64, es ...stream.Entry) {
	t.Helper()
	for i := range es {
		// go-redis leaves a MAXLEN of 0 out: spell the command.
		args := append([]any{"XADD", key, "MAXLEN", maxLen, "*"}, es[i].AppendValues(nil)...)
		if err := rdb.Do(context.Background(), args...).Err(); err != nil {
			t.Fatalf("xadd: %v", err)
		}
	}
}

// oneEach returns n entries of count 1 each, all of one series.
func oneEach(from, n int, minute int64) []stream.Entry {
	es := make([]stream.Entry, n)
	for i := range es {
		es[i] = v3(entry(from+i, "err", "h", "t", minute, 1), 1, 1)
	}
	return es
}

// readAcked reads n new entries as consumer "raw" and acknowledges them (a
// consumer that counts them elsewhere).
func readAcked(t testing.TB, rdb redis.UniversalClient, key string, n int64) {
	t.Helper()
	ctx := context.Background()
	res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: DefaultGroup, Consumer: "raw", Streams: []string{key, ">"}, Count: n, Block: -1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range res[0].Messages {
		rdb.XAck(ctx, key, DefaultGroup, m.ID)
	}
}

func groupLag(t testing.TB, rdb redis.UniversalClient, key string) int64 {
	t.Helper()
	gs, err := rdb.XInfoGroups(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if g.Name == DefaultGroup {
			return g.Lag
		}
	}
	t.Fatalf("no group %s on %s", DefaultGroup, key)
	return 0
}

// Entries the plugin's MAXLEN trimmed before the group read them are
// counted in keyalert_ingest_trimmed_unread_total exactly, logged as an
// error naming the stream, the group and the number, and the group's lag is
// set right; the rest is counted once the consumer catches up, and a second
// check finds nothing more. When the trimming takes only entries already
// applied (the normal case), nothing is reported.
func TestEntriesTrimmedUnreadAreReportedAndLagCorrected(t *testing.T) {
	const applied = 5
	tests := []struct {
		name   string
		added  int   // entries written after the consumer stopped
		maxLen int64 // the plugin's MAXLEN for those
		read   int64 // entries then read and acknowledged elsewhere
		lost   int64
		lag    int64
	}{
		{"stalled past the trim", 50, 10, 0, 40, 10},
		{"read partway after the trim", 50, 10, 3, 40, 7},
		{"caught up after the trim", 50, 10, 10, 40, 0},
		{"everything trimmed", 50, 0, 0, 50, 0},
		{"keeping up: only applied entries trimmed", 10, 10, 0, 0, 10},
		{"keeping up, read partway", 10, 10, 4, 0, 6},
		{"no trimming", 10, 100, 0, 0, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			ctx := context.Background()
			now := nowMinute()
			reg := prometheus.NewRegistry()
			var mu sync.Mutex
			var logs bytes.Buffer
			log := newJSONLogger(&lockedWriter{&mu, &logs})
			o := Options{Client: rdb, Registerer: reg, Logger: log}

			r := start(t, o)
			xadd(t, rdb, oneEach(0, applied, now)...)
			drained(t, rdb, DefaultGroup)
			r.stop()
			xaddTrimmed(t, rdb, testStream, tt.maxLen, oneEach(applied, tt.added, now)...)
			if tt.read > 0 {
				readAcked(t, rdb, testStream, tt.read)
			}

			c := r.c
			for round := 0; round < 2; round++ { // the second finds nothing more
				c.refreshGauges(ctx)
			}
			if got := testutil.ToFloat64(c.m.trimmed.WithLabelValues(testStream)); got != float64(tt.lost) {
				t.Errorf("keyalert_ingest_trimmed_unread_total = %v, want %d", got, tt.lost)
			}
			if got := groupLag(t, rdb, testStream); got != tt.lag {
				t.Errorf("group lag = %d, want %d", got, tt.lag)
			}
			if got := c.m.gauge(0); got != float64(tt.lag) {
				t.Errorf("keyalert_ingest_consumer_lag = %v, want %d", got, tt.lag)
			}
			mu.Lock()
			lines := trimLogs(t, logs.String())
			mu.Unlock()
			switch {
			case tt.lost == 0 && len(lines) > 0:
				t.Errorf("false report of a loss: %v", lines)
			case tt.lost > 0 && len(lines) != 1:
				t.Errorf("%d error logs of the loss, want 1: %v", len(lines), lines)
			case tt.lost > 0:
				l := lines[0]
				if l["stream"] != testStream || l["group"] != DefaultGroup || l["lost"] != float64(tt.lost) || !strings.Contains(l["msg"].(string), "Max_Len") {
					t.Errorf("log %v: want stream, group, lost %d and the fix", l, tt.lost)
				}
			}

			o.Registerer = nil
			start(t, o)
			drained(t, rdb, DefaultGroup)
			want := int64(applied) + tt.lag // all but the lost and those read elsewhere
			if got := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; got != want {
				t.Errorf("counted %d, want %d", got, want)
			}
		})
	}
}

func newJSONLogger(w *lockedWriter) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// trimLogs returns the error logs of entries trimmed unread.
func trimLogs(t testing.TB, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["level"] == "ERROR" && strings.Contains(m["msg"].(string), "trimmed before the consumer group read them") {
			out = append(out, m)
		}
	}
	return out
}

// With stream shards each shard is checked on its own and reported under
// its own key.
func TestEntriesTrimmedUnreadReportedPerShard(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	now := nowMinute()
	m := newMetrics(prometheus.NewRegistry())
	var cs []*Consumer
	for i := range 3 {
		c, err := New(Options{Client: rdb, Stream: streamshard.Key(testStream, i), Consumer: "c", Logger: quietLogger(), shared: m})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ensureGroup(ctx); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	lost := []int64{0, 30, 7}
	for i, c := range cs {
		xaddTrimmed(t, rdb, c.o.Stream, 20, oneEach(100*i, 20+int(lost[i]), now)...)
		c.refreshGauges(ctx)
	}
	for i, c := range cs {
		if got := testutil.ToFloat64(m.trimmed.WithLabelValues(c.o.Stream)); got != float64(lost[i]) {
			t.Errorf("shard %d (%s): trimmed unread %v, want %d", i, c.o.Stream, got, lost[i])
		}
	}
	if got := m.gauge(0); got != 60 {
		t.Errorf("lag summed over the shards = %v, want 60", got)
	}
}

// Entries trimmed from the stream while pending (read, not yet applied)
// are counted at most once, whoever ends up with them: the reader that
// stalled applies them from what it read if no one took them over;
// otherwise the consumer that takes them over finds them gone (Redis 7's
// XAUTOCLAIM drops them from the pending list and names them; a re-read of
// one's own pending entries returns them empty), dead-letters them as
// deleted and counts them as lost, and the stalled reader, waking, finds
// them no longer its own and applies none.
func TestEntriesTrimmedWhilePendingCountedAtMostOnce(t *testing.T) {
	const held, later = 20, 5
	tests := []struct {
		name string
		next *Options // the consumer started while the first stalls; nil: none
		// want: entries counted, dead-lettered as deleted, counted as trimmed
		counted, dead int64
	}{
		{"trimmed between read and apply, not taken over", nil, held + later, 0},
		{"claimed by another consumer after the trim", &Options{Consumer: "claims", Read: ReadGroup, ClaimIdle: 200 * time.Millisecond, ClaimInterval: 50 * time.Millisecond}, later, held},
		{"re-read by a process of the same name after the trim", &Options{Consumer: "stalls", Read: ReadGroup, ClaimIdle: time.Hour}, later, held},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			now := nowMinute()
			xadd(t, rdb, oneEach(0, held, now)...)

			var appliedA, appliedB atomic.Int64
			a, hold := startStalled(t, rdb, ReadGroup, &appliedA)
			// The plugin goes on writing, its MAXLEN trimming the batch held.
			xaddTrimmed(t, rdb, testStream, later, oneEach(held, later, now)...)
			if n := rdb.XLen(context.Background(), testStream).Val(); n != later {
				t.Fatalf("stream length %d after the trim, want %d", n, later)
			}
			var b *running
			if tt.next != nil {
				o := *tt.next
				o.Client, o.OnApplied = rdb, countApplied(&appliedB)
				b = start(t, o)
				drained(t, rdb, DefaultGroup)
			}
			close(hold.release)
			<-hold.resumed
			drained(t, rdb, DefaultGroup)
			a.stop()
			if b != nil {
				b.stop()
			}

			if got := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; got != tt.counted {
				t.Errorf("counted %d, want %d (%d applied by the stalled consumer, %d by the other)", got, tt.counted, appliedA.Load(), appliedB.Load())
			}
			if got := appliedA.Load() + appliedB.Load(); got != tt.counted {
				t.Errorf("OnApplied saw %d entries, want %d", got, tt.counted)
			}
			if got := rdb.XLen(context.Background(), DeadStream(testStream)).Val(); got != tt.dead {
				t.Errorf("dead-lettered %d, want %d", got, tt.dead)
			}
			var trimmed, deleted float64
			for _, r := range []*running{a, b} {
				if r != nil {
					trimmed += testutil.ToFloat64(r.c.m.trimmed.WithLabelValues(testStream))
					deleted += testutil.ToFloat64(r.c.m.dead.WithLabelValues(ReasonDeleted))
				}
			}
			if trimmed != float64(tt.dead) || deleted != float64(tt.dead) {
				t.Errorf("trimmed unread %v, dead-lettered as deleted %v; want %d", trimmed, deleted, tt.dead)
			}
		})
	}
}

// The claim and the re-read of own entries (each a transaction with the
// fence) and the trim check run on a Redis Cluster too: their keys share
// the stream's slot.
func TestClaimRereadAndTrimCheckOnACluster(t *testing.T) {
	rdb := redistest.StartCluster(t, 3).Client()
	ctx := context.Background()
	c, err := New(Options{Client: rdb, Consumer: "c", ClaimIdle: time.Millisecond, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	now := nowMinute()
	xaddTrimmed(t, rdb, testStream, 100, oneEach(0, 5, now)...)
	if msgs, err := c.readGroup(ctx, ">", -1); err != nil || len(msgs) != 5 {
		t.Fatalf("read %d entries, %v; want 5", len(msgs), err)
	}
	if msgs, err := c.rereadOwn(ctx, "0"); err != nil || len(msgs) != 5 {
		t.Fatalf("re-read %d own entries, %v; want 5", len(msgs), err)
	}
	xaddTrimmed(t, rdb, testStream, 2, oneEach(5, 10, now)...) // 5 pending and 8 unread trimmed
	time.Sleep(5 * time.Millisecond)
	msgs, deleted, _, err := c.xautoclaim(ctx, "0-0")
	if err != nil || len(msgs) != 0 || len(deleted) != 5 {
		t.Fatalf("claim: %d entries, %d deleted, %v; want 0 and 5", len(msgs), len(deleted), err)
	}
	r, err := c.checkTrimmed(ctx)
	if err != nil || r.lost != 8 || r.lag != 2 {
		t.Fatalf("trim check %+v, %v; want 8 lost, lag 2", r, err)
	}
}

// Two processes under one consumer name (one stopped, not dead, while the
// next re-reads its pending entries) can both hold entries the plugin's
// MAXLEN trimmed meanwhile: the stopped one with their data, the re-reader
// as deleted. Whichever applies first settles them: counted by the first,
// or reported lost by the first, never both and never reported twice.
func TestSameNameProcessesSettleTrimmedEntriesOnce(t *testing.T) {
	tests := []struct {
		name           string
		stalledFirst   bool
		counted, dead  int64
		stale, deadSkp int // the second script's: entries and dead entries not its own any more
	}{
		{"the stopped process applies first", true, 5, 0, 0, 5},
		{"the re-reader reports the loss first", false, 0, 5, 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			ctx := context.Background()
			now := time.Now()
			minute := now.Unix() / 60 * 60
			rdb.XGroupCreateMkStream(ctx, testStream, DefaultGroup, "0")
			xadd(t, rdb, oneEach(0, 5, minute)...)
			p := scriptPlanner(DefaultGroup)
			p.consumer = "stalls"
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: DefaultGroup, Consumer: "stalls", Streams: []string{testStream, ">"}}).Result()
			if err != nil {
				t.Fatal(err)
			}
			stalled := p.build("new", fromXMessages(res[0].Messages), nil, now, "0")
			if err := rdb.XTrimMaxLen(ctx, testStream, 0).Err(); err != nil {
				t.Fatal(err)
			}
			// The next process of the name: fence moved, own pending entries re-read.
			rdb.Incr(ctx, p.keys.Fence(DefaultGroup))
			res, err = rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: DefaultGroup, Consumer: "stalls", Streams: []string{testStream, "0"}}).Result()
			if err != nil {
				t.Fatal(err)
			}
			reread := p.build("pending", fromXMessages(res[0].Messages), nil, now, "")
			if len(reread.dead) != 5 {
				t.Fatalf("re-read %d entries as deleted, want 5", len(reread.dead))
			}
			first, second := stalled, reread
			if !tt.stalledFirst {
				first, second = reread, stalled
			}
			runPlan(t, rdb, first)
			r := runPlan(t, rdb, second)
			if r.stale != tt.stale || len(r.deadStale) != tt.deadSkp {
				t.Errorf("second script: %d entries and %d dead entries not its own, want %d and %d", r.stale, len(r.deadStale), tt.stale, tt.deadSkp)
			}
			if got := totals(t, rdb, []string{"substring:err"}, minute, minute+60)[series{"substring:err", "h", "t"}]; got != tt.counted {
				t.Errorf("counted %d, want %d", got, tt.counted)
			}
			if got := rdb.XLen(ctx, DeadStream(testStream)).Val(); got != tt.dead {
				t.Errorf("dead-lettered %d, want %d", got, tt.dead)
			}
			if pending := rdb.XPending(ctx, testStream, DefaultGroup).Val(); pending.Count != 0 {
				t.Errorf("%d entries left pending", pending.Count)
			}
		})
	}
}

// Reading by cursor keeps the group's entries-read as the group's delivery
// does: entries trimmed before the cursor reached them are reported lost
// once, and entries read are never reported, whatever the batches.
func TestCursorReportsEntriesTrimmedBeforeRead(t *testing.T) {
	rdb := redistest.Start(t).Client()
	now := nowMinute()
	ctx := context.Background()
	// 15 of the first 20 are trimmed before any keyalertd reads.
	xaddTrimmed(t, rdb, testStream, 5, oneEach(0, 20, now)...)
	r := start(t, Options{Client: rdb, Read: ReadCursor, BatchSize: 3})
	drained(t, rdb, DefaultGroup)
	r.c.refreshGauges(ctx)
	xadd(t, rdb, oneEach(20, 10, now)...)
	drained(t, rdb, DefaultGroup)
	r.c.refreshGauges(ctx)
	r.stop()
	if got := testutil.ToFloat64(r.c.m.trimmed.WithLabelValues(testStream)); got != 15 {
		t.Errorf("trimmed unread %v, want 15", got)
	}
	if got := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; got != 15 {
		t.Errorf("counted %d, want the 15 entries left to read", got)
	}
	if got := r.c.m.gauge(0); got != 0 {
		t.Errorf("lag %v after reading all, want 0", got)
	}
}

package ingest

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// chunkOf returns the entries of one plugin chunk of producer p, attempt
// a: one per keyword, host h.
func chunkOf(batch, p, a int, host string, minute int64, kws ...string) []stream.Entry {
	var es []stream.Entry
	for i, kw := range kws {
		es = append(es, v3(entry(batch, kw, host, "t", minute, int64(1+i)), p, a))
	}
	return es
}

// pauseEval holds the apply script calls of one client while on: the
// consumer has read its batch and stalls before applying it.
type pauseEval struct {
	on      atomic.Bool
	paused  chan struct{} // a call is held
	release chan struct{} // let it go
	resumed chan struct{} // the held call has returned
}

// isApplyCmd is an apply script call, for hooks that count one.
var isApplyCmd = redis.NewCmd(context.Background(), "evalsha", applyScript.Hash(), 0)

// isApply tells the apply script's calls from other scripts'.
func isApply(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) < 2 {
		return false
	}
	switch cmd.Name() {
	case "evalsha":
		return args[1] == applyScript.Hash()
	case "eval":
		return args[1] == applySource
	}
	return false
}

func newPauseEval() *pauseEval {
	return &pauseEval{paused: make(chan struct{}, 1), release: make(chan struct{}), resumed: make(chan struct{}, 1)}
}

// countApplied is an OnApplied that adds the entries applied to n.
func countApplied(n *atomic.Int64) func(context.Context, []stream.Entry) {
	return func(_ context.Context, a []stream.Entry) { n.Add(int64(len(a))) }
}

// stallHold is a stalled consumer's apply call: close release to let it
// go; resumed receives once it went (reading by the group: once it
// returned).
type stallHold struct{ release, resumed chan struct{} }

// startStalled starts consumer "stalls" reading as read says, on a client
// of its own, held at its first apply script call (release it with the
// returned hold), counting what it applies in applied. Reading by cursor the
// call goes on a connection of the consumer's own, so it is held by a proxy
// in front of Redis; reading by the group, by a go-redis hook.
func startStalled(t *testing.T, rdb *redis.Client, read string, applied *atomic.Int64) (*running, *stallHold) {
	t.Helper()
	var stalled *redis.Client
	var held <-chan struct{}
	var hold *stallHold
	if read == ReadCursor {
		p := startApplyProxy(t, rdb.Options().Addr)
		p.hold.Store(true)
		stalled = p.client(t, rdb)
		held, hold = p.held, &stallHold{release: p.release, resumed: p.resumed}
	} else {
		h := newPauseEval()
		h.on.Store(true)
		stalled = redis.NewClient(rdb.Options())
		t.Cleanup(func() { stalled.Close() })
		stalled.AddHook(h)
		held, hold = h.paused, &stallHold{release: h.release, resumed: h.resumed}
	}
	a := start(t, Options{Client: stalled, Consumer: "stalls", Read: read, Workers: 1, ClaimIdle: time.Hour, OnApplied: countApplied(applied)})
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer never reached its apply script")
	}
	return a, hold
}

func (h *pauseEval) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *pauseEval) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *pauseEval) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isApply(cmd) && h.on.CompareAndSwap(true, false) {
			h.paused <- struct{}{}
			<-h.release
			err := next(ctx, cmd)
			h.resumed <- struct{}{}
			return err
		}
		return next(ctx, cmd)
	}
}

// A consumer that stalls between reading a batch and applying it finds on
// waking that another consumer claimed and applied its entries (past the
// claim idle time), or a process started under its name re-read and applied
// them, or (reading by cursor) another reader applied them and moved the
// cursor: it applies none of them, and acknowledges none.
func TestStalledConsumerAppliesNothingAnotherApplied(t *testing.T) {
	for _, tt := range []struct {
		name    string
		stalled string
		next    Options
	}{
		{"claimed by another consumer", ReadGroup, Options{Consumer: "claims", Read: ReadGroup, ClaimIdle: 200 * time.Millisecond, ClaimInterval: 50 * time.Millisecond}},
		{"re-read by a process of the same name", ReadGroup, Options{Consumer: "stalls", Read: ReadGroup, ClaimIdle: time.Hour}},
		{"cursor moved by another reader", ReadCursor, Options{Consumer: "other", Read: ReadCursor}},
		{"cursor moved by a process of the same name", ReadCursor, Options{Consumer: "stalls", Read: ReadCursor}},
		{"cursor moved by a reader of the group", ReadCursor, Options{Consumer: "other", Read: ReadGroup}},
	} {
		t.Run(tt.name, func(t *testing.T) { stalledThenResumed(t, tt.stalled, tt.next) })
	}
}

func stalledThenResumed(t *testing.T, stalled string, next Options) {
	srv := redistest.Start(t)
	now := nowMinute()
	var es []stream.Entry
	want := map[series]int64{}
	for b := 0; b < 20; b++ {
		for _, e := range chunkOf(b, b%3, 1, fmt.Sprintf("h%d", b%2), now, "err", "warn") {
			es = append(es, e)
			want[series{e.Keyword.ID(), e.Host, "t"}] += e.Count
		}
	}
	// Half version 2 (older plugins), half version 3.
	for i := range es[:len(es)/2] {
		es[i].Producer, es[i].Attempt = "", ""
	}
	rdb := srv.Client()
	xadd(t, rdb, es...)

	var appliedA, appliedB atomic.Int64
	a, hold := startStalled(t, rdb, stalled, &appliedA)
	next.Client, next.OnApplied = rdb, countApplied(&appliedB)
	start(t, next)
	drained(t, rdb, "keyalertd")
	close(hold.release)
	<-hold.resumed
	a.stop()
	if got := totals(t, rdb, []string{"substring:err", "substring:warn"}, now, now+60); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("totals %v, want %v", got, want)
	}
	if appliedA.Load() != 0 || appliedB.Load() != int64(len(es)) {
		t.Errorf("the stalled consumer applied %d, the other %d; want 0 and %d", appliedA.Load(), appliedB.Load(), len(es))
	}
}

// The script applies exactly the entries still pending for its consumer
// once the fence moved: those another consumer claimed are skipped and not
// acknowledged, whether it applied them already or applies them later.
func TestScriptAppliesOnlyEntriesStillPending(t *testing.T) {
	now := time.Now()
	minute := now.Unix() / 60 * 60
	tests := []struct {
		name string
		// before the stalled consumer's script: what the other consumer did
		// to entries 0..5 (claim, claim+ack).
		claimed, acked []int
		want           int64 // count of err/h/t after both scripts
	}{
		{"nothing taken", nil, nil, 21},
		{"all applied by the other", []int{0, 1, 2, 3, 4, 5}, []int{0, 1, 2, 3, 4, 5}, 21},
		{"some applied by the other", []int{1, 4}, []int{1, 4}, 21},
		{"claimed, not yet applied", []int{0, 2}, nil, 21},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			ctx := context.Background()
			rdb.XGroupCreateMkStream(ctx, testStream, "keyalertd", "0")
			var es []stream.Entry
			for b := 0; b < 6; b++ {
				e := v3(entry(b, "err", "h", "t", minute, int64(1+b)), 1, 1)
				if b%2 == 1 {
					e.Producer, e.Attempt = "", "" // version 2
				}
				es = append(es, e)
			}
			xadd(t, rdb, es...)
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "keyalertd", Consumer: "stalled", Streams: []string{testStream, ">"}}).Result()
			if err != nil {
				t.Fatal(err)
			}
			msgs := fromXMessages(res[0].Messages)
			p := scriptPlanner("keyalertd")
			run := func(consumer string, msgs []message, fence string) result {
				p.consumer = consumer
				return runPlan(t, rdb, p.build("test", msgs, nil, now, fence))
			}
			// As a consumer does: the fence before a read, moved before a claim.
			stalledFence, otherFence := "0", "0"
			if len(tt.claimed) > 0 {
				otherFence = fmt.Sprint(rdb.Incr(ctx, p.keys.Fence("keyalertd")).Val())
			}
			var taken, acked []message
			for _, i := range tt.claimed {
				taken = append(taken, msgs[i])
				rdb.XClaim(ctx, &redis.XClaimArgs{Stream: testStream, Group: "keyalertd", Consumer: "other", Messages: []string{msgs[i].id}})
			}
			for _, i := range tt.acked {
				acked = append(acked, msgs[i])
			}
			if len(acked) > 0 { // the other consumer applied what it acknowledged
				if r := run("other", acked, otherFence); len(r.applied) != len(acked) {
					t.Fatalf("the other consumer applied %d of %d", len(r.applied), len(acked))
				}
			}
			r := run("stalled", msgs, stalledFence)
			if len(r.applied) != len(msgs)-len(taken) || r.stale != len(taken) {
				t.Errorf("stalled consumer: applied %d, stale %d; want %d and %d", len(r.applied), r.stale, len(msgs)-len(taken), len(taken))
			}
			if rest := taken[len(acked):]; len(rest) > 0 {
				if r := run("other", rest, otherFence); len(r.applied) != len(rest) {
					t.Errorf("the other consumer applied %d of the %d entries it claimed", len(r.applied), len(rest))
				}
			}
			if n := totals(t, rdb, []string{"substring:err"}, minute, minute+60)[series{"substring:err", "h", "t"}]; n != tt.want {
				t.Errorf("count = %d, want %d", n, tt.want)
			}
			if pending := rdb.XPending(ctx, testStream, "keyalertd").Val(); pending.Count != 0 {
				t.Errorf("%d entries left pending", pending.Count)
			}
		})
	}
}

// A plugin chunk written again (another attempt) after its first write
// succeeded but the reply was lost counts once, however the two copies are
// read: in one batch, in several, after the first was applied, with another
// keyword set, or a chunk's parts spread over batches around its retry.
func TestRetryOfAChunkCountsOnce(t *testing.T) {
	now := nowMinute()
	first := chunkOf(1, 1, 1, "h", now, "err", "warn", "fatal")        // counts 1, 2, 3
	retry := chunkOf(1, 1, 2, "h", now, "err", "warn", "fatal")        // same chunk, another attempt
	moreKWs := chunkOf(1, 1, 3, "h", now, "err", "warn", "fatal", "x") // retried with one more keyword
	// A fourth attempt. Every attempt is another: two copies of one attempt
	// both count whichever way they are read (the plugin never writes one
	// twice), and with them a run counted twice when a worker applied the
	// second attempt before the first.
	again := chunkOf(1, 1, 4, "h", now, "err", "warn", "fatal")
	other := chunkOf(2, 1, 1, "h", now, "err") // another chunk: 1 more err
	tests := []struct {
		name      string
		batchSize int
		feed      [][]stream.Entry // written in order; nil: wait until applied
	}{
		{"retry in the same read", 0, [][]stream.Entry{first, retry, other}},
		{"retry in a later read", 2, [][]stream.Entry{first, retry, other}},
		{"retry after the first was applied", 0, [][]stream.Entry{first, nil, retry, other}},
		{"retry with another keyword set", 0, [][]stream.Entry{first, nil, moreKWs, other}},
		{"retry first, then the first copy's parts", 1, [][]stream.Entry{retry, first, other}},
		{"retry three times", 1, [][]stream.Entry{first, retry, moreKWs, again, other}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			var r *running
			for _, es := range tt.feed {
				if es == nil {
					r = start(t, Options{Client: rdb, BatchSize: tt.batchSize})
					drained(t, rdb, "keyalertd")
					continue
				}
				xadd(t, rdb, es...)
			}
			if r == nil {
				start(t, Options{Client: rdb, BatchSize: tt.batchSize})
			}
			drained(t, rdb, "keyalertd")
			got := totals(t, rdb, []string{"substring:err", "substring:warn", "substring:fatal", "substring:x"}, now, now+60)
			want := map[series]int64{{"substring:err", "h", "t"}: 2, {"substring:warn", "h", "t"}: 2, {"substring:fatal", "h", "t"}: 3}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("totals %v, want %v", got, want)
			}
		})
	}
}

// A chunk id is remembered for at least the dedup window after it was
// applied, by the consumer's clock, while its producer keeps writing: a
// retry within it counts once; past two windows the chunk's generation has
// been dropped and a retry counts again, as documented.
func TestRetryCountsOnceWithinTheDedupWindow(t *testing.T) {
	const win = 10 * time.Minute
	base := time.Now()
	tests := []struct {
		name  string
		after time.Duration // from the first apply to the retry's
		want  int64
	}{
		{"at once", 0, 1},
		{"just inside the window", win - time.Second, 1},
		{"past the window, in the next generation", win + time.Minute, 1},
		{"past two windows", 2*win + time.Minute, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			var clock atomic.Int64
			clock.Store(base.UnixNano())
			now := func() time.Time { return time.Unix(0, clock.Load()) }
			minute := base.Unix() / 60 * 60
			start(t, Options{Client: rdb, DedupWindow: win, Now: now})
			xadd(t, rdb, chunkOf(1, 1, 1, "h", minute, "err")...)
			drained(t, rdb, "keyalertd")
			// The producer's other chunks every half window until the retry.
			for d, b := win/2, 2; d < tt.after; d, b = d+win/2, b+1 {
				clock.Store(base.Add(d).UnixNano())
				xadd(t, rdb, chunkOf(b, 1, 1, "h", minute, "warn")...)
				drained(t, rdb, "keyalertd")
			}
			clock.Store(base.Add(tt.after).UnixNano())
			xadd(t, rdb, chunkOf(1, 1, 2, "h", minute, "err")...)
			drained(t, rdb, "keyalertd")
			if n := totals(t, rdb, []string{"substring:err"}, minute, minute+60)[series{"substring:err", "h", "t"}]; n != tt.want {
				t.Errorf("count = %d, want %d", n, tt.want)
			}
		})
	}
}

// A producer keeps at most about DedupMaxPerProducer chunk ids, and a retry
// of any of its last half of them still counts once.
func TestDedupBoundedPerProducer(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	minute := nowMinute()
	const max, chunks = 100, 260
	r := start(t, Options{Client: rdb, DedupMaxPerProducer: max, Workers: 1, BatchSize: 10})
	for b := 0; b < chunks; b++ {
		xadd(t, rdb, chunkOf(b, 1, 1, "h", minute, "err")...)
	}
	drained(t, rdb, "keyalertd")
	key := window.NewKeys(testStream).Producer(v3(stream.Entry{}, 1, 1).Producer)
	var held int64
	gens, _ := rdb.Keys(ctx, key+":*").Result()
	for _, g := range gens {
		held += rdb.HLen(ctx, g).Val()
	}
	if held > max+10 || len(gens) > 2 {
		t.Errorf("producer holds %d chunk ids in %d generations, want at most about %d in 2", held, len(gens), max)
	}
	for b := chunks - max/2; b < chunks; b++ {
		xadd(t, rdb, chunkOf(b, 1, 2, "h", minute, "err")...) // retries
	}
	drained(t, rdb, "keyalertd")
	r.stop()
	if n := totals(t, rdb, []string{"substring:err"}, minute, minute+60)[series{"substring:err", "h", "t"}]; n != chunks {
		t.Errorf("count = %d, want %d: a retry of the newest %d chunks counted again", n, chunks, max/2)
	}
}

// What exactly-once keeps in Redis does not grow with the entries: after
// 100,000 entries of a few series (4 hosts x 4 keywords, one chunk per host
// and second, 4 entries a chunk, 104 minutes), the keys other than the
// stream hold the counts (window hashes and rollups) and the producers'
// chunk ids (the entries carry no samples). The chunk ids are bounded by
// producers x DedupMaxPerProducer (about 35 bytes each, measured), and all
// of it stays under 30 bytes an entry (measured 10), where one dedup id per
// entry (the layout before version 3) kept ~77 bytes an entry for the whole
// retention.
func TestMemoryDoesNotGrowWithEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 entries")
	}
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	now := nowMinute()
	const entries, hosts = 100000, 4
	kws := []string{"err", "warn", "fatal", "timeout"}
	r := start(t, Options{Client: rdb, Samples: 1})
	var es []stream.Entry
	for n, sec := 0, 0; n < entries; sec++ { // one chunk per host and second
		for h := 0; h < hosts; h++ {
			minute := now - 2*3600 + int64(sec/60)*60
			c := chunkOf(sec*hosts+h, h, 1, fmt.Sprintf("host-%d", h), minute, kws...)
			es = append(es, c...)
			n += len(c)
		}
		if len(es) >= 5000 {
			xadd(t, rdb, es...)
			es = es[:0]
		}
	}
	if len(es) > 0 {
		xadd(t, rdb, es...)
	}
	drained(t, rdb, "keyalertd")
	r.stop()
	usage := map[string]int64{}
	var total int64
	var it *redis.ScanIterator = rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for it.Next(ctx) {
		k := it.Val()
		if k == testStream || k == DeadStream(testStream) {
			continue
		}
		n, err := rdb.MemoryUsage(ctx, k, 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		kind := "window and rollups"
		switch {
		case strings.Contains(k, ":p:"):
			kind = "producer dedup"
		case strings.Contains(k, ":seen:"):
			kind = "seen sets"
		case strings.Contains(k, ":s:"):
			kind = "samples"
		}
		usage[kind] += n
		total += n
	}
	t.Logf("non-stream memory after %d entries: %d bytes (%.1f per entry): %v", entries, total, float64(total)/entries, usage)
	if bound := int64(30 * entries); total > bound {
		t.Errorf("keys other than the stream use %d bytes after %d entries, over %d", total, entries, bound)
	}
	if d, bound := usage["producer dedup"], int64(hosts*(DefaultDedupMaxPerProducer+DefaultBatchSize)*100); d > bound {
		t.Errorf("producer dedup uses %d bytes for %d producers, over %d", d, hosts, bound)
	}
	if usage["seen sets"] != 0 {
		t.Errorf("seen sets use %d bytes; version 3 entries need none", usage["seen sets"])
	}
}

// A producer's generation is cut into shards small enough for Redis to keep
// as listpacks, and every guarantee of TestDedupBoundedPerProducer holds
// across them: at most two generations, about the limit of ids, and a retry
// of any of the newest half counts once.
func TestDedupShardsStayListpacks(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	minute := nowMinute()
	const max, chunks = 2000, 1700 // 4 shards of about 250 ids; the second generation is started
	r := start(t, Options{Client: rdb, DedupMaxPerProducer: max, Workers: 1, BatchSize: 100})
	var es []stream.Entry
	for b := 0; b < chunks; b++ {
		es = append(es, chunkOf(b, 1, 1, "h", minute, "err")...)
	}
	xadd(t, rdb, es...)
	drained(t, rdb, "keyalertd")
	key := window.NewKeys(testStream).Producer(v3(stream.Entry{}, 1, 1).Producer)
	shards, _ := rdb.Keys(ctx, key+":*").Result()
	var held int64
	gens := map[string]bool{}
	for _, k := range shards {
		n := rdb.HLen(ctx, k).Val()
		held += n
		if enc := rdb.ObjectEncoding(ctx, k).Val(); enc != "listpack" || n > 512 {
			t.Errorf("shard %s holds %d ids as %s, want a listpack of at most 512", k, n, enc)
		}
		gens[k[:strings.LastIndexByte(k, ':')]] = true
	}
	if want := dedupShards(max); len(shards) > 2*want || len(gens) != 2 {
		t.Errorf("%d shards in %d generations, want at most %d in 2", len(shards), len(gens), 2*want)
	}
	if held != chunks {
		t.Errorf("producer holds %d chunk ids, want %d", held, chunks)
	}
	es = es[:0]
	for b := chunks - max/2; b < chunks; b++ {
		es = append(es, chunkOf(b, 1, 2, "h", minute, "err")...) // retries
	}
	xadd(t, rdb, es...)
	drained(t, rdb, "keyalertd")
	r.stop()
	if n := totals(t, rdb, []string{"substring:err"}, minute, minute+60)[series{"substring:err", "h", "t"}]; n != chunks {
		t.Errorf("count = %d, want %d: a retry of the newest %d chunks counted again", n, chunks, max/2)
	}
}

// A producer's state written before generations were cut into shards (one
// hash per generation, no shard counts) is still read: a retry of a chunk
// it holds counts once, in its generation and in the next one, and the
// unsharded generation is dropped when its turn comes.
func TestDedupReadsGenerationsWrittenBeforeShards(t *testing.T) {
	const win = 10 * time.Minute
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	base := time.Now()
	var clock atomic.Int64
	clock.Store(base.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	minute := base.Unix() / 60 * 60
	key := window.NewKeys(testStream).Producer(v3(stream.Entry{}, 1, 1).Producer)
	first := v3(entry(1, "err", "h", "t", minute, 1), 1, 1)
	// What the version before wrote after applying chunk 1 (attempt 1).
	rdb.HSet(ctx, key, "g", 5, "t", base.Unix(), "n", 1)
	rdb.HSet(ctx, key+":5", rawHex(first.Batch), rawHex(first.Attempt))
	start(t, Options{Client: rdb, DedupWindow: win, Now: now})
	count := func() int64 {
		return totals(t, rdb, []string{"substring:err"}, minute, minute+60)[series{"substring:err", "h", "t"}]
	}
	steps := []struct {
		name  string
		after time.Duration
		want  int64 // the count after chunk 1's retry and chunk b's first apply
	}{
		{"in the unsharded generation", 0, 1},
		{"a generation later", win + time.Minute, 2},
		{"two generations later, dropped", 2*win + 2*time.Minute, 4},
	}
	for b, st := range steps {
		clock.Store(base.Add(st.after).UnixNano())
		xadd(t, rdb, chunkOf(10+b, 1, 1, "h", minute, "err")...) // a new chunk: rolls the generation when due
		drained(t, rdb, "keyalertd")
		xadd(t, rdb, chunkOf(1, 1, 2, "h", minute, "err")...) // chunk 1's retry
		drained(t, rdb, "keyalertd")
		if got := count(); got != st.want {
			t.Errorf("%s: count = %d, want %d", st.name, got, st.want)
		}
	}
	if n := rdb.Exists(ctx, key+":5").Val(); n != 0 {
		t.Errorf("the unsharded generation 5 is still there two generations later")
	}
}

// busyScript keeps Redis busy for ARGV[1] microseconds: every command of
// other clients waits.
var busyScript = redis.NewScript(`
local function us() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end
local t0 = us()
repeat until us() - t0 > tonumber(ARGV[1])
return 1`)

// busyFirstApply makes Redis busy, from another client, just before the
// first apply script call goes out: its reply comes after the client's read
// timeout, although Redis runs it.
type busyFirstApply struct {
	other *redis.Client
	busy  time.Duration
	on    atomic.Bool
	calls atomic.Int64 // apply calls handed to go-redis
}

func (h *busyFirstApply) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *busyFirstApply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *busyFirstApply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.saw(cmd)
		return next(ctx, cmd)
	}
}

// saw counts an apply call, and makes Redis busy before the first one.
func (h *busyFirstApply) saw(cmd redis.Cmder) {
	if isApply(cmd) {
		h.calls.Add(1)
		if h.on.CompareAndSwap(true, false) {
			go busyScript.Run(context.Background(), h.other, nil, h.busy.Microseconds())
			time.Sleep(50 * time.Millisecond) // the busy script runs first
		}
	}
}

// An apply script call whose reply comes after the client's read timeout
// has run all the same: the call must not be sent again unchanged (go-redis
// retries a timed-out command by itself), or, read by the group, its
// entries are counted again under the fence the batch was read with, which
// skips the ownership check; the consumer's own retry, which checks
// ownership, is the only one. Read by cursor, the consumer finds the cursor
// past the batch: applied, its entries handed to OnApplied once.
func TestApplyRepliedAfterTheTimeoutCountsOnce(t *testing.T) {
	for _, read := range []string{ReadGroup, ReadCursor} {
		t.Run(read, func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client()
			now := nowMinute()
			var es []stream.Entry
			for b := range 10 {
				es = append(es, chunkOf(b, 1, 1, "h", now, "err")...)
			}
			xadd(t, rdb, es...)
			// Loaded: the call that times out is the EVALSHA that runs.
			for _, sc := range []*redis.Script{applyScript, busyScript} {
				if err := sc.Load(context.Background(), rdb).Err(); err != nil {
					t.Fatal(err)
				}
			}
			// Reading by cursor the call goes on a connection of the
			// consumer's own: a proxy sees it instead of a go-redis hook.
			hook := &busyFirstApply{other: rdb, busy: 800 * time.Millisecond}
			o := *rdb.Options() // a copy: Options is the client's own
			if read == ReadCursor {
				p := startApplyProxy(t, o.Addr)
				before := func() { hook.on.Store(true); hook.saw(isApplyCmd) }
				p.before.Store(&before)
				o.Addr, o.Dialer = p.Addr(), nil
			}
			o.ReadTimeout = 100 * time.Millisecond
			slow := redis.NewClient(&o)
			t.Cleanup(func() { slow.Close() })
			if read == ReadGroup {
				hook.on.Store(true)
				slow.AddHook(hook)
			}
			var seen atomic.Int64
			r := start(t, Options{Client: slow, Read: read, Workers: 1, OnApplied: countApplied(&seen)})
			drained(t, rdb, DefaultGroup)
			if got := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; got != int64(len(es)) {
				t.Errorf("counted %d, want %d (apply calls %d)", got, len(es), hook.calls.Load())
			}
			if read == ReadGroup && hook.calls.Load() < 2 {
				t.Errorf("%d apply calls: the first one did not time out", hook.calls.Load())
			}
			if read == ReadCursor {
				for deadline := time.Now().Add(5 * time.Second); seen.Load() < int64(len(es)) && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
				}
				r.stop()
				if got := seen.Load(); got != int64(len(es)) {
					t.Errorf("OnApplied saw %d entries, want %d", got, len(es))
				}
				if n := testutil.ToFloat64(r.c.m.errors.WithLabelValues("apply")); n < 1 {
					t.Errorf("apply errors %v: the first call did not time out", n)
				}
			}
		})
	}
}

// pauseClaim holds the first claim of one client while on, before it goes
// out (a lone XAUTOCLAIM, or the transaction holding it).
type pauseClaim struct {
	on      atomic.Bool
	paused  chan struct{}
	release chan struct{}
}

func newPauseClaim() *pauseClaim {
	return &pauseClaim{paused: make(chan struct{}, 1), release: make(chan struct{})}
}

func (h *pauseClaim) hold(cmds ...redis.Cmder) {
	for _, cmd := range cmds {
		if cmd.Name() == "xautoclaim" && h.on.CompareAndSwap(true, false) {
			h.paused <- struct{}{}
			<-h.release
			return
		}
	}
}

func (h *pauseClaim) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pauseClaim) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.hold(cmds...)
		return next(ctx, cmds)
	}
}
func (h *pauseClaim) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.hold(cmd)
		return next(ctx, cmd)
	}
}

// A claimer that stalls in the middle of its claim (descheduled, a slow
// round trip) for longer than the claim idle time must not leave a window
// in which another consumer reads new entries, holds them past the claim
// idle time, and then applies them trusting a fence that the claim has
// already moved: the claim would take and apply those entries too. The
// fence moves in the same step as the claim.
func TestClaimStalledMidwayCountsOnce(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	now := nowMinute()

	claimHold := newPauseClaim()
	claimHold.on.Store(true)
	claimer := redis.NewClient(rdb.Options())
	t.Cleanup(func() { claimer.Close() })
	claimer.AddHook(claimHold)
	var appliedA, appliedB atomic.Int64
	// Its one worker claims first thing, and stalls there.
	b := start(t, Options{Client: claimer, Consumer: "claims", Read: ReadGroup, Workers: 1, ClaimIdle: 200 * time.Millisecond, ClaimInterval: 50 * time.Millisecond, OnApplied: countApplied(&appliedB)})
	select {
	case <-claimHold.paused:
	case <-time.After(10 * time.Second):
		t.Fatal("the claimer never claimed")
	}

	var es []stream.Entry
	for i := range 10 {
		es = append(es, chunkOf(i, 1, 1, "h", now, "err")...)
	}
	xadd(t, rdb, es...)
	a, applyHold := startStalled(t, rdb, ReadGroup, &appliedA)
	time.Sleep(300 * time.Millisecond) // past the claim idle time
	close(claimHold.release)
	for deadline := time.Now().Add(10 * time.Second); appliedB.Load() < int64(len(es)) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	close(applyHold.release)
	<-applyHold.resumed
	drained(t, rdb, DefaultGroup)
	a.stop()
	b.stop()
	if got := totals(t, rdb, []string{"substring:err"}, now, now+60)[series{"substring:err", "h", "t"}]; got != int64(len(es)) {
		t.Errorf("counted %d, want %d (the stalled consumer applied %d, the claimer %d)", got, len(es), appliedA.Load(), appliedB.Load())
	}
}

// scriptPlanner plans batches of testStream for group as a consumer does,
// with small limits, for tests that run the apply script by hand.
func scriptPlanner(group string) planner {
	return planner{keys: window.NewKeys(testStream), stream: testStream, dead: DeadStream(testStream), group: group,
		window: time.Hour, maxPerProd: 100, pendingMax: 1000, retention: time.Hour, sampleCap: 4, sampleTTL: 3600, deadMaxLen: 10, maxDeliv: 5}
}

// runPlan runs the apply script for pl and parses its result.
func runPlan(t testing.TB, rdb redis.UniversalClient, pl *plan) result {
	t.Helper()
	v, err := applyScript.Run(context.Background(), rdb, pl.keys, pl.args...).Result()
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseResult(pl, v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

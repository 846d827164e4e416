package instance

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/chunk"
	"github.com/redis/go-redis/v9"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newRegistry(t *testing.T) (*Registry, *syncBuf) {
	var logs syncBuf
	r := NewRegistry(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { r.ExitAll() })
	return r, &logs
}

// props is a case-insensitive property set, as Fluent Bit looks keys up.
type props map[string]string

func (p props) get(key string) string {
	for k, v := range p {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func lines(ls ...string) []byte { return chunk.Lines(chunk.FormatV2, chunk.EventTime, t0, ls) }

func readStream(t *testing.T, rdb *redis.Client, key string) []stream.Entry {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []stream.Entry
	for _, m := range msgs {
		e, err := stream.Parse(m.Values)
		if err != nil {
			t.Fatalf("entry %s: %v", m.ID, err)
		}
		out = append(out, e)
	}
	return out
}

func totals(es []stream.Entry) map[string]int64 {
	out := map[string]int64{}
	for _, e := range es {
		out[e.Keyword.ID()] += e.Count
	}
	return out
}

func TestFlushPublishes(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := newRegistry(t)
	id, code := r.Init(props{"redis_url": srv.URL(), "keywords": "ERROR,WARN", "hostname": "h1", "rules_key": "off"}.get)
	if code != FLBOK {
		t.Fatal("init failed")
	}
	if c := r.Flush(id, lines("ERROR a", "WARN b", "ERROR WARN c", "ok"), "app.log"); c != FLBOK {
		t.Fatalf("flush = %d", c)
	}
	es := readStream(t, srv.Client(), stream.DefaultStream)
	if got := totals(es); got["substring:ERROR"] != 2 || got["substring:WARN"] != 2 || len(got) != 2 {
		t.Fatalf("totals %v", got)
	}
	for _, e := range es {
		if e.Tag != "app.log" || e.Host != "h1" || e.Minute != t0.Unix() || e.SentMs == 0 || len(e.Samples) != 1 {
			t.Errorf("entry %+v", e)
		}
	}
	// Retrying the same chunk gives the same batch and dedup ids.
	r.Flush(id, lines("ERROR a", "WARN b", "ERROR WARN c", "ok"), "app.log")
	es2 := readStream(t, srv.Client(), stream.DefaultStream)[len(es):]
	for i := range es {
		if es[i].DedupID() != es2[i].DedupID() {
			t.Errorf("retry entry %d has another dedup id", i)
		}
	}
}

func TestInitRejectsBadConfig(t *testing.T) {
	r, logs := newRegistry(t)
	tests := []struct {
		name string
		p    props
		want string
	}{
		{"bad samples", props{"keywords": "x", "samples": "abc"}, `Samples: \"abc\" is not a non-negative integer`},
		{"nothing to count", props{"rules_key": "off"}, "no keywords configured"},
		{"bad regex", props{"keywords": "(", "match_mode": "regex"}, "Keywords:"},
		{"password never logged", props{"keywords": "x", "redis_url": "redis://u:s3cret@h:port/0"}, "Redis_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, code := r.Init(tt.p.get)
			if code != FLBError || id != 0 {
				t.Fatalf("init = %d, %d", id, code)
			}
			if !strings.Contains(logs.String(), tt.want) {
				t.Errorf("log lacks %q:\n%s", tt.want, logs.String())
			}
		})
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Error("password in the log")
	}
	if len(r.IDs()) != 0 {
		t.Error("failed inits registered")
	}
}

func TestRedisDownRetriesThenDelivers(t *testing.T) {
	srv := redistest.Start(t)
	r, logs := newRegistry(t)
	id, _ := r.Init(props{"redis_url": srv.URL(), "keywords": "ERROR", "rules_key": "off", "redis_timeout": "500ms"}.get)
	data := lines("ERROR one")
	srv.Stop()
	if c := r.Flush(id, data, "t"); c != FLBRetry {
		t.Fatalf("flush with Redis down = %d, want retry", c)
	}
	if !strings.Contains(logs.String(), "publish failed") {
		t.Errorf("no log:\n%s", logs.String())
	}
	srv.Restart()
	if c := r.Flush(id, data, "t"); c != FLBOK {
		t.Fatalf("flush after restart = %d", c)
	}
	if got := totals(readStream(t, srv.Client(), stream.DefaultStream)); got["substring:ERROR"] != 1 {
		t.Fatalf("totals %v", got)
	}
}

func TestBrokenChunkPublishesPrefixThenErrors(t *testing.T) {
	srv := redistest.Start(t)
	r, logs := newRegistry(t)
	id, _ := r.Init(props{"redis_url": srv.URL(), "keywords": "ERROR", "rules_key": "off"}.get)
	good := lines("ERROR one", "ERROR two")
	data := append(append([]byte{}, good...), good[:len(good)/2-3]...)
	if c := r.Flush(id, data, "t"); c != FLBError {
		t.Fatalf("flush = %d, want error", c)
	}
	if got := totals(readStream(t, srv.Client(), stream.DefaultStream)); got["substring:ERROR"] != 2 {
		t.Fatalf("totals %v, want the 2 events before the break", got)
	}
	for _, w := range []string{"cannot be decoded", "event 2 at byte offset", "counts of the 2 events before the break were published"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}
}

func TestEmptyEffectiveSetCountsNothing(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := newRegistry(t)
	// No static keywords, following a key that does not exist (yet).
	id, code := r.Init(props{"redis_url": srv.URL(), "rules_key": "ks"}.get)
	if code != FLBOK {
		t.Fatal("init failed")
	}
	if c := r.Flush(id, lines("ERROR"), "t"); c != FLBOK {
		t.Fatalf("flush = %d", c)
	}
	if n := srv.Client().XLen(context.Background(), stream.DefaultStream).Val(); n != 0 {
		t.Fatalf("%d entries written", n)
	}
}

// Keywords published in Redis apply without restarting, within the interval.
func TestFollowsPublishedKeywords(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	set, _ := keyword.EncodeSet([]keyword.Spec{{Text: "disk full"}})
	rdb.Set(ctx, keyword.DefaultSetKey, set, 0)
	r, _ := newRegistry(t)
	id, _ := r.Init(props{"redis_url": srv.URL(), "keywords": "ERROR", "rules_interval": "1s"}.get)
	// Read at init: applies to the first flush.
	r.Flush(id, lines("disk full here", "ERROR"), "t")
	if got := totals(readStream(t, rdb, stream.DefaultStream)); got["substring:disk full"] != 1 || got["substring:ERROR"] != 1 {
		t.Fatalf("totals %v", got)
	}
	set, _ = keyword.EncodeSet([]keyword.Spec{{Text: "timeout", IgnoreCase: true}})
	rdb.Set(ctx, keyword.DefaultSetKey, set, 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rdb.Del(ctx, stream.DefaultStream)
		r.Flush(id, lines("TIMEOUT", "disk full"), "t")
		got := totals(readStream(t, rdb, stream.DefaultStream))
		if got["substring/i:timeout"] == 1 && got["substring:disk full"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("change not applied within 5s: %v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Two instances in one process keep their own configuration and context.
func TestInstancesSideBySide(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := newRegistry(t)
	a, _ := r.Init(props{"redis_url": srv.URL(), "stream": "sa", "keywords": "ERROR", "hostname": "ha", "rules_key": "off"}.get)
	b, _ := r.Init(props{"redis_url": srv.URL(), "stream": "sb", "keywords": "WARN", "hostname": "hb", "rules_key": "off"}.get)
	data := lines("ERROR WARN")
	r.Flush(a, data, "t")
	r.Flush(b, data, "t")
	ea, eb := readStream(t, srv.Client(), "sa"), readStream(t, srv.Client(), "sb")
	if len(ea) != 1 || ea[0].Keyword.Text != "ERROR" || ea[0].Host != "ha" {
		t.Errorf("sa: %+v", ea)
	}
	if len(eb) != 1 || eb[0].Keyword.Text != "WARN" || eb[0].Host != "hb" {
		t.Errorf("sb: %+v", eb)
	}
	if ea[0].Batch == eb[0].Batch {
		t.Error("two instances share a batch id")
	}
	// Without context, a flush is ambiguous with two instances.
	if c := r.FlushAny(data, "t"); c != FLBError {
		t.Errorf("FlushAny with two instances = %d", c)
	}
	r.Exit(a)
	if c := r.Flush(a, data, "t"); c != FLBError {
		t.Errorf("flush after exit = %d", c)
	}
	if c := r.FlushAny(data, "t"); c != FLBOK {
		t.Errorf("FlushAny with one instance = %d", c)
	}
	if n := len(readStream(t, srv.Client(), "sb")); n != 2 {
		t.Errorf("sb has %d entries after FlushAny, want 2", n)
	}
	if c := r.ExitAll(); c != FLBOK || len(r.IDs()) != 0 {
		t.Errorf("ExitAll = %d, %d left", c, len(r.IDs()))
	}
}

// Fluent Bit `workers N`: concurrent flushes of one instance give the same
// totals as sequential ones.
func TestConcurrentFlushes(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := newRegistry(t)
	id, _ := r.Init(props{"redis_url": srv.URL(), "keywords": "ERROR,WARN", "rules_key": "off"}.get)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				// Distinct chunks (distinct batches), 3 ERROR + 2 WARN each.
				data := lines(fmt.Sprintf("ERROR %d/%d", w, i), "ERROR WARN", "ERROR", "WARN", "none")
				if c := r.Flush(id, data, "t"); c != FLBOK {
					t.Errorf("flush = %d", c)
				}
			}
		}(w)
	}
	wg.Wait()
	if got := totals(readStream(t, srv.Client(), stream.DefaultStream)); got["substring:ERROR"] != 120 || got["substring:WARN"] != 80 {
		t.Fatalf("totals %v", got)
	}
}

// Exit then init again (hot reload) leaves no goroutine behind.
func TestHotReloadLeavesNoGoroutines(t *testing.T) {
	srv := redistest.Start(t)
	r, _ := newRegistry(t)
	p := props{"redis_url": srv.URL(), "keywords": "ERROR", "rules_interval": "1s"}.get
	// Warm up once so lazily started runtime goroutines are counted in base.
	id, _ := r.Init(p)
	r.Flush(id, lines("ERROR"), "t")
	r.Exit(id)
	base := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		a, _ := r.Init(p)
		b, _ := r.Init(p)
		r.Flush(a, lines("ERROR"), "t")
		r.Flush(b, lines("ERROR"), "t")
		r.ExitAll()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPanicsAreRecovered(t *testing.T) {
	r, logs := newRegistry(t)
	r.mu.Lock()
	r.live[99] = &Instance{} // no follower: Flush dereferences nil
	r.mu.Unlock()
	if c := r.Flush(99, lines("x"), "t"); c != FLBRetry {
		t.Errorf("flush panic = %d, want retry", c)
	}
	if c := r.Exit(99); c != FLBError {
		t.Errorf("exit panic = %d, want error", c)
	}
	if c := r.FlushAny(lines("x"), "t"); c != FLBError {
		t.Errorf("flush without instances = %d", c)
	}
	if id, c := r.Init(nil); c != FLBError || id != 0 { // nil getter panics
		t.Errorf("init panic = %d, %d", id, c)
	}
	if n := strings.Count(logs.String(), "panic in"); n != 3 {
		t.Errorf("%d panics logged, want 3:\n%s", n, logs.String())
	}
}

func TestRedisOutOfMemoryRetriesAndIsNamedOncePerInterval(t *testing.T) {
	old := OOMLogInterval
	OOMLogInterval = time.Hour
	t.Cleanup(func() { OOMLogInterval = old })
	srv := redistest.StartMaxMemory(t, 3<<20)
	r, logs := newRegistry(t)
	id, _ := r.Init(props{"redis_url": srv.URL(), "keywords": "ERROR", "rules_key": "off"}.get)
	srv.FillMemory()
	data := lines("ERROR one")
	for i := 0; i < 20; i++ {
		if c := r.Flush(id, data, "t"); c != FLBRetry {
			t.Fatalf("flush %d with Redis full = %d, want retry", i, c)
		}
	}
	if n := strings.Count(logs.String(), "Redis is out of memory (maxmemory "); n != 1 {
		t.Errorf("named OOM message logged %d times, want once:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "publish failed") {
		t.Errorf("a line per failure besides the named one:\n%s", logs.String())
	}
	// Memory freed: the retried chunk is delivered, nothing lost.
	if err := srv.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if c := r.Flush(id, data, "t"); c != FLBOK {
		t.Fatalf("flush after memory was freed = %d", c)
	}
	if got := totals(readStream(t, srv.Client(), stream.DefaultStream)); got["substring:ERROR"] != 1 {
		t.Fatalf("totals %v", got)
	}
}

// Past Max_Series the counts go to the overflow series, the instance counts
// them, and the warning naming the keyword and the limit comes at most once
// per OverflowLogInterval (an injected clock stands in for time).
func TestOverflowWarnsAtMostOncePerInterval(t *testing.T) {
	srv := redistest.Start(t)
	r, logs := newRegistry(t)
	id, code := r.Init(props{"redis_url": srv.URL(), "keywords": "ERROR", "hostname": "h1", "rules_key": "off",
		"stream": "ka:ov", "hostname_key": "h", "max_series": "2"}.get)
	if code != FLBOK {
		t.Fatalf("init: %s", logs)
	}
	in := r.live[id]
	now := t0
	in.now = func() time.Time { return now }
	chunk := func() []byte {
		var b []byte
		for i, h := range []string{"a", "b", "c", "d", "a"} {
			b, _ = chunkEvent(b, i, map[string]any{"log": "ERROR", "h": h})
		}
		return b
	}()
	warnings := func() int { return strings.Count(logs.String(), "series limit reached") }
	for i, step := range []struct {
		advance time.Duration
		want    int
	}{{0, 1}, {30 * time.Second, 1}, {31 * time.Second, 2}} {
		now = now.Add(step.advance)
		if c := r.Flush(id, chunk, "t"); c != FLBOK {
			t.Fatalf("flush %d: %d", i, c)
		}
		if got := warnings(); got != step.want {
			t.Fatalf("flush %d: %d warnings, want %d:\n%s", i, got, step.want, logs)
		}
	}
	if got := in.OverflowTotal(); got != 6 {
		t.Errorf("overflow total %d, want 6 (2 per flush)", got)
	}
	for _, w := range []string{"keywords=substring:ERROR", "max_series=2", "overflow_total=6"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs)
		}
	}
	var other int64
	for _, e := range readStream(t, srv.Client(), "ka:ov") {
		if e.Host == stream.OverflowValue && e.Tag == stream.OverflowValue {
			other += e.Count
		}
	}
	if other != 6 {
		t.Errorf("overflow series counted %d, want 6", other)
	}
}

func chunkEvent(b []byte, sec int, rec map[string]any) ([]byte, error) {
	return chunk.AppendEvent(b, chunk.FormatV2, t0.Add(time.Duration(sec)*time.Second), chunk.EventTime, rec)
}

package flbhost

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// synthLines makes n log lines with a known, mixed keyword content.
func synthLines(n, seed int) []string {
	templates := []string{
		"INFO request %d served in 3ms",
		"WARN slow response %d",
		"ERROR failed to write block %d",
		"java.lang.NullPointerException at Foo.java:%d",
		"error: connection reset by peer (%d)",
		"Error reading config section %d",
		"ERROR and WARN together %d",
		"INFO Kafka consumer rebalanced generation %d",
		"debug %d alpha beta",
	}
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(templates[(i*7+seed)%len(templates)], i)
	}
	return out
}

// batches returns the distinct batch ids of the entries with tag.
func batches(entries []stream.Entry, tag string) map[string]bool {
	out := map[string]bool{}
	for _, e := range entries {
		if e.Tag == tag {
			out[e.Batch] = true
		}
	}
	return out
}

// TestRetryAfterRedisOutageCountsChunkOnce stops Redis before and during
// flushes: the plugin must ask for a retry (2) while Redis is away, succeed (1)
// on the retry once it is back, and the entries of all attempts together must
// cover the chunk exactly once by DedupID, all under one batch id.
func TestRetryAfterRedisOutageCountsChunkOnce(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)
	kws := specs(false, "ERROR", "WARN")
	mustInit(t, h, "r", instanceConfig(rs, "ka:retry", "ERROR,WARN", "Redis_Timeout", "1s"))

	t.Run("stopped before the flush", func(t *testing.T) {
		lines := synthLines(3000, 1)
		c := chunk.Lines(chunk.FormatV2, chunk.EventTime, base, lines)
		rs.Stop()
		mustFlush(t, h, "r", "retry.before", c, Retry)
		rs.Restart()
		retryUntilOK(t, h, "r", "retry.before", c)
		entries := readEntries(t, rc, "ka:retry")
		equalTallies(t, "after retry", tally(t, entries, "retry.before"), truth(kws, base, lines))
		if b := batches(entries, "retry.before"); len(b) != 1 {
			t.Errorf("one chunk written under %d batch ids: %v", len(b), b)
		}
	})

	// A Redis that accepts the connection but does not answer writes in time
	// (CLIENT PAUSE): the flush must give up after Redis_Timeout and ask for a
	// retry. The paused transaction still runs when the pause ends, so the
	// retry duplicates it, and DedupID must make that harmless.
	t.Run("paused past the timeout", func(t *testing.T) {
		lines := synthLines(3000, 2)
		c := chunk.Lines(chunk.FormatV2, chunk.FloatTime, base, lines)
		ctx := context.Background()
		if err := rc.Do(ctx, "CLIENT", "PAUSE", "10000", "WRITE").Err(); err != nil {
			t.Fatalf("client pause: %v", err)
		}
		mustFlush(t, h, "r", "retry.paused", c, Retry)
		if err := rc.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
			t.Fatalf("client unpause: %v", err)
		}
		retryUntilOK(t, h, "r", "retry.paused", c)
		entries := readEntries(t, rc, "ka:retry")
		equalTallies(t, "after retry", tally(t, entries, "retry.paused"), truth(kws, base, lines))
		if b := batches(entries, "retry.paused"); len(b) != 1 {
			t.Errorf("one chunk written under %d batch ids: %v", len(b), b)
		}
	})

	// Stopping Redis while a flush of many entries is in flight: the first
	// attempt may land completely, partly or not at all.
	for i, delay := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond} {
		tag := fmt.Sprintf("retry.during.%d", i)
		t.Run(fmt.Sprintf("stopped %v into the flush", delay), func(t *testing.T) {
			// 40,000 lines over 667 minutes: about 1,300 entries in one flush.
			lines := synthLines(40000, i)
			c := chunk.Lines(chunk.FormatV1, chunk.IntTime, base, lines)
			type result struct {
				rc  int
				err error
			}
			done := make(chan result, 1)
			go func() {
				n, err := h.Flush("r", tag, c)
				done <- result{n, err}
			}()
			time.Sleep(delay)
			rs.Stop()
			first := <-done
			if first.err != nil {
				t.Fatalf("flush: %v", first.err)
			}
			if first.rc != OK && first.rc != Retry {
				t.Fatalf("flush during outage: rc %d, want %d or %d", first.rc, OK, Retry)
			}
			t.Logf("first attempt: rc %d", first.rc)
			rs.Restart()
			retryUntilOK(t, h, "r", tag, c)
			entries := readEntries(t, rc, "ka:retry")
			equalTallies(t, fmt.Sprintf("first attempt rc %d, then retry", first.rc), tally(t, entries, tag), truth(kws, base, lines))
			if b := batches(entries, tag); len(b) != 1 {
				t.Errorf("one chunk written under %d batch ids: %v", len(b), b)
			}
		})
	}
}

// retryUntilOK flushes c again while the plugin asks for a retry, as Fluent
// Bit's scheduler would (a freshly restarted Redis on a busy machine may miss
// the first retry's deadline), at most 5 times.
func retryUntilOK(t *testing.T, h *Host, inst, tag string, c []byte) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		n, err := h.Flush(inst, tag, c)
		if err != nil {
			t.Fatalf("flush %s %s: %v", inst, tag, err)
		}
		switch {
		case n == OK:
			return
		case n != Retry:
			t.Fatalf("flush %s %s: rc %d on retry %d, want %d or %d", inst, tag, n, attempt, OK, Retry)
		case attempt == 5:
			t.Fatalf("flush %s %s: still rc %d after %d retries; stderr tail:\n%s", inst, tag, n, attempt, tail(h))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestInstancesDoNotMix runs two instances with different keywords and
// streams in one process on the same chunks.
func TestInstancesDoNotMix(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)
	mustInit(t, h, "a", instanceConfig(rs, "ka:a", "alpha,ERROR"))
	mustInit(t, h, "b", instanceConfig(rs, "ka:b", "beta,ERROR", "Ignore_Case", "on"))

	lines := synthLines(1800, 3)
	chunks, _ := split(lines, 600)
	for _, c := range chunks {
		mustFlush(t, h, "a", "mix.a", c, OK)
		mustFlush(t, h, "b", "mix.b", c, OK)
		mustFlush(t, h, "a", "mix.both", c, OK)
		mustFlush(t, h, "b", "mix.both", c, OK)
	}
	ea, eb := readEntries(t, rc, "ka:a"), readEntries(t, rc, "ka:b")
	wantA := truth(specs(false, "alpha", "ERROR"), base, lines)
	wantB := truth(specs(true, "beta", "ERROR"), base, lines)
	equalTallies(t, "instance a, own tag", tally(t, ea, "mix.a"), wantA)
	equalTallies(t, "instance a, shared tag", tally(t, ea, "mix.both"), wantA)
	equalTallies(t, "instance b, own tag", tally(t, eb, "mix.b"), wantB)
	equalTallies(t, "instance b, shared tag", tally(t, eb, "mix.both"), wantB)
	if n := len(tally(t, ea, "mix.b")) + len(tally(t, eb, "mix.a")); n != 0 {
		t.Errorf("%d series of one instance's tag in the other's stream", n)
	}
	// The same chunk through two instances is two batches, or the backend
	// would drop one instance's counts as duplicates.
	ba := batches(ea, "mix.both")
	for b := range batches(eb, "mix.both") {
		if ba[b] {
			t.Errorf("batch id %s used by both instances", b)
		}
	}
}

// TestWritesToARedisCluster: a Redis_URL listing several nodes is a Redis
// Cluster, for the entries and for the published keyword set alike.
func TestWritesToARedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rc := cl.Client()
	set, _ := keyword.EncodeSet(specs(false, "beta"))
	if err := rc.Set(context.Background(), keyword.DefaultSetKey, set, 0).Err(); err != nil {
		t.Fatal(err)
	}
	h := StartForTest(t)
	mustInit(t, h, "c", map[string]string{"Redis_URL": cl.URL(), "Stream": "ka:cluster", "Keywords": "alpha,ERROR",
		"Hostname": testHost, "Rules_Interval": "1s"})
	lines := synthLines(1200, 3)
	c := chunk.Lines(chunk.FormatV2, chunk.EventTime, base, lines)
	want := truth(specs(false, "alpha", "ERROR", "beta"), base, lines)
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		tag := fmt.Sprintf("cluster.%d", i)
		mustFlush(t, h, "c", tag, c, OK)
		got := tally(t, readEntries(t, rc, "ka:cluster"), tag)
		if byKeyword(got)[specs(false, "beta")[0].ID()] > 0 {
			equalTallies(t, "cluster", got, want)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the published keyword was not counted within 5s: %v", byKeyword(got))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestConfigReachesPluginLikeFluentBit checks the host's property semantics
// with the real plugin: keys in any case, percent-encoded values with blanks,
// commas and '%', and core keys (Match, Workers, ...) that Fluent Bit keeps
// for itself and the plugin never sees.
func TestConfigReachesPluginLikeFluentBit(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)
	cfg := map[string]string{
		"redis_url":   rs.URL(),
		"STREAM":      "ka:cfg",
		"keywords":    `disk full, 100%=done ,a\,b`,
		"HostName":    testHost,
		"rules_key":   "off",
		"Match":       "bogus*",
		"Workers":     "4",
		"Retry_Limit": "no_limits",
	}
	mustInit(t, h, "cfg", cfg)
	lines := []string{"the disk full now", "job 100%=done", "x a,b y", "disk  full", "a b"}
	mustFlush(t, h, "cfg", "cfg", chunk.Lines(chunk.FormatV2, chunk.EventTime, base, lines), OK)
	got := byKeyword(tally(t, readEntries(t, rc, "ka:cfg"), "cfg"))
	want := map[string]int64{"substring:disk full": 1, "substring:100%=done": 1, "substring:a,b": 1}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: count %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("counted keywords %v, want %v", got, want)
	}
}

// TestBadConfigFailsInitNamingTheKey: every invalid setting fails the init
// with rc 0 and a log line naming the key; the instance does not exist after.
func TestBadConfigFailsInitNamingTheKey(t *testing.T) {
	rs := redistest.Start(t)
	h := StartForTest(t)
	cases := []struct {
		name string
		set  []string // key, value pairs over a valid config
		key  string   // must appear in stderr
	}{
		{"unknown match mode", []string{"Match_Mode", "bogus"}, "Match_Mode"},
		{"negative samples", []string{"Samples", "-1"}, "Samples"},
		{"too many samples", []string{"Samples", "100000"}, "Samples"},
		{"http url", []string{"Redis_URL", "http://x"}, "Redis_URL"},
		{"url without host", []string{"Redis_URL", "redis://"}, "Redis_URL"},
		{"no keywords and no published set", []string{"Keywords", "", "Rules_Key", "off"}, "Keywords"},
		{"empty keyword in list", []string{"Keywords", "a,,b"}, "Keywords"},
		{"bad regex", []string{"Keywords", "a(b", "Match_Mode", "regex"}, "Keywords"},
		{"not a boolean", []string{"Ignore_Case", "maybe"}, "Ignore_Case"},
		{"interval too short", []string{"Rules_Interval", "1ms", "Rules_Key", "ka:kw"}, "Rules_Interval"},
		{"timeout not a duration", []string{"Redis_Timeout", "soon"}, "Redis_Timeout"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inst := fmt.Sprintf("bad%d", i)
			mark := h.LogLen()
			n, err := h.Init(inst, instanceConfig(rs, "ka:bad", "ERROR", tc.set...))
			if err != nil {
				t.Fatalf("init: %v", err)
			}
			if n != Error {
				t.Fatalf("init with %v: rc %d, want %d (error)", tc.set, n, Error)
			}
			if !h.WaitLog(mark, tc.key, 2*time.Second) {
				t.Errorf("stderr after init with %v does not name %q:\n%s", tc.set, tc.key, h.LogSince(mark))
			}
			if _, err := h.Flush(inst, "bad", chunk.Lines(chunk.FormatV2, chunk.EventTime, base, []string{"ERROR"})); err == nil || !strings.Contains(err.Error(), "no instance") {
				t.Errorf("flush to an instance whose init failed: err %v, want no instance", err)
			}
		})
	}
	if t.Failed() {
		return
	}
	// Fixing the setting makes the same name work.
	mustInit(t, h, "bad0", instanceConfig(rs, "ka:bad", "ERROR"))
}

// TestHotReloadStopsGoroutines inits, flushes and exits an instance twice in
// one process, as Fluent Bit's hot reload does with a library it cannot
// unload: after each exit the plugin's goroutines return to the count before
// the first init.
func TestHotReloadStopsGoroutines(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)
	before, err := h.Goroutines()
	if err != nil {
		t.Fatalf("goroutines: %v", err)
	}
	lines := synthLines(2000, 5)
	chunks, _ := split(lines, 500)
	var roundBatches []map[string]bool
	for round := 1; round <= 2; round++ {
		tag := fmt.Sprintf("reload.%d", round)
		// The published-set poller is on, so there is a goroutine to stop.
		mustInit(t, h, "hr", instanceConfig(rs, "ka:reload", "ERROR", "Rules_Key", keyword.DefaultSetKey, "Rules_Interval", "1s"))
		for _, c := range chunks[:2] {
			mustFlush(t, h, "hr", tag, c, OK)
		}
		rcs, err := h.FlushConcurrent("hr", tag, chunks[2:])
		if err != nil {
			t.Fatalf("pflush: %v", err)
		}
		for i, n := range rcs {
			if n != OK {
				t.Errorf("round %d: concurrent flush %d: rc %d", round, i, n)
			}
		}
		during, _ := h.Goroutines()
		if n, err := h.Exit("hr"); err != nil || n != OK {
			t.Fatalf("round %d: exit: rc %d, %v", round, n, err)
		}
		after := waitGoroutines(t, h, before)
		t.Logf("round %d: goroutines before init %d, while running %d, after exit %d", round, before, during, after)
		if after > before {
			t.Errorf("round %d: %d goroutines after exit, %d before the first init", round, after, before)
		}
		entries := readEntries(t, rc, "ka:reload")
		equalTallies(t, tag, tally(t, entries, tag), truth(specs(false, "ERROR"), base, lines))
		roundBatches = append(roundBatches, batches(entries, tag))
	}
	// The instance identity survives the reload, so a chunk retried across
	// it keeps its batch id and the backend still recognises it.
	if !maps.Equal(roundBatches[0], roundBatches[1]) {
		t.Errorf("same chunks, same config: batch ids %v before the reload, %v after", roundBatches[0], roundBatches[1])
	}
}

// waitGoroutines polls for up to 3s until the count is at most want.
func waitGoroutines(t *testing.T, h *Host, want int) int {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		n, err := h.Goroutines()
		if err != nil {
			t.Fatalf("goroutines: %v", err)
		}
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPublishedKeywordsApplyWithoutReinit publishes a keyword set in Redis
// while an instance runs: within 5s its flushes count the new keyword, and
// stop counting it once it is withdrawn. Static keywords keep counting.
func TestPublishedKeywordsApplyWithoutReinit(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)
	mustInit(t, h, "pub", instanceConfig(rs, "ka:pub", "ERROR", "Rules_Key", keyword.DefaultSetKey, "Rules_Interval", "1s"))

	lines := synthLines(900, 7)
	static, kafka := specs(false, "ERROR"), specs(true, "kafka")
	c := chunk.Lines(chunk.FormatV2, chunk.EventTime, base, lines)
	mustFlush(t, h, "pub", "pub.before", c, OK)
	got := byKeyword(tally(t, readEntries(t, rc, "ka:pub"), "pub.before"))
	if got[kafka[0].ID()] != 0 || got[static[0].ID()] == 0 {
		t.Fatalf("before publishing: counts %v, want only %s", got, static[0].ID())
	}

	publish := func(sp []keyword.Spec) {
		doc, err := keyword.EncodeSet(sp)
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Set(context.Background(), keyword.DefaultSetKey, doc, 0).Err(); err != nil {
			t.Fatalf("set %s: %v", keyword.DefaultSetKey, err)
		}
	}
	// flushUntil flushes c under fresh tags until the published keyword's
	// presence is as wanted, for at most 5s; it returns the last tag.
	flushUntil := func(phase string, want bool) string {
		deadline := time.Now().Add(5 * time.Second)
		for i := 0; ; i++ {
			tag := fmt.Sprintf("pub.%s.%d", phase, i)
			mustFlush(t, h, "pub", tag, c, OK)
			got := byKeyword(tally(t, readEntries(t, rc, "ka:pub"), tag))
			if (got[kafka[0].ID()] > 0) == want {
				return tag
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: after 5s of flushes %s is still counted=%v (counts %v)", phase, kafka[0].ID(), !want, got)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	publish(kafka)
	tag := flushUntil("published", true)
	want := truth(append(static, kafka...), base, lines)
	equalTallies(t, "with the published keyword", tally(t, readEntries(t, rc, "ka:pub"), tag), want)

	publish(nil)
	tag = flushUntil("withdrawn", false)
	equalTallies(t, "after withdrawing it", tally(t, readEntries(t, rc, "ka:pub"), tag), truth(static, base, lines))
}

// TestEventMinuteFromEveryTimeEncoding puts events on both sides of minute
// boundaries in each timestamp encoding and layout, and checks the minute
// each is counted under.
func TestEventMinuteFromEveryTimeEncoding(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)
	mustInit(t, h, "min", instanceConfig(rs, "ka:min", "ERROR"))
	at := func(d time.Duration) time.Time { return base.Add(d) }
	cases := []struct {
		kind chunk.TimeKind
		ts   time.Time
	}{
		{chunk.EventTime, at(59*time.Second + 999999999)},
		{chunk.EventTime, at(60 * time.Second)},
		{chunk.IntTime, at(119 * time.Second)},
		{chunk.IntTime, at(120 * time.Second)},
		{chunk.FloatTime, at(179*time.Second + 999*time.Millisecond)},
		{chunk.FloatTime, at(180*time.Second + 500*time.Millisecond)},
	}
	want := map[series]int64{}
	var c []byte
	for i, tc := range cases {
		var err error
		c, err = chunk.AppendEvent(c, chunk.Format(i%2), tc.ts, tc.kind, map[string]any{"log": "ERROR"})
		if err != nil {
			t.Fatal(err)
		}
		sec := tc.ts.Unix()
		want[series{"substring:ERROR", sec - sec%60}]++
	}
	mustFlush(t, h, "min", "min", c, OK)
	equalTallies(t, "minutes", tally(t, readEntries(t, rc, "ka:min"), "min"), want)
}

// TestScanOptionsThroughTheHost runs the record-scanning settings — match
// modes, Keys, Hostname_Key — on small hand-checked records.
func TestScanOptionsThroughTheHost(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)
	type hostKw struct{ host, kw string }
	cases := []struct {
		name    string
		set     []string
		records []map[string]any
		want    map[hostKw]int64
	}{
		{
			name: "word mode skips longer words",
			set:  []string{"Keywords", "ERROR,fail", "Match_Mode", "word"},
			records: []map[string]any{
				{"log": "ERROR: disk"}, {"log": "ERRORS: 3"}, {"log": "xERROR"}, {"log": "fail-over"},
				{"log": "failed"}, {"log": "a fail_b"}, {"log": "(fail)"},
			},
			want: map[hostKw]int64{{testHost, "word:ERROR"}: 1, {testHost, "word:fail"}: 2},
		},
		{
			name: "regex mode ignoring case",
			set:  []string{"Keywords", `disk\s+full,^oom`, "Match_Mode", "regex", "Ignore_Case", "on"},
			records: []map[string]any{
				{"log": "Disk   FULL on /"}, {"log": "diskfull"}, {"log": "OOM killer"}, {"log": "an oom"},
			},
			want: map[hostKw]int64{{testHost, `regex/i:disk\s+full`}: 1, {testHost, "regex/i:^oom"}: 1},
		},
		{
			name: "default keys are log and message, once per record",
			set:  []string{"Keywords", "ERROR"},
			records: []map[string]any{
				{"log": "ERROR a", "message": "ERROR b"}, {"message": "ERROR c"}, {"msg": "ERROR d"},
				{"nested": map[string]any{"log": "ERROR e"}},
			},
			want: map[hostKw]int64{{testHost, "substring:ERROR"}: 2},
		},
		{
			name: "all keys at any depth",
			set:  []string{"Keywords", "ERROR", "Keys", "*"},
			records: []map[string]any{
				{"kubernetes": map[string]any{"labels": map[string]any{"x": "ERROR"}}},
				{"list": []any{"ok", []any{"ERROR"}}}, {"n": int64(1), "b": []byte("ERROR")}, {"k": "fine"},
			},
			want: map[hostKw]int64{{testHost, "substring:ERROR"}: 3},
		},
		{
			name: "hostname from a record key",
			set:  []string{"Keywords", "ERROR", "Hostname_Key", "hostname"},
			records: []map[string]any{
				{"log": "ERROR", "hostname": "web-1"}, {"log": "ERROR", "hostname": "web-2"},
				{"log": "ERROR", "hostname": "web-1"}, {"log": "ERROR"}, {"log": "ERROR", "hostname": int64(3)},
			},
			want: map[hostKw]int64{
				{"web-1", "substring:ERROR"}: 2, {"web-2", "substring:ERROR"}: 1, {testHost, "substring:ERROR"}: 2,
			},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inst, key := fmt.Sprintf("scan%d", i), fmt.Sprintf("ka:scan%d", i)
			mustInit(t, h, inst, instanceConfig(rs, key, "", tc.set...))
			var c []byte
			for _, r := range tc.records {
				var err error
				if c, err = chunk.AppendEvent(c, chunk.FormatV2, base, chunk.EventTime, r); err != nil {
					t.Fatal(err)
				}
			}
			mustFlush(t, h, inst, "scan", c, OK)
			got := map[hostKw]int64{}
			for _, e := range readEntries(t, rc, key) {
				got[hostKw{e.Host, e.Keyword.ID()}] += e.Count
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("counts %v, want %v", got, tc.want)
			}
		})
	}
}

// TestInitWithRedisDownThenRecovers: Fluent Bit must start while Redis is
// away (init OK), ask for retries until it is back, then deliver.
func TestInitWithRedisDownThenRecovers(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)
	rs.Stop()
	mustInit(t, h, "down", instanceConfig(rs, "ka:down", "ERROR", "Redis_Timeout", "300ms",
		"Rules_Key", keyword.DefaultSetKey, "Rules_Interval", "1s"))
	lines := synthLines(600, 4)
	c := chunk.Lines(chunk.FormatV2, chunk.EventTime, base, lines)
	mustFlush(t, h, "down", "down", c, Retry)
	rs.Restart()
	retryUntilOK(t, h, "down", "down", c)
	equalTallies(t, "after recovery", tally(t, readEntries(t, rc, "ka:down"), "down"), truth(specs(false, "ERROR"), base, lines))
}

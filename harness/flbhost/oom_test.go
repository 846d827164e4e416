package flbhost

import (
	"context"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// TestRedisOutOfMemoryAsksForRetryAndSaysSo: with a Redis at maxmemory
// (noeviction) every flush answers Retry, the log names the cause once per
// interval (30 s, longer than the test) instead of an EXECABORT line per
// chunk, and the chunk goes through once memory is freed.
func TestRedisOutOfMemoryAsksForRetryAndSaysSo(t *testing.T) {
	rs := redistest.StartMaxMemory(t, 3<<20)
	h := StartForTest(t)
	mustInit(t, h, "oom", instanceConfig(rs, "ka:oom", "ERROR"))
	rs.FillMemory()
	mark := h.LogLen()
	lines := synthLines(500, 3)
	c := chunk.Lines(chunk.FormatV2, chunk.EventTime, base, lines)
	for i := 0; i < 10; i++ {
		mustFlush(t, h, "oom", "oom.full", c, Retry)
	}
	logs := h.LogSince(mark)
	if n := strings.Count(logs, "Redis is out of memory (maxmemory "); n != 1 {
		t.Errorf("named OOM message logged %d times in 10 refused flushes, want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, "EXECABORT"); n > 1 {
		t.Errorf("EXECABORT logged %d times, want at most once (inside the named message):\n%s", n, logs)
	}
	if err := rs.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	retryUntilOK(t, h, "oom", "oom.full", c)
	equalTallies(t, "after memory was freed", tally(t, readEntries(t, rs.Client(), "ka:oom"), "oom.full"),
		truth(specs(false, "ERROR"), base, lines))
}

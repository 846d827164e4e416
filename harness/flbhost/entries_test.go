package flbhost

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/chunk"
	"github.com/redis/go-redis/v9"
)

// base is the event time of the first line of every test chunk: a fixed,
// whole minute, so expected minutes are computed exactly.
var base = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

const testHost = "flbhost-test"

// instanceConfig is the configuration every test instance starts from: a
// fixed hostname (entries carry it) and no published keyword set unless the
// test wants one.
func instanceConfig(rs *redistest.Server, streamKey, keywords string, extra ...string) map[string]string {
	cfg := map[string]string{
		"Redis_URL": rs.URL(),
		"Stream":    streamKey,
		"Keywords":  keywords,
		"Hostname":  testHost,
		"Rules_Key": "off",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		cfg[extra[i]] = extra[i+1]
	}
	return cfg
}

// mustInit inits an instance and fails the test unless the plugin accepts it.
func mustInit(t *testing.T, h *Host, inst string, cfg map[string]string) {
	t.Helper()
	rc, err := h.Init(inst, cfg)
	if err != nil {
		t.Fatalf("init %s: %v", inst, err)
	}
	if rc != OK {
		t.Fatalf("init %s: rc %d, want %d (OK); stderr:\n%s", inst, rc, OK, h.LogSince(0))
	}
}

func mustFlush(t *testing.T, h *Host, inst, tag string, c []byte, want int) {
	t.Helper()
	rc, err := h.Flush(inst, tag, c)
	if err != nil {
		t.Fatalf("flush %s %s: %v", inst, tag, err)
	}
	if rc != want {
		t.Fatalf("flush %s %s (%d bytes): rc %d, want %d; stderr tail:\n%s", inst, tag, len(c), rc, want, tail(h))
	}
}

func tail(h *Host) string {
	return h.LogSince(h.LogLen() - 2048)
}

// readEntries returns every entry of a stream, in order.
func readEntries(t *testing.T, c redis.UniversalClient, streamKey string) []stream.Entry {
	t.Helper()
	msgs, err := c.XRange(context.Background(), streamKey, "-", "+").Result()
	if err != nil {
		t.Fatalf("xrange %s: %v", streamKey, err)
	}
	out := make([]stream.Entry, 0, len(msgs))
	for _, m := range msgs {
		e, err := stream.Parse(m.Values)
		if err != nil {
			t.Fatalf("stream %s entry %s: %v (values %v)", streamKey, m.ID, err, m.Values)
		}
		out = append(out, e)
	}
	return out
}

// series keys a count by keyword ID and minute.
type series struct {
	kw     string
	minute int64
}

// tally sums counts over distinct DedupIDs — what the backend applies — for
// entries with the given tag, and fails if two entries with one DedupID
// disagree on their count (a retry must resend the same numbers).
func tally(t *testing.T, entries []stream.Entry, tag string) map[series]int64 {
	t.Helper()
	seen := map[string]int64{}
	out := map[series]int64{}
	for _, e := range entries {
		if e.Tag != tag {
			continue
		}
		id := e.DedupID()
		if n, dup := seen[id]; dup {
			if n != e.Count {
				t.Errorf("dedup id %s (%s %s minute %d) sent with count %d and %d", id, e.Keyword.ID(), e.Tag, e.Minute, n, e.Count)
			}
			continue
		}
		seen[id] = e.Count
		out[series{e.Keyword.ID(), e.Minute}] += e.Count
	}
	return out
}

// byKeyword folds a tally over minutes.
func byKeyword(s map[series]int64) map[string]int64 {
	out := map[string]int64{}
	for k, n := range s {
		out[k.kw] += n
	}
	return out
}

// truth is the expected per-minute count of lines containing each keyword,
// for lines laid out as chunk.Lines does (one second apart from start).
func truth(specs []keyword.Spec, start time.Time, lines []string) map[series]int64 {
	out := map[series]int64{}
	for i, l := range lines {
		sec := start.Unix() + int64(i)
		for _, s := range specs {
			if contains(s, l) {
				out[series{s.ID(), sec - sec%60}]++
			}
		}
	}
	return out
}

// contains is the reference matcher for substring keywords, deliberately
// naive: strings.Contains, with ASCII folding for ignore-case.
func contains(s keyword.Spec, line string) bool {
	if s.Match != keyword.Substring {
		panic("reference matcher only does substring keywords")
	}
	if s.IgnoreCase {
		return strings.Contains(asciiLower(line), asciiLower(s.Text))
	}
	return strings.Contains(line, s.Text)
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func specs(icase bool, texts ...string) []keyword.Spec {
	out := make([]keyword.Spec, len(texts))
	for i, t := range texts {
		out[i] = keyword.Spec{Text: t, IgnoreCase: icase}.Canonical()
	}
	return out
}

// split cuts lines into chunks of at most n lines, each chunk's event times
// continuing from the previous one, and cycles through both formats and all
// timestamp encodings so every combination reaches the plugin.
func split(lines []string, n int) (chunks [][]byte, starts []time.Time) {
	formats := []chunk.Format{chunk.FormatV2, chunk.FormatV1}
	kinds := []chunk.TimeKind{chunk.EventTime, chunk.IntTime, chunk.FloatTime}
	for i := 0; i*n < len(lines); i++ {
		part := lines[i*n : min((i+1)*n, len(lines))]
		start := base.Add(time.Duration(i*n) * time.Second)
		chunks = append(chunks, chunk.Lines(formats[i%len(formats)], kinds[i%len(kinds)], start, part))
		starts = append(starts, start)
	}
	return chunks, starts
}

func equalTallies(t *testing.T, what string, got, want map[series]int64) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s minute %d: count %d, want %d", what, k.kw, k.minute, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %s minute %d: count %d, want none", what, k.kw, k.minute, g)
		}
	}
}

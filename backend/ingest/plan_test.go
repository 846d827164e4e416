package ingest

import (
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
)

func TestDedupBytesIsDedupID(t *testing.T) {
	es := []stream.Entry{
		entry(1, "err", "h", "t", 60, 1),
		{Batch: batchID(2), Keyword: keyword.Spec{Text: "Error", IgnoreCase: true}.Canonical(), Host: "h|x", Tag: "", Minute: 1714557600, Count: 3},
		{Batch: batchID(3), Keyword: keyword.Spec{Text: `a\s+b`, Match: keyword.Regex}, Host: "ü", Tag: "t|", Minute: 0, Count: 1},
	}
	for _, e := range es {
		got, _ := dedupBytes(&e, e.Keyword.ID(), nil)
		if want := e.DedupID(); hex.EncodeToString([]byte(got)) != want {
			t.Errorf("%+v: dedupBytes %x, DedupID %s", e, got, want)
		}
	}
}

func FuzzDedupBytesIsDedupID(f *testing.F) {
	f.Add("kw", "host", "tag", int64(60), uint8(0), false)
	f.Fuzz(func(t *testing.T, kw, host, tag string, minute int64, mode uint8, icase bool) {
		e := stream.Entry{Batch: batchID(7), Keyword: keyword.Spec{Text: kw, Match: keyword.Mode(mode % 3), IgnoreCase: icase}, Host: host, Tag: tag, Minute: minute}
		got, _ := dedupBytes(&e, e.Keyword.ID(), nil)
		if hex.EncodeToString([]byte(got)) != e.DedupID() {
			t.Errorf("%+v: dedupBytes differs from DedupID", e)
		}
	})
}

// FuzzBuild feeds arbitrary field values through parse and layout: nothing
// may panic, every message is either counted, dead-lettered or expired, and
// the script arguments have the announced shape.
func FuzzBuild(f *testing.F) {
	now := time.Unix(1714557600, 0)
	good := func(e stream.Entry) []string {
		var out []string
		for _, v := range e.AppendValues(nil) {
			out = append(out, v.(string))
		}
		return out
	}
	f.Add(encodeFields(good(entry(1, "err", "h", "t", 1714557600, 3))))
	f.Add(encodeFields([]string{"v", "1", "batch", batchID(1), "count", "x"}))
	f.Add(encodeFields([]string{"v", "2"}))
	f.Fuzz(func(t *testing.T, raw string) {
		msgs := []message{
			{id: "1-0", kv: append([]string{}, decodeFields(raw)...)},
			{id: "1-1"}, // deleted
			{id: "1-2", kv: good(entry(1, "err", "h", "t", 1714557600, 3))},
		}
		p := planner{keys: window.NewKeys(testStream), stream: testStream, dead: DeadStream(testStream), group: "g",
			consumer: "c", window: time.Hour, maxPerProd: 100, pendingMax: 1000, retention: time.Hour, sampleCap: 3, sampleTTL: 3600, deadMaxLen: 10, maxDeliv: 5}
		pl := p.build("new", msgs, map[string]int64{"1-2": 1}, now, "0")
		if n := len(pl.entries) + len(pl.dead) + len(pl.expired) + len(pl.repeats); n != len(msgs) {
			t.Fatalf("%d messages in, %d accounted for", len(msgs), n)
		}
		if got := pl.args[argEntries]; got != len(pl.entries) {
			t.Fatalf("entries slot = %v, want %d entries", got, len(pl.entries))
		}
		for _, k := range pl.keys {
			if k[:3] != "ka:" && k != testStream && k != DeadStream(testStream) {
				t.Fatalf("key %q outside the stream's namespace", k)
			}
		}
	})
}

// encodeFields and decodeFields turn a field list into one fuzzable string.
func encodeFields(fs []string) string {
	s := ""
	for _, f := range fs {
		s += fmt.Sprintf("%d:%s", len(f), f)
	}
	return s
}

func decodeFields(s string) []string {
	var out []string
	for len(s) > 0 {
		var n int
		var rest string
		if _, err := fmt.Sscanf(s, "%d:", &n); err != nil {
			return out
		}
		i := 0
		for i < len(s) && s[i] != ':' {
			i++
		}
		rest = s[i+1:]
		if n < 0 || n > len(rest) {
			return out
		}
		out = append(out, rest[:n])
		s = rest[n:]
	}
	return out
}

func layoutTestPlanner(sampleCap int) *planner {
	return &planner{keys: window.NewKeys(testStream), stream: testStream, dead: DeadStream(testStream), group: "g",
		consumer: "c", window: time.Hour, maxPerProd: 10000, pendingMax: 10000, retention: 7 * 24 * time.Hour,
		sampleCap: sampleCap, sampleTTL: 3600, deadMaxLen: 1000, maxDeliv: 10}
}

package flbhost

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/plugin/chunk"
	"github.com/tinylib/msgp/msgp"
)

// events builds a chunk event by event, remembering where each one ends and
// how many of the events so far contain ERROR, so a truncated chunk's
// expected count is known.
type events struct {
	b      []byte
	ends   []int
	errors []int64 // ERROR lines among events[:i+1]
}

func (ev *events) add(t *testing.T, f chunk.Format, kind chunk.TimeKind, ts time.Time, rec map[string]any) {
	t.Helper()
	var err error
	if ev.b, err = chunk.AppendEvent(ev.b, f, ts, kind, rec); err != nil {
		t.Fatal(err)
	}
	ev.raw(strings.Contains(fmt.Sprint(rec["log"]), "ERROR"))
}

// raw records an event appended to ev.b by hand.
func (ev *events) raw(hasError bool) {
	var n int64
	if len(ev.errors) > 0 {
		n = ev.errors[len(ev.errors)-1]
	}
	if hasError {
		n++
	}
	ev.ends = append(ev.ends, len(ev.b))
	ev.errors = append(ev.errors, n)
}

// errorsBefore is the ERROR count of the events that end at or before off.
func (ev *events) errorsBefore(off int) int64 {
	var n int64
	for i, end := range ev.ends {
		if end <= off {
			n = ev.errors[i]
		}
	}
	return n
}

func (ev *events) total() int64 { return ev.errorsBefore(len(ev.b)) }

// TestMalformedChunksNeverCrashTheHost feeds broken and unusual chunks. Each
// must come back with rc 0 (dropped; no more counted than the intact events
// hold) or rc 1 with exactly the counts of the events that can be read, never
// rc 2 (a malformed chunk retried forever), and the host must stay alive: a
// good chunk flushed after each one is counted.
func TestMalformedChunksNeverCrashTheHost(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)
	mustInit(t, h, "m", instanceConfig(rs, "ka:bad", "ERROR", "Samples", "2"))

	// A good chunk of 20 events mixing formats and time kinds.
	var good events
	for i := range 20 {
		line := fmt.Sprintf("line %d ok", i)
		if i%3 == 0 {
			line = fmt.Sprintf("line %d ERROR", i)
		}
		good.add(t, chunk.Format(i%2), chunk.TimeKind(i%3), base.Add(time.Duration(i)*time.Second), map[string]any{"log": line})
	}

	type tc struct {
		name  string
		data  []byte
		okAny []int64 // counts acceptable with rc 1; nil means any
		max   int64   // most ERROR lines a rc 0 may have counted
	}
	var cases []tc
	for _, off := range []int{1, 2, 7, 10, len(good.b) / 3, len(good.b) / 2, len(good.b) - 1} {
		n := good.errorsBefore(off)
		cases = append(cases, tc{fmt.Sprintf("truncated at %d of %d", off, len(good.b)), good.b[:off], []int64{n}, n})
	}

	{ // A record that is a string, between good events.
		var ev events
		ev.add(t, chunk.FormatV2, chunk.EventTime, base, map[string]any{"log": "ERROR one"})
		ev.b = msgp.AppendArrayHeader(ev.b, 2)
		ev.b = msgp.AppendInt64(ev.b, base.Unix())
		ev.b = msgp.AppendString(ev.b, "ERROR not a map")
		ev.raw(false)
		ev.add(t, chunk.FormatV2, chunk.EventTime, base, map[string]any{"log": "ERROR two"})
		cases = append(cases, tc{"record not a map", ev.b, []int64{2}, 2})
	}
	{ // A timestamp that is a string: skipping the event or counting it are both sane.
		var ev events
		ev.add(t, chunk.FormatV1, chunk.IntTime, base, map[string]any{"log": "ERROR one"})
		ev.b = msgp.AppendArrayHeader(ev.b, 2)
		ev.b = msgp.AppendArrayHeader(ev.b, 2)
		ev.b = msgp.AppendString(ev.b, "2024-03-01T12:00:00Z")
		ev.b = msgp.AppendMapHeader(ev.b, 0)
		ev.b = msgp.AppendMapHeader(ev.b, 1)
		ev.b = msgp.AppendString(ev.b, "log")
		ev.b = msgp.AppendString(ev.b, "ERROR string time")
		ev.raw(false)
		ev.add(t, chunk.FormatV1, chunk.IntTime, base, map[string]any{"log": "ERROR two"})
		cases = append(cases, tc{"timestamp a string", ev.b, []int64{2, 3}, 3})
	}
	{ // Fluent Bit's group start/end markers (timestamps -1 and -2) carry no log.
		var ev events
		ev.b = appendMarker(ev.b, -1, map[string]any{"log": "ERROR in group metadata"})
		ev.raw(false)
		ev.add(t, chunk.FormatV2, chunk.EventTime, base, map[string]any{"log": "ERROR in group"})
		ev.b = appendMarker(ev.b, -2, map[string]any{})
		ev.raw(false)
		cases = append(cases, tc{"group markers", ev.b, []int64{1}, 1})
	}
	{ // A 1 MiB record with the keyword in its middle, then a normal one.
		big := bytes.Repeat([]byte("x"), 1<<20)
		copy(big[len(big)/2:], "ERROR")
		var ev events
		ev.add(t, chunk.FormatV2, chunk.EventTime, base, map[string]any{"log": string(big)})
		ev.add(t, chunk.FormatV2, chunk.EventTime, base, map[string]any{"log": "ERROR after"})
		cases = append(cases, tc{"1 MiB record", ev.b, []int64{2}, 2})
	}
	{ // Invalid UTF-8 and msgpack bin values are still log lines.
		var ev events
		ev.add(t, chunk.FormatV2, chunk.EventTime, base, map[string]any{"log": "\xff\xfe ERROR \xc3("})
		ev.add(t, chunk.FormatV1, chunk.FloatTime, base, map[string]any{"log": []byte("bin \x80 ERROR")})
		ev.add(t, chunk.FormatV1, chunk.EventTime, base, map[string]any{"log": "\xed\xa0\x80 fine"})
		cases = append(cases, tc{"invalid UTF-8 and bin", ev.b, []int64{2}, 2})
	}
	{ // A string header claiming 4 GiB in a tiny chunk.
		var ev events
		ev.add(t, chunk.FormatV2, chunk.EventTime, base, map[string]any{"log": "ERROR first"})
		ev.b = msgp.AppendArrayHeader(ev.b, 2)
		ev.b = msgp.AppendInt64(ev.b, base.Unix())
		ev.b = msgp.AppendMapHeader(ev.b, 1)
		ev.b = msgp.AppendString(ev.b, "log")
		ev.b = append(ev.b, 0xdb, 0xff, 0xff, 0xff, 0xf0, 'E', 'R', 'R', 'O', 'R')
		cases = append(cases, tc{"huge declared string", ev.b, []int64{1}, 1})
	}
	{ // A map header claiming 2^32-1 pairs.
		b := msgp.AppendArrayHeader(nil, 2)
		b = msgp.AppendInt64(b, base.Unix())
		b = append(b, 0xdf, 0xff, 0xff, 0xff, 0xff)
		cases = append(cases, tc{"huge declared map", b, []int64{0}, 0})
	}
	{ // 200,000 nested arrays in a record next to the log.
		var ev events
		ev.add(t, chunk.FormatV2, chunk.EventTime, base, map[string]any{"log": "ERROR first"})
		ev.b = msgp.AppendArrayHeader(ev.b, 2)
		ev.b = msgp.AppendInt64(ev.b, base.Unix())
		ev.b = msgp.AppendMapHeader(ev.b, 2)
		ev.b = msgp.AppendString(ev.b, "log")
		ev.b = msgp.AppendString(ev.b, "ERROR deep")
		ev.b = msgp.AppendString(ev.b, "deep")
		ev.b = append(ev.b, bytes.Repeat([]byte{0x91}, 200000)...)
		ev.b = append(ev.b, 0xc0)
		ev.raw(true)
		// Counting the deep event, or stopping before it, are both sane.
		cases = append(cases, tc{"deep nesting", ev.b, []int64{1, 2}, 2})
	}
	{ // Records without a log key, or with non-string values under it.
		var ev events
		ev.add(t, chunk.FormatV2, chunk.EventTime, base, map[string]any{"msg": "ERROR elsewhere"})
		ev.add(t, chunk.FormatV2, chunk.EventTime, base, map[string]any{"log": int64(7)})
		ev.add(t, chunk.FormatV2, chunk.EventTime, base, map[string]any{"log": nil})
		ev.add(t, chunk.FormatV2, chunk.EventTime, base, map[string]any{"log": "ERROR plain"})
		cases = append(cases, tc{"odd record shapes", ev.b, []int64{1}, 1})
	}
	{ // Timestamps no minute can be made of: before 1970, NaN, infinite, huge.
		var ev events
		ev.add(t, chunk.FormatV1, chunk.IntTime, time.Unix(-100, 0), map[string]any{"log": "ERROR 1969"})
		for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 1e30, -0.5} {
			ev.b = msgp.AppendArrayHeader(ev.b, 2)
			ev.b = msgp.AppendFloat64(ev.b, f)
			ev.b, _ = msgp.AppendIntf(ev.b, map[string]any{"log": fmt.Sprintf("ERROR at %v", f)})
			ev.raw(true)
		}
		ev.add(t, chunk.FormatV1, chunk.IntTime, base, map[string]any{"log": "ERROR in time"})
		cases = append(cases, tc{"unusable timestamps", ev.b, []int64{1}, 7})
	}
	cases = append(cases, tc{"empty chunk", []byte{}, []int64{0}, 0})
	for seed := range uint64(5) {
		r := rand.New(rand.NewPCG(seed, 42))
		b := make([]byte, 4096)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		cases = append(cases, tc{fmt.Sprintf("random bytes seed %d", seed), b, nil, 1 << 30})
	}

	alive := chunk.Lines(chunk.FormatV2, chunk.EventTime, base, []string{"ERROR alive"})
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tag := fmt.Sprintf("bad.%d", i)
			n, err := h.Flush("m", tag, c.data)
			if err != nil {
				t.Fatalf("flush: %v", err)
			}
			got := byKeyword(tally(t, readEntries(t, rc, "ka:bad"), tag))["substring:ERROR"]
			switch {
			case n == OK && c.okAny != nil && !slices.Contains(c.okAny, got):
				t.Errorf("rc 1 with %d ERROR lines counted, want one of %v", got, c.okAny)
			case n == Error && got > c.max:
				t.Errorf("rc 0 but %d ERROR lines counted, more than the %d in intact events", got, c.max)
			case n != OK && n != Error:
				t.Errorf("rc %d, want %d or %d", n, OK, Error)
			}
			t.Logf("rc %d, %d counted", n, got)
			mustFlush(t, h, "m", "alive", alive, OK)
		})
	}
	if got := byKeyword(tally(t, readEntries(t, rc, "ka:bad"), "alive"))["substring:ERROR"]; got != 1 {
		// Each alive flush is the same chunk: one batch, counted once.
		t.Errorf("alive chunk counted %d times over all flushes, want 1 (dedup)", got)
	}
}

// appendMarker writes a Fluent Bit group marker event: [[ts, meta], record]
// with an integer timestamp of -1 (start) or -2 (end).
func appendMarker(b []byte, ts int64, rec map[string]any) []byte {
	b = msgp.AppendArrayHeader(b, 2)
	b = msgp.AppendArrayHeader(b, 2)
	b = msgp.AppendInt64(b, ts)
	b = msgp.AppendMapHeader(b, 0)
	b, _ = msgp.AppendIntf(b, rec)
	return b
}

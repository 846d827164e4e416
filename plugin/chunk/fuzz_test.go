package chunk

import (
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/loghub"
)

// FuzzDecode: whatever the bytes, reading a chunk never panics, stops at the
// first broken frame, and walking every record it hands out stays in bounds.
func FuzzDecode(f *testing.F) {
	lines := []string{"2015-10-18 18:01:47,978 INFO [main] started", "ERROR disk full", "WARN slow"}
	if dir, ok := loghub.Dir(); ok && dir != "" {
		// Seed from real lines when present; FuzzDecode runs without them too.
		lines = seedLines(f, lines)
	}
	ts := time.Date(2015, 10, 18, 18, 1, 47, 978_000_000, time.UTC)
	for _, fm := range []Format{FormatV1, FormatV2} {
		for _, k := range []TimeKind{EventTime, EventTimeExt8, IntTime, UintTime, FloatTime} {
			b := Lines(fm, k, ts, lines)
			f.Add(b)
			for _, cut := range []int{1, 3, 7, len(b) / 2, len(b) - 1} {
				if cut < len(b) {
					f.Add(b[:cut])
				}
			}
		}
	}
	nested, _ := AppendEvent(nil, FormatV2, ts, EventTime, map[string]any{
		"log": "x", "kubernetes": map[string]any{"pod": "p", "labels": []any{"a", []byte("b"), int64(3)}}})
	f.Add(nested)
	f.Add([]byte{0xc1})
	f.Add([]byte{0x92, 0xd7, 0x00})

	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(b)
		var ev Event
		n := 0
		for r.Next(&ev) {
			if ev.Offset < 0 || ev.Offset >= len(b) || ev.Index < n || ev.Sec < 0 {
				t.Fatalf("bad event %+v", ev)
			}
			walk(t, ev.Record, 0)
			n++
		}
		if r.Err() == nil && r.Offset() != len(b) {
			t.Fatalf("stopped at %d of %d without error", r.Offset(), len(b))
		}
		if r.Next(&ev) && r.Err() != nil {
			t.Fatal("Next returned an event after an error")
		}
	})
}

func walk(t *testing.T, b []byte, depth int) {
	if depth > 50 {
		return
	}
	if m, err := NewMap(b); err == nil {
		for {
			_, v, ok := m.Next()
			if !ok {
				return
			}
			walk(t, v, depth+1)
		}
	}
	if a, ok := NewArray(b); ok {
		for {
			v, ok := a.Next()
			if !ok {
				return
			}
			walk(t, v, depth+1)
		}
	}
	Text(b)
}

func seedLines(f *testing.F, fallback []string) []string {
	var out []string
	for _, name := range []string{"Hadoop_2k.log", "Apache_2k.log", "OpenSSH_2k.log"} {
		lines := loghub.Read(f, name)
		if len(lines) > 5 {
			lines = lines[:5]
		}
		out = append(out, lines...)
	}
	if len(out) == 0 {
		return fallback
	}
	return out
}

package chunk

import (
	"errors"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/loghub"
	"github.com/tinylib/msgp/msgp"
)

var t0 = time.Date(2024, 5, 1, 12, 0, 30, 250_000_000, time.UTC)

func mustEvent(t testing.TB, f Format, ts time.Time, kind TimeKind, rec map[string]any) []byte {
	t.Helper()
	b, err := AppendEvent(nil, f, ts, kind, rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readAll(b []byte) ([]Event, *Reader) {
	r := NewReader(b)
	var out []Event
	var ev Event
	for r.Next(&ev) {
		out = append(out, ev)
	}
	return out, r
}

func TestReadFormatsAndTimeKinds(t *testing.T) {
	kinds := []struct {
		name     string
		kind     TimeKind
		wantNsec uint32
	}{
		{"eventtime fixext8", EventTime, 250_000_000},
		{"eventtime ext8", EventTimeExt8, 250_000_000},
		{"int", IntTime, 0},
		{"uint", UintTime, 0},
		{"float", FloatTime, 250_000_000},
	}
	for _, f := range []struct {
		name string
		f    Format
	}{{"v1", FormatV1}, {"v2", FormatV2}} {
		for _, k := range kinds {
			t.Run(f.name+"/"+k.name, func(t *testing.T) {
				b := Lines(f.f, k.kind, t0, []string{"first line", "second line"})
				evs, r := readAll(b)
				if r.Err() != nil || r.Skipped() != 0 {
					t.Fatalf("err %v skipped %d", r.Err(), r.Skipped())
				}
				if len(evs) != 2 {
					t.Fatalf("%d events", len(evs))
				}
				for i, ev := range evs {
					if ev.Sec != t0.Unix()+int64(i) || ev.Index != i {
						t.Errorf("event %d: sec %d index %d", i, ev.Sec, ev.Index)
					}
					if d := int64(ev.Nsec) - int64(k.wantNsec); d < -1000 || d > 1000 {
						t.Errorf("event %d: nsec %d want %d", i, ev.Nsec, k.wantNsec)
					}
					if ev.Minute() != 1714564800 {
						t.Errorf("minute %d", ev.Minute())
					}
					m, err := NewMap(ev.Record)
					if err != nil {
						t.Fatal(err)
					}
					key, val, ok := m.Next()
					txt, _ := Text(val)
					if !ok || string(key) != "log" || string(txt) != []string{"first line", "second line"}[i] {
						t.Errorf("event %d: %q=%q", i, key, txt)
					}
				}
				if evs[1].Offset != len(b)/2 {
					t.Errorf("offset %d of %d", evs[1].Offset, len(b))
				}
			})
		}
	}
}

func TestSkipsWrongShapesKeepsGoing(t *testing.T) {
	good := mustEvent(t, FormatV2, t0, EventTime, map[string]any{"log": "ok"})
	enc := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	arr := func(n uint32) []byte { return msgp.AppendArrayHeader(nil, n) }
	str := func(s string) []byte { return msgp.AppendString(nil, s) }
	emptyMap := msgp.AppendMapHeader(nil, 0)
	fixext := func(typ byte) []byte { return []byte{0xd7, typ, 0, 0, 0, 1, 0, 0, 0, 0} }
	tests := []struct {
		name        string
		bad         []byte
		wantSkipped int
		wantMarkers int
	}{
		{"record not a map", enc(arr(2), msgp.AppendInt64(nil, 5), str("x")), 1, 0},
		{"timestamp a string", enc(arr(2), str("now"), emptyMap), 1, 0},
		{"timestamp ext of other type", enc(arr(2), fixext(5), emptyMap), 1, 0},
		{"timestamp negative", enc(arr(2), msgp.AppendInt64(nil, -100), emptyMap), 1, 0},
		{"timestamp NaN", enc(arr(2), msgp.AppendFloat64(nil, nan()), emptyMap), 1, 0},
		{"timestamp uint overflow", enc(arr(2), msgp.AppendUint64(nil, 1<<63+5), emptyMap), 1, 0},
		{"event not an array", str("hello"), 1, 0},
		{"array of three", enc(arr(3), msgp.AppendInt64(nil, 5), emptyMap, emptyMap), 1, 0},
		{"empty header array", enc(arr(2), arr(0), emptyMap), 1, 0},
		{"nil", []byte{0xc0}, 1, 0},
		{"group start int", enc(arr(2), arr(2), msgp.AppendInt64(nil, -1), emptyMap, emptyMap), 0, 1},
		{"group end eventtime", enc(arr(2), arr(2), []byte{0xd7, 0, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0}, emptyMap, emptyMap), 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, r := readAll(enc(good, tt.bad, good))
			if r.Err() != nil {
				t.Fatalf("unexpected error %v", r.Err())
			}
			if len(evs) != 2 || r.Skipped() != tt.wantSkipped || r.Markers() != tt.wantMarkers {
				t.Fatalf("events %d skipped %d markers %d", len(evs), r.Skipped(), r.Markers())
			}
			if evs[1].Index != 2 || evs[1].Offset != len(good)+len(tt.bad) {
				t.Errorf("second good event: index %d offset %d", evs[1].Index, evs[1].Offset)
			}
		})
	}
}

func TestBrokenFrameStopsWithIndexAndOffset(t *testing.T) {
	good := mustEvent(t, FormatV1, t0, IntTime, map[string]any{"log": "a line of text"})
	tests := []struct {
		name string
		tail []byte
	}{
		{"truncated event", good[:len(good)-3]},
		{"only an array header", []byte{0x92}},
		{"invalid prefix byte", []byte{0xc1, 0x00}},
		{"string longer than chunk", []byte{0x92, 0x05, 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'}},
		{"huge map header", []byte{0x92, 0x05, 0xdf, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := append(append(append([]byte{}, good...), good...), tt.tail...)
			evs, r := readAll(b)
			var de *DecodeError
			if !errors.As(r.Err(), &de) {
				t.Fatalf("err = %v, want *DecodeError", r.Err())
			}
			if len(evs) != 2 || de.Index != 2 || de.Offset != 2*len(good) {
				t.Errorf("events %d, error %+v", len(evs), de)
			}
			if r.Next(&Event{}) {
				t.Error("Next after error returned true")
			}
		})
	}
}

func TestEmptyChunk(t *testing.T) {
	evs, r := readAll(nil)
	if len(evs) != 0 || r.Err() != nil {
		t.Fatal(evs, r.Err())
	}
}

func TestMapAndArrayWalk(t *testing.T) {
	rec := map[string]any{
		"log":    "top",
		"n":      int64(7),
		"bin":    []byte("raw bytes"),
		"nested": map[string]any{"inner": "deep", "list": []any{"a", int64(1), []byte("b")}},
	}
	b := mustEvent(t, FormatV2, t0, EventTime, rec)
	evs, _ := readAll(b)
	if len(evs) != 1 {
		t.Fatal("no event")
	}
	m, err := NewMap(evs[0].Record)
	if err != nil {
		t.Fatal(err)
	}
	if m.Len() != 4 {
		t.Fatalf("len %d", m.Len())
	}
	got := map[string]string{}
	for {
		k, v, ok := m.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "nested":
			nm, err := NewMap(v)
			if err != nil {
				t.Fatal(err)
			}
			for {
				k2, v2, ok := nm.Next()
				if !ok {
					break
				}
				if a, ok := NewArray(v2); ok {
					for {
						e, ok := a.Next()
						if !ok {
							break
						}
						if s, ok := Text(e); ok {
							got["nested.list"] += string(s)
						}
					}
					continue
				}
				s, _ := Text(v2)
				got["nested."+string(k2)] = string(s)
			}
		default:
			s, ok := Text(v)
			if ok {
				got[string(k)] = string(s)
			} else {
				got[string(k)] = "<non-text>"
			}
		}
	}
	want := map[string]string{"log": "top", "n": "<non-text>", "bin": "raw bytes", "nested.inner": "deep", "nested.list": "ab"}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	if _, err := NewMap([]byte{0x90}); !errors.Is(err, ErrNotMap) {
		t.Errorf("NewMap(array) err %v", err)
	}
}

func TestLoghubRoundTrip(t *testing.T) {
	lines := loghub.All(t)
	for _, kind := range []TimeKind{EventTime, IntTime, FloatTime} {
		for _, f := range []Format{FormatV1, FormatV2} {
			b := Lines(f, kind, t0, lines)
			r := NewReader(b)
			var ev Event
			n := 0
			for r.Next(&ev) {
				m, _ := NewMap(ev.Record)
				_, v, _ := m.Next()
				s, _ := Text(v)
				if string(s) != lines[n] {
					t.Fatalf("format %d kind %d line %d: %q != %q", f, kind, n, s, lines[n])
				}
				n++
			}
			if r.Err() != nil || n != len(lines) || r.Offset() != len(b) {
				t.Fatalf("format %d kind %d: read %d of %d, err %v", f, kind, n, len(lines), r.Err())
			}
		}
	}
}

func TestReaderDoesNotAllocate(t *testing.T) {
	b := Lines(FormatV2, EventTime, t0, []string{"a", "b", "c"})
	r := &Reader{}
	var ev Event
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(b)
		for r.Next(&ev) {
			m, _ := NewMap(ev.Record)
			for {
				_, v, ok := m.Next()
				if !ok {
					break
				}
				Text(v)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per chunk", allocs)
	}
}

func nan() float64 {
	z := 0.0
	return z / z
}

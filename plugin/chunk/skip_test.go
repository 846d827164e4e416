package chunk

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// FuzzSkip: skip agrees with msgp.Skip on every input: the same end for an
// object msgp accepts, an error wherever msgp has one (except msgp's
// recursion limit, which skip does not need).
func FuzzSkip(f *testing.F) {
	rec := map[string]any{
		"log": "ERROR x", "n": int64(-3), "u": uint64(1 << 40), "f": 1.5, "b": []byte{1, 2}, "t": true, "z": nil,
		"kubernetes": map[string]any{"labels": map[string]any{"app": "web"}, "list": []any{"a", int64(300), 2.5}},
	}
	ev, err := AppendEvent(nil, FormatV2, time.Unix(1700000000, 5), EventTime, rec)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ev)
	for _, cut := range []int{1, 5, len(ev) / 2, len(ev) - 1} {
		f.Add(ev[:cut])
	}
	for _, b := range [][]byte{
		msgp.AppendString(nil, string(make([]byte, 300))), msgp.AppendString(nil, string(make([]byte, 70000))),
		ext(f, 3), ext(f, 17), ext(f, 300),
		msgp.AppendMapHeader(nil, 70000), msgp.AppendArrayHeader(nil, 1<<20), {0xc1}, {0xdf, 0xff, 0xff, 0xff, 0xff},
		{0xd7, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {0xc7, 2, 1, 9, 9}, {0xc8, 0, 1, 1, 9}, {0xc9, 0, 0, 0, 1, 1, 9},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := skip(b)
		want, werr := msgp.Skip(b)
		switch {
		case werr == nil && err != nil:
			t.Fatalf("% x: skip error %v, msgp none", b, err)
		case werr == nil && len(got) != len(want):
			t.Fatalf("% x: skip leaves %d bytes, msgp %d", b, len(got), len(want))
		case werr != nil && err == nil && !errors.Is(werr, msgp.ErrRecursion):
			t.Fatalf("% x: msgp error %v, skip none (leaves %d bytes)", b, werr, len(got))
		}
	})
}

func ext(f *testing.F, n int) []byte {
	b, err := msgp.AppendExtension(nil, &msgp.RawExtension{Type: 5, Data: make([]byte, n)})
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzNextLazy: reading a chunk with NextLazy, walking each record and
// settling it (or, for every third, leaving it to the reader), hands out the
// same events with the same records and ends with the same counts, error
// and offset as Next.
func FuzzNextLazy(f *testing.F) {
	ts := time.Unix(1700000000, 0)
	good, _ := AppendEvent(nil, FormatV2, ts, EventTime, map[string]any{"log": "x", "k": map[string]any{"a": []any{"b", int64(1)}}})
	v1, _ := AppendEvent(nil, FormatV1, ts, IntTime, map[string]any{"log": "y"})
	marker := []byte{0x92, 0x92, 0xd7, 0x00, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0x80}
	notMap := []byte{0x92, 0x05, 0xa1, 'x'}
	for _, b := range [][]byte{good, v1, append(append(append([]byte{}, good...), marker...), v1...), append(append([]byte{}, notMap...), good...),
		append(append([]byte{}, good...), good[:len(good)-3]...), {0x92, 0x05, 0x81, 0xa1}} {
		f.Add(b)
	}
	type seen struct {
		index, offset int
		sec           int64
		nsec          uint32
		record        string
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want, got []seen
		var ev Event
		r := NewReader(b)
		for r.Next(&ev) {
			want = append(want, seen{ev.Index, ev.Offset, ev.Sec, ev.Nsec, string(ev.Record)})
		}
		l := NewReader(b)
		for i := 0; l.NextLazy(&ev); i++ {
			m, err := NewMap(ev.Record)
			if err != nil {
				continue // broken: the reader reports it, Next never handed it out
			}
			for {
				if _, _, ok := m.Next(); !ok {
					break
				}
			}
			rest, ok := m.Rest()
			if !ok {
				continue // as above
			}
			rec := ev.Record[:len(ev.Record)-len(rest)]
			if i%3 != 2 {
				l.Settle(len(rec))
			}
			got = append(got, seen{ev.Index, ev.Offset, ev.Sec, ev.Nsec, string(rec)})
		}
		if len(got) != len(want) {
			t.Fatalf("lazy handed out %d events, Next %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("event %d: lazy %+v, Next %+v", i, got[i], want[i])
			}
		}
		if l.Skipped() != r.Skipped() || l.Markers() != r.Markers() || l.Offset() != r.Offset() {
			t.Fatalf("lazy skipped %d markers %d offset %d; Next %d %d %d", l.Skipped(), l.Markers(), l.Offset(), r.Skipped(), r.Markers(), r.Offset())
		}
		var le, re *DecodeError
		errors.As(l.Err(), &le)
		errors.As(r.Err(), &re)
		if (le == nil) != (re == nil) || le != nil && (le.Index != re.Index || le.Offset != re.Offset) {
			t.Fatalf("lazy error %v, Next %v", l.Err(), r.Err())
		}
	})
}

// FuzzParseHead: the fast path for Fluent Bit's usual event layouts reads
// every event exactly as the general path does.
func FuzzParseHead(f *testing.F) {
	ts := time.Unix(1700000000, 123)
	for _, format := range []Format{FormatV2, FormatV1} {
		for _, kind := range []TimeKind{EventTime, EventTimeExt8, IntTime} {
			ev, err := AppendEvent(nil, format, ts, kind, map[string]any{"log": "x"})
			if err != nil {
				f.Fatal(err)
			}
			f.Add(ev)
		}
	}
	f.Add([]byte{0x92, 0x92, 0xd7, 0x00, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0x80})
	f.Add([]byte{0x92, 0x92, 0xd7, 0x00, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0, 0x80, 0xde, 0, 0})
	f.Add([]byte{0x92, 0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 2, 0xdf})
	f.Add([]byte{0x92, 0x92, 0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 2, 0x81, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, slow := Event{Sec: 7, Nsec: 9}, Event{Sec: 7, Nsec: 9}
		fk, fh := parseHead(b, &fast)
		sk, sh := parseHeadSlow(b, &slow)
		if fk != sk || fk != eventBroken && (fh != sh || fast.Sec != slow.Sec || fast.Nsec != slow.Nsec) {
			t.Fatalf("% x: fast %v %d %+v, general %v %d %+v", b, fk, fh, fast, sk, sh, slow)
		}
	})
}

// FuzzNextLike: walking map b with values of map a (whole values, as Next
// returned them) as likes gives exactly what Next gives: the same pairs,
// the same end, the same error.
func FuzzNextLike(f *testing.F) {
	kube := func(ns string) []byte {
		b, err := msgp.AppendIntf(nil, map[string]any{"log": "x", "line": strings.Repeat("y", 40), "kubernetes": map[string]any{
			"namespace_name": ns, "labels": map[string]any{"app": "web"}, "list": []any{"a", int64(1)}}})
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	a, b := kube("shop"), kube("shoq")
	f.Add(a, a, uint8(0))
	f.Add(a, b, uint8(1))
	f.Add(a, a[:len(a)-3], uint8(0))
	f.Add(a, append(append([]byte{}, a[:len(a)-1]...), 0xc1), uint8(2))
	f.Fuzz(func(t *testing.T, a, b []byte, shift uint8) {
		var likes [][]byte
		if m, err := NewMap(a); err == nil {
			for {
				_, v, ok := m.Next()
				if !ok {
					break
				}
				likes = append(likes, v)
			}
		}
		want, err1 := NewMap(b)
		got, err2 := NewMap(b)
		if (err1 == nil) != (err2 == nil) || err1 != nil {
			return
		}
		for j := 0; ; j++ {
			var like []byte
			if len(likes) > 0 {
				like = likes[(j+int(shift))%len(likes)]
			}
			wk, wv, wok := want.Next()
			gk, gv, same, gok := got.NextLike(like)
			if wok != gok || string(wk) != string(gk) || string(wv) != string(gv) || (wk == nil) != (gk == nil) {
				t.Fatalf("pair %d: Next %q %q %v, NextLike %q %q %v", j, wk, wv, wok, gk, gv, gok)
			}
			if same && string(gv) != string(like) {
				t.Fatalf("pair %d: same, but %q is not %q", j, gv, like)
			}
			if !wok {
				break
			}
		}
		wr, wok := want.Rest()
		gr, gok := got.Rest()
		if wok != gok || len(wr) != len(gr) {
			t.Fatalf("rest: Next %d %v, NextLike %d %v", len(wr), wok, len(gr), gok)
		}
		// Next itself against msgp's reading of the map, as far as msgp reads it.
		keys, vals, rest, err := msgpPairs(b)
		m, _ := NewMap(b)
		for j := range keys {
			k, v, ok := m.Next()
			if !ok || string(k) != string(keys[j]) || string(v) != string(vals[j]) || (k == nil) != (keys[j] == nil) {
				t.Fatalf("pair %d: msgp %q %q, Next %q %q %v", j, keys[j], vals[j], k, v, ok)
			}
		}
		if err == nil {
			if _, _, ok := m.Next(); ok {
				t.Fatalf("Next reads past the map's %d pairs", len(keys))
			}
			if r, ok := m.Rest(); !ok || len(r) != len(rest) {
				t.Fatalf("rest: msgp %d, Next %d %v", len(rest), len(r), ok)
			}
		}
	})
}

// msgpPairs reads map b's pairs with msgp: str and bin keys as their bytes,
// others as nil, and each value's raw bytes; up to the first error.
func msgpPairs(b []byte) (keys, vals [][]byte, rest []byte, err error) {
	n, b, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return nil, nil, nil, err
	}
	for range n {
		var k, after []byte
		switch msgp.NextType(b) {
		case msgp.StrType:
			k, after, err = msgp.ReadStringZC(b)
		case msgp.BinType:
			k, after, err = msgp.ReadBytesZC(b)
		default:
			after, err = msgp.Skip(b)
		}
		if err != nil {
			return keys, vals, nil, err
		}
		end, err := msgp.Skip(after)
		if err != nil {
			return keys, vals, nil, err
		}
		keys, vals = append(keys, k), append(vals, after[:len(after)-len(end)])
		b = end
	}
	return keys, vals, b, nil
}

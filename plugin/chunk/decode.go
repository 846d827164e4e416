package chunk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/tinylib/msgp/msgp"
)

// Event is one well-formed event of a chunk. Record aliases the chunk's
// memory: it is valid only as long as the chunk is.
type Event struct {
	// Index is the event's position in the chunk, from 0, counting skipped ones.
	Index int
	// Offset is the byte offset where the event starts.
	Offset int
	// Sec and Nsec are the event time (Unix).
	Sec  int64
	Nsec uint32
	// Record is the msgpack map of the record.
	Record []byte
}

// Minute is the start of the event's minute in Unix seconds.
func (e *Event) Minute() int64 { return e.Sec - e.Sec%60 }

// DecodeError reports a chunk whose msgpack framing is broken: truncated, or
// bytes that are not msgpack. Decoding cannot go past it.
type DecodeError struct {
	Index  int // the event that could not be framed
	Offset int // where it starts in the chunk
	Err    error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("event %d at byte offset %d: broken msgpack: %v", e.Index, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Reader walks a chunk's events in place. The zero value reads nothing; a
// Reader is reused across chunks with Reset, so it never allocates.
type Reader struct {
	b       []byte
	off     int
	index   int
	skipped int
	markers int
	err     error
	// open is set while a NextLazy record is not settled: it starts at
	// recAt, its event is number openIdx at byte openOff.
	open             bool
	recAt            int
	openIdx, openOff int
}

// NewReader returns a reader over chunk.
func NewReader(chunk []byte) *Reader {
	r := &Reader{}
	r.Reset(chunk)
	return r
}

// Reset starts reading chunk from the beginning.
func (r *Reader) Reset(chunk []byte) { *r = Reader{b: chunk} }

// Next reads the next well-formed event into ev and reports whether there was
// one. Events whose framing is intact but whose shape is wrong (not a
// two-element array, a timestamp that is not an EventTime, integer or float,
// a record that is not a map) are skipped and counted by Skipped; Fluent Bit's
// group markers (timestamps -1 and -2) are skipped and counted by Markers. At
// a broken frame Next stops and Err returns a *DecodeError.
func (r *Reader) Next(ev *Event) bool {
	for r.err == nil && r.off < len(r.b) {
		start, idx := r.off, r.index
		rest := r.b[start:]
		kind, n := parseEvent(rest, ev)
		if kind == eventBroken {
			// Not the expected shape, or truncated: only a full Skip of the
			// event tells a wrong shape (skip it) from broken framing (stop).
			after, err := skip(rest)
			if err != nil {
				r.err = &DecodeError{Index: idx, Offset: start, Err: err}
				return false
			}
			kind, n = eventBad, len(rest)-len(after)
		}
		r.off += n
		r.index++
		switch kind {
		case eventOK:
			ev.Index, ev.Offset = idx, start
			return true
		case eventMarker:
			r.markers++
		default:
			r.skipped++
		}
	}
	return false
}

// NextLazy is Next for a caller that walks every record it is handed to
// its end (package flush does, to scan it): the event is framed up to its
// record, a map, whose end is not looked for, since the caller's walk finds
// it; ev.Record starts at the map and runs to the end of the chunk. The
// caller then calls Settle with the record's length (see Map.Rest). A
// record not settled is framed by the next call to NextLazy, as Next frames
// every record, so a broken one ends the chunk with the same *DecodeError.
// Skipping the record once instead of twice is about a fifth of the flush
// path for records with nested maps (the kubernetes filter's).
func (r *Reader) NextLazy(ev *Event) bool {
	r.finish()
	for r.err == nil && r.off < len(r.b) {
		start := r.off
		kind, head := parseHead(r.b[start:], ev)
		if kind != eventOK {
			// Markers, wrong shapes and broken frames: exactly as Next.
			if r.Next(ev) {
				return true
			}
			continue
		}
		ev.Index, ev.Offset = r.index, start
		ev.Record = r.b[start+head:]
		r.open, r.recAt, r.openIdx, r.openOff = true, start+head, r.index, start
		r.index++
		return true
	}
	return false
}

// Settle ends the record NextLazy handed out: it is n bytes long.
func (r *Reader) Settle(n int) {
	if r.open {
		r.open = false
		r.off = r.recAt + n
	}
}

// finish frames a record NextLazy handed out and the caller did not settle.
func (r *Reader) finish() {
	if !r.open {
		return
	}
	r.open = false
	after, err := skip(r.b[r.recAt:])
	if err != nil {
		r.err = &DecodeError{Index: r.openIdx, Offset: r.openOff, Err: err}
		return
	}
	r.off = len(r.b) - len(after)
}

// Err is the framing error that stopped the reader, or nil.
func (r *Reader) Err() error { return r.err }

// Skipped counts events skipped for their shape so far.
func (r *Reader) Skipped() int { return r.skipped }

// Markers counts group start/end markers passed over so far.
func (r *Reader) Markers() int { return r.markers }

// Offset is how many bytes were consumed so far.
func (r *Reader) Offset() int { return r.off }

type eventKind uint8

const (
	eventOK     eventKind = iota
	eventMarker           // a group marker, framing intact
	eventBad              // wrong shape, framing intact
	eventBroken           // wrong shape or broken framing: undecided
)

// Group marker timestamps (Fluent Bit's FLB_LOG_EVENT_GROUP_START/END).
const (
	groupStart = -1
	groupEnd   = -2
)

// parseEvent reads the event at the start of b and returns its kind and
// length. It parses the expected shape directly and skips only the record (to
// find its end, which also validates its framing); anything unexpected comes
// back as eventBroken for the caller to settle with a full Skip.
func parseEvent(b []byte, ev *Event) (eventKind, int) {
	kind, head := parseHead(b, ev)
	if kind == eventBroken {
		return eventBroken, 0
	}
	after, err := skip(b[head:])
	if err != nil {
		return eventBroken, 0
	}
	ev.Record = b[head : len(b)-len(after)]
	return kind, len(b) - len(after)
}

// parseHead reads an event up to its record, checks that the record is a
// map, and returns the event's kind and the record's offset in b.
func parseHead(b []byte, ev *Event) (eventKind, int) {
	// Fluent Bit writes almost every event in one of two byte layouts:
	// [[EventTime, {}], {…}] (2.1+) and [EventTime, {…}]. Read them
	// directly; anything else takes the general path (FuzzParseHead checks
	// that both agree).
	if len(b) > 13 && b[0] == 0x92 && b[1] == 0x92 && b[2] == 0xd7 && b[3] == 0 && b[12] == 0x80 && isMap(b[13]) {
		ev.Nsec = 0
		return setEventTime(b[4:12], ev), 13
	}
	if len(b) > 11 && b[0] == 0x92 && b[1] == 0xd7 && b[2] == 0 && isMap(b[11]) {
		ev.Nsec = 0
		return setEventTime(b[3:11], ev), 11
	}
	return parseHeadSlow(b, ev)
}

// isContainer reports whether c starts a msgpack map or array.
func isContainer(c byte) bool { return c&0xe0 == 0x80 || c >= 0xdc && c <= 0xdf }

// isMap reports whether c starts a msgpack map.
func isMap(c byte) bool { return c&0xf0 == 0x80 || c == 0xde || c == 0xdf }

// parseHeadSlow is parseHead for every layout, through msgp.
func parseHeadSlow(b []byte, ev *Event) (eventKind, int) {
	total := len(b)
	if msgp.NextType(b) != msgp.ArrayType {
		return eventBroken, 0
	}
	n, b, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil || n != 2 {
		return eventBroken, 0
	}
	var kind eventKind
	if msgp.NextType(b) == msgp.ArrayType {
		// Fluent Bit 2.1+: [[timestamp, metadata], record].
		var hn uint32
		if hn, b, err = msgp.ReadArrayHeaderBytes(b); err != nil || hn < 1 {
			return eventBroken, 0
		}
		if kind, b = parseTime(b, ev); kind == eventBroken {
			return eventBroken, 0
		}
		for i := uint32(1); i < hn; i++ {
			if b, err = skip(b); err != nil {
				return eventBroken, 0
			}
		}
	} else if kind, b = parseTime(b, ev); kind == eventBroken {
		return eventBroken, 0
	}
	if msgp.NextType(b) != msgp.MapType {
		return eventBroken, 0
	}
	return kind, total - len(b)
}

// maxSec keeps event times far from int64 overflow (year ~292 billion).
const maxSec = math.MaxInt64 / 2

// parseTime reads the timestamp at the start of b and returns the bytes after
// it. A timestamp of the wrong type is eventBroken.
func parseTime(b []byte, ev *Event) (eventKind, []byte) {
	if len(b) == 0 {
		return eventBroken, b
	}
	ev.Nsec = 0
	switch b[0] {
	case 0xd7: // fixext8
		if len(b) < 10 || b[1] != 0 {
			return eventBroken, b
		}
		return setEventTime(b[2:10], ev), b[10:]
	case 0xc7: // ext8
		if len(b) < 11 || b[1] != 8 || b[2] != 0 {
			return eventBroken, b
		}
		return setEventTime(b[3:11], ev), b[11:]
	}
	switch msgp.NextType(b) {
	case msgp.IntType:
		v, rest, err := msgp.ReadInt64Bytes(b)
		if err != nil {
			return eventBroken, b
		}
		return setSec(v, ev), rest
	case msgp.UintType:
		v, rest, err := msgp.ReadUint64Bytes(b)
		if err != nil {
			return eventBroken, b
		}
		if v > maxSec {
			return eventBad, rest
		}
		return setSec(int64(v), ev), rest
	case msgp.Float64Type, msgp.Float32Type:
		f, rest, err := msgp.ReadFloat64Bytes(b)
		switch {
		case err != nil:
			return eventBroken, b
		case f == groupStart || f == groupEnd:
			return eventMarker, rest
		case math.IsNaN(f) || f < 0 || f >= maxSec:
			return eventBad, rest
		}
		sec := math.Floor(f)
		ev.Sec = int64(sec)
		ev.Nsec = uint32(math.Min((f-sec)*1e9, 999999999))
		return eventOK, rest
	}
	return eventBroken, b
}

func setSec(v int64, ev *Event) eventKind {
	switch {
	case v == groupStart || v == groupEnd:
		return eventMarker
	case v < 0 || v > maxSec:
		return eventBad
	}
	ev.Sec = v
	return eventOK
}

func setEventTime(b []byte, ev *Event) eventKind {
	sec := binary.BigEndian.Uint32(b)
	// Group markers are written as EventTime with tv_sec -1 or -2, which
	// arrive as uint32 0xffffffff / 0xfffffffe.
	if s := int32(sec); s == groupStart || s == groupEnd {
		return eventMarker
	}
	ev.Sec = int64(sec)
	ev.Nsec = binary.BigEndian.Uint32(b[4:])
	return eventOK
}

// Map iterates a msgpack map's key/value pairs in place.
type Map struct {
	b   []byte
	n   uint32
	bad bool
}

// ErrNotMap is returned by NewMap for a value that is not a map.
var ErrNotMap = errors.New("not a msgpack map")

// NewMap starts iterating the map at the start of b.
func NewMap(b []byte) (Map, error) {
	if msgp.NextType(b) != msgp.MapType {
		return Map{}, ErrNotMap
	}
	n, rest, err := msgp.ReadMapHeaderBytes(b)
	if err != nil {
		return Map{}, err
	}
	return Map{b: rest, n: n}, nil
}

// Len is the number of pairs not yet read.
func (m *Map) Len() int { return int(m.n) }

// Next returns the next key and the raw msgpack value. A key that is not a
// str or bin comes back as nil. ok is false at the end or on broken framing.
func (m *Map) Next() (key, val []byte, ok bool) {
	key, val, _, ok = m.NextLike(nil)
	return key, val, ok
}

// NextLike is Next for a value that is often the same bytes as like, a map
// or array from an earlier record at the same place (the kubernetes
// filter's map repeats in every record of a container): when the bytes
// after the key start with like, they are that value, found without
// walking it, as a msgpack value's extent is given by its own bytes. like
// must be one whole value as Next returned it; nil, or a scalar (as quick
// to skip as to compare), is ignored. same reports that val is like's bytes.
func (m *Map) NextLike(like []byte) (key, val []byte, same, ok bool) {
	if m.n == 0 {
		return nil, nil, false, false
	}
	// Keys are fixstr and values mostly strings, the forms Fluent Bit
	// writes: those are read here, without a call (text and skip are too
	// large to inline).
	var vb []byte
	if b := m.b; len(b) > 0 && b[0]&0xe0 == 0xa0 && len(b) > int(b[0]&0x1f) {
		n := 1 + int(b[0]&0x1f)
		key, vb = b[1:n:n], b[n:]
	} else {
		var isText bool
		if key, vb, isText = text(b); !isText {
			var err error
			if vb, err = skip(b); err != nil {
				m.n, m.bad = 0, true
				return nil, nil, false, false
			}
		}
	}
	if len(like) > 0 && isContainer(like[0]) && len(vb) >= len(like) && string(vb[:len(like)]) == string(like) {
		m.n--
		m.b = vb[len(like):]
		return key, vb[:len(like)], true, true
	}
	if len(vb) > 1 {
		n := -1
		if c := vb[0]; c&0xe0 == 0xa0 { // fixstr
			n = 1 + int(c&0x1f)
		} else if c == 0xd9 { // str8
			n = 2 + int(vb[1])
		}
		if n >= 0 && n <= len(vb) {
			m.n--
			m.b = vb[n:]
			return key, vb[:n], false, true
		}
	}
	after, err := skip(vb)
	if err != nil {
		m.n, m.bad = 0, true
		return nil, nil, false, false
	}
	m.n--
	m.b = after
	return key, vb[:len(vb)-len(after)], false, true
}

// Rest returns the bytes after the map once Next has returned every pair;
// ok is false before that, and after broken framing.
func (m *Map) Rest() (rest []byte, ok bool) { return m.b, m.n == 0 && !m.bad }

// Text returns the bytes of a str or bin value at the start of b, in place.
func Text(b []byte) ([]byte, bool) {
	v, _, ok := text(b)
	return v, ok
}

// text reads a str or bin value and returns it with the bytes after it.
func text(b []byte) (v, rest []byte, ok bool) {
	// Fast path for the forms Fluent Bit writes keys and short lines in
	// (fixstr, str8); everything else goes through msgp.
	if len(b) > 0 {
		if c := b[0]; c&0xe0 == 0xa0 {
			n := int(c & 0x1f)
			if len(b) > n {
				return b[1 : 1+n : 1+n], b[1+n:], true
			}
		} else if c == 0xd9 && len(b) > 1 {
			n := int(b[1])
			if len(b) >= 2+n {
				return b[2 : 2+n : 2+n], b[2+n:], true
			}
		}
	}
	var err error
	switch msgp.NextType(b) {
	case msgp.StrType:
		v, rest, err = msgp.ReadStringZC(b)
	case msgp.BinType:
		v, rest, err = msgp.ReadBytesZC(b)
	default:
		return nil, b, false
	}
	return v, rest, err == nil
}

// Array iterates a msgpack array's elements in place.
type Array struct {
	b []byte
	n uint32
}

// NewArray starts iterating the array at the start of b; ok is false if b
// does not hold an array.
func NewArray(b []byte) (Array, bool) {
	if msgp.NextType(b) != msgp.ArrayType {
		return Array{}, false
	}
	n, rest, err := msgp.ReadArrayHeaderBytes(b)
	if err != nil {
		return Array{}, false
	}
	return Array{b: rest, n: n}, true
}

// Next returns the next raw element.
func (a *Array) Next() ([]byte, bool) {
	if a.n == 0 {
		return nil, false
	}
	after, err := skip(a.b)
	if err != nil {
		a.n = 0
		return nil, false
	}
	a.n--
	v := a.b[:len(a.b)-len(after)]
	a.b = after
	return v, true
}

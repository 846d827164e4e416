package chunk

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Format is the event layout of a chunk.
type Format int

const (
	// FormatV2 is Fluent Bit 2.1+: [[timestamp, metadata], record].
	FormatV2 Format = iota
	// FormatV1 is older Fluent Bit: [timestamp, record].
	FormatV1
)

// TimeKind is how an event's timestamp is encoded.
type TimeKind int

const (
	// EventTime is msgpack extension type 0: uint32 seconds, uint32 nanoseconds.
	EventTime TimeKind = iota
	// IntTime is integer Unix seconds.
	IntTime
	// FloatTime is float64 Unix seconds.
	FloatTime
	// EventTimeExt8 is EventTime written as ext8 (0xc7, length 8) instead of
	// fixext8, as some msgpack writers do.
	EventTimeExt8
	// UintTime is unsigned-integer Unix seconds, as Fluent Bit's integer
	// time format writes it.
	UintTime
)

// AppendEvent appends one event to a chunk, the way Fluent Bit writes it. The
// record's keys are written in sorted order so equal records give equal bytes.
// Values may be string, []byte (msgpack bin), numbers, bool, nil, and nested
// map[string]any / []any.
func AppendEvent(dst []byte, f Format, ts time.Time, kind TimeKind, record map[string]any) ([]byte, error) {
	dst = msgp.AppendArrayHeader(dst, 2)
	if f == FormatV2 {
		dst = msgp.AppendArrayHeader(dst, 2)
	}
	switch kind {
	case EventTime:
		dst = append(dst, 0xd7, 0x00)
		dst = binary.BigEndian.AppendUint32(dst, uint32(ts.Unix()))
		dst = binary.BigEndian.AppendUint32(dst, uint32(ts.Nanosecond()))
	case EventTimeExt8:
		dst = append(dst, 0xc7, 8, 0x00)
		dst = binary.BigEndian.AppendUint32(dst, uint32(ts.Unix()))
		dst = binary.BigEndian.AppendUint32(dst, uint32(ts.Nanosecond()))
	case IntTime:
		dst = msgp.AppendInt64(dst, ts.Unix())
	case UintTime:
		dst = msgp.AppendUint64(dst, uint64(ts.Unix()))
	case FloatTime:
		dst = msgp.AppendFloat64(dst, float64(ts.UnixNano())/1e9)
	default:
		return nil, fmt.Errorf("unknown time kind %d", kind)
	}
	if f == FormatV2 {
		dst = msgp.AppendMapHeader(dst, 0)
	}
	return appendValue(dst, record)
}

func appendValue(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		dst = msgp.AppendMapHeader(dst, uint32(len(v)))
		for _, k := range keys {
			dst = msgp.AppendString(dst, k)
			var err error
			if dst, err = appendValue(dst, v[k]); err != nil {
				return nil, err
			}
		}
		return dst, nil
	case []any:
		dst = msgp.AppendArrayHeader(dst, uint32(len(v)))
		for _, e := range v {
			var err error
			if dst, err = appendValue(dst, e); err != nil {
				return nil, err
			}
		}
		return dst, nil
	case float64:
		if math.IsNaN(v) {
			return msgp.AppendFloat64(dst, v), nil
		}
	}
	return msgp.AppendIntf(dst, v)
}

// Lines builds a chunk with one event per line under key "log", timestamps
// from ts onward, one second apart — the shape the tail input produces.
func Lines(f Format, kind TimeKind, ts time.Time, lines []string) []byte {
	var b []byte
	for i, l := range lines {
		b, _ = AppendEvent(b, f, ts.Add(time.Duration(i)*time.Second), kind, map[string]any{"log": l})
	}
	return b
}

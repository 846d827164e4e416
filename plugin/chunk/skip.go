package chunk

import (
	"encoding/binary"

	"github.com/tinylib/msgp/msgp"
)

// skip returns b after the msgpack object at its start, as msgp.Skip does,
// iteratively: a count of objects still to skip instead of recursion, and
// the forms Fluent Bit writes (fixmap, fixstr, str8, positive fixint)
// first. Walking a record's values skips every nested map (a kubernetes
// filter record nests two), so this is the decoder's hottest loop.
// Nesting is not bounded (no recursion): the object's bytes bound the work.
func skip(b []byte) ([]byte, error) {
	off, pending := 0, 1
	for pending > 0 {
		if off >= len(b) {
			return b, msgp.ErrShortBytes
		}
		c := b[off]
		pending--
		switch {
		case c <= 0x7f || c >= 0xe0: // positive, negative fixint
			off++
			continue
		case c <= 0x8f: // fixmap
			pending += 2 * int(c&0x0f)
			off++
			continue
		case c <= 0x9f: // fixarray
			pending += int(c & 0x0f)
			off++
			continue
		case c <= 0xbf: // fixstr
			off += 1 + int(c&0x1f)
			continue
		}
		var n int // the object's length, header included
		switch c {
		case 0xc0, 0xc2, 0xc3: // nil, false, true
			n = 1
		case 0xcc, 0xd0: // uint8, int8
			n = 2
		case 0xcd, 0xd1, 0xd4: // uint16, int16, fixext1
			n = 3
		case 0xd5: // fixext2
			n = 4
		case 0xca, 0xce, 0xd2: // float32, uint32, int32
			n = 5
		case 0xd6: // fixext4
			n = 6
		case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
			n = 9
		case 0xd7: // fixext8
			n = 10
		case 0xd8: // fixext16
			n = 18
		case 0xc4, 0xd9, 0xc7: // bin8, str8, ext8
			if off+2 > len(b) {
				return b, msgp.ErrShortBytes
			}
			n = 2 + int(b[off+1])
			if c == 0xc7 {
				n++ // the type byte
			}
		case 0xc5, 0xda, 0xc8: // bin16, str16, ext16
			if off+3 > len(b) {
				return b, msgp.ErrShortBytes
			}
			n = 3 + int(binary.BigEndian.Uint16(b[off+1:]))
			if c == 0xc8 {
				n++
			}
		case 0xc6, 0xdb, 0xc9: // bin32, str32, ext32
			if off+5 > len(b) {
				return b, msgp.ErrShortBytes
			}
			n = 5 + int(binary.BigEndian.Uint32(b[off+1:]))
			if c == 0xc9 {
				n++
			}
		case 0xdc, 0xde: // array16, map16
			if off+3 > len(b) {
				return b, msgp.ErrShortBytes
			}
			k := int(binary.BigEndian.Uint16(b[off+1:]))
			if c == 0xde {
				k *= 2
			}
			pending += k
			n = 3
		case 0xdd, 0xdf: // array32, map32
			if off+5 > len(b) {
				return b, msgp.ErrShortBytes
			}
			k := int(binary.BigEndian.Uint32(b[off+1:]))
			if c == 0xdf {
				k *= 2
			}
			pending += k
			n = 5
		default: // 0xc1, never used
			return b, msgp.InvalidPrefixError(msgp.Type(c))
		}
		off += n
	}
	if off > len(b) {
		return b, msgp.ErrShortBytes
	}
	return b[off:], nil
}

// Package accessor reads a value out of a record by a path written in Fluent
// Bit's record accessor syntax: `$log`, `$kubernetes['namespace_name']`,
// `$kubernetes['labels']['app']`, `$items[0]`. A bare word (`host`) is the
// top-level key of that name, as keyalert's `Hostname_Key` always read it.
//
// Lookups walk the record's msgpack in place (package chunk) and allocate
// nothing. The flush path walks a record's top-level map once for all its
// accessors, so an Accessor is split into its top-level key (Top) and the
// rest of the path (In).
package accessor

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/keyalert/keyalert/plugin/chunk"
)

// MaxDepth bounds the segments of one path (the top-level key included).
const MaxDepth = 8

// segment is one step: a map key, or an array index when key is "".
type segment struct {
	key   string
	index int
}

// Accessor is one parsed path. The zero value reads nothing.
type Accessor struct {
	src  string
	path []segment // path[0] is always a key
}

// Parse reads a path. Errors quote it and say what is wrong.
func Parse(s string) (Accessor, error) {
	src := s
	s = strings.TrimSpace(s)
	if s == "" {
		return Accessor{}, fmt.Errorf("empty record accessor")
	}
	a := Accessor{src: src}
	if !strings.HasPrefix(s, "$") {
		// A bare top-level key, as written before accessors were supported.
		if strings.ContainsAny(s, "[]'\"") {
			return Accessor{}, fmt.Errorf("record accessor %q: brackets need a leading $ (%q)", src, "$"+s)
		}
		a.path = []segment{{key: s}}
		return a, nil
	}
	rest := s[1:]
	end := strings.IndexByte(rest, '[')
	if end < 0 {
		end = len(rest)
	}
	if end == 0 {
		return Accessor{}, fmt.Errorf("record accessor %q: want a key after $", src)
	}
	a.path = append(a.path, segment{key: rest[:end]})
	rest = rest[end:]
	for rest != "" {
		if rest[0] != '[' {
			return Accessor{}, fmt.Errorf("record accessor %q: want [ at %q", src, rest)
		}
		rb := strings.IndexByte(rest, ']')
		if rb < 0 {
			return Accessor{}, fmt.Errorf("record accessor %q: unclosed [", src)
		}
		inner := rest[1:rb]
		switch {
		case len(inner) >= 2 && (inner[0] == '\'' || inner[0] == '"') && inner[len(inner)-1] == inner[0]:
			key := inner[1 : len(inner)-1]
			if key == "" {
				return Accessor{}, fmt.Errorf("record accessor %q: empty key in []", src)
			}
			if strings.ContainsAny(key, "'\"") {
				// A quote inside: the bracket ended early (`['a]b']`).
				return Accessor{}, fmt.Errorf("record accessor %q: quote inside key %q", src, key)
			}
			a.path = append(a.path, segment{key: key})
		default:
			i, err := strconv.Atoi(inner)
			if err != nil || i < 0 {
				return Accessor{}, fmt.Errorf("record accessor %q: [%s] is neither a quoted key nor an array index", src, inner)
			}
			a.path = append(a.path, segment{index: i})
		}
		rest = rest[rb+1:]
	}
	if len(a.path) > MaxDepth {
		return Accessor{}, fmt.Errorf("record accessor %q: %d levels, at most %d", src, len(a.path), MaxDepth)
	}
	return a, nil
}

// MustParse is Parse for tests and constants; it panics on error.
func MustParse(s string) Accessor {
	a, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return a
}

// String returns the path as written.
func (a Accessor) String() string { return a.src }

// Name is the last key of the path: what a label read through it is called
// unless named otherwise (`$kubernetes['labels']['app']` → "app").
func (a Accessor) Name() string {
	for i := len(a.path) - 1; i >= 0; i-- {
		if a.path[i].key != "" {
			return a.path[i].key
		}
	}
	return ""
}

// Top is the top-level key the path starts with.
func (a Accessor) Top() string {
	if len(a.path) == 0 {
		return ""
	}
	return a.path[0].key
}

// IsZero reports whether a reads nothing.
func (a Accessor) IsZero() bool { return len(a.path) == 0 }

// In follows the rest of the path from v, the value under Top, and returns
// the text (msgpack str or bin) it ends at. Anything else — a missing key, a
// number, a map — reads as absent.
func (a Accessor) In(v []byte) ([]byte, bool) { return a.InAt(v, 1) }

// Len is the number of segments of the path, the top-level key included.
func (a Accessor) Len() int { return len(a.path) }

// Key is segment i's map key; false when it is an array index or past the
// end.
func (a Accessor) Key(i int) (string, bool) {
	if i < 0 || i >= len(a.path) || a.path[i].key == "" {
		return "", false
	}
	return a.path[i].key, true
}

// InAt follows the path from segment i on, v being the value segment i-1
// led to (InAt(v, 1) is In(v)), and returns the text it ends at.
func (a Accessor) InAt(v []byte, i int) ([]byte, bool) {
	if i < 1 || i > len(a.path) {
		return nil, false
	}
	for _, seg := range a.path[i:] {
		var ok bool
		if seg.key != "" {
			v, ok = mapValue(v, seg.key)
		} else {
			v, ok = arrayValue(v, seg.index)
		}
		if !ok {
			return nil, false
		}
	}
	return chunk.Text(v)
}

// Lookup reads the path from a whole record (a msgpack map).
func (a Accessor) Lookup(record []byte) ([]byte, bool) {
	if len(a.path) == 0 {
		return nil, false
	}
	v, ok := mapValue(record, a.path[0].key)
	if !ok {
		return nil, false
	}
	return a.In(v)
}

func mapValue(m []byte, key string) ([]byte, bool) {
	mp, err := chunk.NewMap(m)
	if err != nil {
		return nil, false
	}
	for {
		k, v, ok := mp.Next()
		if !ok {
			return nil, false
		}
		if string(k) == key {
			return v, true
		}
	}
}

func arrayValue(a []byte, index int) ([]byte, bool) {
	arr, ok := chunk.NewArray(a)
	if !ok {
		return nil, false
	}
	for i := 0; ; i++ {
		e, ok := arr.Next()
		if !ok {
			return nil, false
		}
		if i == index {
			return e, true
		}
	}
}

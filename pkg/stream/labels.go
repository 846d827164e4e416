package stream

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Label is one dimension of a series beyond host and tag, from the plugin's
// Label_Keys (e.g. namespace=shop).
type Label struct{ Name, Value string }

// MaxLabels bounds the labels of one series (the plugin's Label_Keys and
// Tag_Regex groups together).
const MaxLabels = 8

// MaxLabelNameBytes bounds a label name.
const MaxLabelNameBytes = 64

// MaxLabelValueBytes bounds a label value (host and tag too): longer values
// are cut by SanitizeValue.
const MaxLabelValueBytes = 256

// Reserved label names: host and tag are label names too, carried in their
// own places of the entry; OverflowValue marks counts past a cardinality
// limit.
const (
	LabelHost = "host"
	LabelTag  = "tag"
)

// OverflowValue is the value of every label (and host) of the overflow
// series, where counts past a cardinality limit go.
const OverflowValue = "__other__"

// ValidLabelName reports why name cannot name a label: it must be 1 to
// MaxLabelNameBytes of [a-zA-Z0-9_], not starting with a digit (as
// Prometheus label names), and not host or tag (those have their own place).
func ValidLabelName(name string) error {
	if name == "" {
		return errors.New("empty label name")
	}
	if len(name) > MaxLabelNameBytes {
		return fmt.Errorf("label name %.20q… is longer than %d bytes", name, MaxLabelNameBytes)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return fmt.Errorf("label name %q: want letters, digits and _, not starting with a digit", name)
		}
	}
	if name == LabelHost || name == LabelTag {
		return fmt.Errorf("label name %q is reserved (host and tag have their own keys)", name)
	}
	return nil
}

// ValidValue reports why v cannot be a label, host or tag value as stored:
// valid UTF-8, no control characters (NUL separates a series' parts in
// Redis), at most MaxLabelValueBytes. SanitizeValue makes any value valid.
func ValidValue(v string) error {
	if len(v) > MaxLabelValueBytes {
		return fmt.Errorf("value of %d bytes, over the limit of %d", len(v), MaxLabelValueBytes)
	}
	if !utf8.ValidString(v) {
		return errors.New("value is not valid UTF-8")
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("value %q has control character %#02x", v, c)
		}
	}
	return nil
}

// SanitizeValue appends to dst the stored form of a raw value: control
// characters become '_', invalid UTF-8 becomes U+FFFD, and the result is
// cut to MaxLabelValueBytes at a character boundary. It allocates only if
// dst lacks room.
func SanitizeValue(dst, raw []byte) []byte {
	start := len(dst)
	for i := 0; i < len(raw); {
		c := raw[i]
		var add []byte
		var one [1]byte
		size := 1
		switch {
		case c < 0x20 || c == 0x7f:
			one[0] = '_'
			add = one[:]
		case c < utf8.RuneSelf:
			one[0] = c
			add = one[:]
		default:
			r, n := utf8.DecodeRune(raw[i:])
			size = n
			if r == utf8.RuneError && n == 1 {
				add = replacement
			} else {
				add = raw[i : i+n]
			}
		}
		if len(dst)-start+len(add) > MaxLabelValueBytes {
			break
		}
		dst = append(dst, add...)
		i += size
	}
	return dst
}

// labelsOf turns the decoded flat name, value list into labels, checking
// names, values and order.
func labelsOf(flat []string) ([]Label, error) {
	if len(flat)%2 != 0 {
		return nil, errors.New("want name, value pairs")
	}
	if len(flat) == 0 {
		return nil, nil
	}
	out := make([]Label, 0, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		l := Label{Name: flat[i], Value: flat[i+1]}
		if err := ValidLabelName(l.Name); err != nil {
			return nil, err
		}
		if err := ValidValue(l.Value); err != nil {
			return nil, fmt.Errorf("label %s: %w", l.Name, err)
		}
		if len(out) > 0 && out[len(out)-1].Name >= l.Name {
			return nil, fmt.Errorf("label %q after %q: want names sorted and unique", l.Name, out[len(out)-1].Name)
		}
		out = append(out, l)
	}
	return out, nil
}

var replacement = []byte("\uFFFD")

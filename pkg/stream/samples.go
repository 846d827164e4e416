package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeSamples reads the "samples" field, a JSON array of strings, without
// encoding/json's reflection: it is on the backend's hot path for every
// entry. It accepts exactly what json.Unmarshal into []string accepts (null
// included) and returns the same strings; FuzzDecodeSamples checks that.
// Samples without escapes are substrings of s, not copies.
func decodeSamples(s string) ([]string, error) {
	out, err := scanSamples(s)
	if err != nil {
		// Let encoding/json word the error: the rare path needs no speed.
		var ss []string
		if jerr := json.Unmarshal([]byte(s), &ss); jerr != nil {
			err = jerr
		}
		return nil, fmt.Errorf("field %q: %w", FieldSamples, err)
	}
	if len(out) > MaxSamples {
		return nil, fmt.Errorf("field %q: %d samples, over the limit of %d", FieldSamples, len(out), MaxSamples)
	}
	return out, nil
}

var errSyntax = errors.New("not a JSON array of strings")

func scanSamples(s string) ([]string, error) {
	i := skipSpace(s, 0)
	if len(s)-i >= 4 && s[i:i+4] == "null" {
		if skipSpace(s, i+4) != len(s) {
			return nil, errSyntax
		}
		return nil, nil
	}
	if i >= len(s) || s[i] != '[' {
		return nil, errSyntax
	}
	i = skipSpace(s, i+1)
	out := []string{}
	if i < len(s) && s[i] == ']' {
		if skipSpace(s, i+1) != len(s) {
			return nil, errSyntax
		}
		return out, nil
	}
	for {
		str, next := "", i+4 // a null element: json.Unmarshal leaves ""
		if len(s)-i < 4 || s[i:i+4] != "null" {
			var err error
			if str, next, err = scanString(s, i); err != nil {
				return nil, err
			}
		}
		out = append(out, str)
		i = skipSpace(s, next)
		if i >= len(s) {
			return nil, errSyntax
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case ']':
			if skipSpace(s, i+1) != len(s) {
				return nil, errSyntax
			}
			return out, nil
		default:
			return nil, errSyntax
		}
	}
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// scanString reads the JSON string starting at s[i] == '"'. Like
// encoding/json, invalid UTF-8 and lone surrogates become U+FFFD.
func scanString(s string, i int) (string, int, error) {
	if i >= len(s) || s[i] != '"' {
		return "", 0, errSyntax
	}
	i++
	start := i
	// Fast path: no escapes, ASCII.
	i = plainUntil(s, i)
	if i < len(s) && s[i] == '"' {
		return s[start:i], i + 1, nil
	}
	b := make([]byte, 0, len(s)-start)
	b = append(b, s[start:i]...)
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			return string(b), i + 1, nil
		case c < 0x20:
			return "", 0, errSyntax
		case c == '\\':
			if i+1 >= len(s) {
				return "", 0, errSyntax
			}
			i++
			switch s[i] {
			case '"', '\\', '/':
				b = append(b, s[i])
				i++
			case 'b':
				b, i = append(b, '\b'), i+1
			case 'f':
				b, i = append(b, '\f'), i+1
			case 'n':
				b, i = append(b, '\n'), i+1
			case 'r':
				b, i = append(b, '\r'), i+1
			case 't':
				b, i = append(b, '\t'), i+1
			case 'u':
				r, ok := hex4(s, i+1)
				if !ok {
					return "", 0, errSyntax
				}
				i += 5
				if utf16.IsSurrogate(r) {
					r2, ok2 := rune(-1), false
					if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
						r2, ok2 = hex4(s, i+2)
					}
					if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
						i += 6
						r = dec
					} else {
						r = utf8.RuneError
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				return "", 0, errSyntax
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
		}
	}
	return "", 0, errSyntax
}

// plainUntil returns the index of the first byte at or after i that a JSON
// string cannot hold as it is (a control character, '"' or '\\') or that is
// not ASCII, or len(s). It tests eight bytes at a time: the strings of an
// entry (samples above all) are mostly plain ASCII, and this scan runs for
// every byte of them when they are read and again when samples are stored.
func plainUntil(s string, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(s); i += 8 {
		t := s[i : i+8] // of known length: one 8-byte load, no bounds checks
		x := uint64(t[0]) | uint64(t[1])<<8 | uint64(t[2])<<16 | uint64(t[3])<<24 |
			uint64(t[4])<<32 | uint64(t[5])<<40 | uint64(t[6])<<48 | uint64(t[7])<<56
		q, bs := x^(ones*'"'), x^(ones*'\\')
		// A byte >= 0x80, or < 0x20, or zero after the XOR with '"' or
		// '\\' (the classic "has a byte less than n" tests, exact as to
		// whether there is one).
		if (x|(x-ones*0x20)&^x|(q-ones)&^q|(bs-ones)&^bs)&highs != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return i
		}
	}
	return i
}

func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	n, err := strconv.ParseUint(s[i:i+4], 16, 32)
	if err != nil || s[i] == '+' || s[i] == '-' {
		return 0, false
	}
	return rune(n), true
}

package stream

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Versions 2, 3 and 4 carry the whole entry in one field, FieldEntry, as a
// JSON array in a fixed order:
//
//	[batch, kw, match, icase, tag, host, minute, count, samples, sent_ms]             version 2
//	[batch, kw, match, icase, tag, host, minute, count, samples, sent_ms, producer, attempt]  version 3
//	[... version 3 ..., labels]                                                        version 4
//
// where labels is a flat array of name, value pairs sorted by name:
// ["app","shop","namespace","prod"].
//
// e.g. ["9f0c…","Exception","substring",false,"app.web","web-12",1700000040,37,["…"],1700000062123,"5be1…","07a9…"].
// Two fields instead of eleven: Redis builds, and the backend reads, a
// quarter of the reply elements per entry, which was most of the cost of
// reading a backlog.

// payloadNames name the payload's elements in errors, in order.
var payloadNames = [...]string{FieldBatch, FieldKeyword, FieldMatch, FieldIgnoreCase, FieldTag, FieldHost,
	FieldMinute, FieldCount, FieldSamples, FieldSentMs, FieldProducer, FieldAttempt, FieldLabels}

// Number of values of a version 2, 3 and 4 payload.
const (
	v2Len = 10
	v3Len = 12
	v4Len = 13
)

// AppendPayload appends the entry's payload: version 4 when it has labels,
// else version 3 (what Version4 and Version write).
func (e *Entry) AppendPayload(b []byte) []byte {
	if len(e.Labels) > 0 {
		return e.appendPayload(b, v4Len)
	}
	return e.appendPayload(b, v3Len)
}

func (e *Entry) appendPayload(b []byte, n int) []byte {
	b = append(b, '[')
	b = AppendJSONString(b, e.Batch)
	b = append(b, ',')
	b = AppendJSONString(b, e.Keyword.Text)
	b = append(b, ',')
	b = AppendJSONString(b, e.Keyword.Match.String())
	b = append(b, ',')
	b = strconv.AppendBool(b, e.Keyword.IgnoreCase)
	b = append(b, ',')
	b = AppendJSONString(b, e.Tag)
	b = append(b, ',')
	b = AppendJSONString(b, e.Host)
	b = append(b, ',')
	b = strconv.AppendInt(b, e.Minute, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, e.Count, 10)
	b = append(b, ",["...)
	for i, s := range e.Samples {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, s)
	}
	b = append(b, "],"...)
	b = strconv.AppendInt(b, e.SentMs, 10)
	if n >= v3Len {
		b = append(b, ',')
		b = AppendJSONString(b, e.Producer)
		b = append(b, ',')
		b = AppendJSONString(b, e.Attempt)
	}
	if n >= v4Len {
		b = append(b, ",["...)
		for i, l := range e.Labels {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendJSONString(b, l.Name)
			b = append(b, ',')
			b = AppendJSONString(b, l.Value)
		}
		b = append(b, ']')
	}
	return append(b, ']')
}

// AppendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD, as with encoding/json.
func AppendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i = plainUntil(s, i); i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

var (
	errPayload2 = errors.New("not a JSON array of the 10 entry values")
	errPayload3 = errors.New("not a JSON array of the 12 entry values")
	errPayload4 = errors.New("not a JSON array of the 13 entry values")
)

// payload is a decoded version 2 payload, before validation.
type payload struct {
	batch, kw, match, tag, host string
	producer, attempt           string
	icase                       bool
	minute, count, sentMs       int64
	samples                     []string
	labels                      []string // name, value, name, value, ...
}

// decodePayload reads a payload of n values (v2Len, v3Len or v4Len). It
// accepts what encoding/json accepts for the same typed values
// (FuzzDecodePayload checks that), and strings without escapes are
// substrings of s.
func decodePayload(s string, n int) (payload, error) {
	var p payload
	errPayload := errPayload2
	switch n {
	case v3Len:
		errPayload = errPayload3
	case v4Len:
		errPayload = errPayload4
	}
	i := skipSpace(s, 0)
	if i >= len(s) || s[i] != '[' {
		return p, errPayload
	}
	strs := [len(payloadNames)]*string{0: &p.batch, 1: &p.kw, 2: &p.match, 4: &p.tag, 5: &p.host, 10: &p.producer, 11: &p.attempt}
	ints := [len(payloadNames)]*int64{6: &p.minute, 7: &p.count, 9: &p.sentMs}
	var err error
	for k := range n {
		i = skipSpace(s, i+1) // past '[' or ','
		switch {
		case k == 3:
			p.icase, i, err = nullOr(s, i, scanBool)
		case k == 8:
			p.samples, i, err = nullOr(s, i, scanStrings)
		case k == 12:
			p.labels, i, err = nullOr(s, i, scanLabelStrings)
		case strs[k] != nil:
			*strs[k], i, err = nullOr(s, i, scanString)
		default:
			*ints[k], i, err = nullOr(s, i, scanInt)
		}
		if err != nil {
			return p, fmt.Errorf("%s: %w", payloadNames[k], err)
		}
		i = skipSpace(s, i)
		want := byte(',')
		if k == n-1 {
			want = ']'
		}
		if i >= len(s) || s[i] != want {
			return p, errPayload
		}
	}
	if skipSpace(s, i+1) != len(s) {
		return p, errPayload
	}
	return p, nil
}

// nullOr reads a JSON null as T's zero value, as encoding/json does, and
// anything else with scan.
func nullOr[T any](s string, i int, scan func(string, int) (T, int, error)) (T, int, error) {
	if len(s)-i >= 4 && s[i:i+4] == "null" {
		var zero T
		return zero, i + 4, nil
	}
	return scan(s, i)
}

func scanBool(s string, i int) (bool, int, error) {
	switch {
	case len(s)-i >= 4 && s[i:i+4] == "true":
		return true, i + 4, nil
	case len(s)-i >= 5 && s[i:i+5] == "false":
		return false, i + 5, nil
	}
	return false, 0, errors.New("want true or false")
}

// scanInt reads a JSON number that is an integer in int64's range; like
// encoding/json into an int64, it rejects fractions and exponents.
func scanInt(s string, i int) (int64, int, error) {
	start := i
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	switch {
	case i == digits:
		return 0, 0, errors.New("want an integer")
	case s[digits] == '0' && i-digits > 1:
		return 0, 0, errors.New("want an integer without leading zeros")
	case i < len(s) && (s[i] == '.' || s[i] == 'e' || s[i] == 'E'):
		return 0, 0, fmt.Errorf("want an integer, not %.20q", s[start:])
	}
	n, err := strconv.ParseInt(s[start:i], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%s is out of range", s[start:i])
	}
	return n, i, nil
}

// scanStrings reads a JSON array of at most MaxSamples strings (null
// elements read as "").
func scanStrings(s string, i int) ([]string, int, error) {
	return scanStringsN(s, i, MaxSamples, "samples")
}

// scanLabelStrings reads the flat name, value array of at most MaxLabels
// labels.
func scanLabelStrings(s string, i int) ([]string, int, error) {
	return scanStringsN(s, i, 2*MaxLabels, "label names and values")
}

func scanStringsN(s string, i int, max int, what string) ([]string, int, error) {
	if i >= len(s) || s[i] != '[' {
		return nil, 0, errSyntax
	}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == ']' {
		return []string{}, i + 1, nil
	}
	out := make([]string, 0, 4) // plugins send a few samples; one allocation

	for {
		str, next, err := nullOr(s, i, scanString)
		if err != nil {
			return nil, 0, err
		}
		if len(out) == max {
			return nil, 0, fmt.Errorf("over the limit of %d %s", max, what)
		}
		out = append(out, str)
		i = skipSpace(s, next)
		if i >= len(s) {
			return nil, 0, errSyntax
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case ']':
			return out, i + 1, nil
		default:
			return nil, 0, errSyntax
		}
	}
}

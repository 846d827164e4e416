package ingest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// message is one stream entry as read: its id and its field/value pairs.
// kv is nil when the entry was deleted while it was pending.
type message struct {
	id string
	kv []string
	// gone: XAUTOCLAIM reported the entry deleted from the stream and took
	// it out of the pending list itself, so it is no one's pending entry.
	gone bool
}

// values is kv as a map, for the dead-letter copy of a message.
func (m message) values() map[string]string {
	v := make(map[string]string, len(m.kv)/2)
	for i := 0; i+1 < len(m.kv); i += 2 {
		v[m.kv[i]] = m.kv[i+1]
	}
	return v
}

// fromXMessages converts go-redis's parsed messages (blocking reads and
// claims take that path) to messages.
func fromXMessages(xs []redis.XMessage) []message {
	out := make([]message, len(xs))
	for i, x := range xs {
		out[i].id = x.ID
		if len(x.Values) == 0 {
			continue
		}
		kv := make([]string, 0, 2*len(x.Values))
		for k, v := range x.Values {
			s, ok := v.(string)
			if !ok {
				s = fmt.Sprint(v) // go-redis gives strings; stay total anyway
			}
			kv = append(kv, k, s)
		}
		out[i].kv = kv
	}
	return out
}

// errorReply is an error reply of Redis read from a raw reply.
type errorReply string

func (e errorReply) Error() string { return string(e) }

// parseReadReply reads the raw RESP2 or RESP3 reply of an XREADGROUP on one
// stream into messages, without go-redis's map per message: on a backlog
// that decoding was the consumer's largest cost. All strings share one copy
// of raw. A nil reply (nothing new) gives no messages.
func parseReadReply(raw []byte) ([]message, error) { return parseReply(string(raw)) }

// parseReply is parseReadReply of a reply already in a string: the
// messages' strings are substrings of raw.
func parseReply(raw string) ([]message, error) {
	return parseWhole(raw, "xreadgroup", (*respReader).readReply)
}

// parseWhole reads raw with read, which must take all of it.
func parseWhole(raw, what string, read func(*respReader) ([]message, error)) ([]message, error) {
	r := respReader{s: raw}
	msgs, err := read(&r)
	if err != nil {
		return nil, err
	}
	if r.i != len(r.s) {
		return nil, fmt.Errorf("%s reply: %d bytes after the reply", what, len(r.s)-r.i)
	}
	return msgs, nil
}

var errShort = errors.New("xreadgroup reply: truncated")

type respReader struct {
	s string
	i int
}

// line returns the next line's type byte and its text without CRLF.
func (r *respReader) line() (byte, string, error) {
	if r.i >= len(r.s) {
		return 0, "", errShort
	}
	j := strings.Index(r.s[r.i:], "\r\n")
	if j < 1 {
		return 0, "", errShort
	}
	t, text := r.s[r.i], r.s[r.i+1:r.i+j]
	r.i += j + 2
	return t, text, nil
}

// length reads an aggregate header of one of the types in want; -1 is null.
func (r *respReader) length(want string) (int, byte, error) {
	t, text, err := r.line()
	if err != nil {
		return 0, 0, err
	}
	if t == '-' || t == '!' {
		return 0, t, errorReply(text)
	}
	if t == '_' {
		return -1, t, nil
	}
	for k := 0; k < len(want); k++ {
		if t == want[k] {
			n, err := strconv.Atoi(text)
			if err != nil || n < -1 || n > len(r.s) {
				return 0, t, fmt.Errorf("xreadgroup reply: bad length %q", text)
			}
			return n, t, nil
		}
	}
	return 0, t, fmt.Errorf("xreadgroup reply: unexpected %q, want one of %q", t, want)
}

func (r *respReader) str() (string, error) {
	t, text, err := r.line()
	switch {
	case err != nil:
		return "", err
	case t == '+': // a simple string
		return text, nil
	case t == '-' || t == '!':
		return "", errorReply(text)
	case t != '$':
		return "", fmt.Errorf("xreadgroup reply: unexpected %q, want a string", t)
	}
	n, err := strconv.Atoi(text)
	if err != nil || n < 0 {
		return "", fmt.Errorf("xreadgroup reply: bad string length %q", text)
	}
	if len(r.s)-r.i < n+2 {
		return "", errShort
	}
	s := r.s[r.i : r.i+n]
	if r.s[r.i+n:r.i+n+2] != "\r\n" {
		return "", errors.New("xreadgroup reply: string not followed by CRLF")
	}
	r.i += n + 2
	return s, nil
}

func (r *respReader) readReply() ([]message, error) {
	// RESP3: a map of one stream to its entries; RESP2: an array of one
	// [name, entries] pair. Null: nothing to read.
	n, t, err := r.length("%*")
	if err != nil || n <= 0 {
		return nil, err
	}
	if n != 1 {
		return nil, fmt.Errorf("xreadgroup reply: %d streams, want 1", n)
	}
	if t == '*' {
		if n, _, err = r.length("*"); err != nil {
			return nil, err
		}
		if n != 2 {
			return nil, fmt.Errorf("xreadgroup reply: stream pair of %d items", n)
		}
	}
	if _, err := r.str(); err != nil { // the stream's name
		return nil, err
	}
	return r.entries()
}

// parseRangeReply parses an XRANGE reply (an array of entries) as
// parseReply does an XREADGROUP one.
func parseRangeReply(raw string) ([]message, error) {
	return parseWhole(raw, "xrange", (*respReader).entries)
}

// entries reads an array of [id, fields] entries.
func (r *respReader) entries() ([]message, error) {
	count, _, err := r.length("*")
	if err != nil || count <= 0 {
		return nil, err
	}
	msgs := make([]message, count)
	// One backing array for all pairs, sized from the first entry's.
	var pool []string
	for k := range msgs {
		if n, _, err := r.length("*"); err != nil || n != 2 {
			if err == nil {
				err = fmt.Errorf("xreadgroup reply: entry of %d items, want 2", n)
			}
			return nil, err
		}
		if msgs[k].id, err = r.str(); err != nil {
			return nil, err
		}
		nkv, t, err := r.length("*%")
		if err != nil {
			return nil, err
		}
		if nkv <= 0 {
			continue // deleted while pending
		}
		if t == '%' { // RESP3 may send the pairs as a map
			nkv *= 2
		} else if nkv%2 != 0 {
			return nil, fmt.Errorf("stream reply: entry %s has %d field items, want pairs", msgs[k].id, nkv)
		}
		if len(pool) < nkv {
			// Room for the rest of the entries if they look like this one,
			// never more than the bytes left could hold.
			pool = make([]string, max(nkv, min(nkv*(count-k), (len(r.s)-r.i)/3)))
		}
		kv := pool[:nkv:nkv]
		pool = pool[nkv:]
		for j := range kv {
			if kv[j], err = r.str(); err != nil {
				return nil, err
			}
		}
		msgs[k].kv = kv
	}
	return msgs, nil
}

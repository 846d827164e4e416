// Package stream defines the entries the plugin writes to the Redis stream and
// the backend consumes: one entry per (batch, keyword, tag, host, minute) with
// its count and a few sample lines. The format is versioned by the "v" field;
// README.md § "Stream entry format" documents it.
package stream

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/zeebo/xxh3"
)

// Version is the value of the "v" field this package writes for entries
// without labels: version 2's payload plus the producer and the publish
// attempt (see AppendPayload). Versions "2" and "1" (one field per value),
// written by older plugins, are still read.
const Version = "3"

// Version4 is version 3 plus the series' labels; written for entries that
// have labels, so that label-free setups stay readable by older keyalertd.
const Version4 = "4"

// Version2 is the earlier payload without producer and attempt.
const Version2 = "2"

// Version1 is the first format, one field per value, still accepted from
// older plugins.
const Version1 = "1"

// DefaultStream is the stream key used when none is configured.
const DefaultStream = "keyalert:events"

// MaxSampleBytes is the longest sample line kept; longer lines are cut at a
// UTF-8 boundary at or below it.
const MaxSampleBytes = 512

// MaxSamples bounds the samples one entry may carry.
const MaxSamples = 100

// Field names of an entry. Short, because Redis stores them with every entry.
const (
	FieldVersion    = "v"
	FieldBatch      = "batch"
	FieldKeyword    = "kw"
	FieldMatch      = "match"
	FieldIgnoreCase = "icase"
	FieldTag        = "tag"
	FieldHost       = "host"
	FieldMinute     = "minute"
	FieldCount      = "count"
	FieldSamples    = "samples"
	FieldSentMs     = "sent_ms"
	// FieldEntry holds the version 2 or 3 payload (see AppendPayload).
	FieldEntry = "e"
	// Names of the version 3 payload's last two values, for errors.
	FieldProducer = "producer"
	FieldAttempt  = "attempt"
	// Name of the version 4 payload's last value, for errors.
	FieldLabels = "labels"
)

// Entry is one count series from one flushed chunk.
type Entry struct {
	// Batch identifies the chunk: 32 hex characters derived from the chunk's
	// bytes and the plugin instance, equal on every retry of the same chunk.
	Batch   string
	Keyword keyword.Spec // canonical form
	Tag     string
	Host    string
	// Minute is the start of the records' event-time minute, in Unix seconds.
	Minute int64
	// Count is how many records in the chunk contained the keyword.
	Count   int64
	Samples []string
	// SentMs is when the plugin wrote the entry (Unix milliseconds); it is
	// informational (alert latency) and not part of the entry's identity.
	SentMs int64
	// Producer identifies the plugin instance that wrote the entry (16 hex,
	// ProducerID of its identity); empty in entries of versions 1 and 2.
	Producer string
	// Attempt identifies one publish of the chunk (16 hex, NewAttempt): all
	// entries written by one Publish share it, a retry of the chunk has
	// another. An attempt is written once: two copies of one attempt would
	// both count, as parts of one write read in two batches do (the Redis
	// client never resends a transaction it wrote; cmd/keyalertd's
	// TestPluginRetryAfterLostReplyCountsOnce). Empty in versions 1
	// and 2.
	Attempt string
	// Labels are the series' dimensions beyond host and tag (Label_Keys),
	// sorted by name, names unique; part of the series' identity. Empty
	// before version 4.
	Labels []Label
}

// ProducerID derives a producer id from a plugin instance's stable identity:
// 16 hex characters, the same after a restart.
func ProducerID(identity string) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], xxh3.HashString(identity))
	return hex.EncodeToString(b[:])
}

// NewAttempt returns a fresh attempt id: 16 random hex characters.
func NewAttempt() string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// BatchID derives a batch id from the instance identity and the chunk bytes.
func BatchID(instance string, chunk []byte) string {
	seed := xxh3.HashString(instance)
	h := xxh3.HashSeed(chunk, seed)
	h2 := xxh3.HashSeed(chunk, ^seed)
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], h)
	binary.BigEndian.PutUint64(b[8:], h2)
	return hex.EncodeToString(b[:])
}

// DedupID is the identity under which the backend applies an entry at most
// once: the batch plus the series. It is the same when a retried chunk is
// flushed again, even if the keyword set changed in between and so the
// retry carries a different set of entries.
func (e *Entry) DedupID() string {
	var b strings.Builder
	b.Grow(len(e.Batch) + len(e.Tag) + len(e.Host) + len(e.Keyword.Text) + 40)
	b.WriteString(e.Batch)
	b.WriteByte('|')
	b.WriteString(e.Keyword.ID())
	b.WriteByte('|')
	b.WriteString(e.Tag)
	b.WriteByte('|')
	b.WriteString(e.Host)
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(e.Minute, 10))
	sum := xxh3.HashString128(b.String()).Bytes()
	return hex.EncodeToString(sum[:])
}

// AppendValues appends the entry's field/value pairs, ready for XADD: the
// whole entry in one field, version 3; an entry with neither Producer nor
// Attempt has no place for them and is written as version 2.
func (e *Entry) AppendValues(dst []any) []any {
	if e.Producer == "" && e.Attempt == "" {
		return e.AppendValuesV2(dst)
	}
	v := Version
	if len(e.Labels) > 0 {
		v = Version4
	}
	return append(dst, FieldVersion, v, FieldEntry, string(e.AppendPayload(nil)))
}

// AppendValuesV2 appends the pairs of a version 2 entry, as plugins before
// version 3 wrote them (no producer or attempt); the backend still reads it.
func (e *Entry) AppendValuesV2(dst []any) []any {
	return append(dst, FieldVersion, Version2, FieldEntry, string(e.appendPayload(nil, v2Len)))
}

// AppendValuesV1 appends the pairs of a version 1 entry, as plugins before
// version 2 wrote them; the backend still reads it.
func (e *Entry) AppendValuesV1(dst []any) []any {
	icase := "0"
	if e.Keyword.IgnoreCase {
		icase = "1"
	}
	dst = append(dst,
		FieldVersion, Version1,
		FieldBatch, e.Batch,
		FieldKeyword, e.Keyword.Text,
		FieldMatch, e.Keyword.Match.String(),
		FieldIgnoreCase, icase,
		FieldTag, e.Tag,
		FieldHost, e.Host,
		FieldMinute, strconv.FormatInt(e.Minute, 10),
		FieldCount, strconv.FormatInt(e.Count, 10),
	)
	if len(e.Samples) > 0 {
		js, _ := json.Marshal(e.Samples) // []string always marshals
		dst = append(dst, FieldSamples, string(js))
	}
	if e.SentMs != 0 {
		dst = append(dst, FieldSentMs, strconv.FormatInt(e.SentMs, 10))
	}
	return dst
}

// ErrVersion is wrapped by Parse for an entry of an unknown version.
var ErrVersion = errors.New("unsupported entry version")

// Parse reads an entry from a stream message's values as go-redis returns
// them (XMessage.Values). Every error names the field and the bad value.
func Parse(values map[string]any) (Entry, error) {
	kv := make([]string, 0, 2*len(values))
	for k, v := range values {
		s, ok := v.(string)
		if !ok {
			if fieldIndex(k) < 0 {
				continue // unknown fields are ignored whatever they hold
			}
			return Entry{}, fmt.Errorf("field %q: want a string, got %T", k, v)
		}
		kv = append(kv, k, s)
	}
	return ParseFields(kv)
}

// Indexes of the known fields in ParseFields' table.
const (
	iVersion = iota
	iBatch
	iKeyword
	iMatch
	iIgnoreCase
	iTag
	iHost
	iMinute
	iCount
	iSamples
	iSentMs
	iEntry
	nFields
)

var fieldNames = [nFields]string{FieldVersion, FieldBatch, FieldKeyword, FieldMatch, FieldIgnoreCase,
	FieldTag, FieldHost, FieldMinute, FieldCount, FieldSamples, FieldSentMs, FieldEntry}

func fieldIndex(name string) int {
	switch name {
	case FieldVersion:
		return iVersion
	case FieldBatch:
		return iBatch
	case FieldKeyword:
		return iKeyword
	case FieldMatch:
		return iMatch
	case FieldIgnoreCase:
		return iIgnoreCase
	case FieldTag:
		return iTag
	case FieldHost:
		return iHost
	case FieldMinute:
		return iMinute
	case FieldCount:
		return iCount
	case FieldSamples:
		return iSamples
	case FieldSentMs:
		return iSentMs
	case FieldEntry:
		return iEntry
	}
	return -1
}

// ParseFields reads an entry from a stream message's field/value pairs as
// Redis sends them: name, value, name, value... in either version. Unknown
// fields are ignored (a newer plugin may add some); a known field given
// twice is an error. Every error names the field and the bad value. The
// entry's strings may be substrings of kv's: nothing is copied.
func ParseFields(kv []string) (Entry, error) {
	var e Entry
	if len(kv)%2 != 0 {
		return e, fmt.Errorf("%d field/value items: want pairs", len(kv))
	}
	var vals [nFields]string
	var have uint32
	for i := 0; i < len(kv); i += 2 {
		f := fieldIndex(kv[i])
		if f < 0 {
			continue
		}
		if have&(1<<f) != 0 {
			return e, fmt.Errorf("field %q given twice", kv[i])
		}
		have |= 1 << f
		vals[f] = kv[i+1]
	}
	if have&(1<<iVersion) == 0 {
		return e, fmt.Errorf("missing field %q", FieldVersion)
	}
	switch v := vals[iVersion]; v {
	case Version4, Version, Version2:
		if have&(1<<iEntry) == 0 {
			return e, fmt.Errorf("missing field %q", FieldEntry)
		}
		n := v2Len
		switch v {
		case Version4:
			n = v4Len
		case Version:
			n = v3Len
		}
		p, err := decodePayload(vals[iEntry], n)
		if err != nil {
			return e, fmt.Errorf("field %q: %w", FieldEntry, err)
		}
		e = Entry{Batch: p.batch, Keyword: keyword.Spec{Text: p.kw, IgnoreCase: p.icase}, Tag: p.tag, Host: p.host,
			Minute: p.minute, Count: p.count, Samples: p.samples, SentMs: p.sentMs, Producer: p.producer, Attempt: p.attempt}
		if e.Keyword.Match, err = keyword.ParseMode(p.match); err != nil {
			return e, fmt.Errorf("field %q: %s: %w", FieldEntry, FieldMatch, err)
		}
		name := func(f string) string { return fmt.Sprintf("field %q: %s", FieldEntry, f) }
		if n == v4Len {
			if e.Labels, err = labelsOf(p.labels); err != nil {
				return e, fmt.Errorf("%s: %w", name(FieldLabels), err)
			}
		}
		if n >= v3Len {
			if !isHex(e.Producer, 16) {
				return e, fmt.Errorf("%s = %q: want 16 hex characters", name(FieldProducer), e.Producer)
			}
			if !isHex(e.Attempt, 16) {
				return e, fmt.Errorf("%s = %q: want 16 hex characters", name(FieldAttempt), e.Attempt)
			}
		}
		return e, e.check(name)
	case Version1:
		return parseV1(&vals, have)
	default:
		return e, fmt.Errorf("field %q = %q: %w (want %q, %q, %q or %q)", FieldVersion, v, ErrVersion, Version4, Version, Version2, Version1)
	}
}

func parseV1(vals *[nFields]string, have uint32) (Entry, error) {
	var e Entry
	for _, f := range [...]int{iBatch, iKeyword, iMatch, iIgnoreCase, iTag, iHost, iMinute, iCount} {
		if have&(1<<f) == 0 {
			return e, fmt.Errorf("missing field %q", fieldNames[f])
		}
	}
	e.Batch, e.Keyword.Text, e.Tag, e.Host = vals[iBatch], vals[iKeyword], vals[iTag], vals[iHost]
	var err error
	if e.Keyword.Match, err = keyword.ParseMode(vals[iMatch]); err != nil {
		return e, fmt.Errorf("field %q: %w", FieldMatch, err)
	}
	switch ic := vals[iIgnoreCase]; ic {
	case "0":
	case "1":
		e.Keyword.IgnoreCase = true
	default:
		return e, fmt.Errorf("field %q = %q: want 0 or 1", FieldIgnoreCase, ic)
	}
	if e.Minute, err = parseInt(vals[iMinute]); err != nil {
		return e, fmt.Errorf("field %q: %w", FieldMinute, err)
	}
	if e.Count, err = parseInt(vals[iCount]); err != nil {
		return e, fmt.Errorf("field %q: %w", FieldCount, err)
	}
	if s := vals[iSamples]; s != "" {
		if e.Samples, err = decodeSamples(s); err != nil {
			return e, err
		}
	}
	if sent := vals[iSentMs]; sent != "" {
		if e.SentMs, err = strconv.ParseInt(sent, 10, 64); err != nil {
			return e, fmt.Errorf("field %q = %q: not an integer", FieldSentMs, sent)
		}
	}
	return e, e.check(func(f string) string { return fmt.Sprintf("field %q", f) })
}

// check validates a decoded entry and puts its keyword in canonical form;
// name words a value's name for errors in the entry's version.
func (e *Entry) check(name func(field string) string) error {
	if !isHex32(e.Batch) {
		return fmt.Errorf("%s = %q: want 32 hex characters", name(FieldBatch), e.Batch)
	}
	if err := e.Keyword.Validate(); err != nil {
		return fmt.Errorf("%s: %w", name(FieldKeyword), err)
	}
	e.Keyword = e.Keyword.Canonical()
	if e.Minute%60 != 0 || e.Minute < 0 {
		return fmt.Errorf("%s = %d: want a non-negative multiple of 60", name(FieldMinute), e.Minute)
	}
	if e.Count <= 0 {
		return fmt.Errorf("%s = %d: want a positive count", name(FieldCount), e.Count)
	}
	if len(e.Samples) > MaxSamples {
		return fmt.Errorf("%s: %d samples, over the limit of %d", name(FieldSamples), len(e.Samples), MaxSamples)
	}
	return nil
}

func isHex32(s string) bool { return isHex(s, 32) }

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func parseInt(s string) (int64, error) {
	n, perr := strconv.ParseInt(s, 10, 64)
	if perr != nil {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	return n, nil
}

// CutSample trims a line to at most MaxSampleBytes without splitting a UTF-8
// sequence.
func CutSample(line []byte) string {
	if len(line) <= MaxSampleBytes {
		return string(line)
	}
	n := MaxSampleBytes
	for n > 0 && !utf8.RuneStart(line[n]) {
		n--
	}
	return string(line[:n])
}

// HashTag returns the Redis Cluster hash tag that keys belonging with stream
// must carry to share its slot: the stream's own {tag} if it has one, else the
// whole name (a key "{name}:x" hashes like the key "name").
func HashTag(streamKey string) string {
	if i := strings.IndexByte(streamKey, '{'); i >= 0 {
		if j := strings.IndexByte(streamKey[i+1:], '}'); j > 0 {
			return streamKey[i : i+j+2]
		}
	}
	return "{" + streamKey + "}"
}

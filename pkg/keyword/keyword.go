// Package keyword defines what a keyword is — its text and match options — and
// the keyword set that the backend publishes in Redis for agents to follow.
// Both halves of keyalert import it, so a keyword's identity is the same in the
// plugin's stream entries, the backend's windows and the rules API.
package keyword

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
)

// Mode says how a keyword's text is compared with a log line.
type Mode uint8

const (
	// Substring matches the text anywhere in the value.
	Substring Mode = iota
	// Word matches the text only where it is not preceded or followed by a word
	// byte (ASCII letter, digit, underscore, or any byte >= 0x80).
	Word
	// Regex matches a Go RE2 regular expression.
	Regex
)

var modeNames = [...]string{Substring: "substring", Word: "word", Regex: "regex"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", m)
}

// ParseMode accepts "substring", "word" or "regex" (case-insensitive).
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if strings.EqualFold(s, n) {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown match mode %q (want substring, word or regex)", s)
}

// MarshalText writes the mode's name, so JSON carries "word", not 1.
func (m Mode) MarshalText() ([]byte, error) {
	if int(m) >= len(modeNames) {
		return nil, fmt.Errorf("unknown match mode %d", m)
	}
	return []byte(m.String()), nil
}

// UnmarshalText reads a mode's name.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MaxTextLen bounds a keyword's text in bytes.
const MaxTextLen = 256

// Spec is one keyword with its match options. Two specs with the same ID are the
// same series everywhere in keyalert.
type Spec struct {
	Text       string `json:"text"`
	Match      Mode   `json:"match"`
	IgnoreCase bool   `json:"ignore_case"`
}

// Canonical returns the spec in the form used for its identity: for a
// case-insensitive substring or word keyword the text is ASCII-lowercased, so
// "Error" and "error" ignoring case are one series. Regex text is kept as is.
func (s Spec) Canonical() Spec {
	if s.IgnoreCase && s.Match != Regex {
		s.Text = asciiLower(s.Text)
	}
	return s
}

// ID is the spec's stable identity: "<mode>[/i]:<text>" on the canonical form,
// e.g. "substring:Exception", "substring/i:error", "regex/i:disk\s+full".
func (s Spec) ID() string {
	c := s.Canonical()
	var b strings.Builder
	b.Grow(len(c.Text) + 12)
	b.WriteString(c.Match.String())
	if c.IgnoreCase {
		b.WriteString("/i")
	}
	b.WriteByte(':')
	b.WriteString(c.Text)
	return b.String()
}

// ParseID is the inverse of ID.
func ParseID(id string) (Spec, error) {
	head, text, ok := strings.Cut(id, ":")
	if !ok {
		return Spec{}, fmt.Errorf("keyword id %q: want <mode>[/i]:<text>", id)
	}
	var s Spec
	if m, found := strings.CutSuffix(head, "/i"); found {
		s.IgnoreCase = true
		head = m
	}
	m, err := ParseMode(head)
	if err != nil {
		return Spec{}, fmt.Errorf("keyword id %q: %w", id, err)
	}
	s.Match, s.Text = m, text
	if err := s.Validate(); err != nil {
		return Spec{}, fmt.Errorf("keyword id %q: %w", id, err)
	}
	return s.Canonical(), nil
}

// Validate reports why a spec cannot be matched: empty or oversized text, an
// unknown mode, or a regex that does not compile.
func (s Spec) Validate() error {
	switch {
	case s.Text == "":
		return errors.New("empty keyword")
	case len(s.Text) > MaxTextLen:
		return fmt.Errorf("keyword %.32q... is %d bytes, over the limit of %d", s.Text, len(s.Text), MaxTextLen)
	case int(s.Match) >= len(modeNames):
		return fmt.Errorf("keyword %q: unknown match mode %d", s.Text, s.Match)
	case s.Match == Regex:
		expr := s.regexpExpr()
		if _, ok := compiledOK.Load(expr); ok {
			return nil
		}
		if _, err := regexp.Compile(expr); err != nil {
			return fmt.Errorf("keyword %q: %w", s.Text, err)
		}
		if compiledN.Add(1) <= maxCompiledOK {
			compiledOK.Store(expr, struct{}{})
		}
	}
	return nil
}

// compiledOK remembers regex expressions that compiled: the backend validates
// every stream entry it parses, and compiling each time cost ten times the
// rest of the parse. Bounded, since expressions come from outside.
var (
	compiledOK sync.Map // expr -> struct{}
	compiledN  atomic.Int64
)

const maxCompiledOK = 4096

func (s Spec) regexpExpr() string {
	if s.IgnoreCase {
		return "(?i)" + s.Text
	}
	return s.Text
}

// Regexp compiles a Regex spec, with (?i) when it ignores case.
func (s Spec) Regexp() (*regexp.Regexp, error) {
	return regexp.Compile(s.regexpExpr())
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// DefaultSetKey is the Redis string key where the backend publishes the union
// of enabled rules' keywords and where the plugin's Rules_Key points by default.
const DefaultSetKey = "keyalert:keywords"

// SetVersion is the version of the published set's JSON document.
const SetVersion = 1

// Set is the document stored at the set key:
//
//	{"v":1,"sum":"<32 hex>","keywords":[{"text":"Exception","match":"substring","ignore_case":false}]}
//
// Sum lets followers skip unchanged sets cheaply: it is always the first
// field after "v", so reading SumPrefixLen bytes of the key (GETRANGE) tells
// whether the set changed without transferring it. It is the first 16 bytes
// of the SHA-256 of the document without its sum field (the format before
// sums existed), so readers that ignore it still read the same set and a
// document without a sum stays valid. Keeping the version inside the one
// key makes writing both atomic and keeps them in one cluster slot whatever
// the key is called.
//
// Shards is the number of stream shards keyalertd consumes
// (KEYALERT_STREAM_SHARDS, see package streamshard); absent for one, so an
// unsharded set is the same document as before shards existed, and plugins
// that predate the field keep writing shard 0 (the stream itself).
type Set struct {
	V        int    `json:"v"`
	Sum      string `json:"sum,omitempty"`
	Shards   int    `json:"shards,omitempty"`
	Keywords []Spec `json:"keywords"`
}

// sumHead is how a summed document starts; SumPrefixLen covers the sum and
// its closing quote.
const sumHead = `{"v":1,"sum":"`

// SumPrefixLen is how many leading bytes of a document PeekSum needs.
const SumPrefixLen = len(sumHead) + 32 + 1

// EncodeSet renders specs as a Set document, canonical and de-duplicated,
// with its sum.
func EncodeSet(specs []Spec) ([]byte, error) { return EncodeSetShards(specs, 1) }

// EncodeSetShards is EncodeSet with the stream shard count plugins write to
// (1 or less: the field is left out).
func EncodeSetShards(specs []Spec, shards int) ([]byte, error) {
	seen := make(map[string]bool, len(specs))
	out := Set{V: SetVersion, Keywords: make([]Spec, 0, len(specs))}
	if shards > 1 {
		out.Shards = shards
	}
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			return nil, err
		}
		c := s.Canonical()
		if id := c.ID(); !seen[id] {
			seen[id] = true
			out.Keywords = append(out.Keywords, c)
		}
	}
	plain, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	// Insert the sum of the plain document right after "v" (plain starts
	// with {"v":1, and continues with "keywords").
	const vHead = `{"v":1,`
	sum := sumOf(plain)
	doc := make([]byte, 0, len(plain)+len(sum)+9)
	doc = append(doc, sumHead...)
	doc = append(doc, sum...)
	doc = append(doc, `",`...)
	doc = append(doc, plain[len(vHead):]...)
	return doc, nil
}

func sumOf(plain []byte) string {
	h := sha256.Sum256(plain)
	return hex.EncodeToString(h[:16])
}

// PeekSum returns the sum a document starts with, from at least its first
// SumPrefixLen bytes; ok is false for a document without one (written by a
// keyalertd before sums, or by hand), which a follower must then read whole.
func PeekSum(prefix []byte) (sum string, ok bool) {
	if len(prefix) < SumPrefixLen || string(prefix[:len(sumHead)]) != sumHead || prefix[SumPrefixLen-1] != '"' {
		return "", false
	}
	sum = string(prefix[len(sumHead) : SumPrefixLen-1])
	for i := 0; i < len(sum); i++ {
		if c := sum[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	return sum, true
}

// VerifiedSum returns the sum of a whole document if it has one that matches
// its content; a document edited by hand without updating its sum reports
// false, so followers read it whole every time instead of trusting the sum.
func VerifiedSum(doc []byte) (string, bool) {
	sum, ok := PeekSum(doc)
	if !ok || len(doc) < SumPrefixLen+1 || doc[SumPrefixLen] != ',' {
		return "", false
	}
	plain := make([]byte, 0, len(doc))
	plain = append(plain, `{"v":1,`...)
	plain = append(plain, doc[SumPrefixLen+1:]...)
	if sumOf(plain) != sum {
		return "", false
	}
	return sum, true
}

// DecodeSet parses and validates a Set document.
func DecodeSet(b []byte) ([]Spec, error) {
	s, err := DecodeSetDoc(b)
	return s.Keywords, err
}

// DecodeSetDoc parses and validates a Set document, shard count included
// (1 when absent).
func DecodeSetDoc(b []byte) (Set, error) {
	var s Set
	if err := json.Unmarshal(b, &s); err != nil {
		return Set{}, fmt.Errorf("keyword set: %w", err)
	}
	if s.V != SetVersion {
		return Set{}, fmt.Errorf("keyword set: unsupported version %d (want %d)", s.V, SetVersion)
	}
	if s.Shards < 0 {
		return Set{}, fmt.Errorf("keyword set: shards %d is negative", s.Shards)
	}
	s.Shards = max(s.Shards, 1)
	for i, k := range s.Keywords {
		if err := k.Validate(); err != nil {
			return Set{}, fmt.Errorf("keyword set: keywords[%d]: %w", i, err)
		}
		s.Keywords[i] = k.Canonical()
	}
	return s, nil
}

// Package match finds which of many keywords occur in a log value, in one pass.
//
// PLACEHOLDER implementation (naive loops); the API is fixed, the engine is
// being replaced by an Aho-Corasick automaton.
package match

import (
	"bytes"
	"fmt"
	"regexp"

	"github.com/keyalert/keyalert/keyword"
)

// Matcher is compiled from a keyword list and is safe for concurrent use; each
// goroutine brings its own Scratch.
type Matcher struct {
	specs []keyword.Spec
	res   []*regexp.Regexp
}

// Compile builds a matcher. Specs are used in canonical form; duplicates (same
// ID) are an error naming the keyword.
func Compile(specs []keyword.Spec) (*Matcher, error) {
	m := &Matcher{specs: make([]keyword.Spec, len(specs)), res: make([]*regexp.Regexp, len(specs))}
	seen := map[string]bool{}
	for i, s := range specs {
		if err := s.Validate(); err != nil {
			return nil, err
		}
		s = s.Canonical()
		if seen[s.ID()] {
			return nil, fmt.Errorf("keyword %q listed twice", s.ID())
		}
		seen[s.ID()] = true
		m.specs[i] = s
		if s.Match == keyword.Regex {
			m.res[i], _ = s.Regexp()
		}
	}
	return m, nil
}

// Len is the number of keywords.
func (m *Matcher) Len() int { return len(m.specs) }

// Spec returns keyword i in canonical form.
func (m *Matcher) Spec(i int) keyword.Spec { return m.specs[i] }

// Scratch collects the distinct keywords found across one record's values.
type Scratch struct {
	seen  []bool
	found []int
}

// NewScratch returns a scratch sized for m.
func (m *Matcher) NewScratch() *Scratch {
	return &Scratch{seen: make([]bool, len(m.specs))}
}

// Found lists the indexes of keywords seen since the last Reset, each once.
func (s *Scratch) Found() []int { return s.found }

// Reset clears the scratch for the next record.
func (s *Scratch) Reset() {
	for _, i := range s.found {
		s.seen[i] = false
	}
	s.found = s.found[:0]
}

func (s *Scratch) add(i int) {
	if !s.seen[i] {
		s.seen[i] = true
		s.found = append(s.found, i)
	}
}

// Scan adds to s every keyword that occurs in text. Call it once per scanned
// value of a record, then read s.Found and Reset.
func (m *Matcher) Scan(text []byte, s *Scratch) {
	for i, sp := range m.specs {
		if s.seen[i] {
			continue
		}
		switch sp.Match {
		case keyword.Regex:
			if m.res[i].Match(text) {
				s.add(i)
			}
		default:
			t := text
			if sp.IgnoreCase {
				t = bytes.ToLower(text)
			}
			if sp.Match == keyword.Substring && bytes.Contains(t, []byte(sp.Text)) {
				s.add(i)
			}
			if sp.Match == keyword.Word && containsWord(t, []byte(sp.Text)) {
				s.add(i)
			}
		}
	}
}

func containsWord(t, w []byte) bool {
	for off := 0; ; {
		j := bytes.Index(t[off:], w)
		if j < 0 {
			return false
		}
		st, end := off+j, off+j+len(w)
		if (st == 0 || !isWordByte(t[st-1])) && (end == len(t) || !isWordByte(t[end])) {
			return true
		}
		off = st + 1
	}
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 0x80 || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// Package match finds which of many keywords occur in a log value, in one pass
// over its bytes.
//
// # Semantics
//
// A Matcher is compiled from a list of keyword.Spec, each used in canonical
// form (keyword.Spec.Canonical). Keyword i is reported by its index i.
//
//   - Substring: the keyword's bytes occur anywhere in the value (raw byte
//     comparison; the value need not be valid UTF-8).
//   - Word: an occurrence of the keyword's bytes that is neither preceded nor
//     followed by a word byte: an ASCII letter, digit, '_', or any byte >= 0x80
//     (so a keyword next to a non-ASCII letter is not a word match). The start
//     and end of the value are boundaries. Every occurrence is tried: if one
//     fails the boundary test, a later one may still match. The test applies to
//     the bytes around the occurrence only, whatever the keyword's own first
//     and last bytes are.
//   - IgnoreCase with Substring or Word: ASCII case folding only ('A'..'Z'
//     equal 'a'..'z'); every other byte, including non-ASCII letters, must be
//     equal.
//   - Regex: Go RE2 syntax (keyword.Spec.Regexp), unanchored unless the
//     expression anchors itself; ^ and $ are the start and end of the value
//     unless (?m) is set. IgnoreCase prefixes (?i), which uses Go's Unicode
//     case folding (unlike the ASCII-only folding above). Invalid UTF-8 in the
//     value reads as U+FFFD, one byte at a time, as in package regexp.
//
// A Scratch accumulates the distinct keywords found across several Scan calls
// (one per scanned value of a record) until Reset: each keyword is listed once
// in Found, in the order found (not necessarily text order). Reset costs
// O(number found). A Scratch belongs to the Matcher that made it (Scan
// panics otherwise) and to one goroutine at a time.
//
// Compile rejects an invalid spec, and two specs with the same ID (equal after
// Canonical) with an error naming the keyword.
//
// # Engine and costs
//
// Substring and word keywords, and literals derived from regexes, go into an
// Aho-Corasick automaton compiled to a dense DFA whose input alphabet is byte
// classes (the bytes the patterns use, plus one class for all others); the
// transition table is []uint32 indexed by state*(classes+1)+class, with
// states premultiplied (the extra column holds the state's depth). The scan
// loops step without bounds checks (every entry is a row's offset in the
// table, every class is within a row), so a step is a single load at a
// pointer per byte value (&table[class]) plus 4*state: only that load is on
// the chain of steps. Case-sensitive and ASCII-case-insensitive patterns
// get one automaton each; the folding one maps 'A'..'Z' to the classes of
// 'a'..'z', so folding is free. When both exist they are combined into one
// product automaton whose states are the reachable pairs of states
// (classes: the distinct pairs of classes); if that would exceed 4 times
// their combined states, both are stepped side by side in the same loop
// instead. Either way each value is read once, whatever the number of
// keywords. States with outputs are numbered last, so the loop tests one
// comparison per byte and chain; word boundaries are checked only when the
// automaton reports an occurrence.
//
// A DFA step depends on the previous one, so a single chain of steps is
// bound by load latency. A value is therefore cut into k equal parts, k =
// len/16 up to 4 (two chains from 32 bytes, three from 48, four from 64),
// and k chains step through the parts in lockstep in one loop, each from
// the root state at its part's start, so the CPU overlaps their loads.
// Each chain but the last runs on past its part's end only while its state
// tracks a pattern prefix that began inside its part (usually a few bytes;
// the state's depth says so; with four chains the first three run on
// together while any of them needs to); the last one finishes the value. An
// occurrence is seen whole by the chain of the part it starts in, and word
// boundaries are tested on the whole value, so splitting changes nothing
// that is found.
//
// Regexes are prefiltered with literals read from their syntax tree
// (regexp/syntax): sets of literals such that every match contains one
// literal of each set (e.g. {"timeout after "} and {"ms"} for
// `timeout after \d+ms`; {"refused","reset"} for `(refused|reset) by`),
// honouring (?i): ASCII letters fold in the folding automaton, and runes with
// non-ASCII fold partners (k and the Kelvin sign, s and long s) are expanded
// or end the literal. Then:
//   - a regex that is exactly a set of at most 64 literals (e.g.
//     `ERROR|FATAL`, `connection (refused|reset)`, `(?i)timeout`, `colou?r`,
//     `E\d`; no anchors, \b, unbounded repeats or wide classes) is decided by
//     the automaton alone and never runs;
//   - a regex with gates (up to 3 sets, each literal at least 2 bytes) runs
//     only on values where a literal of every set occurs, at most once per
//     Scan; a gate fires on any occurrence, so the regex may still fail;
//   - a regex with no usable literal (e.g. `^\d+$`, `\w+@\w+`, `a.b`) runs on
//     every scanned value until it has matched in the current record. That
//     costs one regexp execution per value: from about 100 ns to over 10 µs
//     for a 150-byte line (Go's regexp is slowest on case-insensitive
//     expressions without a literal prefix), against well under 1 µs for the
//     automaton's pass over all other keywords.
//
// A Matcher is immutable and safe for concurrent Scan calls, each goroutine
// with its own Scratch. Scan does not allocate in steady state.
package match

import (
	"fmt"
	"regexp"
	"unsafe"

	"github.com/keyalert/keyalert/pkg/keyword"
)

// Matcher is compiled from a keyword list and is safe for concurrent use; each
// goroutine brings its own Scratch.
type Matcher struct {
	specs []keyword.Spec
	res   []*regexp.Regexp // per keyword; nil unless the regex must run
	// one is the automaton Scan steps: the case-sensitive one, the folding
	// one, or their product. When the product would be too large, one is nil
	// and Scan steps cs and ci side by side.
	one *dfa
	cs  *dfa // case-sensitive automaton, nil if no patterns
	ci  *dfa // ASCII-folding automaton, nil if no patterns
	// ungated lists regex keywords that run on every value.
	ungated []int32
	// gateMask[kw] has a bit per gate of a gated regex keyword; the regex
	// runs when a Scan has seen a literal of every gate.
	gateMask []uint8
	gated    int // regex keywords behind a literal gate
	direct   int // regex keywords decided by the automaton alone
}

// Compile builds a matcher. Specs are used in canonical form; duplicates (same
// ID) are an error naming the keyword.
func Compile(specs []keyword.Spec) (*Matcher, error) {
	return compile(specs, options{})
}

// options exist for tests that exercise the fallback paths.
type options struct {
	noProduct bool // step the two automata side by side
}

func compile(specs []keyword.Spec, o options) (*Matcher, error) {
	m := &Matcher{
		specs:    make([]keyword.Spec, len(specs)),
		res:      make([]*regexp.Regexp, len(specs)),
		gateMask: make([]uint8, len(specs)),
	}
	seen := make(map[string]int, len(specs))
	var sens, fold []pattern
	add := func(l lit, h hit) {
		h.n = int32(len(l.s))
		if l.fold {
			fold = append(fold, pattern{text: l.s, hit: h})
		} else {
			sens = append(sens, pattern{text: l.s, hit: h})
		}
	}
	for i, s := range specs {
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("keywords[%d]: %w", i, err)
		}
		s = s.Canonical()
		id := s.ID()
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("keyword %q listed twice (keywords[%d] and keywords[%d])", id, j, i)
		}
		seen[id] = i
		m.specs[i] = s
		kw := int32(i)
		switch s.Match {
		case keyword.Substring:
			add(newLit(s.Text, s.IgnoreCase), hit{kw: kw, kind: hitSubstring})
		case keyword.Word:
			add(newLit(s.Text, s.IgnoreCase), hit{kw: kw, kind: hitWord})
		case keyword.Regex:
			expr := s.Text
			if s.IgnoreCase {
				expr = "(?i)" + expr
			}
			plan := planRegex(expr)
			switch {
			case plan.direct:
				m.direct++
				for _, l := range plan.lits {
					add(l, hit{kw: kw, kind: hitSubstring})
				}
			case len(plan.gates) > 0:
				m.gated++
				for g, ls := range plan.gates {
					m.gateMask[i] |= 1 << g
					for _, l := range ls {
						add(l, hit{kw: kw, kind: hitGate, bit: 1 << g})
					}
				}
			default:
				m.ungated = append(m.ungated, kw)
			}
			if !plan.direct {
				re, err := s.Regexp()
				if err != nil {
					return nil, fmt.Errorf("keyword %q: %w", id, err)
				}
				m.res[i] = re
			}
		}
	}
	var err error
	if len(sens) > 0 {
		if m.cs, err = buildDFA(sens, false); err != nil {
			return nil, err
		}
	}
	if len(fold) > 0 {
		if m.ci, err = buildDFA(fold, true); err != nil {
			return nil, err
		}
	}
	switch {
	case m.cs == nil:
		m.one = m.ci
	case m.ci == nil:
		m.one = m.cs
	case o.noProduct:
	default:
		if p, ok := product(m.cs, m.ci, productLimit(m.cs, m.ci)); ok {
			m.one, m.cs, m.ci = p, nil, nil
		}
	}
	return m, nil
}

// productLimit caps the product automaton's states: past a few times the
// two automata's size, stepping both side by side is cheaper than a table
// that no longer fits in cache.
func productLimit(a, b *dfa) int { return 4 * (a.states + b.states) }

// Len is the number of keywords.
func (m *Matcher) Len() int { return len(m.specs) }

// Spec returns keyword i in canonical form.
func (m *Matcher) Spec(i int) keyword.Spec { return m.specs[i] }

// Stats describes a compiled matcher, for logs and benchmarks.
type Stats struct {
	Keywords       int
	Automata       int // automata stepped per byte: 0, 1, or 2 (product too large)
	States         int // automaton states, all automata together
	Classes        int // byte classes, all automata together
	TableBytes     int // transition tables' size
	MaxPattern     int // longest literal in bytes
	RegexDirect    int // regexes decided by the automaton alone
	RegexGated     int // regexes run only where literals of all their gates occur
	RegexEveryText int // regexes run on every value
}

// Stats reports the matcher's shape.
func (m *Matcher) Stats() Stats {
	st := Stats{Keywords: len(m.specs), RegexDirect: m.direct, RegexGated: m.gated, RegexEveryText: len(m.ungated)}
	scanned := []*dfa{m.one}
	if m.one == nil {
		scanned = []*dfa{m.cs, m.ci}
	}
	for _, d := range scanned {
		if d != nil {
			st.Automata++
			st.MaxPattern = max(st.MaxPattern, d.maxLen)
			st.States += d.states
			st.Classes += int(d.nc)
			st.TableBytes += 4 * len(d.trans)
		}
	}
	return st
}

// Scratch collects the distinct keywords found across one record's values.
// It belongs to the Matcher that made it and to one goroutine at a time.
type Scratch struct {
	found []int
	seen  []bool
	// gates[kw]: gates of regex kw seen in the current Scan; touched lists
	// the kws with gates != 0.
	gates   []uint8
	touched []int32
}

// NewScratch returns a scratch sized for m.
func (m *Matcher) NewScratch() *Scratch {
	return &Scratch{
		found:   make([]int, 0, len(m.specs)),
		seen:    make([]bool, len(m.specs)),
		gates:   make([]uint8, len(m.specs)),
		touched: make([]int32, 0, m.gated),
	}
}

// Found lists the indexes of keywords seen since the last Reset, each once.
// The slice is reused after Reset.
func (s *Scratch) Found() []int { return s.found }

// Has reports whether keyword i was seen since the last Reset.
func (s *Scratch) Has(i int) bool { return s.seen[i] }

// Reset clears the scratch for the next record, in O(len(Found())).
func (s *Scratch) Reset() {
	for _, i := range s.found {
		s.seen[i] = false
	}
	s.found = s.found[:0]
}

func (s *Scratch) add(kw int32) {
	s.seen[kw] = true
	s.found = append(s.found, int(kw))
}

// Scan adds to s every keyword that occurs in text. Call it once per scanned
// value of a record, then read s.Found and Reset.
func (m *Matcher) Scan(text []byte, s *Scratch) {
	if len(s.seen) != len(m.specs) {
		panic("match: Scan with a Scratch made by another Matcher")
	}
	if len(s.found) == len(m.specs) {
		return
	}
	switch {
	case m.one != nil:
		m.scan1(m.one, text, s)
	case m.cs != nil:
		m.scan2(text, s)
	}
	if len(s.touched) > 0 {
		for _, kw := range s.touched {
			if s.gates[kw] == m.gateMask[kw] && !s.seen[kw] && m.res[kw].Match(text) {
				s.add(kw)
			}
			s.gates[kw] = 0
		}
		s.touched = s.touched[:0]
	}
	for _, kw := range m.ungated {
		if !s.seen[kw] && m.res[kw].Match(text) {
			s.add(kw)
		}
	}
}

// scan1 runs one automaton over text. The stepping loops are inlined leaf
// loops without calls, so their state stays in registers; hits are handled
// between them.
//
// A DFA step is a load that depends on the previous one, so one chain of
// steps is bound by load latency. A text of k*interleaveMin bytes or more
// (k up to maxChains) is cut into k equal parts, and k chains step through
// them in lockstep, each from the root state at its part's start; the CPU
// overlaps their loads. Each chain but the last then continues past its
// part's end only while it tracks a pattern prefix that started inside its
// part (its state's depth says so); that is usually a few bytes. The last
// chain runs on to the end of the text. Between them they see every
// occurrence: one that starts in part j is seen whole by chain j. One seen
// twice is reported twice, harmlessly.
func (m *Matcher) scan1(d *dfa, text []byte, s *Scratch) {
	var st uint32
	i := 0
	switch k := min(len(text)/interleaveMin, maxChains); k {
	case 4:
		st, i = scan4(d, text, s)
	case 3:
		st, i = scan3(d, text, s)
	case 2:
		st, i = scan2x(d, text, s)
	}
	for ; i < len(text); i++ {
		st, i = run1(d, st, text, i)
		if i == len(text) {
			return
		}
		report(d.hits(st), text, i, s)
	}
}

// interleaveMin is the shortest part of a text worth its own chain;
// maxChains bounds the chains.
const (
	interleaveMin = 16
	maxChains     = 4
)

// runOn continues a chain that stepped text up to end (exclusive) in state
// st, while st tracks a pattern prefix that began before end: depth(st) >
// j-end before stepping text[j].
func runOn(d *dfa, st uint32, text []byte, end int, s *Scratch) {
	if d.trans[st+d.nc] == 0 { // at the root: the usual case, inlined
		return
	}
	runOnAt(d, st, text, end, end, s)
}

// runOnAt is runOn for a chain that has already run on to text[from-1].
func runOnAt(d *dfa, st uint32, text []byte, end, from int, s *Scratch) {
	for j := from; j < len(text) && d.depth(st) > uint32(j-end); j++ {
		st = d.trans[st+uint32(d.class[text[j]])]
		if st >= d.matchMin {
			report(d.hits(st), text, j, s)
		}
	}
}

// scan2x steps two chains over the halves of text[:2*(len/2)]; it returns
// the last chain's state and the index it stopped at, for run1 to finish.
func scan2x(d *dfa, text []byte, s *Scratch) (uint32, int) {
	n := len(text) / 2
	sa, sb := uint32(0), uint32(0)
	for i := 0; ; i++ {
		sa, sb, i = run2x(d, sa, sb, text[:2*n], n, i)
		if i == n {
			break
		}
		if sa >= d.matchMin {
			report(d.hits(sa), text, i, s)
		}
		if sb >= d.matchMin {
			report(d.hits(sb), text, n+i, s)
		}
	}
	runOn(d, sa, text, n, s)
	return sb, 2 * n
}

// scan3 is scan2x with three chains.
func scan3(d *dfa, text []byte, s *Scratch) (uint32, int) {
	n := len(text) / 3
	sa, sb, sc := uint32(0), uint32(0), uint32(0)
	for i := 0; ; i++ {
		sa, sb, sc, i = run3x(d, sa, sb, sc, text[:3*n], n, i)
		if i == n {
			break
		}
		if sa >= d.matchMin {
			report(d.hits(sa), text, i, s)
		}
		if sb >= d.matchMin {
			report(d.hits(sb), text, n+i, s)
		}
		if sc >= d.matchMin {
			report(d.hits(sc), text, 2*n+i, s)
		}
	}
	runOn(d, sa, text, n, s)
	runOn(d, sb, text, 2*n, s)
	return sc, 3 * n
}

// scan4 is scan2x with four chains.
func scan4(d *dfa, text []byte, s *Scratch) (uint32, int) {
	n := len(text) / 4
	sa, sb, sc, sd := uint32(0), uint32(0), uint32(0), uint32(0)
	for i := 0; ; i++ {
		sa, sb, sc, sd, i = run4x(d, sa, sb, sc, sd, text[:4*n], n, i)
		if i == n {
			break
		}
		if sa >= d.matchMin {
			report(d.hits(sa), text, i, s)
		}
		if sb >= d.matchMin {
			report(d.hits(sb), text, n+i, s)
		}
		if sc >= d.matchMin {
			report(d.hits(sc), text, 2*n+i, s)
		}
		if sd >= d.matchMin {
			report(d.hits(sd), text, 3*n+i, s)
		}
	}
	// The first three chains run on together, all while any needs to (a
	// chain stepping further than it needs only finds occurrences again):
	// one loop exit to mispredict instead of three.
	col, mm := &d.col, uintptr(d.matchMin)
	p := unsafe.Pointer(unsafe.SliceData(text[:4*n]))
	a, b, c := uintptr(sa), uintptr(sb), uintptr(sc)
	j := 0
	for ; j < n; j++ { // text[3n+j] is in bounds
		if d.depth(uint32(a)) <= uint32(j) && d.depth(uint32(b)) <= uint32(j) && d.depth(uint32(c)) <= uint32(j) {
			return sd, 4 * n
		}
		a = step(col, a, at(p, n+j))
		b = step(col, b, at(p, 2*n+j))
		c = step(col, c, at(p, 3*n+j))
		if a >= mm || b >= mm || c >= mm {
			for k, x := range [3]uintptr{a, b, c} {
				if x >= mm {
					report(d.hits(uint32(x)), text, (k+1)*n+j, s)
				}
			}
		}
	}
	// Prefixes longer than a part: on, one chain at a time.
	runOnAt(d, uint32(a), text, n, 2*n, s)
	runOnAt(d, uint32(b), text, 2*n, 3*n, s)
	runOnAt(d, uint32(c), text, 3*n, 4*n, s)
	return sd, 4 * n
}

// The run functions below are the scan's inner loops. They step the
// automaton without bounds checks (step, at): a chain's step is then a
// single load at d.col[byte] + 4*st, the column pointer being loaded off
// the chain, where the checked trans[st+class] puts an add on it and needs
// a compare more. That is safe because every entry of d.trans is a row
// offset (a multiple of the stride below len(trans)) and every class is
// below the stride, so col[byte] + 4*st stays in the table (finish builds
// them so; TestTransitionsStayInTheTable checks), and the loops read
// t[i+k*n] only for i < n with len(t) >= (k+1)*n.

// step is trans[st+class[c]] without bounds checks, col being &d.col.
func step(col *[256]unsafe.Pointer, st uintptr, c byte) uintptr {
	return uintptr(*(*uint32)(unsafe.Add(col[c], st*4)))
}

// at is p[i] without bounds checks.
func at(p unsafe.Pointer, i int) byte { return *(*byte)(unsafe.Add(p, i)) }

// run2x steps two chains over t[:n] and t[n:2n] (len(t) >= 2n) in
// lockstep from index i until either reaches a state with outputs; it
// returns both states and that index, or n.
func run2x(d *dfa, a, b uint32, t []byte, n, i int) (uint32, uint32, int) {
	if len(t) < 2*n || i < 0 {
		panic("match: run2x out of range")
	}
	col, mm := &d.col, uintptr(d.matchMin)
	p := unsafe.Pointer(unsafe.SliceData(t))
	sa, sb := uintptr(a), uintptr(b)
	for ; i < n; i++ {
		sa = step(col, sa, at(p, i))
		sb = step(col, sb, at(p, n+i))
		if sa >= mm || sb >= mm {
			break
		}
	}
	return uint32(sa), uint32(sb), i
}

// run3x is run2x for three chains.
func run3x(d *dfa, a, b, c uint32, t []byte, n, i int) (uint32, uint32, uint32, int) {
	if len(t) < 3*n || i < 0 {
		panic("match: run3x out of range")
	}
	col, mm := &d.col, uintptr(d.matchMin)
	p := unsafe.Pointer(unsafe.SliceData(t))
	sa, sb, sc := uintptr(a), uintptr(b), uintptr(c)
	for ; i < n; i++ {
		sa = step(col, sa, at(p, i))
		sb = step(col, sb, at(p, n+i))
		sc = step(col, sc, at(p, 2*n+i))
		if sa >= mm || sb >= mm || sc >= mm {
			break
		}
	}
	return uint32(sa), uint32(sb), uint32(sc), i
}

// run4x is run2x for four chains.
func run4x(d *dfa, a, b, c, e uint32, t []byte, n, i int) (uint32, uint32, uint32, uint32, int) {
	if len(t) < 4*n || i < 0 {
		panic("match: run4x out of range")
	}
	col, mm := &d.col, uintptr(d.matchMin)
	p := unsafe.Pointer(unsafe.SliceData(t))
	sa, sb, sc, sd := uintptr(a), uintptr(b), uintptr(c), uintptr(e)
	for ; i < n; i++ {
		sa = step(col, sa, at(p, i))
		sb = step(col, sb, at(p, n+i))
		sc = step(col, sc, at(p, 2*n+i))
		sd = step(col, sd, at(p, 3*n+i))
		if sa >= mm || sb >= mm || sc >= mm || sd >= mm {
			break
		}
	}
	return uint32(sa), uint32(sb), uint32(sc), uint32(sd), i
}

// run1 steps from state st at text[i] until a state with outputs; it returns
// that state and the index of the byte that led there, or len(text).
func run1(d *dfa, st uint32, text []byte, i int) (uint32, int) {
	if i < 0 {
		panic("match: run1 out of range")
	}
	col, mm := &d.col, uintptr(d.matchMin)
	p, n := unsafe.Pointer(unsafe.SliceData(text)), len(text)
	s := uintptr(st)
	for ; i < n; i++ {
		s = step(col, s, at(p, i))
		if s >= mm {
			break
		}
	}
	return uint32(s), i
}

// scan2 advances both automata in one loop; their dependency chains are
// independent, so the CPU overlaps them.
func (m *Matcher) scan2(text []byte, s *Scratch) {
	a, b := m.cs, m.ci
	sa, sb := uint32(0), uint32(0)
	for i := 0; i < len(text); i++ {
		sa, sb, i = run2(a, b, sa, sb, text, i)
		if i == len(text) {
			return
		}
		if sa >= a.matchMin {
			report(a.hits(sa), text, i, s)
		}
		if sb >= b.matchMin {
			report(b.hits(sb), text, i, s)
		}
	}
}

// run2 is run1 for two automata.
func run2(a, b *dfa, sa, sb uint32, text []byte, i int) (uint32, uint32, int) {
	ta, ca, ma := a.trans, &a.class, a.matchMin
	tb, cb, mb := b.trans, &b.class, b.matchMin
	for ; i < len(text); i++ {
		c := text[i]
		sa = ta[sa+uint32(ca[c])]
		sb = tb[sb+uint32(cb[c])]
		if sa >= ma || sb >= mb {
			return sa, sb, i
		}
	}
	return sa, sb, i
}

// report handles the patterns ending at text[end].
func report(hs []hit, text []byte, end int, s *Scratch) {
	for _, h := range hs {
		if s.seen[h.kw] {
			continue
		}
		switch h.kind {
		case hitSubstring:
			s.add(h.kw)
		case hitWord:
			start := end + 1 - int(h.n)
			if (start == 0 || !isWordByte[text[start-1]]) && (end+1 == len(text) || !isWordByte[text[end+1]]) {
				s.add(h.kw)
			}
		case hitGate:
			if s.gates[h.kw] == 0 {
				s.touched = append(s.touched, h.kw)
			}
			s.gates[h.kw] |= h.bit
		}
	}
}

// isWordByte: ASCII letters, digits, '_' and every byte >= 0x80.
var isWordByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c == '_' || c >= 0x80 || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
	}
	return t
}()

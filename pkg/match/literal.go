package match

import (
	"regexp/syntax"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/keyalert/keyalert/pkg/keyword"
)

// This file derives, from a regex's syntax tree, sets of literals such that
// every match contains one literal of each set, so the automaton can gate the
// regex: it only runs on texts where every set fired. A regex that is exactly
// a small set of literals needs no regex run at all.

// lit is a byte string the automaton can look for. A fold lit is
// ASCII-lowercased and matches under ASCII case folding only; it always holds
// an ASCII letter (a fold lit without one is stored as a plain lit).
type lit struct {
	s    string
	fold bool
}

func newLit(s string, fold bool) lit {
	if fold {
		s = asciiLower(s)
		fold = hasASCIILetter(s)
	}
	return lit{s: s, fold: fold}
}

// litSet is an alternation of literals.
type litSet []lit

// maxSet bounds a literal set: more alternatives make a weak gate and a large
// automaton.
const maxSet = 64

// maxLitLen bounds one literal; longer ones only come from expanded repeats.
const maxLitLen = 256

// minGateLen is the shortest literal worth gating a regex on: a one-byte gate
// fires on most log lines anyway and costs a check at every occurrence.
const minGateLen = 2

// score is how selective a set is as a gate: its shortest literal's length
// (0 when the set holds the empty string, which is no gate at all).
func (ls litSet) score() int {
	if len(ls) == 0 {
		return 0
	}
	m := maxLitLen + 1
	for _, l := range ls {
		m = min(m, len(l.s))
	}
	return m
}

// better reports whether a is a more selective gate than b (nil b loses to any
// non-trivial a).
func better(a, b litSet) bool {
	sa := a.score()
	if sa == 0 {
		return false
	}
	sb := b.score()
	if sa != sb {
		return sa > sb
	}
	return len(a) < len(b)
}

func (ls litSet) add(l lit) litSet {
	if slices.Contains(ls, l) {
		return ls
	}
	return append(ls, l)
}

// union merges sets; ok is false when the result would exceed maxSet.
func union(a, b litSet) (litSet, bool) {
	out := slices.Clone(a)
	for _, l := range b {
		out = out.add(l)
		if len(out) > maxSet {
			return nil, false
		}
	}
	return out, true
}

// cross concatenates every literal of a with every literal of b. ok is false
// when the result would exceed the bounds; exact is false when some
// concatenation mixed a case-sensitive letter into a folded literal, so the
// result over-approximates (still fine for a gate, not for a direct match).
func cross(a, b litSet) (out litSet, exact, ok bool) {
	if len(a)*len(b) > maxSet {
		return nil, false, false
	}
	exact = true
	for _, x := range a {
		for _, y := range b {
			if len(x.s)+len(y.s) > maxLitLen {
				return nil, false, false
			}
			fold := x.fold || y.fold
			if x.fold != y.fold {
				plain := x
				if x.fold {
					plain = y
				}
				if hasASCIILetter(plain.s) {
					exact = false
				}
			}
			out = out.add(newLit(x.s+y.s, fold))
		}
	}
	return out, exact, true
}

// litInfo describes what a regex node can match.
type litInfo struct {
	// isExact: every string the node matches is (under the lits' folding) one
	// of exact.
	isExact bool
	exact   litSet
	// pure: additionally every string of exact is matched by the node
	// wherever it occurs: no assertions, no over-approximation. A pure node is
	// equivalent to a multi-literal substring search.
	pure bool
	// reqs: every match contains one literal of each set (a conjunction of
	// alternations), most selective first; only non-trivial sets.
	reqs []litSet
}

// maxGates bounds the sets ANDed into one regex's gate.
const maxGates = 3

// gates returns the sets every match must contain one literal of, most
// selective first.
func (in litInfo) gates() []litSet {
	if in.isExact && in.exact.score() > 0 {
		return []litSet{in.exact}
	}
	return in.reqs
}

// best is the most selective of gates, or nil.
func (in litInfo) best() litSet {
	if g := in.gates(); len(g) > 0 {
		return g[0]
	}
	return nil
}

// pickGates keeps the maxGates most selective non-trivial sets.
func pickGates(cands []litSet) []litSet {
	var out []litSet
	for _, c := range cands {
		dup := slices.ContainsFunc(out, func(o litSet) bool { return slices.Equal(o, c) })
		if c.score() > 0 && !dup {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b litSet) int {
		switch {
		case better(a, b):
			return -1
		case better(b, a):
			return 1
		}
		return 0
	})
	return out[:min(len(out), maxGates)]
}

func exactInfo(ls litSet, pure bool) litInfo {
	return litInfo{isExact: true, exact: ls, pure: pure}
}

var (
	emptyPure   = exactInfo(litSet{{}}, true)
	emptyAssert = exactInfo(litSet{{}}, false)
)

// analyze walks a simplified regex tree.
func analyze(re *syntax.Regexp) litInfo {
	switch re.Op {
	case syntax.OpEmptyMatch:
		return emptyPure
	case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return emptyAssert
	case syntax.OpLiteral:
		parts := make([]litInfo, len(re.Rune))
		for i, r := range re.Rune {
			parts[i] = runeInfo(r, re.Flags&syntax.FoldCase != 0)
		}
		return concatInfo(parts)
	case syntax.OpCharClass:
		return classInfo(re.Rune)
	case syntax.OpCapture:
		return analyze(re.Sub[0])
	case syntax.OpConcat:
		parts := make([]litInfo, len(re.Sub))
		for i, sub := range re.Sub {
			parts[i] = analyze(sub)
		}
		return concatInfo(parts)
	case syntax.OpAlternate:
		return alternateInfo(re.Sub)
	case syntax.OpQuest:
		sub := analyze(re.Sub[0])
		if sub.isExact {
			if ls, ok := union(sub.exact, litSet{{}}); ok {
				return exactInfo(ls, sub.pure)
			}
		}
		return litInfo{}
	case syntax.OpPlus:
		return litInfo{reqs: analyze(re.Sub[0]).gates()}
	case syntax.OpRepeat:
		// Simplify expands repeats; kept for trees that were not simplified.
		if re.Min >= 1 {
			return litInfo{reqs: analyze(re.Sub[0]).gates()}
		}
		return litInfo{}
	default:
		// OpNoMatch, OpAnyChar, OpAnyCharNotNL, OpStar: no literal.
		return litInfo{}
	}
}

// runeInfo is the set of byte strings one literal rune matches.
func runeInfo(r rune, fold bool) litInfo {
	if r == utf8.RuneError {
		// U+FFFD in a regex also matches each invalid UTF-8 byte.
		return litInfo{}
	}
	if !fold {
		return exactInfo(litSet{newLit(string(r), false)}, true)
	}
	return classInfo(foldClass(r))
}

// foldClass is r's Unicode simple-folding orbit as sorted ranges, the set
// (?i) makes a literal rune match (e.g. k, K and the Kelvin sign).
func foldClass(r rune) []rune {
	members := []rune{r}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		members = append(members, f)
	}
	slices.Sort(members)
	out := make([]rune, 0, 2*len(members))
	for _, m := range members {
		out = append(out, m, m)
	}
	return out
}

// classInfo expands a small character class into its runes. An ASCII letter
// pair (e.g. [Ee]) becomes one fold lit, so case-insensitive words do not
// multiply into 2^n case variants.
func classInfo(ranges []rune) litInfo {
	var runes []rune
	for i := 0; i+1 < len(ranges); i += 2 {
		lo, hi := ranges[i], ranges[i+1]
		if int(hi-lo)+1+len(runes) > maxSet*2 {
			return litInfo{}
		}
		for r := lo; r <= hi; r++ {
			if r == utf8.RuneError {
				return litInfo{}
			}
			runes = append(runes, r)
		}
	}
	var ls litSet
	for i := 0; i < len(runes); i++ {
		r := runes[i]
		if 'A' <= r && r <= 'Z' && slices.Contains(runes, r+'a'-'A') {
			ls = ls.add(newLit(string(r), true))
			continue
		}
		if 'a' <= r && r <= 'z' && slices.Contains(runes, r-'a'+'A') {
			ls = ls.add(newLit(string(r), true))
			continue
		}
		ls = ls.add(newLit(string(r), false))
	}
	if len(ls) == 0 || len(ls) > maxSet {
		return litInfo{}
	}
	return exactInfo(ls, true)
}

// concatInfo joins consecutive exact parts into longer literals; a part that
// is not exact ends the run. Every run and every part's requirement is
// necessary, so the most selective few are all kept.
func concatInfo(parts []litInfo) litInfo {
	run := litSet{{}}
	allExact, pure := true, true
	var cands []litSet
	consider := func(ls ...litSet) { cands = append(cands, ls...) }
	for _, p := range parts {
		if p.isExact {
			prod, exact, ok := cross(run, p.exact)
			if ok {
				run = prod
				pure = pure && p.pure && exact
				continue
			}
			consider(run)
			run = p.exact
			allExact = false
			continue
		}
		consider(run)
		consider(p.reqs...)
		run = litSet{{}}
		allExact = false
	}
	consider(run)
	if allExact {
		return litInfo{isExact: true, exact: run, pure: pure, reqs: pickGates(cands)}
	}
	return litInfo{reqs: pickGates(cands)}
}

// alternateInfo: an alternation is exact when every branch is; otherwise
// every match contains one literal of the union of the branches' best sets,
// if every branch has one.
func alternateInfo(subs []*syntax.Regexp) litInfo {
	infos := make([]litInfo, len(subs))
	for i, s := range subs {
		infos[i] = analyze(s)
	}
	exact, pure, ok := litSet(nil), true, true
	for _, in := range infos {
		if !in.isExact {
			ok = false
			break
		}
		pure = pure && in.pure
		if exact, ok = union(exact, in.exact); !ok {
			break
		}
	}
	var req litSet
	for _, in := range infos {
		g := in.best()
		if g.score() == 0 {
			req = nil
			break
		}
		var fits bool
		if req, fits = union(req, g); !fits {
			req = nil
			break
		}
	}
	if ok {
		return litInfo{isExact: true, exact: exact, pure: pure, reqs: pickGates([]litSet{req})}
	}
	return litInfo{reqs: pickGates([]litSet{req})}
}

// regexPlan is how the matcher handles one regex keyword.
type regexPlan struct {
	// direct: the regex is exactly a set of literals; the automaton decides
	// and the regex never runs.
	direct bool
	// lits: the direct literals; or gates: the regex runs only where one
	// literal of each set occurs. Neither means it runs on every text.
	lits  litSet
	gates []litSet
}

// planRegex parses expr as regexp.Compile does and picks its gate.
func planRegex(expr string) regexPlan {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return regexPlan{}
	}
	in := analyze(re.Simplify())
	if in.isExact && in.pure && in.exact.score() > 0 {
		return regexPlan{direct: true, lits: in.exact}
	}
	var gates []litSet
	for _, g := range in.gates() {
		if g.score() >= minGateLen {
			gates = append(gates, g)
		}
	}
	return regexPlan{gates: gates}
}

func hasASCIILetter(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; 'a' <= c && c <= 'z' {
			return true
		}
	}
	return false
}

// asciiLower folds ASCII letters only; other bytes, valid UTF-8 or not, stay.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// RequiredLiteralLen is, for a regex keyword, the length in bytes of the
// shortest literal the matcher's prefilter must find in a text before it runs
// the regex (or, for a regex that is a set of literals, instead of running
// it). 0 means no usable literal: the regex runs on every text, which is what
// makes a flush slow. Other modes are literals themselves: their text length.
func RequiredLiteralLen(s keyword.Spec) int {
	if s.Match != keyword.Regex {
		return len(s.Text)
	}
	expr := s.Text
	if s.IgnoreCase {
		expr = "(?i)" + expr
	}
	plan := planRegex(expr)
	switch {
	case plan.direct:
		return plan.lits.score()
	case len(plan.gates) > 0:
		return plan.gates[0].score()
	}
	return 0
}

package match

import (
	"bytes"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/pkg/keyword"
)

// reference is the naive definition of the package semantics: one
// bytes.Contains, boundary loop or regexp run per keyword over every value.
// It returns the found keyword indexes in ascending order.
func reference(m *Matcher, values []string) []int {
	var out []int
	for i := range m.Len() {
		sp := m.Spec(i)
		var re *regexp.Regexp
		if sp.Match == keyword.Regex {
			var err error
			if re, err = sp.Regexp(); err != nil {
				panic(err)
			}
		}
		for _, v := range values {
			if refMatch(sp, re, []byte(v)) {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

func refMatch(sp keyword.Spec, re *regexp.Regexp, text []byte) bool {
	switch sp.Match {
	case keyword.Regex:
		return re.Match(text)
	case keyword.Substring, keyword.Word:
		kw := []byte(sp.Text)
		if sp.IgnoreCase {
			text, kw = refLower(text), refLower(kw)
		}
		if sp.Match == keyword.Substring {
			return bytes.Contains(text, kw)
		}
		for off := 0; off+len(kw) <= len(text); off++ {
			if !bytes.Equal(text[off:off+len(kw)], kw) {
				continue
			}
			end := off + len(kw)
			if (off == 0 || !refWordByte(text[off-1])) && (end == len(text) || !refWordByte(text[end])) {
				return true
			}
		}
	}
	return false
}

func refLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

func refWordByte(c byte) bool {
	return c == '_' || c >= 0x80 || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// checkAgainstReference compiles specs (dropping duplicates and invalid
// ones), scans the values as one record and compares with reference, with the
// product automaton and with both automata stepped side by side.
func checkAgainstReference(t *testing.T, specs []keyword.Spec, values []string) {
	t.Helper()
	uniq := validUnique(specs)
	for _, o := range []options{{}, {noProduct: true}} {
		m, err := compile(uniq, o)
		if err != nil {
			t.Fatalf("Compile(%q): %v", specIDs(uniq), err)
		}
		checkMatcher(t, m, values)
	}
}

func checkMatcher(t *testing.T, m *Matcher, values []string) {
	t.Helper()
	s := m.NewScratch()
	for round := range 2 { // the second round checks that Reset leaves nothing behind
		for _, v := range values {
			m.Scan([]byte(v), s)
		}
		got := slices.Clone(s.Found())
		slices.Sort(got)
		want := reference(m, values)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: keywords %q values %q: found %q, reference %q",
				round, specIDs(m.specs), values, idsOf(m, got), idsOf(m, want))
		}
		s.Reset()
	}
}

// Small alphabets make occurrences, overlaps and near-misses frequent.
var (
	textAtoms = []string{"a", "b", "A", "B", "e", "E", "r", "R", " ", "_", "-", "1", "k", "K", "s",
		"é", "É", "\u212a", "\u017f", "\xff", "\xc3", "\n"}
	kwAtoms    = []string{"a", "b", "A", "B", "e", "E", "r", "R", " ", "_", "-", "1", "é", "\xff", "\xc3"}
	regexAtoms = []string{"a", "b", "A", "E", "r", "er", "Err", "(?i:er)", "[Ee]", "[ab]", "(a|b)", "(ab|ba)", "a?",
		"b+", "r*", ".", `\b`, `\B`, "^", "$", `\d`, `\s`, "k", "s", "é", "(?i)é", "\uFFFD", "[^a]", "x{2}", "(?:rr|e)?",
		"(?m:^)", "(?s:.)", "(?i:k)"}
)

func randFrom(r *rand.Rand, atoms []string, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(atoms[r.IntN(len(atoms))])
	}
	return b.String()
}

func randSpec(r *rand.Rand) keyword.Spec {
	s := keyword.Spec{Match: keyword.Mode(r.IntN(3)), IgnoreCase: r.IntN(2) == 0}
	if s.Match == keyword.Regex {
		s.Text = randFrom(r, regexAtoms, 1+r.IntN(4))
		if r.IntN(4) == 0 {
			s.Text += "|" + randFrom(r, regexAtoms, 1+r.IntN(3))
		}
	} else {
		s.Text = randFrom(r, kwAtoms, 1+r.IntN(4))
	}
	return s
}

func TestMatchesReferenceOnRandomInput(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		specs := make([]keyword.Spec, 1+r.IntN(12))
		for i := range specs {
			specs[i] = randSpec(r)
		}
		values := make([]string, 1+r.IntN(3))
		for i := range values {
			n := r.IntN(40)
			if r.IntN(4) == 0 { // long enough for two interleaved chains
				n = 40 + r.IntN(200)
			}
			values[i] = randFrom(r, textAtoms, n)
		}
		checkAgainstReference(t, specs, values)
	}
}

// FuzzScan compares the matcher with the reference. The keyword list is one
// spec per line: the first byte's low bits pick the mode and case folding.
func FuzzScan(f *testing.F) {
	f.Add([]byte("ushers"), "0he\n0she\n0hers")
	f.Add([]byte("an ERROR: Timeout!"), "0ERROR\n1timeout\n2error\n3Timeout!")
	f.Add([]byte("caf\xc3\xa9 fail_x (fail)"), "2fail\n3CAF\n4fail\\b\n5caf.")
	f.Add([]byte("\u212aelvin ſsh"), "5kelvin\n5SSH\n4[Kk]\n4colou?r")
	f.Add([]byte("x\xff\xfey"), "0\xff\xfe\n4x\uFFFD\n1\xc3")
	f.Fuzz(func(t *testing.T, text []byte, kws string) {
		var specs []keyword.Spec
		for _, line := range strings.Split(kws, "\n") {
			if len(line) < 2 {
				continue
			}
			specs = append(specs, keyword.Spec{
				Text:       line[1:],
				Match:      keyword.Mode(line[0] % 6 / 2),
				IgnoreCase: line[0]%2 == 1,
			})
		}
		if len(specs) > 64 {
			specs = specs[:64]
		}
		half := len(text) / 2
		checkAgainstReference(t, specs, []string{string(text), string(text[:half])})
	})
}

func specIDs(specs []keyword.Spec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.ID()
	}
	return out
}

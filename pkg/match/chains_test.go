package match

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/keyalert/keyalert/pkg/keyword"
)

// chainSplits are the indexes where scan1 starts a chain on a text of n
// bytes (besides 0), so tests can put occurrences across them.
func chainSplits(n int) []int {
	k := min(n/interleaveMin, maxChains)
	if k < 2 {
		return nil
	}
	var out []int
	for j := 1; j < k; j++ {
		out = append(out, j*(n/k))
	}
	return append(out, k*(n/k)) // where the last chain goes on alone
}

// chainLengths are the text lengths around every change in the number of
// chains, with every remainder of the split, and a few long ones.
func chainLengths() []int {
	var out []int
	for n := 1; n <= 4*interleaveMin+9; n++ {
		out = append(out, n)
	}
	return append(out, 97, 128, 130, 131, 255, 301)
}

// TestChainSplits pins where the chains start, so the boundary tests below
// aim at the right places.
func TestChainSplits(t *testing.T) {
	tests := []struct {
		n    int
		want []int
	}{
		{31, nil},
		{32, []int{16, 32}},
		{47, []int{23, 46}},
		{48, []int{16, 32, 48}},
		{63, []int{21, 42, 63}},
		{64, []int{16, 32, 48, 64}},
		{67, []int{16, 32, 48, 64}},
		{130, []int{32, 64, 96, 128}},
	}
	for _, tc := range tests {
		if got := chainSplits(tc.n); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("chainSplits(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

// TestOccurrencesAcrossChainSplits puts each keyword so that it starts at
// every offset from len(keyword)+1 before each split to one after it, on
// every text length around the chain thresholds: an occurrence that starts
// in one part and ends in the next is found by the chain that runs on.
func TestOccurrencesAcrossChainSplits(t *testing.T) {
	// The last one is longer than a part of 64 to 79 bytes: its chain
	// runs on past the whole next part.
	long := "a pattern longer than sixteen-byte parts"
	specs := []keyword.Spec{sub("BREAK-IN"), subI("timeout"), word("kill"), rx(`exit code \d+`), sub("ab"), sub(long)}
	// The text each keyword is put in as, in the order of specs.
	kws := []struct {
		text, id string
	}{
		{"BREAK-IN", specs[0].ID()},
		{"TimeOut", specs[1].ID()},
		{"kill", specs[2].ID()},
		{"exit code 7", specs[3].ID()},
		{"ab", specs[4].ID()},
		{long, specs[5].ID()},
	}
	for _, o := range []options{{}, {noProduct: true}} {
		m, err := compile(specs, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range chainLengths() {
			for _, split := range append(chainSplits(n), 0, n) {
				for _, kw := range kws {
					for off := split - len(kw.text) - 1; off <= split+1; off++ {
						if off < 0 || off+len(kw.text) > n {
							continue
						}
						text := bytes.Repeat([]byte{'.'}, n)
						copy(text[off:], kw.text)
						got := foundTexts(t, m, string(text))
						if len(got) != 1 || got[0] != kw.id {
							t.Fatalf("noProduct=%v: %q at %d in %d bytes (splits %v): found %q",
								o.noProduct, kw.text, off, n, chainSplits(n), got)
						}
					}
				}
			}
		}
	}
}

// TestWordBoundariesAtChainSplits checks word matches whose boundary bytes
// lie in the neighbouring part: a word byte just before or after the
// occurrence, across a split, must still reject it, and a non-word byte
// there must not.
func TestWordBoundariesAtChainSplits(t *testing.T) {
	m, err := Compile([]keyword.Spec{word("kill"), wordI("oom")})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range chainLengths() {
		for _, split := range chainSplits(n) {
			for _, kw := range []string{"kill", "OOM"} {
				for off := split - len(kw) - 1; off <= split+1; off++ {
					for _, around := range []byte{'x', ' ', '_', 0xc3} {
						if off < 1 || off+len(kw)+1 > n {
							continue
						}
						for _, side := range []int{off - 1, off + len(kw)} {
							text := bytes.Repeat([]byte{' '}, n)
							copy(text[off:], kw)
							text[side] = around
							got := foundTexts(t, m, string(text))
							want := !isWordByte[around]
							if (len(got) == 1) != want {
								t.Fatalf("%q at %d, %q at %d, %d bytes (splits %v): found %q, want found=%v",
									kw, off, around, side, n, chainSplits(n), got, want)
							}
						}
					}
				}
			}
		}
	}
}

// TestChainsMatchReferenceAroundSplits is the reference comparison on
// random small-alphabet texts of every length around the chain thresholds,
// where overlapping occurrences and prefixes straddle the splits.
func TestChainsMatchReferenceAroundSplits(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		specs := make([]keyword.Spec, 1+r.IntN(10))
		for i := range specs {
			specs[i] = randSpec(r)
		}
		uniq := validUnique(specs)
		for _, o := range []options{{}, {noProduct: true}} {
			m, err := compile(uniq, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range chainLengths() {
				// Atoms of one byte each, so that n is the length in bytes.
				checkMatcher(t, m, []string{randFrom(r, []string{"a", "b", "A", "r", "e", " ", "1"}, n)})
			}
		}
	}
}

// FuzzScanChains is FuzzScan for texts long enough for several chains: the
// fuzzer's text is repeated to fill n bytes (n from 16 to 300), so the same
// keywords occur around every split.
func FuzzScanChains(f *testing.F) {
	f.Add([]byte("ab"), uint16(64), "0ab\n0ba\n2aba")
	f.Add([]byte("kill "), uint16(67), "2kill\n3KILL \n4ll k")
	f.Add([]byte("xERRORx"), uint16(130), "0ERROR\n1error\n2rorx\n5rx.er")
	f.Add([]byte("a\xc3b"), uint16(48), "2b\n0\xc3b\n3A")
	f.Fuzz(func(t *testing.T, unit []byte, n uint16, kws string) {
		if len(unit) == 0 {
			return
		}
		size := interleaveMin + int(n)%(300-interleaveMin)
		text := bytes.Repeat(unit, size/len(unit)+1)[:size]
		var specs []keyword.Spec
		for _, line := range bytes.Split([]byte(kws), []byte("\n")) {
			if len(line) < 2 {
				continue
			}
			specs = append(specs, keyword.Spec{
				Text:       string(line[1:]),
				Match:      keyword.Mode(line[0] % 6 / 2),
				IgnoreCase: line[0]%2 == 1,
			})
		}
		if len(specs) > 16 {
			specs = specs[:16]
		}
		checkAgainstReference(t, specs, []string{string(text)})
	})
}

// TestTransitionsStayInTheTable checks what the scan loops rely on to step
// without bounds checks: every transition is the offset of a row of the
// table, and every byte's class is within a row.
func TestTransitionsStayInTheTable(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	sets := [][]keyword.Spec{realKeywords, benchKeywords(1000)}
	for range 200 {
		specs := make([]keyword.Spec, 1+r.IntN(12))
		for i := range specs {
			specs[i] = randSpec(r)
		}
		sets = append(sets, specs)
	}
	for _, specs := range sets {
		uniq := validUnique(specs)
		for _, o := range []options{{}, {noProduct: true}} {
			m, err := compile(uniq, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []*dfa{m.one, m.cs, m.ci} {
				if d == nil {
					continue
				}
				for b, c := range d.class {
					if uint32(c) >= d.nc {
						t.Fatalf("%q: class of byte %d is %d, want < %d", specIDs(uniq), b, c, d.nc)
					}
					if d.col[b] != unsafe.Pointer(&d.trans[c]) {
						t.Fatalf("%q: column of byte %d is not &trans[%d]", specIDs(uniq), b, c)
					}
				}
				if len(d.trans)%int(d.stride) != 0 {
					t.Fatalf("%q: table of %d entries, stride %d", specIDs(uniq), len(d.trans), d.stride)
				}
				for st := 0; st < len(d.trans); st += int(d.stride) {
					for c := range d.nc {
						if next := d.trans[st+int(c)]; next%d.stride != 0 || int(next) >= len(d.trans) {
							t.Fatalf("%q: state %d class %d goes to %d (stride %d, %d entries)",
								specIDs(uniq), st, c, next, d.stride, len(d.trans))
						}
					}
				}
			}
		}
	}
}

// validUnique keeps the valid specs of specs, each ID once.
func validUnique(specs []keyword.Spec) []keyword.Spec {
	var uniq []keyword.Spec
	seen := map[string]bool{}
	for _, s := range specs {
		if s.Validate() == nil && !seen[s.ID()] {
			seen[s.ID()] = true
			uniq = append(uniq, s)
		}
	}
	return uniq
}

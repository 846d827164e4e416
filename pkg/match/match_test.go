package match

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/pkg/keyword"
)

func sub(t string) keyword.Spec { return keyword.Spec{Text: t, Match: keyword.Substring} }
func subI(t string) keyword.Spec {
	return keyword.Spec{Text: t, Match: keyword.Substring, IgnoreCase: true}
}
func word(t string) keyword.Spec { return keyword.Spec{Text: t, Match: keyword.Word} }
func wordI(t string) keyword.Spec {
	return keyword.Spec{Text: t, Match: keyword.Word, IgnoreCase: true}
}
func rx(t string) keyword.Spec  { return keyword.Spec{Text: t, Match: keyword.Regex} }
func rxI(t string) keyword.Spec { return keyword.Spec{Text: t, Match: keyword.Regex, IgnoreCase: true} }

// foundTexts scans each value into one scratch and returns the found keywords'
// texts in spec order.
func foundTexts(t *testing.T, m *Matcher, values ...string) []string {
	t.Helper()
	s := m.NewScratch()
	for _, v := range values {
		m.Scan([]byte(v), s)
	}
	idx := slices.Clone(s.Found())
	slices.Sort(idx)
	if len(slices.Compact(slices.Clone(idx))) != len(idx) {
		t.Fatalf("Found lists a keyword twice: %v", s.Found())
	}
	var out []string
	for _, i := range idx {
		if !s.Has(i) {
			t.Fatalf("Found lists %d but Has(%d) is false", i, i)
		}
		out = append(out, m.Spec(i).ID())
	}
	return out
}

func TestScan(t *testing.T) {
	big := bytes.Repeat([]byte("abcdefghij klmnopqrstuvwxyz 0123456789 "), (1<<20)/39+1)[:1<<20]
	tail := string(big[:len(big)-8]) + " NEEDLE!"
	tests := []struct {
		name   string
		specs  []keyword.Spec
		values []string
		want   []string // IDs
	}{
		{"overlapping patterns all reported", []keyword.Spec{sub("he"), sub("she"), sub("hers"), sub("his")},
			[]string{"ushers"}, []string{"substring:he", "substring:she", "substring:hers"}},
		{"prefix and suffix keywords", []keyword.Spec{sub("time"), sub("timeout"), sub("out"), sub("meo")},
			[]string{"a timeout"}, []string{"substring:time", "substring:timeout", "substring:out", "substring:meo"}},
		{"prefix keyword only", []keyword.Spec{sub("time"), sub("timeout")},
			[]string{"timeou"}, []string{"substring:time"}},
		{"repeated keyword reported once", []keyword.Spec{sub("ERROR")},
			[]string{"ERROR ERROR ERROR", "ERROR"}, []string{"substring:ERROR"}},
		{"no match", []keyword.Spec{sub("ERROR"), wordI("fail"), rx(`x\d+`)},
			[]string{"all good here"}, nil},
		{"empty text", []keyword.Spec{sub("a"), word("a"), rx(`^$`), rx(`b*`)},
			[]string{""}, []string{"regex:^$", "regex:b*"}},
		{"no keywords", nil, []string{"anything"}, nil},
		{"word at start and end", []keyword.Spec{word("fail"), word("ok")},
			[]string{"fail then ok"}, []string{"word:fail", "word:ok"}},
		{"word inside a longer word fails", []keyword.Spec{word("fail")},
			[]string{"failed unfail fail_x x_fail fail9 9fail"}, nil},
		{"word later occurrence matches", []keyword.Spec{word("fail")},
			[]string{"failure failed (fail)"}, []string{"word:fail"}},
		{"word punctuation boundaries", []keyword.Spec{word("warn"), word("err")},
			[]string{"[warn]: x", "err,"}, []string{"word:warn", "word:err"}},
		{"word next to utf8 letter fails", []keyword.Spec{word("caf"), word("fé")},
			[]string{"café xfé"}, nil},
		{"word next to utf8 punctuation fails", []keyword.Spec{word("ok")},
			[]string{"«ok»"}, nil},
		{"word keyword with spaces", []keyword.Spec{word("Disk Full")},
			[]string{"xDisk Full", "Disk Fully", "the Disk Full."}, []string{"word:Disk Full"}},
		{"word keyword starting with punctuation", []keyword.Spec{word("-v")},
			[]string{"run -v"}, []string{"word:-v"}},
		{"word keyword starting with punctuation needs outer boundary", []keyword.Spec{word("-v")},
			[]string{"x-v", "run -vv"}, nil},
		{"substring ignore case folds ascii", []keyword.Spec{subI("Error")},
			[]string{"an eRrOr"}, []string{"substring/i:error"}},
		{"ignore case does not fold non-ascii", []keyword.Spec{subI("café")},
			[]string{"CAFÉ"}, nil},
		{"ignore case matches non-ascii exactly", []keyword.Spec{subI("café")},
			[]string{"CAFé"}, []string{"substring/i:café"}},
		{"case sensitive does not fold", []keyword.Spec{sub("ERROR")},
			[]string{"error Error"}, nil},
		{"mixed case sets share text", []keyword.Spec{sub("Error"), subI("error"), word("error"), wordI("ERROR")},
			[]string{"xERRORx Error"}, []string{"substring:Error", "substring/i:error", "word/i:error"}},
		{"mixed case sets across values", []keyword.Spec{sub("WARN"), subI("warn"), sub("Exception"), subI("timeout")},
			[]string{"warn", "java.lang.Exception", "TimeOut"}, []string{"substring/i:warn", "substring:Exception", "substring/i:timeout"}},
		{"ignore case keyword without letters", []keyword.Spec{subI("404"), sub("E")},
			[]string{"code 404"}, []string{"substring/i:404"}},
		{"regex with literal", []keyword.Spec{rx(`timeout after \d+ms`)},
			[]string{"timeout after ms", "timeout after 30ms"}, []string{`regex:timeout after \d+ms`}},
		{"regex gate fires but regex fails", []keyword.Spec{rx(`timeout after \d+ms`)},
			[]string{"timeout after 30s"}, nil},
		{"regex alternation literal", []keyword.Spec{rx(`connection (refused|reset)`)},
			[]string{"connection reset by peer"}, []string{`regex:connection (refused|reset)`}},
		{"regex without literal", []keyword.Spec{rx(`^\d+$`), rx(`[a-z]+ed\b`)},
			[]string{"12a", "4711", "it failed."}, []string{`regex:^\d+$`, `regex:[a-z]+ed\b`}},
		{"regex pure literal alternation", []keyword.Spec{rx(`ERROR|FATAL`)},
			[]string{"a FATAL one"}, []string{`regex:ERROR|FATAL`}},
		{"regex anchored literal", []keyword.Spec{rx(`^ERROR`)},
			[]string{"x ERROR", "ERROR x"}, []string{`regex:^ERROR`}},
		{"regex anchored literal fails", []keyword.Spec{rx(`^ERROR`)},
			[]string{"x ERROR"}, nil},
		{"regex ignore case", []keyword.Spec{rxI(`disk\s+full`)},
			[]string{"DISK   FULL"}, []string{`regex/i:disk\s+full`}},
		{"regex ignore case unicode folding (kelvin sign)", []keyword.Spec{rxI(`kelvin`)},
			[]string{"\u212aelvin"}, []string{`regex/i:kelvin`}},
		{"regex ignore case unicode folding (long s)", []keyword.Spec{rxI(`ssh`)},
			[]string{"\u017fsH"}, []string{`regex/i:ssh`}},
		{"regex inline ignore case group", []keyword.Spec{rx(`(?i:err)OR`)},
			[]string{"ErROR", "errOr"}, []string{`regex:(?i:err)OR`}},
		{"regex inline ignore case group rejects", []keyword.Spec{rx(`(?i:err)OR`)},
			[]string{"errOr"}, nil},
		{"regex case class", []keyword.Spec{rx(`[Ee]rror`)},
			[]string{"eRROR Error"}, []string{`regex:[Ee]rror`}},
		{"regex optional letter", []keyword.Spec{rx(`colou?r`)},
			[]string{"color"}, []string{`regex:colou?r`}},
		{"regex replacement char matches invalid utf8", []keyword.Spec{rx("a\uFFFDb")},
			[]string{"a\xffb"}, []string{"regex:a\uFFFDb"}},
		{"invalid utf8 text", []keyword.Spec{sub("\xff\xfe"), word("ok"), sub("ok")},
			[]string{"\xc3(\xff\xfe ok\xff"}, []string{"substring:\xff\xfe", "substring:ok"}},
		{"invalid utf8 keyword", []keyword.Spec{subI("\xc3Err")},
			[]string{"\xc3ERR"}, []string{"substring/i:\xc3err"}},
		{"single byte keyword", []keyword.Spec{sub("!"), word("a")},
			[]string{"b!a", "ba"}, []string{"substring:!", "word:a"}},
		{"1 MiB text with keyword at the end", []keyword.Spec{sub("NEEDLE"), word("NEEDLE"), subI("needle!"), rx(`NEED+LE!$`)},
			[]string{tail}, []string{"substring:NEEDLE", "word:NEEDLE", "substring/i:needle!", "regex:NEED+LE!$"}},
		{"1 MiB text without keyword", []keyword.Spec{sub("NEEDLE"), subI("zz"), rx(`q{3}`)},
			[]string{string(big)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Compile(tc.specs)
			if err != nil {
				t.Fatal(err)
			}
			got := foundTexts(t, m, tc.values...)
			want := slices.Clone(tc.want)
			specOrder := func(id string) int {
				for i := range m.Len() {
					if m.Spec(i).ID() == id {
						return i
					}
				}
				t.Fatalf("want unknown keyword %q", id)
				return -1
			}
			slices.SortFunc(want, func(a, b string) int { return specOrder(a) - specOrder(b) })
			if !slices.Equal(got, want) {
				t.Errorf("found %q, want %q", got, want)
			}
			if ref := reference(m, tc.values); !slices.Equal(got, idsOf(m, ref)) {
				t.Errorf("reference found %q, matcher %q", idsOf(m, ref), got)
			}
		})
	}
}

// TestScanFindsKeywordAtEveryOffset moves keywords across texts long enough
// for two interleaved chains, so occurrences straddle the split point.
func TestScanFindsKeywordAtEveryOffset(t *testing.T) {
	specs := []keyword.Spec{sub("POSSIBLE BREAK-IN"), wordI("timeout"), rx(`exit code \d+`), sub("#")}
	for _, o := range []options{{}, {noProduct: true}} {
		m, err := compile(specs, o)
		if err != nil {
			t.Fatal(err)
		}
		s := m.NewScratch()
		for _, n := range []int{40, 64, 65, 97, 150, 301} {
			for _, kw := range []string{"POSSIBLE BREAK-IN", "TimeOut", "exit code 42"} {
				for off := 0; off+len(kw) <= n; off++ {
					text := bytes.Repeat([]byte{'.'}, n)
					copy(text[off:], kw)
					m.Scan(text, s)
					if len(s.Found()) != 1 || m.Spec(s.Found()[0]).Text == "#" {
						t.Fatalf("noProduct=%v: %q at %d in %d bytes: found %v", o.noProduct, kw, off, n, s.Found())
					}
					s.Reset()
				}
			}
		}
	}
}

func idsOf(m *Matcher, idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, m.Spec(i).ID())
	}
	return out
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name    string
		specs   []keyword.Spec
		wantErr string
	}{
		{"same text twice", []keyword.Spec{sub("ERROR"), sub("ERROR")}, `"substring:ERROR" listed twice`},
		{"same after canonical form", []keyword.Spec{subI("Error"), subI("eRROR")}, `"substring/i:error" listed twice`},
		{"empty keyword", []keyword.Spec{sub("")}, "empty keyword"},
		{"bad regex", []keyword.Spec{rx("(")}, "missing closing )"},
		{"unknown mode", []keyword.Spec{{Text: "x", Match: 9}}, "unknown match mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.specs)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestCompileKeepsDistinctModes(t *testing.T) {
	specs := []keyword.Spec{sub("error"), subI("error"), word("error"), wordI("error"), rx("error"), rxI("error")}
	m, err := Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	if m.Len() != len(specs) {
		t.Fatalf("Len = %d", m.Len())
	}
	got := foundTexts(t, m, "ERROR")
	want := []string{"substring/i:error", "word/i:error", "regex/i:error"}
	if !slices.Equal(got, want) {
		t.Errorf("found %q, want %q", got, want)
	}
}

func TestSpecIsCanonical(t *testing.T) {
	m, err := Compile([]keyword.Spec{subI("ErRoR"), rxI("ErR")})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Spec(0).Text; got != "error" {
		t.Errorf("Spec(0).Text = %q", got)
	}
	if got := m.Spec(1).Text; got != "ErR" {
		t.Errorf("Spec(1).Text = %q", got)
	}
}

func TestScratchAccumulatesUntilReset(t *testing.T) {
	m, err := Compile([]keyword.Spec{sub("a"), sub("b"), rx(`c\d`), rx(`^d$`)})
	if err != nil {
		t.Fatal(err)
	}
	s := m.NewScratch()
	m.Scan([]byte("a"), s)
	m.Scan([]byte("b a c1"), s)
	m.Scan([]byte("d"), s)
	if got := s.Found(); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("Found = %v, want [0 1 2 3]", got)
	}
	s.Reset()
	if len(s.Found()) != 0 || s.Has(0) {
		t.Fatalf("after Reset Found = %v", s.Found())
	}
	m.Scan([]byte("b c2"), s)
	if got := s.Found(); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("Found after Reset = %v, want [1 2]", got)
	}
}

func TestScanDoesNotAllocate(t *testing.T) {
	m, err := Compile(benchKeywords(32))
	if err != nil {
		t.Fatal(err)
	}
	s := m.NewScratch()
	lines := [][]byte{
		[]byte("2015-10-18 18:01:47,978 ERROR [main] java.io.IOException: Connection refused; timeout after 30ms"),
		[]byte("Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for invalid user webmaster"),
	}
	// AllocsPerRun counts every goroutine's allocations; the fewest of three
	// runs keeps a parallel test or the race detector from being counted.
	allocs := 1e9
	for range 3 {
		allocs = min(allocs, testing.AllocsPerRun(200, func() {
			for _, l := range lines {
				m.Scan(l, s)
			}
			s.Reset()
		}))
	}
	if allocs != 0 {
		t.Errorf("Scan allocates %.1f times per record", allocs)
	}
}

func TestConcurrentScan(t *testing.T) {
	m, err := Compile([]keyword.Spec{sub("ERROR"), subI("warn"), rx(`time(out)?`), rx(`^\S+$`)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []int)
	for g := range 4 {
		go func() {
			s := m.NewScratch()
			var counts []int
			for i := range 500 {
				m.Scan([]byte([]string{"an ERROR", "Warn x", "a timeout", "single"}[(i+g)%4]), s)
				counts = append(counts, len(s.Found()))
				s.Reset()
			}
			done <- counts
		}()
	}
	for range 4 {
		for _, c := range <-done {
			if c != 1 {
				t.Fatalf("a line found %d keywords, want 1", c)
			}
		}
	}
}

func TestScanPanicsOnForeignScratch(t *testing.T) {
	a, _ := Compile([]keyword.Spec{sub("a")})
	b, _ := Compile([]keyword.Spec{sub("a"), sub("b")})
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	a.Scan([]byte("a"), b.NewScratch())
}

func TestStatsDescribeRegexHandling(t *testing.T) {
	specs := []keyword.Spec{rx("ERROR|FATAL"), rx(`timeout \d+`), rx(`^\d+$`), subI("warn"), sub("Exception")}
	for _, tc := range []struct {
		o        options
		automata int
	}{{options{}, 1}, {options{noProduct: true}, 2}} {
		m, err := compile(specs, tc.o)
		if err != nil {
			t.Fatal(err)
		}
		st := m.Stats()
		if st.RegexDirect != 1 || st.RegexGated != 1 || st.RegexEveryText != 1 || st.Automata != tc.automata {
			t.Errorf("noProduct=%v: Stats = %+v", tc.o.noProduct, st)
		}
	}
}

func TestRegexPlans(t *testing.T) {
	type L = []lit
	tests := []struct {
		expr   string
		direct L   // decided by the automaton alone
		gates  []L // otherwise: ANDed gates; nil runs on every text
	}{
		{`ERROR`, L{{"ERROR", false}}, nil},
		{`ERROR|FATAL`, L{{"ERROR", false}, {"FATAL", false}}, nil},
		{`(?i)error`, L{{"error", true}}, nil},
		{`(?i)disk`, L{{"disk", true}, {"dis\u212a", true}, {"di\u017fk", true}, {"di\u017f\u212a", true}}, nil},
		{`connection (refused|reset)`, L{{"connection refused", false}, {"connection reset", false}}, nil},
		{`colou?r`, L{{"colour", false}, {"color", false}}, nil},
		{`c\d`, L{{"c0", false}, {"c1", false}, {"c2", false}, {"c3", false}, {"c4", false}, {"c5", false}, {"c6", false}, {"c7", false}, {"c8", false}, {"c9", false}}, nil},
		{`\bERROR\b`, nil, []L{{{"ERROR", false}}}},
		{`^ERROR`, nil, []L{{{"ERROR", false}}}},
		{`timeout after \d+ms`, nil, []L{{{"timeout after ", false}}, {{"ms", false}}}},
		{`(?i)disk\s+full`, nil, []L{{{"full", true}}, {{"disk", true}, {"dis\u212a", true}, {"di\u017fk", true}, {"di\u017f\u212a", true}}}},
		{`(?:refused|reset)\s+by`, nil, []L{{{"refused", false}, {"reset", false}}, {{"by", false}}}},
		{`[Ee]rror`, nil, []L{{{"error", true}}}},
		{`(?i)(?:ERR|WARN)[a-z]*`, nil, []L{{{"err", true}, {"warn", true}}}},
		{`a.bc.de.fg.hi`, nil, []L{{{"bc", false}}, {{"de", false}}, {{"fg", false}}}},
		{`x+yz`, nil, []L{{{"yz", false}}}},
		{"a\uFFFDbc", nil, []L{{{"bc", false}}}},
		{`[a-z]+ed`, nil, []L{{{"ed", false}}}},
		{`^\d+$`, nil, nil},
		{`\w+@\w+`, nil, nil},
		{`a.b`, nil, nil},
		{`(ab)?`, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			p := planRegex(tc.expr)
			var gotDirect L
			if p.direct {
				gotDirect = p.lits
			}
			var gotGates []L
			for _, g := range p.gates {
				gotGates = append(gotGates, g)
			}
			if !slices.Equal(gotDirect, tc.direct) || !slices.EqualFunc(gotGates, tc.gates, slices.Equal) {
				t.Errorf("plan = direct %#v gates %#v; want direct %#v gates %#v", gotDirect, gotGates, tc.direct, tc.gates)
			}
		})
	}
}

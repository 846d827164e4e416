package keyword

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestIDIncludesMatchOptions(t *testing.T) {
	tests := []struct {
		spec Spec
		id   string
	}{
		{Spec{Text: "Exception"}, "substring:Exception"},
		{Spec{Text: "Error", IgnoreCase: true}, "substring/i:error"},
		{Spec{Text: "ERROR", Match: Word}, "word:ERROR"},
		{Spec{Text: `Disk\s+Full`, Match: Regex, IgnoreCase: true}, `regex/i:Disk\s+Full`},
		{Spec{Text: "a:b"}, "substring:a:b"},
	}
	for _, tc := range tests {
		if got := tc.spec.ID(); got != tc.id {
			t.Errorf("%+v.ID() = %q, want %q", tc.spec, got, tc.id)
		}
		back, err := ParseID(tc.id)
		if err != nil {
			t.Errorf("ParseID(%q): %v", tc.id, err)
			continue
		}
		if back.ID() != tc.id {
			t.Errorf("ParseID(%q).ID() = %q", tc.id, back.ID())
		}
	}
	if (Spec{Text: "Exception"}).ID() == (Spec{Text: "exception", IgnoreCase: true}).ID() {
		t.Error("case-sensitive and case-insensitive keywords share an ID")
	}
}

func TestValidateRejectsWhatCannotBeMatched(t *testing.T) {
	for name, s := range map[string]Spec{
		"empty":          {},
		"too long":       {Text: strings.Repeat("x", MaxTextLen+1)},
		"unknown mode":   {Text: "x", Match: Mode(9)},
		"broken regex":   {Text: "(", Match: Regex},
		"unclosed class": {Text: "[a-", Match: Regex, IgnoreCase: true},
	} {
		if err := s.Validate(); err == nil {
			t.Errorf("%s: %+v accepted", name, s)
		}
	}
	if err := (Spec{Text: "x", Match: Regex}).Validate(); err != nil {
		t.Errorf("valid regex rejected: %v", err)
	}
}

func TestModeTextAndJSON(t *testing.T) {
	b, err := json.Marshal(Spec{Text: "x", Match: Word})
	if err != nil || string(b) != `{"text":"x","match":"word","ignore_case":false}` {
		t.Fatalf("marshal = %s, %v", b, err)
	}
	var s Spec
	if err := json.Unmarshal([]byte(`{"text":"x","match":"REGEX"}`), &s); err != nil || s.Match != Regex {
		t.Fatalf("unmarshal = %+v, %v", s, err)
	}
	if err := json.Unmarshal([]byte(`{"text":"x","match":"glob"}`), &s); err == nil {
		t.Fatal("unknown mode accepted")
	}
}

func TestSetIsCanonicalAndDeduplicated(t *testing.T) {
	doc, err := EncodeSet([]Spec{{Text: "Error", IgnoreCase: true}, {Text: "error", IgnoreCase: true}, {Text: "Exception"}})
	if err != nil {
		t.Fatal(err)
	}
	specs, err := DecodeSet(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].ID() != "substring/i:error" || specs[1].ID() != "substring:Exception" {
		t.Fatalf("decoded %+v from %s", specs, doc)
	}
	for name, bad := range map[string]string{
		"not JSON":        `{`,
		"wrong version":   `{"v":2,"keywords":[]}`,
		"invalid keyword": `{"v":1,"keywords":[{"text":"","match":"substring"}]}`,
	} {
		if _, err := DecodeSet([]byte(bad)); err == nil {
			t.Errorf("%s: accepted %s", name, bad)
		}
	}
}

func FuzzDecodeSet(f *testing.F) {
	f.Add([]byte(`{"v":1,"keywords":[{"text":"Exception","match":"substring","ignore_case":false}]}`))
	f.Add([]byte(`{"v":1,"keywords":[{"text":"(a|b)+","match":"regex","ignore_case":true}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		specs, err := DecodeSet(b)
		if err != nil {
			return
		}
		doc, err := EncodeSet(specs)
		if err != nil {
			t.Fatalf("decoded set does not encode: %v", err)
		}
		if _, err := DecodeSet(doc); err != nil {
			t.Fatalf("re-encoded set does not decode: %v", err)
		}
	})
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"substring:Exception", "word/i:error", `regex:\d+`, "x", "regex/i:("} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		s, err := ParseID(id)
		if err != nil {
			return
		}
		if _, err := ParseID(s.ID()); err != nil {
			t.Fatalf("ParseID(%q).ID() = %q does not parse: %v", id, s.ID(), err)
		}
	})
}

func TestSetSum(t *testing.T) {
	a, _ := EncodeSet([]Spec{{Text: "a"}})
	b, _ := EncodeSet([]Spec{{Text: "b"}})
	sumA, okA := VerifiedSum(a)
	sumB, _ := VerifiedSum(b)
	if !okA || sumA == sumB {
		t.Fatalf("sums %q %q from %s and %s", sumA, sumB, a, b)
	}
	if peek, ok := PeekSum(a[:SumPrefixLen]); !ok || peek != sumA {
		t.Fatalf("PeekSum of the prefix = %q, %v; want %q", peek, ok, sumA)
	}
	// The sum is the hash of the document as it was before sums: readers
	// that ignore it see the same set.
	legacy := `{"v":1,"keywords":[{"text":"a","match":"substring","ignore_case":false}]}`
	if want := sumOf([]byte(legacy)); sumA != want {
		t.Fatalf("sum %s, want the legacy document's %s", sumA, want)
	}
	tampered := strings.Replace(string(a), `"a"`, `"z"`, 1)
	for name, tt := range map[string]struct {
		doc    string
		wantOK bool
	}{
		"summed":            {string(a), true},
		"legacy, no sum":    {legacy, false},
		"edited, stale sum": {tampered, false},
		"short":             {`{"v":1,"sum":"ab"}`, false},
		"empty":             {"", false},
	} {
		if _, ok := VerifiedSum([]byte(tt.doc)); ok != tt.wantOK {
			t.Errorf("%s: VerifiedSum ok = %v, want %v", name, ok, tt.wantOK)
		}
		if specs, err := DecodeSet([]byte(tt.doc)); tt.wantOK && (err != nil || len(specs) != 1) {
			t.Errorf("%s: DecodeSet = %v, %v", name, specs, err)
		}
	}
}

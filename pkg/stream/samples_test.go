package stream

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeSamplesMatchesEncodingJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"two plain lines", `["a b","c"]`, true},
		{"empty array", `[]`, true},
		{"null", `null`, true},
		{"spaces around", " [ \"x\" , \"y\" ] \n", true},
		{"escapes", `["tab\there \"q\" \\ \/ \u00e9 \n"]`, true},
		{"surrogate pair", `["\ud83d\ude00"]`, true},
		{"lone surrogate", `["\ud83d x"]`, true},
		{"invalid utf-8", "[\"a\xffb\"]", true},
		{"multibyte", `["ünïcödé ✓"]`, true},
		{"null element", `[null,"a"]`, true},
		{"not an array", `"x"`, false},
		{"number inside", `[1]`, false},
		{"trailing comma", `["a",]`, false},
		{"unterminated", `["a`, false},
		{"control char", "[\"a\x01\"]", false},
		{"bad escape", `["\q"]`, false},
		{"short unicode escape", `["\u12"]`, false},
		{"garbage after", `["a"] x`, false},
		{"empty", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeSamples(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("decodeSamples(%q) error %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil {
				return
			}
			var want []string
			if err := json.Unmarshal([]byte(tt.in), &want); err != nil {
				t.Fatalf("encoding/json rejects %q: %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decodeSamples(%q) = %q, encoding/json says %q", tt.in, got, want)
			}
		})
	}
}

func TestDecodeSamplesOverLimit(t *testing.T) {
	in := "[" + strings.Repeat(`"x",`, 100) + `"x"]`
	if _, err := decodeSamples(in); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Errorf("101 samples: error %v, want over the limit", err)
	}
}

// FuzzDecodeSamples checks the hand-written decoder against encoding/json.
func FuzzDecodeSamples(f *testing.F) {
	for _, s := range []string{`["a","b"]`, `[]`, `null`, `["\u00e9\ud83d\ude00"]`, "[\"\xff\"]", `["\ud800\u0041"]`, `[1]`, ` [ "x" ] `, `[null]`, `[nul]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := scanSamples(in)
		var want []string
		jerr := json.Unmarshal([]byte(in), &want)
		if (err == nil) != (jerr == nil) {
			t.Fatalf("%q: scanSamples error %v, encoding/json error %v", in, err, jerr)
		}
		if err == nil && !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("%q: scanSamples %q, encoding/json %q", in, got, want)
		}
	})
}

// plainUntil finds what a byte-at-a-time scan finds, from any start.
func FuzzPlainUntil(f *testing.F) {
	f.Add("plain ascii text that is long enough", uint8(0))
	f.Add("a\"b\\c\x1fd\x7f\x80\xffe", uint8(1))
	f.Add("0123456789abcdef\x00", uint8(3))
	f.Fuzz(func(t *testing.T, s string, from uint8) {
		i := int(from) % (len(s) + 1)
		want := i
		for want < len(s) {
			c := s[want]
			if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
				break
			}
			want++
		}
		if got := plainUntil(s, i); got != want {
			t.Errorf("plainUntil(%q, %d) = %d, want %d", s, i, got, want)
		}
	})
}

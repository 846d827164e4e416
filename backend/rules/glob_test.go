package rules

import (
	"regexp"
	"strings"
	"testing"
)

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "x", false},
		{"*", "", true},
		{"web-*", "web-12", true},
		{"web-*", "db-1", false},
		{"app.*", "app.payments", true},
		{"app.*", "appx", false},
		{"*.log", "var/log/app.log", true},
		{"web-??", "web-12", true},
		{"web-??", "web-1", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"**x", "abx", true},
		{"exact", "exact", true},
		{"*", "*00", true},
		{"a*", "a*b", true},
		{"a?c", "a*c", true},
	}
	for _, tt := range tests {
		if got := MatchGlob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("MatchGlob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestFiltersMatchBothDimensions(t *testing.T) {
	f := Filters{Host: "web-*", Tag: "app.*"}
	if !f.Match("web-1", "app.x") || f.Match("db-1", "app.x") || f.Match("web-1", "sys.x") {
		t.Fatal("filters must require both host and tag to match")
	}
	if !(Filters{}).Match("anything", "") {
		t.Fatal("empty filters match everything")
	}
}

// FuzzMatchGlob compares MatchGlob with a regexp translation on ASCII input
// (where one byte is one character for both).
func FuzzMatchGlob(f *testing.F) {
	f.Add("a*b?c", "aXbYc")
	f.Add("*", "*00")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if !ascii(pattern) || !ascii(s) || len(pattern) > 64 {
			return
		}
		var re strings.Builder
		re.WriteString(`^(?s)`)
		for i := 0; i < len(pattern); i++ {
			switch pattern[i] {
			case '*':
				re.WriteString(`.*`)
			case '?':
				re.WriteString(`.`)
			default:
				re.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
			}
		}
		re.WriteString(`$`)
		want := regexp.MustCompile(re.String()).MatchString(s)
		if got := MatchGlob(pattern, s); got != want {
			t.Fatalf("MatchGlob(%q, %q) = %v, regexp says %v", pattern, s, got, want)
		}
	})
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

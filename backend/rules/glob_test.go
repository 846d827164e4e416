package rules

import "testing"

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

func FuzzMatchGlob(f *testing.F) {
	f.Add("a*b?c", "aXbYc")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if MatchGlob(pattern, s) && len(s) < countLiteral(pattern) {
			t.Fatalf("%q matched %q shorter than its literal bytes", pattern, s)
		}
		if !MatchGlob("*", s) || !MatchGlob(s+"*", s) && !containsMeta(s) {
			t.Fatalf("star patterns must match %q", s)
		}
	})
}

func countLiteral(p string) int {
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] != '*' {
			n++
		}
	}
	return n
}

func containsMeta(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '*' || s[i] == '?' {
			return true
		}
	}
	return false
}

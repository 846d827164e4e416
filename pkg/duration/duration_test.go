package duration

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseAcceptsGoDurationsDaysAndWeeks(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"90s", 90 * time.Second},
		{"500ms", 500 * time.Millisecond},
		{"1.5h", 90 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"7d", 7 * 24 * time.Hour},
		{"2w", 14 * 24 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"-5m", -5 * time.Minute},
		{"0s", 0},
		{"0", 0}, // Go's own exception: zero needs no unit
	} {
		got, err := Parse(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseRejectsWithTheGrammarInTheError(t *testing.T) {
	for _, in := range []string{"", "5", "-5", "1.5", "99999999999999999999", "1y", "7 d", "d", "1.5d", "abc", "5m junk"} {
		if _, err := Parse(in); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) err = %v, want ErrSyntax", in, err)
		}
	}
}

func TestParseHintsAtTheUnitOfABareNumber(t *testing.T) {
	_, err := Parse("30")
	if err == nil || !strings.Contains(err.Error(), `"30" is not a duration: it has no unit (write "30s" for seconds)`) {
		t.Errorf("Parse(\"30\") err = %v, want a hint to write 30s", err)
	}
}

func TestFormatRoundTrips(t *testing.T) {
	for _, d := range []time.Duration{0, time.Second, 90 * time.Second, 5 * time.Minute, 168 * time.Hour, 1500 * time.Millisecond} {
		got, err := Parse(Format(d))
		if err != nil || got != d {
			t.Errorf("Parse(Format(%v)=%q) = %v, %v", d, Format(d), got, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"90s", "7d", "2w", "1d12h", "1y", "", "5", "9223372036"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		if got, err := Parse(Format(d)); err != nil || got != d {
			t.Fatalf("Parse(%q) = %v; Format round trip gave %v, %v", s, d, got, err)
		}
	})
}

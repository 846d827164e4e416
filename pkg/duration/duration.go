// Package duration is the one duration grammar of keyalert: plugin keys,
// keyalertd settings, rule fields and API parameters all read it. It is Go's
// (time.ParseDuration: "90s", "1.5h", "500ms") plus days and weeks in the
// Prometheus form ("7d", "2w", "1d12h"). A bare number is refused with a
// hint to add its unit: "30" could mean seconds (Fluent Bit's own keys) or
// minutes, and a page that comes 60 times too late is worse than an error.
package duration

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Syntax describes the grammar for error messages.
const Syntax = `a duration like "90s", "5m", "36h", "7d" or "2w"`

// ErrSyntax is wrapped by Parse's errors.
var ErrSyntax = errors.New("want " + Syntax)

// Error is Parse's error: it quotes the value, so callers prefix only the
// key ("Rules_Interval: \"10\" is not a duration: ...").
type Error struct {
	Value string
	Hint  string // what to write instead, when there is a likely fix
}

func (e *Error) Error() string {
	if e.Hint != "" {
		return fmt.Sprintf("%q is not a duration: %s", e.Value, e.Hint)
	}
	return fmt.Sprintf("%q is not a duration: %v", e.Value, ErrSyntax)
}

func (e *Error) Unwrap() error { return ErrSyntax }

// Parse reads s in the grammar above. Negative durations parse; callers
// check their own bounds.
func Parse(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, &Error{Value: s, Hint: fmt.Sprintf("it has no unit (write %q for seconds)", s+"s")}
	}
	// Prometheus' grammar also knows years; keyalert's does not, so that
	// "1y" is not read as 365 days by some keys and refused by others.
	if s == "" || strings.ContainsRune(s, 'y') {
		return 0, &Error{Value: s}
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, &Error{Value: s}
	}
	return time.Duration(d), nil
}

// Format writes d in the shortest whole unit up to hours ("90s", "5m",
// "168h"), else as Go does ("1.5s"). Parse(Format(d)) == d.
func Format(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

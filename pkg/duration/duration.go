// Package duration is the one duration grammar of keyalert: plugin keys,
// keyalertd settings, rule fields and API parameters all read it. It is Go's
// (time.ParseDuration: "90s", "1.5h", "500ms") plus days and weeks in the
// Prometheus form ("7d", "2w", "1d12h"), and a bare whole number of seconds
// ("30"), which is how Fluent Bit's own time keys (Flush, Refresh_Interval)
// are written, so a plugin key reads like its neighbours.
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
const Syntax = `a duration like "90s", "5m", "36h", "7d", "2w" or whole seconds`

// ErrSyntax is wrapped by Parse's errors.
var ErrSyntax = errors.New("want " + Syntax)

// maxSeconds keeps a bare number of seconds inside time.Duration.
const maxSeconds = int64(1<<63-1) / int64(time.Second)

// Parse reads s in the grammar above. Negative durations parse; callers
// check their own bounds.
func Parse(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 && n <= maxSeconds {
		return time.Duration(n) * time.Second, nil
	}
	// Prometheus' grammar also knows years; keyalert's does not, so that
	// "1y" is not read as 365 days by some keys and refused by others.
	if s == "" || strings.ContainsRune(s, 'y') {
		return 0, fmt.Errorf("%q: %w", s, ErrSyntax)
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, ErrSyntax)
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

// Package rules defines alert rules — which keywords to count, under what
// condition to page and where — with their validation and their Redis store,
// which also publishes the keyword set that agents follow.
package rules

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/keyalert/keyalert/pkg/duration"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
)

// Rule is one alert rule as the API shows it and the engine evaluates it.
type Rule struct {
	ID             string       `json:"id"`
	Name           string       `json:"name"`
	Keywords       []string     `json:"keywords"`
	IgnoreCase     bool         `json:"ignore_case"`
	Match          keyword.Mode `json:"match"`
	Condition      Condition    `json:"condition"`
	GroupBy        GroupBy      `json:"group_by"`
	Filters        Filters      `json:"filters"`
	Severity       Severity     `json:"severity"`
	PagerDuty      PagerDuty    `json:"pagerduty"`
	RepeatInterval Duration     `json:"repeat_interval"`
	ResolveAfter   Duration     `json:"resolve_after"`
	// For is how long the condition must hold, on evaluations in whole event
	// minutes, before the alert pages; until then it is pending. 0: at once.
	For Duration `json:"for,omitzero"`
	// EvalDelay is how long after a minute ends its counts are taken as
	// complete, absorbing late entries and skewed clocks: absence and
	// resolution are judged on the window ending that long before the last
	// complete minute. nil: the engine's default (KEYALERT_EVAL_DELAY).
	EvalDelay *Duration `json:"eval_delay,omitempty"`
	// ForgetAfter is how long an absence rule remembers a group it has seen
	// (and pages for it while silent) after its last count. 0:
	// DefaultForgetAfter (rules stored before the field).
	ForgetAfter Duration `json:"forget_after,omitzero"`
	// MuteTimeIntervals name time intervals (package timeinterval) inside
	// which the rule's alerts are recorded but not paged, as under a
	// silence; they page when the interval ends if still firing.
	MuteTimeIntervals []string `json:"mute_time_intervals,omitempty"`
	Enabled           bool     `json:"enabled"`
	// AcceptSlowRegex admits regex keywords without a required literal of
	// MinRegexLiteral bytes, which every agent runs on every line.
	AcceptSlowRegex bool      `json:"accept_slow_regex,omitempty"`
	RunbookURL      string    `json:"runbook_url,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`

	// Receivers are the named receivers (package receiver) the rule's
	// alerts go to; empty: KEYALERT_DEFAULT_RECEIVERS, else PagerDuty.
	Receivers []string `json:"receivers,omitempty"`
}

// Specs returns the rule's keywords with its match options, canonical.
func (r *Rule) Specs() []keyword.Spec {
	out := make([]keyword.Spec, len(r.Keywords))
	for i, k := range r.Keywords {
		out[i] = keyword.Spec{Text: k, Match: r.Match, IgnoreCase: r.IgnoreCase}.Canonical()
	}
	return out
}

// KeywordIDs returns the IDs of Specs, the series the rule counts.
func (r *Rule) KeywordIDs() []string {
	specs := r.Specs()
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.ID()
	}
	return out
}

// LogValue keeps rules loggable without their routing key.
func (r Rule) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.String("name", r.Name),
		slog.String("condition", string(r.Condition.Type)), slog.Bool("enabled", r.Enabled))
}

// Condition says when a rule's count makes it fire.
type Condition struct {
	Type CondType `json:"type"`
	// Count is N: threshold fires at count >= N, absence at count < N.
	Count int64 `json:"count,omitempty"`
	// Window is the span counted, in whole minutes. A threshold or spike
	// fires on the window ending with the current (partial) minute; absence
	// and resolution are judged on windows of complete minutes, EvalDelay back.
	Window Duration `json:"window"`
	// Factor and MinCount drive spike: the window's count must be at least
	// Factor times the baseline's count (scaled to the window's length) and at
	// least MinCount.
	Factor   float64  `json:"factor,omitempty"`
	MinCount int64    `json:"min_count,omitempty"`
	Baseline Duration `json:"baseline,omitempty"`
	// Seasonal, for spike, replaces the baseline just before the window with
	// the same window one period earlier, or the median of the last N such
	// windows: a daily rhythm is then not a spike. Zero: the baseline.
	Seasonal Seasonal `json:"seasonal,omitzero"`
}

// Seasonal is a spike's seasonal baseline: the windows Period, 2×Period, …
// N×Period before the current one.
type Seasonal struct {
	Period Duration `json:"period"`
	N      int      `json:"n"`
}

// On reports whether the seasonal baseline is in use.
func (s Seasonal) On() bool { return s.N > 0 }

// Lookback is how far back from the current minute the condition reads.
func (c Condition) Lookback() time.Duration {
	if c.Type == Spike {
		// A seasonal baseline's windows are read apart (they lie days back).
		return time.Duration(c.Window) + time.Duration(c.Baseline)
	}
	if c.Type == Absence {
		// Groups that reported in the window before this one are the ones an
		// absence can be noticed for (besides the groups the engine remembers).
		return 2 * time.Duration(c.Window)
	}
	return time.Duration(c.Window)
}

// CondType names a condition.
type CondType string

// Condition types.
const (
	Threshold CondType = "threshold"
	Absence   CondType = "absence"
	Spike     CondType = "spike"
)

// GroupBy says which dimensions split a rule into one alert per group:
// none, or one or more of host, tag and label names. It holds the names
// joined by ',' (no name holds one), so that it stays a comparable value
// and the single-name forms stored before labels ("host", "tag") read as
// they always did. JSON: "none", the name as a string, or a list of 2+.
type GroupBy string

// Grouping dimensions.
const (
	GroupNone GroupBy = "none"
	GroupHost GroupBy = "host"
	GroupTag  GroupBy = "tag"
)

// MaxGroupBy bounds the dimensions of group_by: every label and host and tag.
const MaxGroupBy = stream.MaxLabels + 2

// GroupByOf is the GroupBy of dims; none for no dims.
func GroupByOf(dims ...string) GroupBy {
	if len(dims) == 0 {
		return GroupNone
	}
	return GroupBy(strings.Join(dims, ","))
}

// None reports whether g groups nothing: one alert for the whole rule.
func (g GroupBy) None() bool { return g == GroupNone || g == "" }

// Dims are g's dimension names in order; nil for none.
func (g GroupBy) Dims() []string {
	if g.None() {
		return nil
	}
	return strings.Split(string(g), ",")
}

// Has reports whether g groups by dimension name.
func (g GroupBy) Has(name string) bool {
	return !g.None() && slices.Contains(g.Dims(), name)
}

// Key is the group of a series (host, tag, labels): "" for none; one
// dimension's value; for several, name=value pairs joined by ',' in
// group_by order ("namespace=shop,app=web"). A series lacking a label has
// the empty value for it.
func (g GroupBy) Key(host, tag string, labels []stream.Label) string {
	switch {
	case g.None():
		return ""
	case g == GroupHost:
		return host
	case g == GroupTag:
		return tag
	}
	dims := string(g)
	if !strings.Contains(dims, ",") {
		return labelValue(labels, dims)
	}
	// Runs per cell on every evaluation: no slice of names, one string.
	var b strings.Builder
	b.Grow(len(dims) + 16*strings.Count(dims, ","))
	for rest, first := dims, true; ; first = false {
		d, next, more := strings.Cut(rest, ",")
		if !first {
			b.WriteByte(',')
		}
		b.WriteString(d)
		b.WriteByte('=')
		b.WriteString(dimValue(host, tag, labels, d))
		if !more {
			return b.String()
		}
		rest = next
	}
}

// Labels are the dimensions of group (a Key of g) as name -> value; nil
// for none. A value holding ",<next name>=" is cut there: such groups are
// told apart by their key, not by these labels.
func (g GroupBy) Labels(group string) map[string]string {
	dims := g.Dims()
	switch len(dims) {
	case 0:
		return nil
	case 1:
		return map[string]string{dims[0]: group}
	}
	out := make(map[string]string, len(dims))
	rest := group
	for i, d := range dims {
		rest = strings.TrimPrefix(rest, d+"=")
		v := rest
		if i+1 < len(dims) {
			if j := strings.Index(rest, ","+dims[i+1]+"="); j >= 0 {
				v, rest = rest[:j], rest[j+1:]
			} else {
				rest = ""
			}
		}
		out[d] = v
	}
	return out
}

// MarshalJSON writes "none", the one name, or the list of names.
func (g GroupBy) MarshalJSON() ([]byte, error) {
	dims := g.Dims()
	switch len(dims) {
	case 0:
		return json.Marshal(string(GroupNone))
	case 1:
		return json.Marshal(dims[0])
	}
	return json.Marshal(dims)
}

// UnmarshalJSON reads a string or a list of names, unchecked (Decode
// checks what the API receives).
func (g *GroupBy) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*g = GroupBy(s)
		if s == "" {
			*g = GroupNone
		}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("group_by: want a string or a list of names: %w", err)
	}
	*g = GroupByOf(list...)
	return nil
}

// String is the names joined by ", ", or none.
func (g GroupBy) String() string {
	if g.None() {
		return string(GroupNone)
	}
	return strings.ReplaceAll(string(g), ",", ", ")
}

func labelValue(labels []stream.Label, name string) string {
	for _, l := range labels {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

func dimValue(host, tag string, labels []stream.Label, name string) string {
	switch name {
	case stream.LabelHost:
		return host
	case stream.LabelTag:
		return tag
	}
	return labelValue(labels, name)
}

// Severity is PagerDuty's severity of the rule's alerts.
type Severity string

// Severities, as the Events API v2 names them.
const (
	Critical Severity = "critical"
	Error    Severity = "error"
	Warning  Severity = "warning"
	Info     Severity = "info"
)

// Filters restrict the counted series by glob patterns ('*' any run of
// bytes, '?' one byte) on their host, tag and labels; empty matches
// everything. In JSON one object: {"host": "web-*", "namespace": "shop-*"}.
type Filters struct {
	Host string `json:"host,omitempty"`
	Tag  string `json:"tag,omitempty"`
	// Labels are label name -> glob; a series lacking a label has the
	// empty value for it.
	Labels map[string]string `json:"-"`
}

// Match reports whether a series of host and tag (and no labels) passes
// the filters.
func (f Filters) Match(host, tag string) bool { return f.MatchSeries(host, tag, nil) }

// MatchSeries reports whether a series passes the filters.
func (f Filters) MatchSeries(host, tag string, labels []stream.Label) bool {
	if (f.Host != "" && !MatchGlob(f.Host, host)) || (f.Tag != "" && !MatchGlob(f.Tag, tag)) {
		return false
	}
	for name, glob := range f.Labels {
		if glob != "" && !MatchGlob(glob, labelValue(labels, name)) {
			return false
		}
	}
	return true
}

// Empty reports whether the filters select every series.
func (f Filters) Empty() bool {
	if f.Host != "" || f.Tag != "" {
		return false
	}
	for _, g := range f.Labels {
		if g != "" {
			return false
		}
	}
	return true
}

// Equal reports whether f and o select the same way.
func (f Filters) Equal(o Filters) bool {
	return f.Host == o.Host && f.Tag == o.Tag && maps.Equal(f.nonEmpty(), o.nonEmpty())
}

func (f Filters) nonEmpty() map[string]string {
	out := map[string]string{}
	for k, v := range f.Labels {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// All is every filter as name -> glob, host and tag included.
func (f Filters) All() map[string]string {
	out := f.nonEmpty()
	if f.Host != "" {
		out[stream.LabelHost] = f.Host
	}
	if f.Tag != "" {
		out[stream.LabelTag] = f.Tag
	}
	return out
}

// MarshalJSON writes one object of name -> glob.
func (f Filters) MarshalJSON() ([]byte, error) { return json.Marshal(f.All()) }

// UnmarshalJSON reads one object of name -> glob, unchecked (Decode checks
// what the API receives).
func (f *Filters) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("filters: want an object of name -> glob: %w", err)
	}
	*f = FiltersOf(m)
	return nil
}

// FiltersOf is the filters of name -> glob.
func FiltersOf(m map[string]string) Filters {
	var f Filters
	for k, v := range m {
		switch k {
		case stream.LabelHost:
			f.Host = v
		case stream.LabelTag:
			f.Tag = v
		default:
			if v == "" {
				continue
			}
			if f.Labels == nil {
				f.Labels = map[string]string{}
			}
			f.Labels[k] = v
		}
	}
	return f
}

// PagerDuty is where a rule pages.
type PagerDuty struct {
	RoutingKey Secret `json:"routing_key,omitempty"`
}

// Secret is a credential that prints, logs and marshals redacted; Reveal
// returns it for the one place that sends it.
type Secret string

// Reveal returns the secret in full.
func (s Secret) Reveal() string { return string(s) }

// Redacted shows the last four characters only, enough to tell keys apart.
func (s Secret) Redacted() string {
	if s == "" {
		return ""
	}
	if len(s) <= 8 {
		return strings.Repeat("*", len(s))
	}
	return strings.Repeat("*", len(s)-4) + string(s[len(s)-4:])
}

func (s Secret) String() string               { return s.Redacted() }
func (s Secret) GoString() string             { return fmt.Sprintf("%q", s.Redacted()) }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(s.Redacted()) }
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.Redacted()) }
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.Redacted()), nil }

// Duration is a time.Duration written in keyalert's duration grammar in
// JSON (pkg/duration: "90s", "5m", "36h", "7d", "2w").
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String is the short form: "5m", "1h", "168h", "1.5s".
func (d Duration) String() string { return duration.Format(time.Duration(d)) }

// MarshalJSON writes the short form.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"5m\": %w", err)
	}
	v, err := duration.Parse(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

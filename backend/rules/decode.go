package rules

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/keyalert/keyalert/backend/timeinterval"
	"github.com/keyalert/keyalert/backend/validate"
	"github.com/keyalert/keyalert/pkg/duration"
	"github.com/keyalert/keyalert/pkg/keyword"
	matcher "github.com/keyalert/keyalert/pkg/match"
	"github.com/keyalert/keyalert/pkg/stream"
)

// Limits of a rule's fields.
const (
	MaxNameLen    = 200
	MaxFilterLen  = 256
	MaxURLLen     = 2048
	MaxWindow     = 24 * time.Hour
	MaxBaseline   = 7 * 24 * time.Hour
	MaxRepeat     = 7 * 24 * time.Hour
	MaxResolve    = 24 * time.Hour
	MaxFor        = 24 * time.Hour
	RoutingKeyLen = 32
	// MaxSeasonalN is the most past windows a seasonal baseline takes the
	// median of, and MaxSeasonalSpan bounds N × window: each evaluation reads
	// that many minutes per keyword on top of the window.
	MaxSeasonalN    = 7
	MaxSeasonalSpan = 4 * time.Hour
	// MinRegexLiteral is the shortest literal a regex keyword must require
	// (unless accept_slow_regex): agents find it with their prefilter and run
	// the regex only on lines holding it. Shorter gates (one or two bytes,
	// such as the "50".."59" of `5\d\d`) fire on nearly every line.
	MinRegexLiteral = 3
	DefaultResolve  = 5 * time.Minute
	// MaxMuteIntervals bounds the time intervals a rule's
	// mute_time_intervals names.
	MaxMuteIntervals = 20
)

// Limits of the absence fields.
const (
	// MaxEvalDelay bounds eval_delay: late entries and clock skew beyond an
	// hour are a broken agent, which absence should report.
	MaxEvalDelay = time.Hour
	// MinForgetAfter and MaxForgetAfter bound forget_after, which must also
	// exceed the window (a group forgotten sooner could never be missed).
	MinForgetAfter     = time.Hour
	MaxForgetAfter     = 30 * 24 * time.Hour
	DefaultForgetAfter = 24 * time.Hour
)

// DecodeOptions carry what validation needs beyond the body.
type DecodeOptions struct {
	// DefaultRoutingKey says a default routing key is configured, so a rule
	// may leave its own empty.
	DefaultRoutingKey bool
	// ReceiverExists, if set, checks that each named receiver exists.
	ReceiverExists func(name string) bool
	// Existing is the stored rule a PUT replaces: a routing key sent back in
	// its redacted form keeps the stored key.
	Existing *Rule
	// Limits bound the rule's keywords; zero fields take the defaults
	// (Store.Limits returns the configured ones).
	Limits Limits
	// Retention is how long counts are kept (KEYALERT_RETENTION): a
	// seasonal baseline reaching further back would never have data. Zero:
	// not checked (replay reads a recording, not Redis).
	Retention time.Duration
}

// Decode parses and validates a rule from a JSON body. Every problem is
// reported in the returned errors, each naming its field; defaults fill the
// optional fields. ID and timestamps in the body are ignored (the store owns
// them).
func Decode(body []byte, opts DecodeOptions) (Rule, validate.Errors) {
	lim := opts.Limits.withDefaults()
	var (
		errs                               validate.Errors
		w                                  Rule
		name, match, severity              string
		groupBy                            json.RawMessage
		repeat, resolve, runbook, forD     string
		evalDelay, forgetAfter             string
		keywords, receivers, muteIntervals []string
		ignoreCase, acceptSlow             bool
		enabled                            = true
		cond, filters, pd                  json.RawMessage
		ignoredID, ignoredC, ignoredU      json.RawMessage
	)
	present := validate.Object(body, "", map[string]any{
		"name": &name, "keywords": &keywords, "ignore_case": &ignoreCase, "match": &match,
		"condition": &cond, "group_by": &groupBy, "filters": &filters, "severity": &severity,
		"pagerduty": &pd, "repeat_interval": &repeat, "resolve_after": &resolve, "for": &forD,
		"enabled": &enabled, "runbook_url": &runbook, "accept_slow_regex": &acceptSlow,
		"eval_delay": &evalDelay, "forget_after": &forgetAfter, "receivers": &receivers, "mute_time_intervals": &muteIntervals,
		"id": &ignoredID, "created_at": &ignoredC, "updated_at": &ignoredU,
	}, &errs)
	if present == nil && len(errs) > 0 {
		return w, errs
	}

	w.Name = name
	switch {
	case errs.Has("name"):
	case name == "":
		errs.Add("name", "required")
	case len(name) > MaxNameLen:
		errs.Add("name", "%d bytes, over the limit of %d", len(name), MaxNameLen)
	}

	w.IgnoreCase = ignoreCase
	w.Match = keyword.Substring
	if match != "" {
		m, err := keyword.ParseMode(match)
		if err != nil {
			errs.Add("match", "%q: want substring, word or regex", match)
		}
		w.Match = m
	}

	switch {
	case errs.Has("keywords"):
	case len(keywords) == 0:
		errs.Add("keywords", "at least one keyword is required")
	case len(keywords) > lim.MaxRuleKeywords:
		errs.Add("keywords", "%d keywords, over the limit of %d (KEYALERT_MAX_RULE_KEYWORDS)", len(keywords), lim.MaxRuleKeywords)
	default:
		seen := map[string]int{}
		for i, k := range keywords {
			f := "keywords[" + strconv.Itoa(i) + "]"
			spec := keyword.Spec{Text: k, Match: w.Match, IgnoreCase: ignoreCase}
			if len(k) > lim.MaxKeywordBytes {
				errs.Add(f, "%d bytes, over the limit of %d (KEYALERT_MAX_KEYWORD_BYTES)", len(k), lim.MaxKeywordBytes)
				continue
			}
			if err := spec.Validate(); err != nil {
				if !errs.Has("match") {
					errs.Add(f, "%s", err.Error())
				}
				continue
			}
			if j, dup := seen[spec.ID()]; dup {
				errs.Add(f, "same keyword as keywords[%d]", j)
				continue
			}
			if spec.Match == keyword.Regex && !acceptSlow {
				if n := matcher.RequiredLiteralLen(spec); n < MinRegexLiteral {
					errs.Add(f, "regex requires no literal of at least %d bytes (its best has %d), so every agent would run it on every line; "+
						"include a fixed word (e.g. `ERROR.*timeout`) or set \"accept_slow_regex\": true", MinRegexLiteral, n)
					continue
				}
			}
			seen[spec.ID()] = i
		}
		w.Keywords = keywords
	}

	w.Condition = decodeCondition(cond, present["condition"], opts.Retention, &errs)

	w.GroupBy = decodeGroupBy(groupBy, present["group_by"], &errs)

	if present["filters"] {
		w.Filters = decodeFilters(filters, &errs)
	}

	w.Severity = Error
	if severity != "" {
		switch s := Severity(severity); s {
		case Critical, Error, Warning, Info:
			w.Severity = s
		default:
			errs.Add("severity", "%q: want critical, error, warning or info", severity)
		}
	}

	var key string
	if present["pagerduty"] {
		validate.Object(pd, "pagerduty", map[string]any{"routing_key": &key}, &errs)
	}
	const keyField = "pagerduty.routing_key"
	switch {
	case errs.Has(keyField):
	case key == "" && !opts.DefaultRoutingKey && len(receivers) == 0:
		errs.Add(keyField, "required (no default routing key is configured)")
	case key == "":
	case opts.Existing != nil && opts.Existing.PagerDuty.RoutingKey != "" && key == opts.Existing.PagerDuty.RoutingKey.Redacted():
		w.PagerDuty.RoutingKey = opts.Existing.PagerDuty.RoutingKey
	case !ValidRoutingKey(key):
		// The value is never echoed: it may be a real key with a typo.
		errs.Add(keyField, "want %d letters or digits (a PagerDuty integration key)", RoutingKeyLen)
	default:
		w.PagerDuty.RoutingKey = Secret(key)
	}

	if !errs.Has("receivers") {
		decodeReceivers(&w, receivers, opts, &errs)
	}
	if len(w.Receivers) > 0 && w.PagerDuty.RoutingKey != "" && !errs.Has(keyField) {
		// Receivers replace the rule's own PagerDuty routing: one place
		// says where its alerts go.
		errs.Add(keyField, "not used by a rule with receivers: name a pagerduty receiver instead")
	}

	w.RepeatInterval = Duration(parseDuration(&errs, "repeat_interval", repeat, 0, 0, MaxRepeat, false))
	if w.RepeatInterval != 0 && w.RepeatInterval.D() < time.Minute && !errs.Has("repeat_interval") {
		errs.Add("repeat_interval", "%s: want 0 (never) or at least 1m", repeat)
	}
	w.ResolveAfter = Duration(parseDuration(&errs, "resolve_after", resolve, DefaultResolve, 0, MaxResolve, false))

	// Whole minutes: the condition is judged once per event minute, so "90s"
	// could only mean 1m or 2m.
	w.For = Duration(parseDuration(&errs, "for", forD, 0, 0, MaxFor, true))

	// Whole minutes, as for: a delay moves the judged window by minutes.
	if evalDelay != "" {
		d := Duration(parseDuration(&errs, "eval_delay", evalDelay, 0, 0, MaxEvalDelay, true))
		w.EvalDelay = &d
	}
	if forgetAfter != "" {
		w.ForgetAfter = Duration(parseDuration(&errs, "forget_after", forgetAfter, DefaultForgetAfter, MinForgetAfter, MaxForgetAfter, true))
		if !errs.Has("forget_after") && !errs.Has("condition.window") && w.ForgetAfter <= w.Condition.Window {
			errs.Add("forget_after", "%q: want more than the window (%s)", forgetAfter, w.Condition.Window)
		}
	}

	w.Enabled = enabled
	w.AcceptSlowRegex = acceptSlow
	if len(muteIntervals) > MaxMuteIntervals {
		errs.Add("mute_time_intervals", "%d names, over the limit of %d", len(muteIntervals), MaxMuteIntervals)
	}
	for i, n := range muteIntervals {
		if !timeinterval.ValidName(n) {
			errs.Add(fmt.Sprintf("mute_time_intervals[%d]", i), "%q is not a time interval name", n)
		}
	}
	w.MuteTimeIntervals = muteIntervals

	if runbook != "" {
		u, err := url.Parse(runbook)
		switch {
		case len(runbook) > MaxURLLen:
			errs.Add("runbook_url", "%d bytes, over the limit of %d", len(runbook), MaxURLLen)
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			errs.Add("runbook_url", "want an absolute http or https URL")
		}
		w.RunbookURL = runbook
	}
	return w, errs
}

func decodeCondition(raw json.RawMessage, present bool, retention time.Duration, errs *validate.Errors) Condition {
	var c Condition
	if !present {
		if !errs.Has("condition") {
			errs.Add("condition", "required")
		}
		return c
	}
	var typ, window, baseline string
	var count, minCount int64
	var factor float64
	var seasonal json.RawMessage
	got := validate.Object(raw, "condition", map[string]any{
		"type": &typ, "count": &count, "window": &window, "factor": &factor,
		"min_count": &minCount, "baseline": &baseline, "seasonal": &seasonal,
	}, errs)
	if got == nil {
		return c
	}
	c.Type = CondType(typ)
	switch c.Type {
	case Threshold, Absence, Spike:
	case "":
		errs.Add("condition.type", "required: threshold, absence or spike")
	default:
		errs.Add("condition.type", "%q: want threshold, absence or spike", typ)
	}
	c.Window = Duration(parseDuration(errs, "condition.window", window, 0, time.Minute, MaxWindow, true))
	if window == "" && !errs.Has("condition.window") {
		errs.Add("condition.window", "required, e.g. \"5m\"")
	}
	switch c.Type {
	case Threshold, Absence:
		if got["factor"] || got["min_count"] || got["baseline"] || got["seasonal"] {
			errs.Add("condition", "factor, min_count, baseline and seasonal apply to spike only")
		}
		c.Count = count
		if !got["count"] && c.Type == Absence {
			c.Count = 1
		}
		if !errs.Has("condition.count") {
			if !got["count"] && c.Type == Threshold {
				errs.Add("condition.count", "required for threshold")
			} else if c.Count < 1 {
				errs.Add("condition.count", "%d: want at least 1", c.Count)
			}
		}
	case Spike:
		if got["count"] {
			errs.Add("condition.count", "does not apply to spike (use min_count)")
		}
		c.Factor = factor
		if !errs.Has("condition.factor") {
			if !got["factor"] {
				errs.Add("condition.factor", "required for spike, e.g. 3")
			} else if !(factor > 1) || math.IsInf(factor, 0) {
				errs.Add("condition.factor", "%g: want a number above 1", factor)
			}
		}
		c.MinCount = minCount
		if !got["min_count"] {
			c.MinCount = 1
		} else if minCount < 1 && !errs.Has("condition.min_count") {
			errs.Add("condition.min_count", "%d: want at least 1", minCount)
		}
		if got["seasonal"] {
			if got["baseline"] {
				errs.Add("condition.baseline", "does not apply with seasonal (the seasonal windows are the baseline)")
			}
			c.Seasonal = decodeSeasonal(seasonal, c.Window.D(), retention, errs)
			break
		}
		c.Baseline = Duration(parseDuration(errs, "condition.baseline", baseline, c.Window.D(), time.Minute, MaxBaseline, true))
	}
	return c
}

// decodeSeasonal reads a spike's {"period":"1d"|"1w","n":N} (n default 1).
func decodeSeasonal(raw json.RawMessage, window, retention time.Duration, errs *validate.Errors) Seasonal {
	var period string
	var n int
	got := validate.Object(raw, "condition.seasonal", map[string]any{"period": &period, "n": &n}, errs)
	if got == nil {
		return Seasonal{}
	}
	s := Seasonal{N: 1}
	if got["n"] {
		s.N = n
	}
	if !errs.Has("condition.seasonal.period") {
		d, err := duration.Parse(period)
		switch {
		case period == "":
			errs.Add("condition.seasonal.period", "required: \"1d\" or \"1w\"")
		case err != nil || (d != 24*time.Hour && d != 7*24*time.Hour):
			// Rhythms of logs are daily or weekly; other periods would
			// compare with an arbitrary hour.
			errs.Add("condition.seasonal.period", "%q: want \"1d\" or \"1w\"", period)
		default:
			s.Period = Duration(d)
		}
	}
	if !errs.Has("condition.seasonal.n") {
		switch {
		case s.N < 1 || s.N > MaxSeasonalN:
			errs.Add("condition.seasonal.n", "%d: want 1 to %d", s.N, MaxSeasonalN)
		case window > 0 && time.Duration(s.N)*window > MaxSeasonalSpan:
			errs.Add("condition.seasonal.n", "%d windows of %s read %s per evaluation, over the limit of %s",
				s.N, Duration(window), Duration(time.Duration(s.N)*window), Duration(MaxSeasonalSpan))
		case retention > 0 && s.Period > 0 && time.Duration(s.N)*s.Period.D()+window > retention:
			errs.Add("condition.seasonal.n", "%d × %s back reaches past the retention of %s (KEYALERT_RETENTION): those counts are gone",
				s.N, s.Period, Duration(retention))
		}
	}
	return s
}

// parseDuration parses field's value, using def when empty, and checks its bounds;
// wholeMinutes requires a multiple of a minute (counts are per minute).
func parseDuration(errs *validate.Errors, field, v string, def, lo, hi time.Duration, wholeMinutes bool) time.Duration {
	if errs.Has(field) {
		return def
	}
	if v == "" {
		return def
	}
	d, err := duration.Parse(v)
	switch {
	case err != nil:
		errs.Add(field, "%v", err)
	case d < lo || d > hi:
		errs.Add(field, "%q: want between %s and %s", v, Duration(lo), Duration(hi))
	case wholeMinutes && d%time.Minute != 0:
		errs.Add(field, "%q: want whole minutes (counts are per minute)", v)
	default:
		return d
	}
	return def
}

// ValidRoutingKey reports whether k looks like a PagerDuty integration key.
func ValidRoutingKey(k string) bool {
	if len(k) != RoutingKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// MaxRuleReceivers bounds the receivers one rule names.
const MaxRuleReceivers = 16

// ReceiverName is the form of a receiver's name.
var ReceiverName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func decodeReceivers(w *Rule, names []string, opts DecodeOptions, errs *validate.Errors) {
	if len(names) > MaxRuleReceivers {
		errs.Add("receivers", "%d receivers, over the limit of %d", len(names), MaxRuleReceivers)
		return
	}
	seen := map[string]bool{}
	for i, n := range names {
		field := fmt.Sprintf("receivers[%d]", i)
		switch {
		case !ReceiverName.MatchString(n):
			errs.Add(field, "%q: want 1 to 63 letters, digits, '.', '_' or '-'", n)
		case seen[n]:
			errs.Add(field, "%q named twice", n)
		case opts.ReceiverExists != nil && !opts.ReceiverExists(n):
			errs.Add(field, "%q: no such receiver", n)
		default:
			seen[n] = true
			w.Receivers = append(w.Receivers, n)
		}
	}
}

// dimensionName reports why name cannot be a dimension: host, tag or a
// label name.
func dimensionName(name string) error {
	if name == stream.LabelHost || name == stream.LabelTag {
		return nil
	}
	if stream.ValidLabelName(name) != nil {
		return fmt.Errorf("%q is not a label name (letters, digits and _, not starting with a digit, at most %d bytes)", name, stream.MaxLabelNameBytes)
	}
	return nil
}

// decodeGroupBy reads group_by: "none", host, tag or a label name, or a
// list of such names (host and tag included), unique.
func decodeGroupBy(raw json.RawMessage, present bool, errs *validate.Errors) GroupBy {
	if !present {
		return GroupNone
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" || one == string(GroupNone) {
			return GroupNone
		}
		if err := dimensionName(one); err != nil {
			errs.Add("group_by", "%v; want none, host, tag, a label name or a list of them", err)
			return GroupNone
		}
		return GroupBy(one)
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		errs.Add("group_by", "want a string (none, host, tag or a label name) or a list of names")
		return GroupNone
	}
	if len(list) > MaxGroupBy {
		errs.Add("group_by", "%d names, over the limit of %d", len(list), MaxGroupBy)
		return GroupNone
	}
	bad := false
	for i, d := range list {
		f := "group_by[" + strconv.Itoa(i) + "]"
		if d == string(GroupNone) {
			errs.Add(f, "none groups nothing: give it as the string \"none\", not in a list")
			bad = true
		} else if err := dimensionName(d); err != nil {
			errs.Add(f, "%v", err)
			bad = true
		} else if j := slices.Index(list, d); j < i {
			errs.Add(f, "%q repeats group_by[%d]", d, j)
			bad = true
		}
	}
	if bad {
		return GroupNone
	}
	return GroupByOf(list...)
}

// decodeFilters reads filters: an object of host, tag or label name -> glob.
func decodeFilters(raw json.RawMessage, errs *validate.Errors) Filters {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		errs.Add("filters", "want an object of host, tag or label name -> glob")
		return Filters{}
	}
	if len(m) > MaxGroupBy {
		errs.Add("filters", "%d filters, over the limit of %d", len(m), MaxGroupBy)
		return Filters{}
	}
	globs := make(map[string]string, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		f := "filters." + name
		if err := dimensionName(name); err != nil {
			errs.Add(f, "%v", err)
			continue
		}
		var g string
		if json.Unmarshal(m[name], &g) != nil {
			errs.Add(f, "want a string (a glob: * any run, ? one byte)")
			continue
		}
		if len(g) > MaxFilterLen {
			errs.Add(f, "%d bytes, over the limit of %d", len(g), MaxFilterLen)
			continue
		}
		globs[name] = g
	}
	return FiltersOf(globs)
}

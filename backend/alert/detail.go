package alert

import (
	"context"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/window"
)

// Detail is an alert with its recent counts and sample lines, for the API.
type Detail struct {
	*Alert
	// CountsPerMinute covers the last Span, keyed by RFC 3339 minute.
	CountsPerMinute map[string]int64 `json:"counts_per_minute"`
	SampleLines     []window.Sample  `json:"sample_lines"`
}

// DetailSpan is how far back an alert's detail shows counts, at least.
const DetailSpan = time.Hour

// BuildDetail reads the alert's counts per minute and sample lines for its
// group. rule is the alert's rule, or nil if it was deleted (then the rule's
// filters are not applied).
func BuildDetail(ctx context.Context, counts Counts, rule *rules.Rule, a *Alert, now time.Time, samples int) (Detail, error) {
	d := Detail{Alert: a, CountsPerMinute: map[string]int64{}, SampleLines: []window.Sample{}}
	span := DetailSpan
	var filters rules.Filters
	if rule != nil {
		span = max(span, rule.Condition.Lookback())
		filters = rule.Filters
	}
	minutes := int64(span / time.Minute)
	nowMin := now.Unix() - now.Unix()%60
	from := nowMin - (minutes-1)*60
	for m := from; m <= nowMin; m += 60 {
		d.CountsPerMinute[minuteKey(m)] = 0
	}
	cells, err := counts.CellsMany(ctx, a.KeywordIDs, from, nowMin+60)
	if err != nil {
		return d, err
	}
	for _, kw := range a.KeywordIDs {
		for _, c := range cells[kw] {
			if filters.MatchSeries(c.Host, c.Tag, c.Labels) && inGroup(a.GroupBy, a.Group, c) {
				d.CountsPerMinute[minuteKey(c.Minute)] += c.Count
			}
		}
	}
	series := sampleSeries(a.KeywordIDs, cells, filters, a.GroupBy, a.Group, from, nowMin, samples)
	list, err := counts.Samples(ctx, series, samples)
	if err != nil {
		return d, err
	}
	d.SampleLines = append(d.SampleLines, list...)
	return d, nil
}

func minuteKey(m int64) string { return time.Unix(m, 0).UTC().Format(time.RFC3339) }

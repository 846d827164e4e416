package alert

import (
	"maps"
	"slices"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/window"
)

// silenceTarget is what silences are matched against for group o of cr: the
// alert's labels (rule, keywords, the group's host or tag) and the distinct
// hosts and tags of the series that contributed to its count in the window
// ending at nowMin (for an absence, in its lookback). With the contributing series, a host silence covers a
// fleet-wide alert whose matches all come from that host, and a tag silence on
// a host alert keeps applying while every tag the host logs under matches it.
func silenceTarget(cr *crule, o obs, cur *Alert, cells map[string][]window.Cell, nowMin int64) silence.Target {
	r := &cr.rule
	t := silence.Target{RuleID: r.ID, Keywords: r.Keywords}
	if cur != nil && cur.Active() {
		t.SilencedBy = cur.SilencedBy
	}
	for name, v := range o.groupLabels(r.GroupBy) {
		switch name {
		case "host":
			t.Host = v
		case "tag":
			t.Tag = v
		default:
			if t.Labels == nil {
				t.Labels = map[string]string{}
			}
			t.Labels[name] = v
		}
	}
	from := nowMin - (cr.winMin-1)*60
	if r.Condition.Type == rules.Absence {
		// An absence is about the series that went quiet: those of the
		// window before the settled one it was judged on (o.at), which the
		// evaluation read for it. Later, while it stays silenced, the alert
		// keeps its silence (SilencedBy) even once the series are long gone.
		nowMin = o.at
		from = nowMin - (cr.lookMin-1)*60
	}
	hosts, tags := map[string]struct{}{}, map[string]struct{}{}
	var values map[string]map[string]struct{}
	for _, kw := range cr.kwIDs {
		for _, c := range cells[kw] {
			if c.Count <= 0 || c.Minute < from || c.Minute > nowMin || !r.Filters.MatchSeries(c.Host, c.Tag, c.Labels) || !inGroup(r.GroupBy, o.group, c) {
				continue
			}
			hosts[c.Host] = struct{}{}
			tags[c.Tag] = struct{}{}
			for _, l := range c.Labels {
				if values == nil {
					values = map[string]map[string]struct{}{}
				}
				if values[l.Name] == nil {
					values[l.Name] = map[string]struct{}{}
				}
				values[l.Name][l.Value] = struct{}{}
			}
		}
	}
	t.Hosts = slices.Sorted(maps.Keys(hosts))
	t.Tags = slices.Sorted(maps.Keys(tags))
	if values != nil {
		// A series lacking a label has it empty: "" joins the values of a
		// label some contributing series lack.
		t.LabelValues = make(map[string][]string, len(values))
		for name, vs := range values {
			t.LabelValues[name] = slices.Sorted(maps.Keys(vs))
		}
		for _, kw := range cr.kwIDs {
			for _, c := range cells[kw] {
				if c.Count <= 0 || c.Minute < from || c.Minute > nowMin || !r.Filters.MatchSeries(c.Host, c.Tag, c.Labels) || !inGroup(r.GroupBy, o.group, c) {
					continue
				}
				for name, vs := range t.LabelValues {
					if window.LabelValue(c.Labels, name) == "" && !slices.Contains(vs, "") {
						t.LabelValues[name] = append([]string{""}, vs...)
					}
				}
			}
		}
	}
	return t
}

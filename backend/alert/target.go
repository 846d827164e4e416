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
	switch r.GroupBy {
	case rules.GroupHost:
		t.Host = o.group
	case rules.GroupTag:
		t.Tag = o.group
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
	for _, kw := range cr.kwIDs {
		for _, c := range cells[kw] {
			if c.Count <= 0 || c.Minute < from || c.Minute > nowMin || !r.Filters.Match(c.Host, c.Tag) || !inGroup(r.GroupBy, o.group, c) {
				continue
			}
			hosts[c.Host] = struct{}{}
			tags[c.Tag] = struct{}{}
		}
	}
	t.Hosts = slices.Sorted(maps.Keys(hosts))
	t.Tags = slices.Sorted(maps.Keys(tags))
	return t
}

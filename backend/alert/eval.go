package alert

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/window"
)

// Counts is where the engine reads per-minute keyword counts and sample
// lines; *window.Store implements it.
type Counts interface {
	// CellsMany returns the cells of each keyword id for minutes in
	// [from, to) (Unix seconds), in one round trip.
	CellsMany(ctx context.Context, kwIDs []string, from, to int64) (map[string][]window.Cell, error)
	// Samples returns up to n recent sample lines of the given series,
	// newest first.
	Samples(ctx context.Context, series []window.Series, n int) ([]window.Sample, error)
}

var _ Counts = (*window.Store)(nil)

// crule is an enabled rule prepared for evaluation.
type crule struct {
	rule    rules.Rule
	kwIDs   []string
	shard   int
	winMin  int64 // window, minutes
	baseMin int64 // spike baseline, minutes
	lookMin int64 // minutes read back from the current one, inclusive
}

// ruleSet is every enabled rule, indexed by keyword id so that a batch's
// keywords find their rules and one tick reads each keyword once.
type ruleSet struct {
	version int64
	rules   []*crule
	byKW    map[string][]int
	byID    map[string]*crule
	kwIDs   []string
	kwLook  map[string]int64 // minutes each keyword is read back: the most its rules need
	maxLook int64
	kwDoc   []byte // the published keyword set of these rules
	kwErr   error
}

func compile(snap rules.Snapshot, shards int) *ruleSet {
	rs := &ruleSet{version: snap.Version, byKW: map[string][]int{}, byID: map[string]*crule{}, kwLook: map[string]int64{}}
	rs.kwDoc, rs.kwErr = rules.KeywordSet(snap.Rules)
	for _, r := range snap.Rules {
		if !r.Enabled {
			continue
		}
		cr := &crule{rule: r, kwIDs: r.KeywordIDs(), shard: lease.ShardOf(r.ID, shards)}
		cr.winMin = int64(r.Condition.Window.D() / time.Minute)
		cr.baseMin = int64(r.Condition.Baseline.D() / time.Minute)
		cr.lookMin = int64(r.Condition.Lookback() / time.Minute)
		if cr.winMin < 1 || cr.lookMin < cr.winMin {
			continue // cannot happen for a validated rule
		}
		i := len(rs.rules)
		rs.rules = append(rs.rules, cr)
		rs.byID[r.ID] = cr
		for _, kw := range cr.kwIDs {
			if _, seen := rs.byKW[kw]; !seen {
				rs.kwIDs = append(rs.kwIDs, kw)
			}
			rs.byKW[kw] = append(rs.byKW[kw], i)
			rs.kwLook[kw] = max(rs.kwLook[kw], cr.lookMin)
		}
		rs.maxLook = max(rs.maxLook, cr.lookMin)
	}
	return rs
}

// obs is what one evaluation saw for one group of one rule.
type obs struct {
	group string
	count int64 // in the window
	base  int64 // in the spike baseline, or the window before for absence
	tag   string
	tags  int // distinct tags seen (1: tag is the component)
	cond  bool
	// expected is a spike's baseline count scaled to the window (spike.go).
	expected float64
}

// evalRule evaluates cr on cells at minute nowMin (a minute start, Unix
// seconds). known are groups with tracked alerts: an absence is also noticed
// for them, and every group the rule has an alert for gets an observation.
func evalRule(cr *crule, cells map[string][]window.Cell, nowMin int64, known []string) []obs {
	r := &cr.rule
	winStart := nowMin - (cr.winMin-1)*60
	lookStart := nowMin - (cr.lookMin-1)*60
	var groups map[string]*obs
	var single *obs
	if r.GroupBy == rules.GroupNone {
		single = &obs{}
	} else {
		groups = make(map[string]*obs, len(known)+4)
	}
	filtered := r.Filters.Host != "" || r.Filters.Tag != ""
	for _, kw := range cr.kwIDs {
		for i := range cells[kw] {
			c := &cells[kw][i]
			if c.Minute < lookStart || c.Minute > nowMin {
				continue
			}
			if filtered && !r.Filters.Match(c.Host, c.Tag) {
				continue
			}
			o := single
			if o == nil {
				g := c.Host
				if r.GroupBy == rules.GroupTag {
					g = c.Tag
				}
				if o = groups[g]; o == nil {
					o = &obs{group: g}
					groups[g] = o
				}
			}
			if c.Minute >= winStart {
				o.count += c.Count
			} else {
				o.base += c.Count
			}
			if o.tags == 0 || (o.tags == 1 && o.tag != c.Tag) {
				if o.tags == 0 {
					o.tag = c.Tag
				}
				o.tags++
			}
		}
	}
	var out []obs
	if single != nil {
		out = []obs{*single}
	} else {
		for _, g := range known {
			if groups[g] == nil {
				groups[g] = &obs{group: g}
			}
		}
		out = make([]obs, 0, len(groups))
		for _, o := range groups {
			out = append(out, *o)
		}
	}
	c := r.Condition
	for i := range out {
		o := &out[i]
		switch c.Type {
		case rules.Threshold:
			o.cond = o.count >= c.Count
		case rules.Absence:
			o.cond = o.count < c.Count
		}
	}
	if c.Type == rules.Spike {
		judgeSpikes(cr, cells, nowMin, out)
	}
	return out
}

// minuteCounts sums the group's counts per minute over the rule's lookback,
// keyed by RFC 3339 minute so that JSON lists them in time order.
func minuteCounts(cr *crule, cells map[string][]window.Cell, nowMin int64, group string) map[string]int64 {
	r := &cr.rule
	lookStart := nowMin - (cr.lookMin-1)*60
	out := map[string]int64{}
	for m := lookStart; m <= nowMin; m += 60 {
		out[minuteKey(m)] = 0
	}
	for _, kw := range cr.kwIDs {
		for _, c := range cells[kw] {
			if c.Minute < lookStart || c.Minute > nowMin || !r.Filters.Match(c.Host, c.Tag) || !inGroup(r.GroupBy, group, c) {
				continue
			}
			out[minuteKey(c.Minute)] += c.Count
		}
	}
	return out
}

func inGroup(by rules.GroupBy, group string, c window.Cell) bool {
	switch by {
	case rules.GroupHost:
		return c.Host == group
	case rules.GroupTag:
		return c.Tag == group
	}
	return true
}

// sampleSeries picks the series whose sample lines a page of group shows:
// the group's series (past the filters) with counts in minutes [from, to],
// the latest count first, then the largest, at most n. The newest n lines of
// the group lie in at most n series, so reading n lists of n lines is bounded
// by the lines wanted, not by the size of the fleet; the cells are the ones
// evaluation already read.
func sampleSeries(kwIDs []string, cells map[string][]window.Cell, filters rules.Filters, by rules.GroupBy, group string, from, to int64, n int) []window.Series {
	if n <= 0 {
		return nil
	}
	type seen struct {
		last, total int64
	}
	found := map[window.Series]*seen{}
	for _, kw := range kwIDs {
		for _, c := range cells[kw] {
			if c.Count <= 0 || c.Minute < from || c.Minute > to || !filters.Match(c.Host, c.Tag) || !inGroup(by, group, c) {
				continue
			}
			k := window.Series{KeywordID: kw, Host: c.Host, Tag: c.Tag}
			if f := found[k]; f != nil {
				f.last, f.total = max(f.last, c.Minute), f.total+c.Count
			} else {
				found[k] = &seen{c.Minute, c.Count}
			}
		}
	}
	out := make([]window.Series, 0, len(found))
	for k := range found {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b window.Series) int {
		fa, fb := found[a], found[b]
		return cmp.Or(cmp.Compare(fb.last, fa.last), cmp.Compare(fb.total, fa.total),
			cmp.Compare(a.KeywordID, b.KeywordID), cmp.Compare(a.Host, b.Host), cmp.Compare(a.Tag, b.Tag))
	})
	return out[:min(n, len(out))]
}

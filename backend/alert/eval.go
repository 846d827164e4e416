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
	winMin  int64         // window, minutes
	baseMin int64         // spike baseline, minutes
	lookMin int64         // minutes the condition reads back from the minute judged, inclusive
	readMin int64         // minutes read back from the current one: lookMin from the settled minute
	delay   time.Duration // eval_delay, or the engine's default
	forget  time.Duration // forget_after of an absence rule's groups
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

// compile prepares snap's enabled rules; delay is the eval_delay of rules
// without their own.
func compile(snap rules.Snapshot, shards int, delay time.Duration) *ruleSet {
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
		cr.delay = delay
		if r.EvalDelay != nil {
			cr.delay = r.EvalDelay.D()
		}
		cr.forget = r.ForgetAfter.D()
		if cr.forget <= 0 {
			cr.forget = rules.DefaultForgetAfter
		}
		// The judged windows end as far back as the settled minute.
		cr.readMin = cr.lookMin + cr.settledBack()
		i := len(rs.rules)
		rs.rules = append(rs.rules, cr)
		rs.byID[r.ID] = cr
		for _, kw := range cr.kwIDs {
			if _, seen := rs.byKW[kw]; !seen {
				rs.kwIDs = append(rs.kwIDs, kw)
			}
			rs.byKW[kw] = append(rs.byKW[kw], i)
			rs.kwLook[kw] = max(rs.kwLook[kw], cr.readMin)
		}
		rs.maxLook = max(rs.maxLook, cr.readMin)
	}
	return rs
}

// settledBack is how many minutes the settled minute lies before the
// current one: the current minute is partial, and eval_delay more are
// awaited for late entries and skewed clocks.
func (cr *crule) settledBack() int64 {
	return 1 + int64((cr.delay+time.Minute-1)/time.Minute)
}

// settledMinute is the last minute whose counts are taken as complete at
// now: the minute that ended eval_delay or more before now.
func (cr *crule) settledMinute(now time.Time) int64 {
	return floorMinute(now.Add(-cr.delay).Unix()) - 60
}

// judge evaluates cr at now. Absence is judged on the window ending at the
// settled minute only: a minute that has just begun, or whose late entries
// may still arrive, must not make a steady source look absent. A threshold
// or spike fires on the window ending with the current, partial minute —
// firing early is fine — but a tracked alert's condition holds while any
// window ending between the settled minute and now holds, so it resolves only once the window that
// held is settled and false. The observation shown is the newest holding
// window's, else the current one's. Each observation also says which of
// those windows held (holds), for "for" (pendingStep).
func judge(cr *crule, cells map[string][]window.Cell, now time.Time, known []string) []obs {
	nowMin := floorMinute(now.Unix())
	settled := min(cr.settledMinute(now), nowMin)
	if cr.rule.Condition.Type == rules.Absence {
		out := evalRule(cr, cells, settled, known)
		for i := range out {
			out[i].early = out[i].cond
			out[i].at, out[i].settled = settled, settled
			if out[i].cond {
				out[i].holds = 1
			}
		}
		return out
	}
	out := evalRule(cr, cells, nowMin, known)
	for i := range out {
		out[i].early = out[i].cond
		out[i].at, out[i].settled = nowMin, settled
		if out[i].cond {
			out[i].holds = 1
		}
	}
	if settled >= nowMin || len(known) == 0 {
		// Without tracked alerts there is nothing to hold: a new alert
		// starts on the current window (which holds all but the oldest of
		// the unsettled windows' minutes anyway).
		return out
	}
	idx := make(map[string]int, len(out))
	for i := range out {
		idx[out[i].group] = i
	}
	for m := nowMin - 60; m >= settled; m -= 60 {
		bit := uint64(1) << min(uint64((nowMin-m)/60), 63)
		for _, o := range evalRule(cr, cells, m, known) {
			i, ok := idx[o.group]
			o.at, o.settled = nowMin, settled
			switch {
			case !ok:
				o.early = false // not seen in the current window
				if o.cond {
					o.holds = bit
				}
				idx[o.group] = len(out)
				out = append(out, o)
			case o.cond && !out[i].cond:
				o.early, o.holds = out[i].early, out[i].holds|bit
				out[i] = o
			case o.cond:
				out[i].holds |= bit
			}
		}
	}
	return out
}

// pendingStep is what a pending spell that started in minute since (Unix
// seconds) makes of o, by complete minutes: "drop" once a window ending at
// or after since is settled false, "fire" once since + for is reached and
// every window from since (or the settled minute) to the current one
// holds, else "" (wait: a false window not yet settled may still grow,
// and a partial minute at a boundary must not drop the spell).
func pendingStep(o obs, since int64, forMin int64) string {
	held := func(m int64) bool {
		k := (o.at - m) / 60
		return k >= 0 && k < 64 && o.holds&(uint64(1)<<k) != 0
	}
	if o.settled >= since && !held(o.settled) {
		return "drop"
	}
	if o.at-since < forMin*60 {
		return ""
	}
	for m := max(since, o.settled); m <= o.at; m += 60 {
		if !held(m) {
			return ""
		}
	}
	return "fire"
}

// seen is a group's first and last minute with a count in the cells read.
type seen struct{ first, last int64 }

// seenGroups returns the groups of cr (past its filters) with counts in the
// cells up to nowMin: what the rule's group memory learns from them.
func seenGroups(cr *crule, cells map[string][]window.Cell, nowMin int64) map[string]seen {
	r := &cr.rule
	out := map[string]seen{}
	if r.GroupBy.None() {
		return out
	}
	lookStart := nowMin - (cr.readMin-1)*60
	for _, kw := range cr.kwIDs {
		for _, c := range cells[kw] {
			if c.Count <= 0 || c.Minute < lookStart || c.Minute > nowMin || !r.Filters.MatchSeries(c.Host, c.Tag, c.Labels) {
				continue
			}
			g := r.GroupBy.Key(c.Host, c.Tag, c.Labels)
			if s, ok := out[g]; ok {
				out[g] = seen{min(s.first, c.Minute), max(s.last, c.Minute)}
			} else {
				out[g] = seen{c.Minute, c.Minute}
			}
		}
	}
	return out
}

// absenceTooNew says an absence rule cannot judge yet: its settled window
// starts no later than the minute it was created or changed in, when its
// keywords were not yet (fully) counted.
func absenceTooNew(cr *crule, now time.Time) bool {
	winStart := cr.settledMinute(now) - (cr.winMin-1)*60
	return winStart <= floorMinute(cr.rule.UpdatedAt.Unix())
}

// remembered keeps the observations of an absence rule's remembered groups
// (a group seen only in older cells but forgotten, or beyond the bound, is
// not watched) and clears the absence of groups first seen after the judged
// window began: a host that just started (or whose clock runs behind, so
// that its first counts land in minutes after the settled one) is not
// missing from minutes it never reported in.
func remembered(cr *crule, out []obs, now time.Time, mem map[string]seen) []obs {
	winStart := cr.settledMinute(now) - (cr.winMin-1)*60
	kept := out[:0]
	for _, o := range out {
		s, ok := mem[o.group]
		if !ok {
			continue
		}
		if s.first > winStart {
			o.cond = false
		}
		kept = append(kept, o)
	}
	return kept
}

// obs is what one evaluation saw for one group of one rule.
type obs struct {
	group string
	// labels are the group's dimensions as read from a series of it; nil
	// for a group known only by its key (groupLabels parses that).
	labels map[string]string
	count  int64 // in the window
	base   int64 // in the spike baseline, or the window before for absence
	tag    string
	tags   int // distinct tags seen (1: tag is the component)
	host   string
	hosts  int // distinct hosts seen (1: host is the page's source)
	cond   bool
	// expected is a spike's baseline count scaled to the window (spike.go).
	expected float64
	// early is the condition on the current window alone (for absence, the
	// settled one): what starts a pending spell.
	early bool
	// at is the minute judged (the current one; for absence the settled
	// one), settled the settled minute, and bit k of holds says the window
	// ending k minutes before at held (k ≤ at − settled): what keeps a
	// pending spell, by complete minutes (pendingStep).
	at, settled int64
	holds       uint64
	// end is the minute the window of count ends with (the newest holding
	// one shown); a late trigger is for it (late.go).
	end int64
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
	if r.GroupBy.None() {
		single = &obs{}
	} else {
		groups = make(map[string]*obs, len(known)+4)
	}
	filtered := !r.Filters.Empty()
	for _, kw := range cr.kwIDs {
		for i := range cells[kw] {
			c := &cells[kw][i]
			if c.Minute < lookStart || c.Minute > nowMin {
				continue
			}
			if filtered && !r.Filters.MatchSeries(c.Host, c.Tag, c.Labels) {
				continue
			}
			o := single
			if o == nil {
				g := r.GroupBy.Key(c.Host, c.Tag, c.Labels)
				if o = groups[g]; o == nil {
					o = &obs{group: g, labels: cellLabels(r.GroupBy, c)}
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
			if o.hosts == 0 || (o.hosts == 1 && o.host != c.Host) {
				if o.hosts == 0 {
					o.host = c.Host
				}
				o.hosts++
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
		o.end = nowMin
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
			if c.Minute < lookStart || c.Minute > nowMin || !r.Filters.MatchSeries(c.Host, c.Tag, c.Labels) || !inGroup(r.GroupBy, group, c) {
				continue
			}
			out[minuteKey(c.Minute)] += c.Count
		}
	}
	return out
}

func inGroup(by rules.GroupBy, group string, c window.Cell) bool {
	return by.None() || by.Key(c.Host, c.Tag, c.Labels) == group
}

// cellLabels are the group dimensions of a cell, name -> value.
func cellLabels(by rules.GroupBy, c *window.Cell) map[string]string {
	dims := by.Dims()
	if len(dims) == 0 {
		return nil
	}
	out := make(map[string]string, len(dims))
	for _, d := range dims {
		out[d] = c.Dim(d)
	}
	return out
}

// groupLabels are the group's dimensions: as read from its series, else
// parsed from its key (a group known only from memory or an alert).
func (o *obs) groupLabels(by rules.GroupBy) map[string]string {
	if o.labels != nil {
		return o.labels
	}
	return by.Labels(o.group)
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
		series      window.Series
		last, total int64
	}
	// Keyed by keyword and field: a series' labels make it no map key.
	found := map[[2]string]*seen{}
	for _, kw := range kwIDs {
		for _, c := range cells[kw] {
			if c.Count <= 0 || c.Minute < from || c.Minute > to || !filters.MatchSeries(c.Host, c.Tag, c.Labels) || !inGroup(by, group, c) {
				continue
			}
			k := [2]string{kw, window.Field(c.Host, c.Tag, c.Labels...)}
			if f := found[k]; f != nil {
				f.last, f.total = max(f.last, c.Minute), f.total+c.Count
			} else {
				found[k] = &seen{window.Series{KeywordID: kw, Host: c.Host, Tag: c.Tag, Labels: c.Labels}, c.Minute, c.Count}
			}
		}
	}
	all := make([]*seen, 0, len(found))
	for _, f := range found {
		all = append(all, f)
	}
	slices.SortFunc(all, func(fa, fb *seen) int {
		a, b := fa.series, fb.series
		return cmp.Or(cmp.Compare(fb.last, fa.last), cmp.Compare(fb.total, fa.total),
			cmp.Compare(a.KeywordID, b.KeywordID), cmp.Compare(a.Host, b.Host), cmp.Compare(a.Tag, b.Tag),
			cmp.Compare(window.Field("", "", a.Labels...), window.Field("", "", b.Labels...)))
	})
	out := make([]window.Series, 0, min(n, len(all)))
	for _, f := range all[:min(n, len(all))] {
		out = append(out, f.series)
	}
	return out
}

package alert

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/window"
)

// MinBaselineCoverage is how much of a spike's trailing baseline the group's
// counts must span before a spike is judged: from the group's first count in
// the baseline to the window's start, at least this fraction of the baseline.
// The baseline's rate is then taken over that span.
// Counts are stored only for minutes that have some, so "the series was there"
// is measured by its first count: a keyword, host or rule that is new (or a
// replay that just started) has no baseline, and a spike against nothing
// would fire on min_count alone.
const MinBaselineCoverage = 0.5

// judgeSpikes sets cond and expected of each observation of the spike rule cr
// at minute nowMin. With a seasonal baseline, cells must also hold the
// seasonal windows (seasonalNeeds).
func judgeSpikes(cr *crule, cells map[string][]window.Cell, nowMin int64, out []obs) {
	r := &cr.rule
	c := r.Condition
	idx := make(map[string]int, len(out))
	for i := range out {
		idx[out[i].group] = i
	}
	winStart := nowMin - (cr.winMin-1)*60
	baseStart := winStart - cr.baseMin*60
	type groupSeen struct {
		first    int64   // earliest minute with a count in the trailing baseline
		base     int64   // count in the trailing baseline
		seasonal []int64 // count in each seasonal window, 1×period back first
	}
	per := make([]groupSeen, len(out))
	for i := range per {
		per[i].first = winStart
		if c.Seasonal.On() {
			per[i].seasonal = make([]int64, c.Seasonal.N)
		}
	}
	period := int64(c.Seasonal.Period.D().Seconds())
	for _, kw := range cr.kwIDs {
		for _, cell := range cells[kw] {
			if cell.Count <= 0 || !r.Filters.MatchSeries(cell.Host, cell.Tag, cell.Labels) {
				continue
			}
			g := r.GroupBy.Key(cell.Host, cell.Tag, cell.Labels)
			i, ok := idx[g]
			if !ok {
				continue
			}
			s := &per[i]
			if c.Seasonal.On() {
				// Window k spans k periods back to k periods and the window's
				// length back; windows are shorter than the period, so at most
				// one holds the cell.
				back := nowMin - cell.Minute
				if k := back / period; k >= 1 && k <= int64(c.Seasonal.N) && back-k*period <= (cr.winMin-1)*60 {
					s.seasonal[k-1] += cell.Count
				}
				continue
			}
			if cell.Minute >= baseStart && cell.Minute < winStart {
				s.base += cell.Count
				s.first = min(s.first, cell.Minute)
			}
		}
	}
	for i := range out {
		o, s := &out[i], &per[i]
		var covered bool
		if c.Seasonal.On() {
			o.expected, covered = seasonalMedian(s.seasonal)
		} else {
			// The rate over the span the group was seen in: counting the
			// minutes before it as zeros would make a half-covered baseline
			// half the usual.
			seen := winStart - s.first
			covered = seen > 0 && float64(seen) >= MinBaselineCoverage*float64(cr.baseMin*60)
			if covered {
				o.expected = float64(s.base) * float64(cr.winMin*60) / float64(seen)
			}
		}
		o.cond = covered && o.count >= c.MinCount && float64(o.count) >= c.Factor*o.expected
	}
}

// seasonalMedian is the median count of the seasonal windows; they cover the
// baseline when more than half of them hold a count (then the median is one
// of those counts, above zero). A window with no count at all is most often one before the series
// existed or past the retention, not a quiet one.
func seasonalMedian(counts []int64) (median float64, covered bool) {
	if len(counts) == 0 {
		return 0, false
	}
	held := 0
	for _, n := range counts {
		if n > 0 {
			held++
		}
	}
	s := slices.Sorted(slices.Values(counts))
	n := len(s)
	if n%2 == 1 {
		median = float64(s[n/2])
	} else {
		median = float64(s[n/2-1]+s[n/2]) / 2
	}
	return median, 2*held > n
}

// minuteRun is the minutes [from, to) (Unix seconds) of one read.
type minuteRun struct{ from, to int64 }

// seasonalNeeds lists, per keyword, the minutes the seasonal spike rules idxs
// of rs read at nowMin beyond the keyword's lookback (which the evaluation
// reads anyway), as disjoint runs in time order. Each rule adds at most
// MaxSeasonalSpan of minutes per keyword.
func seasonalNeeds(rs *ruleSet, idxs []int, nowMin int64) map[string][]minuteRun {
	minutes := map[string]map[int64]struct{}{}
	for _, i := range idxs {
		cr := rs.rules[i]
		c := cr.rule.Condition
		if c.Type != rules.Spike || !c.Seasonal.On() {
			continue
		}
		period := int64(c.Seasonal.Period.D().Seconds())
		for _, kw := range cr.kwIDs {
			read := nowMin - (rs.kwLook[kw]-1)*60 // the lookback starts here
			set := minutes[kw]
			if set == nil {
				set = map[int64]struct{}{}
				minutes[kw] = set
			}
			for k := int64(1); k <= int64(c.Seasonal.N); k++ {
				end := nowMin - k*period
				for m := end - (cr.winMin-1)*60; m <= end && m < read; m += 60 {
					set[m] = struct{}{}
				}
			}
		}
	}
	out := make(map[string][]minuteRun, len(minutes))
	for kw, set := range minutes {
		ms := make([]int64, 0, len(set))
		for m := range set {
			ms = append(ms, m)
		}
		slices.Sort(ms)
		var runs []minuteRun
		for _, m := range ms {
			if n := len(runs); n > 0 && runs[n-1].to == m {
				runs[n-1].to = m + 60
				continue
			}
			runs = append(runs, minuteRun{m, m + 60})
		}
		if len(runs) > 0 {
			out[kw] = runs
		}
	}
	return out
}

// seasonalCache keeps the seasonal windows read in one minute: they lie a
// day or more back and do not change, while the engine evaluates many times
// a minute (ticks and batches).
type seasonalCache struct {
	nowMin int64
	cells  map[string]map[minuteRun][]window.Cell
}

// addSeasonal reads the seasonal windows the rules idxs need at nowMin (from
// the cache when read earlier in the same minute) and appends them to cells.
// Reads of runs that are the same for several keywords go together.
func (e *Engine) addSeasonal(ctx context.Context, rs *ruleSet, idxs []int, nowMin int64, cells map[string][]window.Cell) error {
	needs := seasonalNeeds(rs, idxs, nowMin)
	if len(needs) == 0 {
		return nil
	}
	if e.seasonal.nowMin != nowMin || e.seasonal.cells == nil {
		e.seasonal = seasonalCache{nowMin: nowMin, cells: map[string]map[minuteRun][]window.Cell{}}
	}
	missing := map[minuteRun][]string{}
	for kw, runs := range needs {
		for _, run := range runs {
			if c, ok := e.seasonal.cells[kw][run]; ok {
				cells[kw] = append(cells[kw], c...)
			} else {
				missing[run] = append(missing[run], kw)
			}
		}
	}
	runs := make([]minuteRun, 0, len(missing))
	for run := range missing {
		runs = append(runs, run)
	}
	slices.SortFunc(runs, func(a, b minuteRun) int { return cmp.Compare(a.from, b.from) })
	for _, run := range runs {
		kws := missing[run]
		got, err := e.c.Counts.CellsMany(ctx, kws, run.from, run.to)
		if err != nil {
			return fmt.Errorf("read seasonal counts of %d keywords, %d minutes from %d: %w", len(kws), (run.to-run.from)/60, run.from, err)
		}
		for _, kw := range kws {
			if e.seasonal.cells[kw] == nil {
				e.seasonal.cells[kw] = map[minuteRun][]window.Cell{}
			}
			e.seasonal.cells[kw][run] = got[kw]
			cells[kw] = append(cells[kw], got[kw]...)
		}
	}
	return nil
}

// replaySeasonal appends to view the seasonal windows the replayed rules read
// at nowMin, taken from the recording's cells sorted by minute.
func replaySeasonal(rs *ruleSet, sorted, view map[string][]window.Cell, nowMin int64) {
	var seasonal []int
	for i, cr := range rs.rules {
		if cr.rule.Condition.Seasonal.On() {
			seasonal = append(seasonal, i)
		}
	}
	if len(seasonal) == 0 {
		return
	}
	for kw, runs := range seasonalNeeds(rs, seasonal, nowMin) {
		c := sorted[kw]
		for _, run := range runs {
			lo, _ := slices.BinarySearchFunc(c, run.from, func(x window.Cell, m int64) int { return cmp.Compare(x.Minute, m) })
			hi, _ := slices.BinarySearchFunc(c, run.to, func(x window.Cell, m int64) int { return cmp.Compare(x.Minute, m) })
			view[kw] = append(view[kw], c[lo:hi]...)
		}
	}
}

// spikeText is a spike condition in words.
func spikeText(c rules.Condition) string {
	if c.Seasonal.On() {
		base := "the same window " + periodText(c.Seasonal) + " earlier"
		if c.Seasonal.N > 1 {
			base = fmt.Sprintf("the median of the same window over the last %d × %s", c.Seasonal.N, periodText(c.Seasonal))
		}
		return fmt.Sprintf("count over %s >= %g x %s and >= %d", c.Window, c.Factor, base, c.MinCount)
	}
	return fmt.Sprintf("count over %s >= %g x the %s baseline and >= %d", c.Window, c.Factor, c.Baseline, c.MinCount)
}

// spikeSummary is the spike's part of a page's summary.
func spikeSummary(c rules.Condition, o obs) string {
	base := "baseline " + c.Baseline.String()
	if c.Seasonal.On() {
		base = "same window " + periodText(c.Seasonal) + " earlier"
		if c.Seasonal.N > 1 {
			base = fmt.Sprintf("median of the last %d × %s", c.Seasonal.N, periodText(c.Seasonal))
		}
	}
	if o.expected > 0 {
		return fmt.Sprintf(", %.1fx the usual %.0f (%s)", float64(o.count)/o.expected, o.expected, base)
	}
	return fmt.Sprintf(", none in the %s before", c.Baseline)
}

// periodText writes a seasonal period as the rule does, "1d" or "1w".
func periodText(s rules.Seasonal) string {
	switch s.Period.D() {
	case 24 * time.Hour:
		return "1d"
	case 7 * 24 * time.Hour:
		return "1w"
	}
	return s.Period.String()
}

package alert

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/window"
)

// lateSummaryPrefix marks a late trigger's summary (and its history).
const lateSummaryPrefix = "[late] "

// lateWork picks, per owned threshold or spike rule counting a changed
// keyword, the changed minutes that are late at now (already settled for
// the rule, so judged without them) and within the lateness horizon.
// Absence is never re-judged: late data does not retract a page and cannot
// make anything absent.
//
// Markers are read once. Those of a rule this replica judged but does not
// own right now (its lease lapsed in a Redis outage and is not yet taken
// back) are kept for lateKeep, so that the backlog replayed after the
// outage is still judged late when it takes the shard back; past that, the
// owner that took it judges what it finds as on time.
func (e *Engine) lateWork(rs *ruleSet, changed map[string]map[int64]bool, now time.Time) map[*crule][]int64 {
	horizon := now.Add(-e.c.Options.LatenessHorizon).Unix()
	for kw, mins := range e.lateHeld {
		if now.After(e.lateHeldUntil[kw]) {
			delete(e.lateHeld, kw)
			delete(e.lateHeldUntil, kw)
			continue
		}
		if changed == nil {
			changed = map[string]map[int64]bool{}
		}
		if changed[kw] == nil {
			changed[kw] = map[int64]bool{}
		}
		for m := range mins {
			changed[kw][m] = true
		}
	}
	out := map[*crule][]int64{}
	for kw, mins := range changed {
		for _, i := range rs.byKW[kw] {
			cr := rs.rules[i]
			if cr.rule.Condition.Type == rules.Absence {
				continue
			}
			// A starting or taking-over owner judges what it finds as on
			// time. Once it has judged the rule, every settled minute is
			// late, also those it could not judge in between (Redis was
			// down): the live window at now may no longer contain them.
			if _, ok := e.judged[cr.rule.ID]; !ok {
				continue
			}
			if !e.c.Shards.Owns(cr.shard) {
				e.holdLate(kw, mins, now)
				continue
			}
			if e.lateHeld[kw] != nil {
				delete(e.lateHeld, kw)
				delete(e.lateHeldUntil, kw)
			}
			settled := cr.settledMinute(now)
			for m := range mins {
				if m <= settled && m+60 >= horizon && !slices.Contains(out[cr], m) {
					out[cr] = append(out[cr], m)
				}
			}
		}
	}
	return out
}

// lateKeep is how long markers of a rule whose lease this replica lost
// are kept for it (a lease lapsed in a Redis outage is taken back within
// seconds of Redis returning).
const lateKeep = time.Minute

// holdLate keeps mins of kw for lateKeep from the first time they are held.
func (e *Engine) holdLate(kw string, mins map[int64]bool, now time.Time) {
	if e.lateHeld == nil {
		e.lateHeld, e.lateHeldUntil = map[string]map[int64]bool{}, map[string]time.Time{}
	}
	if e.lateHeld[kw] == nil {
		e.lateHeld[kw] = map[int64]bool{}
		e.lateHeldUntil[kw] = now.Add(lateKeep)
	}
	for m := range mins {
		e.lateHeld[kw][m] = true
	}
}

// judgeLate re-judges, in event time, the settled windows of cr that
// contain the late minutes mins, oldest first: the first window ending at M
// whose condition holds (with "for", the windows ending at M … M+for all
// hold and are settled) opens the group's alert with a late trigger, unless
// the group's alert is tracked or resolved after that window ended (it paged
// since). A run reaching the unsettled windows is the live evaluation's.
func (e *Engine) judgeLate(ctx context.Context, cr *crule, mins []int64, tracked map[string]*Alert, now time.Time) error {
	slices.Sort(mins)
	settled := cr.settledMinute(now)
	forMin := int64(cr.rule.For.D() / time.Minute)
	// With "for", a spell through the late minutes may start up to "for"
	// before them (its other windows came earlier, or in other batches).
	lo, hi := mins[0]-forMin*60, min(settled, mins[len(mins)-1]+(cr.winMin-1)*60)
	if lo > hi {
		return nil
	}
	cells, err := e.c.Counts.CellsMany(ctx, cr.kwIDs, lo-(cr.lookMin-1)*60, settled+60)
	if err != nil {
		return fmt.Errorf("read counts for late entries of rule %s: %w", cr.rule.ID, err)
	}
	return e.lateTriggers(ctx, cr, cells, lo, hi, settled, forMin, tracked, now)
}

// lateWindows finds, for each group, the first window ending at M in
// [lo, hi] that holds (and, with forMin, keeps holding through M+forMin ≤
// settled) and returns the observation to page with: the window ending at
// M+forMin. Shared by the engine's late re-judging and its test of replay
// agreement.
func lateWindows(cr *crule, cells map[string][]window.Cell, lo, hi, settled, forMin int64) []obs {
	byMin := map[int64]map[string]obs{}
	get := func(m int64) map[string]obs {
		if g, ok := byMin[m]; ok {
			return g
		}
		g := map[string]obs{}
		for _, o := range evalRule(cr, cells, m, nil) {
			g[o.group] = o
		}
		byMin[m] = g
		return g
	}
	done := map[string]bool{}
	var out []obs
	for m := lo; m <= hi; m += 60 {
		groups := get(m)
		names := make([]string, 0, len(groups))
		for g := range groups {
			names = append(names, g)
		}
		slices.Sort(names)
		for _, g := range names {
			if !groups[g].cond || done[g] {
				continue
			}
			end := m + forMin*60
			if end > settled {
				continue // reaches the unsettled windows: the live evaluation's
			}
			held := true
			for k := m + 60; k <= end && held; k += 60 {
				held = get(k)[g].cond
			}
			if !held {
				continue
			}
			done[g] = true
			out = append(out, get(end)[g])
		}
	}
	return out
}

func (e *Engine) lateTriggers(ctx context.Context, cr *crule, cells map[string][]window.Cell, lo, hi, settled, forMin int64,
	tracked map[string]*Alert, now time.Time) error {
	var firstErr error
	for _, o := range lateWindows(cr, cells, lo, hi, settled, forMin) {
		id := ID(cr.rule.ID, o.group)
		if a := tracked[id]; a != nil && a.tracked() {
			continue // paging or paged already
		}
		if err := e.applyLate(ctx, cr, o, cells, tracked, now); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// lateDecide opens a late episode on the stored alert unless it is tracked
// or resolved at or after the end of the late window (on-call has heard of
// the group since): a burst pages once.
func lateDecide(fresh *Alert, in input, windowEnd time.Time) (*Alert, []string) {
	if fresh != nil && (fresh.tracked() || !fresh.ResolvedAt.Before(windowEnd)) {
		return nil, nil
	}
	return fire(fresh, in)
}

// applyLate commits a late trigger for o, the window ending at o.end.
func (e *Engine) applyLate(ctx context.Context, cr *crule, o obs, cells map[string][]window.Cell, tracked map[string]*Alert, now time.Time) error {
	id := ID(cr.rule.ID, o.group)
	cur := tracked[id]
	from, to := time.Unix(o.end-(cr.winMin-1)*60, 0).UTC(), time.Unix(o.end+60, 0).UTC()
	in := input{rule: &cr.rule, o: o, now: now}
	in.silence = silence.Matching(e.sils, silenceTarget(cr, o, cur, cells, o.end), now)
	in.summary = truncate(lateSummaryPrefix+summarize(cr, o), MaxSummaryChars)
	var built *notify.Notification
	committed, err := e.c.Store.change(ctx, id, e.c.Shards.Lease(cr.shard), func(fresh *Alert) (*Alert, write, error) {
		var w write
		next, acts := lateDecide(fresh, in, to)
		if next == nil {
			return nil, w, nil
		}
		for _, act := range acts {
			if act != actTrigger {
				continue
			}
			if built == nil {
				n, err := e.trigger(ctx, cr, o, next, cells, o.end, in.summary)
				if err != nil {
					next.Notified = false
					next.record(now, "not_paged", err.Error())
					continue
				}
				n.Late, n.EventWindow = true, &notify.EventWindow{From: from, To: to}
				built = &n
			}
			w.notes = append(w.notes, *built)
			w.routingKey = built.Target
		}
		return next, w, nil
	})
	if err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return nil
		}
		return fmt.Errorf("late alert %s of rule %s: %w", id, cr.rule.ID, err)
	}
	if committed == nil {
		return nil
	}
	if committed.State == Firing && (cur == nil || !cur.Active()) {
		e.met.episodes.Inc()
		e.met.lateTriggers.Inc()
		e.c.Log.Info("late entries opened an alert", "rule_id", cr.rule.ID, "rule", cr.rule.Name, "group", o.group,
			"alert_id", id, "event_from", from.Format(time.RFC3339), "event_to", to.Format(time.RFC3339))
	}
	if committed.tracked() {
		tracked[id] = committed
	}
	e.track(committed)
	e.logChange(cr, cur, committed)
	return nil
}

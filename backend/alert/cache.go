package alert

import (
	"context"
	"fmt"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/zeebo/xxh3"
)

// cacheRefresh is how long a keyword's cached cells are trusted without a
// full re-read, plus up to cacheJitter spread by keyword so that keywords
// loaded together do not all reload in one tick. The change markers say
// what changed; the refresh bounds the damage of a marker lost between an
// apply and its XADD (a replica dying there) or counts written by hand.
const (
	cacheRefresh = 10 * time.Minute
	cacheJitter  = 5 * time.Minute
)

// kwCache is one keyword's cells per minute, as Redis last returned them.
type kwCache struct {
	minutes map[int64][]window.Cell
	cells   []window.Cell // every minute's cells; nil when minutes changed
	from    int64         // the oldest minute held
	expires time.Time     // full re-read due
}

// countCache holds the cells of the keywords the owned rules read, so a
// tick reads from Redis only the (keyword, minute) hashes the change
// markers name. Used by the run goroutine only.
type countCache struct {
	kws    map[string]*kwCache
	future map[string]map[int64]bool // markers of minutes after the current one, or deferred (keep)
}

func (c *countCache) reset() {
	c.kws, c.future = map[string]*kwCache{}, map[string]map[int64]bool{}
}

// keep keeps markers read in a round that read no counts, for the next
// one (a marker is read once).
func (c *countCache) keep(changed map[string]map[int64]bool) {
	if c.kws == nil {
		c.reset()
	}
	for kw, mins := range changed {
		if c.kws[kw] == nil {
			continue // not cached: read whole when first needed
		}
		if c.future[kw] == nil {
			c.future[kw] = map[int64]bool{}
		}
		for m := range mins {
			c.future[kw][m] = true
		}
	}
}

// cachedCells returns the cells of kwIDs for the minutes each keyword's rules
// read up to nowMin, reading from Redis what is not cached, due for a full
// re-read, or named by changed. dirty gets the keywords whose cells may
// differ from the last call's.
func (e *Engine) cachedCells(ctx context.Context, rs *ruleSet, kwIDs []string, nowMin int64, now time.Time,
	changed map[string]map[int64]bool, dirty map[string]bool) (map[string][]window.Cell, error) {
	c := &e.cache
	if c.kws == nil {
		c.reset()
	}
	// Markers first, for every cached keyword (a batch round reads only
	// some keywords, but the markers are consumed once).
	for kw, mins := range changed {
		for m := range mins {
			if m > nowMin {
				if c.future[kw] == nil {
					c.future[kw] = map[int64]bool{}
				}
				c.future[kw][m] = true
			}
		}
	}
	for kw, mins := range c.future {
		for m := range mins {
			if m <= nowMin {
				if changed == nil {
					changed = map[string]map[int64]bool{}
				}
				if changed[kw] == nil {
					changed[kw] = map[int64]bool{}
				}
				changed[kw][m] = true
				delete(mins, m)
			}
		}
		if len(mins) == 0 {
			delete(c.future, kw)
		}
	}
	byMinute := map[int64][]string{}
	for kw, mins := range changed {
		kc := c.kws[kw]
		if kc == nil {
			continue
		}
		for m := range mins {
			if m >= kc.from && m <= nowMin {
				byMinute[m] = append(byMinute[m], kw)
			}
		}
	}
	for m, kws := range byMinute {
		got, err := e.c.Counts.CellsMany(ctx, kws, m, m+60)
		if err != nil {
			c.reset() // what was read is unknown: start over next time
			return nil, fmt.Errorf("read changed counts: %w", err)
		}
		for _, kw := range kws {
			kc := c.kws[kw]
			if cs := got[kw]; len(cs) > 0 {
				kc.minutes[m] = cs
			} else {
				delete(kc.minutes, m)
			}
			kc.cells = nil
			dirty[kw] = true
		}
	}
	// Cold or due keywords: read whole, grouped by lookback as before.
	var cold []string
	for _, kw := range kwIDs {
		kc := c.kws[kw]
		if kc == nil || !now.Before(kc.expires) || kc.from > nowMin-(rs.kwLook[kw]-1)*60 {
			cold = append(cold, kw)
		}
	}
	if len(cold) > 0 {
		got, err := e.readCells(ctx, rs, cold, nowMin)
		if err != nil {
			for _, kw := range cold {
				delete(c.kws, kw)
			}
			return nil, err
		}
		for _, kw := range cold {
			kc := &kwCache{minutes: map[int64][]window.Cell{}, from: nowMin - (rs.kwLook[kw]-1)*60,
				expires: now.Add(cacheRefresh + time.Duration(xxh3.HashString(kw)%uint64(cacheJitter)))}
			cs := got[kw]
			for i := 0; i < len(cs); {
				j := i
				for j < len(cs) && cs[j].Minute == cs[i].Minute {
					j++
				}
				kc.minutes[cs[i].Minute] = append(kc.minutes[cs[i].Minute], cs[i:j]...)
				i = j
			}
			c.kws[kw] = kc
			dirty[kw] = true
		}
	}
	out := make(map[string][]window.Cell, len(kwIDs))
	for _, kw := range kwIDs {
		kc := c.kws[kw]
		// Minutes that left every rule's lookback go.
		from := nowMin - (rs.kwLook[kw]-1)*60
		if kc.from < from {
			for m := range kc.minutes {
				if m < from {
					delete(kc.minutes, m)
					kc.cells = nil
				}
			}
			kc.from = from
		}
		if kc.cells == nil {
			n := 0
			for _, cs := range kc.minutes {
				n += len(cs)
			}
			kc.cells = make([]window.Cell, 0, n)
			for m := from; m <= nowMin; m += 60 {
				kc.cells = append(kc.cells, kc.minutes[m]...)
			}
		}
		out[kw] = kc.cells
	}
	return out, nil
}

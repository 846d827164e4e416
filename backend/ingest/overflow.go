package ingest

import (
	"strings"
	"time"
)

// overflowWarnEvery is how often at most the consumer warns that counts went
// to an overflow series.
const overflowWarnEvery = time.Minute

// overflowed counts and reports the entries a batch counted in overflow
// series (window key -> entries): a keyword had more distinct series in a
// minute than MaxSeriesPerMinute. The warning names the keyword and the
// limit, at most once per overflowWarnEvery.
func (c *Consumer) overflowed(over map[string]int64) {
	if len(over) == 0 {
		return
	}
	var n int64
	var key string
	for k, v := range over {
		n += v
		if key == "" || k < key {
			key = k
		}
	}
	c.m.overflow.Add(float64(n))
	now := c.o.Now().UnixNano()
	last := c.overflowWarned.Load()
	if now-last < int64(overflowWarnEvery) || !c.overflowWarned.CompareAndSwap(last, now) {
		return
	}
	c.log.Warn("series over the limit per keyword and minute: counts go to the overflow series",
		"keyword_id", windowKeyword(key), "limit", c.o.MaxSeriesPerMinute, "setting", "KEYALERT_MAX_SERIES_PER_MINUTE",
		"entries", n, "windows", len(over))
}

// windowKeyword is the keyword ID of a window key ("ka:{tag}:w:<id>:<minute>").
func windowKeyword(key string) string {
	_, rest, ok := strings.Cut(key, "}:w:")
	if !ok {
		return key
	}
	if i := strings.LastIndexByte(rest, ':'); i > 0 {
		return rest[:i]
	}
	return rest
}

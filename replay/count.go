package replay

import (
	"fmt"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/match"
	"github.com/keyalert/keyalert/plugin/chunk"
	"github.com/keyalert/keyalert/plugin/flush"
)

// chunkRecords is how many records go into one chunk, about what Fluent
// Bit's tail input puts in a chunk of short lines.
const chunkRecords = 1000

// cellKey is one counted series minute.
type cellKey struct {
	kw        string
	minute    int64
	host, tag string
}

// counter feeds records through the plugin's flush path, a chunk at a time,
// and sums what it produces the way the backend's windows would.
type counter struct {
	m    *match.Matcher
	f    *flush.Flusher
	tag  string
	data []byte
	n    int // records in data
	// chunkMin is the event minute of the chunk's records.
	chunkMin int64
	cells    map[cellKey]int64
	samples  map[string][]window.Sample

	records     int
	matched     int
	first, last time.Time
	rec         map[string]any // reused record
}

func (c *counter) add(at time.Time, text string) error {
	if c.rec == nil {
		c.rec = map[string]any{}
	}
	// Fluent Bit flushes every second, so its chunks rarely span a minute:
	// a chunk per event minute gives each minute its own sample lines, as
	// the plugin sends them, not only the first minute's of a long chunk.
	if m := at.Unix() - at.Unix()%60; c.n > 0 && m != c.chunkMin {
		if err := c.flush(); err != nil {
			return err
		}
	}
	c.chunkMin = at.Unix() - at.Unix()%60
	c.rec["log"] = text
	var err error
	if c.data, err = chunk.AppendEvent(c.data, chunk.FormatV2, at, chunk.EventTime, c.rec); err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	c.n++
	c.records++
	if c.first.IsZero() || at.Before(c.first) {
		c.first = at
	}
	if at.After(c.last) {
		c.last = at
	}
	if c.n == chunkRecords {
		return c.flush()
	}
	return nil
}

func (c *counter) flush() error {
	if c.n == 0 {
		return nil
	}
	res := c.f.Process(c.m, c.data, c.tag)
	if res.Err != nil {
		return fmt.Errorf("count a chunk of %d records: %w", c.n, res.Err)
	}
	if res.Events != c.n {
		return fmt.Errorf("count a chunk: the plugin read %d of %d records", res.Events, c.n)
	}
	c.matched += res.Matched
	for _, e := range res.Entries {
		id := e.Keyword.ID()
		c.cells[cellKey{id, e.Minute, e.Host, e.Tag}] += e.Count
		for _, s := range e.Samples {
			c.samples[id] = append(c.samples[id], window.Sample{Minute: e.Minute, Host: e.Host, Tag: e.Tag, Line: s})
		}
	}
	c.data, c.n = c.data[:0], 0
	return nil
}

func (c *counter) cellsByKeyword() map[string][]window.Cell {
	out := map[string][]window.Cell{}
	for k, n := range c.cells {
		out[k.kw] = append(out[k.kw], window.Cell{Minute: k.minute, Host: k.host, Tag: k.tag, Count: n})
	}
	return out
}

func (c *counter) total(kwID string) int64 {
	var n int64
	for k, v := range c.cells {
		if k.kw == kwID {
			n += v
		}
	}
	return n
}

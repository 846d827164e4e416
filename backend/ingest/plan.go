package ingest

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/zeebo/xxh3"
)

// MaxFuture is how far past the consumer's clock an entry's minute may be.
// Further out is a broken clock or bad data: dead-lettered, not counted.
const MaxFuture = 24 * time.Hour

// MaxCount bounds one entry's count, far above what one chunk can hold, so
// that a batch's sums stay exact in the script's double arithmetic.
const MaxCount = 1 << 40

// Dead-letter reasons, also the "reason" label of the dead-letter metric.
const (
	ReasonParse      = "parse"
	ReasonDeliveries = "deliveries"
	ReasonDeleted    = "deleted"
	ReasonFuture     = "future"
	ReasonApply      = "apply"
)

// deadEntry is a message bound for the dead-letter stream.
type deadEntry struct {
	id     string
	kind   string // Reason*
	reason string // human-readable, stored in the dead-letter stream
	fields string // the original values as a JSON object
}

// plan is one batch turned into the apply script's KEYS and ARGV.
type plan struct {
	source  string         // "new", "pending" or "claim", for logs
	entries []stream.Entry // counted entries, in ARGV order
	msgs    []message      // their messages: ids to acknowledge, values to dead-letter one that fails
	kwIDs   []string       // their keywords' ids
	dedups  []string       // their dedup ids, 16 raw bytes each
	order   []int          // the script's entry k is entries[order[k]]
	dead    []deadEntry
	expired []string // too old to count: acknowledged only
	repeats []string // a dedup id seen earlier in the batch: acknowledged only
	keys    []string
	args    []any
	size    int // messages in the batch
}

// planner turns messages into plans; it holds settings and scratch space.
type planner struct {
	keys       window.Keys
	stream     string
	dead       string
	group      string
	retention  time.Duration
	sampleCap  int
	sampleTTL  int64
	deadMaxLen int64
	maxDeliv   int64
}

// build parses msgs and lays out the script call. deliveries, when known,
// maps ids to their delivery counts.
func (p *planner) build(source string, msgs []message, deliveries map[string]int64, now time.Time) *plan {
	pl := &plan{source: source, size: len(msgs),
		entries: make([]stream.Entry, 0, len(msgs)),
		msgs:    make([]message, 0, len(msgs)),
		dedups:  make([]string, 0, len(msgs)),
		kwIDs:   make([]string, 0, len(msgs)),
	}
	nowSec := now.Unix()
	inBatch := make(map[string]struct{}, len(msgs))
	var buf []byte
	for _, m := range msgs {
		if d := deliveries[m.id]; d > p.maxDeliv {
			pl.dead = append(pl.dead, deadOf(m, ReasonDeliveries, fmt.Sprintf("delivered %d times, over the limit of %d", d, p.maxDeliv)))
			continue
		}
		if m.kv == nil {
			pl.dead = append(pl.dead, deadOf(m, ReasonDeleted, "entry was deleted from the stream before it was applied"))
			continue
		}
		e, err := stream.ParseFields(m.kv)
		if err == nil && e.Count > MaxCount {
			err = fmt.Errorf("field %q = %d: over the limit of %d", stream.FieldCount, e.Count, int64(MaxCount))
		}
		if err != nil {
			pl.dead = append(pl.dead, deadOf(m, ReasonParse, "parse: "+err.Error()))
			continue
		}
		if window.WindowExpireAt(e.Minute, p.retention) <= nowSec {
			pl.expired = append(pl.expired, m.id)
			continue
		}
		if e.Minute > nowSec+int64(MaxFuture/time.Second) {
			pl.dead = append(pl.dead, deadOf(m, ReasonFuture, fmt.Sprintf("minute %d is more than %v ahead of the consumer's clock", e.Minute, MaxFuture)))
			continue
		}
		kwID := e.Keyword.ID()
		var d string
		d, buf = dedupBytes(&e, kwID, buf)
		if _, dup := inBatch[d]; dup { // a retried chunk read together with its first copy
			pl.repeats = append(pl.repeats, m.id)
			continue
		}
		inBatch[d] = struct{}{}
		pl.entries = append(pl.entries, e)
		pl.msgs = append(pl.msgs, m)
		pl.dedups = append(pl.dedups, d)
		pl.kwIDs = append(pl.kwIDs, kwID)
	}
	p.layout(pl)
	return pl
}

func deadOf(m message, kind, reason string) deadEntry {
	fields, err := json.Marshal(m.values())
	if err != nil {
		fields = []byte("{}")
	}
	return deadEntry{id: m.id, kind: kind, reason: reason, fields: string(fields)}
}

// layout fills pl.keys and pl.args in the order apply.lua reads them: the
// script's entries are pl.entries taken in pl.order, grouped by seen set and
// within it by window cell, so both kinds of group are contiguous runs.
func (p *planner) layout(pl *plan) {
	n := len(pl.entries)
	idx := make(map[string]int, 16+n/4)
	pl.keys = append(pl.keys[:0], p.stream, p.dead)
	key := func(k string) int {
		i, ok := idx[k]
		if !ok {
			pl.keys = append(pl.keys, k)
			i = len(pl.keys) // Lua indexes from 1
			idx[k] = i
		}
		return i
	}
	kwIDs := pl.kwIDs
	fields := make([]string, n)
	wins := make([]int, n)
	for i := range pl.entries {
		e := &pl.entries[i]
		fields[i] = window.Field(e.Host, e.Tag)
		wins[i] = key(p.keys.Window(kwIDs[i], e.Minute))
	}
	ord := p.order(pl, fields, wins)
	pl.order = ord

	type expiry struct {
		key int
		at  int64
	}
	var expires []expiry
	expiring := make(map[int]bool, 16)
	expire := func(k int, at int64) {
		if !expiring[k] {
			expiring[k] = true
			expires = append(expires, expiry{k, at})
		}
	}

	args := make([]any, 11, 11+3*n+3*len(pl.dead)+len(pl.expired)+len(pl.repeats)+64)
	for _, e := range ord {
		args = append(args, pl.msgs[e].id)
	}

	// Seen groups: runs of entries in one event hour.
	nSeen := 0
	for i := 0; i < n; {
		first := &pl.entries[ord[i]]
		h := window.Hour(first.Minute)
		j := i + 1
		for j < n && window.Hour(pl.entries[ord[j]].Minute) == h {
			j++
		}
		k := key(p.keys.Seen(first.Minute))
		expire(k, window.SeenExpireAt(first.Minute, p.retention))
		args = append(args, k, j-i)
		for _, e := range ord[i:j] {
			args = append(args, pl.dedups[e])
		}
		nSeen++
		i = j
	}

	// Count groups: runs of entries in one window cell.
	nCount := 0
	var cb []byte
	for i := 0; i < n; {
		c := ord[i]
		j := i + 1
		for j < n && wins[ord[j]] == wins[c] && fields[ord[j]] == fields[c] {
			j++
		}
		expire(wins[c], window.WindowExpireAt(pl.entries[c].Minute, p.retention))
		// The cell's sum, and its entries' counts for the rare batch in
		// which some of them turn out to be duplicates.
		var sum int64
		cb = cb[:0]
		for k, e := range ord[i:j] {
			sum += pl.entries[e].Count
			if j-i > 1 {
				if k > 0 {
					cb = append(cb, ' ')
				}
				cb = strconv.AppendInt(cb, pl.entries[e].Count, 10)
			}
		}
		args = append(args, wins[c], fields[c], i+1, j-i, sum)
		if j-i > 1 {
			args = append(args, string(cb))
		}
		nCount++
		i = j
	}

	// Sample groups: each keyword's newest samples of the batch, in stream
	// order so the newest is pushed last and ends up first. A batch adds at
	// most a quarter of the cap, so the list spans several batches rather
	// than one burst, and a backlog does not push samples only to trim them.
	nSample := 0
	if p.sampleCap > 0 {
		perBatch := max(1, (p.sampleCap+3)/4)
		pos := make([]int, n) // script position of each entry
		for k, e := range ord {
			pos[e] = k
		}
		take := make([]int, n)
		left := map[string]int{}
		for e := n - 1; e >= 0; e-- {
			q, ok := left[kwIDs[e]]
			if !ok {
				q = perBatch
			}
			if q > 0 {
				take[e] = min(q, len(pl.entries[e].Samples))
				left[kwIDs[e]] = q - take[e]
			}
		}
		var sampleKeys []string
		picks := map[string][]any{}
		for e := range pl.entries {
			if take[e] == 0 {
				continue
			}
			en := &pl.entries[e]
			sk := p.keys.Samples(kwIDs[e])
			if _, ok := picks[sk]; !ok {
				sampleKeys = append(sampleKeys, sk)
			}
			for _, line := range en.Samples[len(en.Samples)-take[e]:] {
				picks[sk] = append(picks[sk], pos[e]+1, window.EncodeSample(window.Sample{Minute: en.Minute, Host: en.Host, Tag: en.Tag, Line: line}))
			}
		}
		for _, sk := range sampleKeys {
			args = append(args, key(sk), len(picks[sk])/2)
			args = append(args, picks[sk]...)
			nSample++
		}
	}

	for _, d := range pl.dead {
		args = append(args, d.id, d.reason, d.fields)
	}
	for _, x := range expires {
		args = append(args, x.key, x.at)
	}
	for _, id := range pl.expired {
		args = append(args, id)
	}
	for _, id := range pl.repeats {
		args = append(args, id)
	}
	args[0] = p.group
	args[1] = n
	args[2] = nSeen
	args[3] = nCount
	args[4] = nSample
	args[5] = len(pl.dead)
	args[6] = len(expires)
	args[7] = len(pl.expired) + len(pl.repeats)
	args[8] = p.sampleCap
	args[9] = p.sampleTTL
	args[10] = p.deadMaxLen
	pl.args = args
}

// order returns the entry indexes sorted by event hour, then window cell,
// each in order of first appearance, stream order within.
func (p *planner) order(pl *plan, fields []string, wins []int) []int {
	n := len(pl.entries)
	type cell struct {
		win   int
		field string
	}
	hourRank := map[int64]int{}
	cellRank := make(map[cell]int, n/2)
	hr := make([]int, n)
	cr := make([]int, n)
	sorted := true
	for i := range pl.entries {
		h := window.Hour(pl.entries[i].Minute)
		r, ok := hourRank[h]
		if !ok {
			r = len(hourRank)
			hourRank[h] = r
		}
		hr[i] = r
		c := cell{wins[i], fields[i]}
		q, ok := cellRank[c]
		if !ok {
			q = len(cellRank)
			cellRank[c] = q
		}
		cr[i] = q
		if i > 0 && (hr[i] < hr[i-1] || (hr[i] == hr[i-1] && cr[i] < cr[i-1])) {
			sorted = false
		}
	}
	ord := make([]int, n)
	for i := range ord {
		ord[i] = i
	}
	if !sorted {
		sort.SliceStable(ord, func(a, b int) bool {
			x, y := ord[a], ord[b]
			if hr[x] != hr[y] {
				return hr[x] < hr[y]
			}
			return cr[x] < cr[y]
		})
	}
	return ord
}

// dedupBytes is the entry's dedup id as 16 raw bytes (half the memory of
// hex in the seen sets). It hashes what stream.Entry.DedupID hashes, without
// the hex round trip; TestDedupBytesIsDedupID keeps the two equal.
func dedupBytes(e *stream.Entry, kwID string, buf []byte) (string, []byte) {
	buf = append(buf[:0], e.Batch...)
	buf = append(buf, '|')
	buf = append(buf, kwID...)
	buf = append(buf, '|')
	buf = append(buf, e.Tag...)
	buf = append(buf, '|')
	buf = append(buf, e.Host...)
	buf = append(buf, '|')
	buf = strconv.AppendInt(buf, e.Minute, 10)
	sum := xxh3.Hash128(buf).Bytes()
	return string(sum[:]), buf
}

// result is what the script reported for a plan.
type result struct {
	applied    []stream.Entry
	duplicates int
	failed     []failure // entries that could not be counted (still pending)
	deadFailed []failure // dead entries that could not be written (still pending)
}

type failure struct {
	index int
	err   string
}

func parseResult(pl *plan, v any) (result, error) {
	var r result
	arr, ok := v.([]any)
	if !ok || len(arr) != 2 {
		return r, fmt.Errorf("apply script returned %T, want a 2-element array", v)
	}
	flags, ok := arr[0].(string)
	if !ok || len(flags) != len(pl.entries) {
		return r, fmt.Errorf("apply script returned flags %v for %d entries", arr[0], len(pl.entries))
	}
	r.applied = make([]stream.Entry, 0, len(flags))
	for k := 0; k < len(flags); k++ {
		switch flags[k] {
		case '1':
			r.applied = append(r.applied, pl.entries[pl.order[k]])
		case '0':
			r.duplicates++
		}
	}
	fails, _ := arr[1].([]any)
	for j := 0; j+1 < len(fails); j += 2 {
		k, _ := fails[j].(string)
		msg, _ := fails[j+1].(string)
		if d, ok := strings.CutPrefix(k, "d"); ok {
			n, _ := strconv.Atoi(d)
			r.deadFailed = append(r.deadFailed, failure{n - 1, msg})
			continue
		}
		n, _ := strconv.Atoi(k)
		if n >= 1 && n <= len(pl.order) {
			r.failed = append(r.failed, failure{pl.order[n-1], msg})
		}
	}
	return r, nil
}

package ingest

// The layout as it was before the per-batch caches of the previous entry's
// producer, chunk and field, the sample series looked up once per entry and
// the order sorted without reflection: plan_test.go checks that layout
// still gives exactly its KEYS and ARGV, BenchmarkLayout compares the two.

import (
	"sort"
	"strconv"
	"time"
	"unsafe"

	"github.com/keyalert/keyalert/backend/window"
)

// layoutRef is layout as it was; it fills pl.keys and pl.args as protocol.go defines them: the
// script's entries are pl.entries taken in pl.order, grouped by seen set and
// within it by window cell, so both kinds of group are contiguous runs.
func (p *planner) layoutRef(pl *plan) {
	n := len(pl.entries)
	l := &argv{p: p, pl: pl, idx: make(map[string]int, 16+n/4), expiring: make(map[int]bool, 16)}
	pl.keys = append(pl.keys[:0], make([]string, keyFixed)...)
	pl.keys[keyStream], pl.keys[keyDead], pl.keys[keyFence] = p.stream, p.dead, p.keys.Fence(p.group)
	l.cellsRef()
	// About what a chunk-shaped batch takes (an id, a share of a cell's
	// record and one or two sample picks per entry), so it rarely grows.
	l.args = make([]any, argHeader, argHeader+5*n+4*len(pl.dead)+len(pl.expired)+len(pl.repeats)+64)
	first, last := l.entryIDs()
	nSeen := l.seenGroups()
	nProd := l.producersRef()
	nCount := l.countGroups()
	nSample := l.sampleGroupsRef()
	l.deadEntries()
	l.expirePairs()
	l.ackOnly()

	h := l.args[:argHeader]
	h[argGroup] = p.group
	h[argConsumer] = p.consumer
	h[argFence] = pl.fence
	h[argFirstID], h[argLastID], h[argPendingMax] = first, last, p.pendingMax
	h[argEntries] = n
	h[argSeenGroups] = nSeen
	h[argProducers] = nProd
	h[argNow] = pl.now
	h[argDedupWindow] = int64(p.window / time.Second)
	h[argDedupMax] = p.maxPerProd
	h[argDedupShards] = dedupShards(p.maxPerProd)
	h[argCountGroups] = nCount
	h[argSampleGroups] = nSample
	h[argDead] = len(pl.dead)
	h[argExpires] = len(l.expires)
	h[argAckOnly] = len(pl.expired) + len(pl.repeats)
	h[argSampleCap] = p.sampleCap
	h[argSampleTTL] = p.sampleTTL
	h[argDeadMaxLen] = p.deadMaxLen
	h[argMaxSeries] = p.maxSeries
	h[argCursorPrev], h[argCursorLast], h[argCursorRead] = "", "", 0
	pl.args = l.args
}

// cells finds each entry's window key and field, and the script's order.
// A batch's entries share few keywords, minutes, hosts and tags: each key
// and label-free field is made once.
func (l *argv) cellsRef() {
	pl := l.pl
	l.fields = make([]string, len(pl.entries))
	l.wins = make([]int, len(pl.entries))
	type win struct {
		kwID   string
		minute int64
	}
	wins := make(map[win]int, 16)
	fields := make(map[[2]string]string, 16)
	for i := range pl.entries {
		e := &pl.entries[i]
		if len(e.Labels) > 0 {
			l.fields[i] = window.Field(e.Host, e.Tag, e.Labels...)
		} else {
			f, ok := fields[[2]string{e.Host, e.Tag}]
			if !ok {
				f = window.Field(e.Host, e.Tag)
				fields[[2]string{e.Host, e.Tag}] = f
			}
			l.fields[i] = f
		}
		w := win{pl.kwIDs[i], e.Minute}
		k, ok := wins[w]
		if !ok {
			k = l.key(l.p.keys.Window(w.kwID, w.minute))
			wins[w] = k
		}
		l.wins[i] = k
	}
	pl.order = l.p.orderRef(pl, l.fields, l.wins)
}

// producers writes one record per producer of version 3 entries: its state
// key and its chunks in the batch, each (batch, attempt) once with the
// script numbers of its entries.
func (l *argv) producersRef() int {
	pl, ord := l.pl, l.pl.order
	type chunk struct {
		id, attempt string
		entries     []byte
	}
	type producer struct {
		name   string
		chunks []chunk
		idx    map[[2]string]int
	}
	var prods []*producer
	byName := map[string]*producer{}
	for k := pl.legacy; k < len(ord); k++ {
		e := &pl.entries[ord[k]]
		pr := byName[e.Producer]
		if pr == nil {
			pr = &producer{name: e.Producer, idx: map[[2]string]int{}}
			byName[e.Producer] = pr
			prods = append(prods, pr)
		}
		ck := [2]string{e.Batch, e.Attempt}
		c, ok := pr.idx[ck]
		if !ok {
			c = len(pr.chunks)
			pr.idx[ck] = c
			pr.chunks = append(pr.chunks, chunk{id: rawHex(e.Batch), attempt: rawHex(e.Attempt)})
		} else {
			pr.chunks[c].entries = append(pr.chunks[c].entries, ' ')
		}
		pr.chunks[c].entries = strconv.AppendInt(pr.chunks[c].entries, int64(k+1), 10)
	}
	for _, pr := range prods {
		r := l.record(prodFixed)
		r[prodKey], r[prodLen] = l.key(l.p.keys.Producer(pr.name)), len(pr.chunks)
		for _, c := range pr.chunks {
			q := l.record(chunkWidth)
			q[chunkID], q[chunkAttempt], q[chunkEntries] = c.id, c.attempt, string(c.entries)
		}
	}
	return len(prods)
}

// sampleGroups writes one record per (keyword, host, tag) series with
// samples: each series' newest samples of the batch, in stream order so the
// newest is pushed last and ends up first. Lists are per series so that a
// busy host cannot push a quiet one's lines out. A batch adds at most a
// quarter of the cap to a list, so it spans several batches rather than one
// burst, and a backlog does not push samples only to trim them.
func (l *argv) sampleGroupsRef() int {
	if l.p.sampleCap <= 0 {
		return 0
	}
	pl, kwIDs, n := l.pl, l.pl.kwIDs, len(l.pl.entries)
	perBatch := max(1, (l.p.sampleCap+3)/4)
	pos := make([]int, n) // script position of each entry
	for k, e := range pl.order {
		pos[e] = k
	}
	take := make([]int, n)
	keys := make([]string, n) // sample list of each entry with samples
	left := map[string]int{}
	// The series' key is the keyword's and the cell's field (see
	// window.Keys.Samples): made once per series.
	made := make(map[[2]string]string, 64)
	for e := n - 1; e >= 0; e-- {
		en := &pl.entries[e]
		if len(en.Samples) == 0 {
			continue
		}
		sk, ok := made[[2]string{kwIDs[e], l.fields[e]}]
		if !ok {
			sk = l.p.keys.Samples(kwIDs[e], en.Host, en.Tag, en.Labels...)
			made[[2]string{kwIDs[e], l.fields[e]}] = sk
		}
		keys[e] = sk
		q, ok := left[keys[e]]
		if !ok {
			q = perBatch
		}
		if q > 0 {
			take[e] = min(q, len(en.Samples))
			left[keys[e]] = q - take[e]
		}
	}
	// The encoded samples are written into one buffer, sized beforehand
	// (escapes aside), which their strings then share: picks hold their
	// offsets until it is written.
	type pick struct {
		key, entry int // key: index in sampleKeys
		start, end int
	}
	size := 0
	for e := range pl.entries {
		if take[e] == 0 {
			continue
		}
		en := &pl.entries[e]
		each := 64 + len(en.Host) + len(en.Tag)
		for _, lb := range en.Labels {
			each += 6 + len(lb.Name) + len(lb.Value)
		}
		for _, line := range en.Samples[len(en.Samples)-take[e]:] {
			size += each + len(line)
		}
	}
	var sampleKeys []string
	keyIdx := make(map[string]int, len(left))
	var picks []pick
	var perKey []int // picks of each sample key
	buf := make([]byte, 0, size)
	for e := range pl.entries {
		if take[e] == 0 {
			continue
		}
		en := &pl.entries[e]
		k, ok := keyIdx[keys[e]]
		if !ok {
			k = len(sampleKeys)
			keyIdx[keys[e]] = k
			sampleKeys = append(sampleKeys, keys[e])
			perKey = append(perKey, 0)
		}
		for _, line := range en.Samples[len(en.Samples)-take[e]:] {
			start := len(buf)
			buf = window.AppendSample(buf, en.Minute, en.Host, en.Tag, en.Labels, line)
			picks = append(picks, pick{k, pos[e] + 1, start, len(buf)})
			perKey[k]++
		}
	}
	// Group the picks by key, in the order they came (a counting sort).
	at := make([]int, len(sampleKeys))
	for k := 1; k < len(at); k++ {
		at[k] = at[k-1] + perKey[k-1]
	}
	byKey := make([]pick, len(picks))
	for _, pk := range picks {
		byKey[at[pk.key]] = pk
		at[pk.key]++
	}
	// buf is not written again: the strings may share its bytes.
	all := unsafe.String(unsafe.SliceData(buf), len(buf))
	next := 0
	var nums []byte
	for k, sk := range sampleKeys {
		picks := byKey[next : next+perKey[k]]
		nums = nums[:0]
		for j, pk := range picks {
			if j > 0 {
				nums = append(nums, ' ')
			}
			nums = strconv.AppendInt(nums, int64(pk.entry), 10)
		}
		r := l.record(sampleFixed)
		r[sampleKey], r[sampleLen], r[sampleEntries] = l.key(sk), len(picks), string(nums)
		for _, pk := range picks {
			l.args = append(l.args, all[pk.start:pk.end])
		}
		next += perKey[k]
	}
	return len(sampleKeys)
}

// order returns the entry indexes sorted by version (1 and 2 first), event
// hour, then window cell, each in order of first appearance, stream order
// within.
func (p *planner) orderRef(pl *plan, fields []string, wins []int) []int {
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
		if pl.entries[i].Producer != "" { // version 3 after the rest
			r += 1 << 30
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

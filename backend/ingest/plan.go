package ingest

import (
	"cmp"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/pkg/keyword"
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
	// check: the script writes it only if the entry is still this
	// consumer's (when the fence moved): another process of the same
	// name may have applied or reported it meanwhile. Entries XAUTOCLAIM
	// found deleted are pending nowhere and reported by their claimer only.
	check bool
}

// plan is one batch turned into the apply script's KEYS and ARGV.
type plan struct {
	source  string         // "new", "pending" or "claim", for logs
	entries []stream.Entry // counted entries, in ARGV order
	msgs    []message      // their messages: ids to acknowledge, values to dead-letter one that fails
	kwIDs   []string       // their keywords' ids
	dedups  []string       // their dedup ids, 16 raw bytes each; "" for version 3 entries
	legacy  int            // entries of versions 1 and 2: the script's first ones
	order   []int          // the script's entry k is entries[order[k]]
	dead    []deadEntry
	expired []string // too old to count: acknowledged only
	repeats []string // a version 1 or 2 dedup id seen earlier in the batch: acknowledged only
	keys    []string
	args    []any
	size    int    // messages in the batch
	now     int64  // the consumer's clock when it was built, Unix seconds
	fence   string // the group's fence before the batch was read ("" unknown)
}

// planner turns messages into plans; it holds settings and scratch space.
type planner struct {
	keys       window.Keys
	stream     string
	dead       string
	group      string
	consumer   string
	retention  time.Duration
	window     time.Duration // dedup window
	maxPerProd int           // most chunk ids kept per producer
	pendingMax int           // most pending entries the script lists (ARG_PENDING_MAX)
	sampleCap  int
	sampleTTL  int64
	deadMaxLen int64
	maxDeliv   int64
	maxSeries  int // distinct series per keyword and minute (0: no bound)
}

// build parses msgs and lays out the script call. deliveries, when known,
// maps ids to their delivery counts; fence is the group's fence read before
// msgs were ("" if unknown: the script then checks every entry's ownership).
func (p *planner) build(source string, msgs []message, deliveries map[string]int64, now time.Time, fence string) *plan {
	pl := &plan{source: source, size: len(msgs), fence: fence,
		entries: make([]stream.Entry, 0, len(msgs)),
		msgs:    make([]message, 0, len(msgs)),
		dedups:  make([]string, 0, len(msgs)),
		kwIDs:   make([]string, 0, len(msgs)),
	}
	nowSec := now.Unix()
	var inBatch map[string]struct{} // version 1 and 2 dedup ids; made for the first
	// A batch holds few keywords: each one's id is made once.
	kwIDs := make(map[keyword.Spec]string, 16)
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
		sanitize(&e)
		if window.WindowExpireAt(e.Minute, p.retention) <= nowSec {
			pl.expired = append(pl.expired, m.id)
			continue
		}
		if e.Minute > nowSec+int64(MaxFuture/time.Second) {
			pl.dead = append(pl.dead, deadOf(m, ReasonFuture, fmt.Sprintf("minute %d is more than %v ahead of the consumer's clock", e.Minute, MaxFuture)))
			continue
		}
		kwID, ok := kwIDs[e.Keyword]
		if !ok {
			kwID = e.Keyword.ID()
			kwIDs[e.Keyword] = kwID
		}
		var d string
		if e.Producer == "" { // version 1 or 2: one dedup id per entry
			d, buf = dedupBytes(&e, kwID, buf)
			if inBatch == nil {
				inBatch = make(map[string]struct{}, len(msgs))
			}
			if _, dup := inBatch[d]; dup { // a retried chunk read together with its first copy
				pl.repeats = append(pl.repeats, m.id)
				continue
			}
			inBatch[d] = struct{}{}
			pl.legacy++
		}
		pl.entries = append(pl.entries, e)
		pl.msgs = append(pl.msgs, m)
		pl.dedups = append(pl.dedups, d)
		pl.kwIDs = append(pl.kwIDs, kwID)
	}
	pl.now = now.Unix()
	p.layout(pl)
	return pl
}

// sanitize makes the entry's host, tag and label values valid stored
// values (stream.ValidValue): entries of versions 1 to 3 were written
// before the plugin sanitized them, and a NUL would shift a field's parts.
// Valid values are kept as they are, without copying.
func sanitize(e *stream.Entry) {
	fix := func(v string) string {
		if stream.ValidValue(v) == nil {
			return v
		}
		return string(stream.SanitizeValue(nil, []byte(v)))
	}
	e.Host, e.Tag = fix(e.Host), fix(e.Tag)
	for i := range e.Labels {
		e.Labels[i].Value = fix(e.Labels[i].Value)
	}
}

func deadOf(m message, kind, reason string) deadEntry {
	fields, err := json.Marshal(m.values())
	if err != nil {
		fields = []byte("{}")
	}
	return deadEntry{id: m.id, kind: kind, reason: reason, fields: string(fields), check: !m.gone}
}

// layout fills pl.keys and pl.args as protocol.go defines them: the
// script's entries are pl.entries taken in pl.order, grouped by seen set and
// within it by window cell, so both kinds of group are contiguous runs.
func (p *planner) layout(pl *plan) {
	n := len(pl.entries)
	l := &argv{p: p, pl: pl, idx: make(map[string]int, 16+n/4), expiring: make(map[int]bool, 16)}
	pl.keys = append(pl.keys[:0], make([]string, keyFixed)...)
	pl.keys[keyStream], pl.keys[keyDead], pl.keys[keyFence] = p.stream, p.dead, p.keys.Fence(p.group)
	l.cells()
	// About what a chunk-shaped batch takes (an id, a share of a cell's
	// record and one or two sample picks per entry), so it rarely grows.
	l.args = make([]any, argHeader, argHeader+5*n+4*len(pl.dead)+len(pl.expired)+len(pl.repeats)+64)
	first, last := l.entryIDs()
	nSeen := l.seenGroups()
	nProd := l.producers()
	nCount := l.countGroups()
	nSample := l.sampleGroups()
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
	// Group mode unless the cursor loop fills these in (cursorArgs).
	h[argCursorPrev], h[argCursorLast], h[argCursorRead] = "", "", 0
	pl.args = l.args
}

// argv is layout's working state for one plan.
type argv struct {
	p    *planner
	pl   *plan
	args []any
	idx  map[string]int // key -> its KEYS index (1-based, as Lua sees it)

	fields []string // each entry's hash field
	wins   []int    // each entry's window key

	expires  []expiry
	expiring map[int]bool
}

type expiry struct {
	key int
	at  int64
}

// key returns k's 1-based KEYS index, adding it on first use.
func (l *argv) key(k string) int {
	i, ok := l.idx[k]
	if !ok {
		l.pl.keys = append(l.pl.keys, k)
		i = len(l.pl.keys)
		l.idx[k] = i
	}
	return i
}

// expire asks for key k to expire at at, once per key.
func (l *argv) expire(k int, at int64) {
	if !l.expiring[k] {
		l.expiring[k] = true
		l.expires = append(l.expires, expiry{k, at})
	}
}

// record appends a record's fixed fields and returns them to be filled by
// their offsets.
func (l *argv) record(width int) []any {
	n := len(l.args)
	l.args = append(l.args, make([]any, width)...)
	return l.args[n : n+width : n+width]
}

// cells finds each entry's window key and field, and the script's order.
// A batch's entries share few keywords, minutes, hosts and tags: each key
// and label-free field is made once.
func (l *argv) cells() {
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
		switch {
		case len(e.Labels) > 0:
			l.fields[i] = window.Field(e.Host, e.Tag, e.Labels...)
		case i > 0 && len(pl.entries[i-1].Labels) == 0 && e.Host == pl.entries[i-1].Host && e.Tag == pl.entries[i-1].Tag:
			l.fields[i] = l.fields[i-1] // a chunk's entries share their host and tag
		default:
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
	pl.order = l.p.order(pl, l.fields, l.wins)
}

// entryIDs writes the entries' message ids, numbering them for the script,
// and returns the lowest and the highest.
func (l *argv) entryIDs() (first, last string) {
	for _, e := range l.pl.order {
		id := l.pl.msgs[e].id
		if first == "" || idLess(id, first) {
			first = id
		}
		if last == "" || idLess(last, id) {
			last = id
		}
		l.args = append(l.args, id)
	}
	return first, last
}

// idLess compares two stream ids ("<ms>-<seq>") as Redis orders them.
func idLess(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if len(am) != len(bm) {
		return len(am) < len(bm)
	}
	if am != bm {
		return am < bm
	}
	if len(as) != len(bs) {
		return len(as) < len(bs)
	}
	return as < bs
}

// seenGroups writes one record per run of version 1 and 2 entries in one
// event hour: the seen set and the entries' dedup ids. A seen set expires a
// dedup window after its last write.
func (l *argv) seenGroups() int {
	pl, ord, n := l.pl, l.pl.order, l.pl.legacy
	groups := 0
	for i := 0; i < n; {
		first := &pl.entries[ord[i]]
		h := window.Hour(first.Minute)
		j := i + 1
		for j < n && window.Hour(pl.entries[ord[j]].Minute) == h {
			j++
		}
		k := l.key(l.p.keys.Seen(first.Minute))
		l.expire(k, pl.now+int64(l.p.window/time.Second))
		r := l.record(seenFixed)
		r[seenKey], r[seenLen] = k, j-i
		for _, e := range ord[i:j] {
			l.args = append(l.args, pl.dedups[e])
		}
		groups++
		i = j
	}
	return groups
}

// producers writes one record per producer of version 3 entries: its state
// key and its chunks in the batch, each (batch, attempt) once with the
// script numbers of its entries.
func (l *argv) producers() int {
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
	// A chunk's entries mostly come one after another: the previous entry's
	// producer and chunk are checked before the maps.
	var pr *producer
	var ck [2]string
	c := -1
	for k := pl.legacy; k < len(ord); k++ {
		e := &pl.entries[ord[k]]
		if pr == nil || pr.name != e.Producer {
			if pr = byName[e.Producer]; pr == nil {
				pr = &producer{name: e.Producer, idx: map[[2]string]int{}}
				byName[e.Producer] = pr
				prods = append(prods, pr)
			}
			c = -1
		}
		if c < 0 || ck != [2]string{e.Batch, e.Attempt} {
			ck = [2]string{e.Batch, e.Attempt}
			var ok bool
			if c, ok = pr.idx[ck]; !ok {
				c = len(pr.chunks)
				pr.idx[ck] = c
				pr.chunks = append(pr.chunks, chunk{id: rawHex(e.Batch), attempt: rawHex(e.Attempt)})
			}
		}
		if len(pr.chunks[c].entries) > 0 {
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

// dedupShardIDs is the most chunk ids a shard of a producer's dedup
// generation is meant to hold. A generation holds up to half of
// DedupMaxPerProducer ids (plus one batch); cut into hashes of about this
// many by the chunk id's last two bytes (uniform: they are hash output), each
// stays under Redis's hash-max-listpack-entries (512 by default) with room
// for the spread, so Redis keeps it as a listpack: about 34 bytes an id
// instead of about 81 in a hashtable.
const dedupShardIDs = 300

// dedupShards is how many hashes a new generation is cut into when a
// producer keeps at most maxPerProd chunk ids; 1 is one hash named as before
// shards existed. A generation records its own count, so a change of the
// setting applies from the next generation on.
func dedupShards(maxPerProd int) int {
	half := maxPerProd / 2
	return max(1, (half+dedupShardIDs-1)/dedupShardIDs)
}

// rawHex is the bytes a hex string (validated by stream.Parse) stands for:
// half the memory in Redis.
func rawHex(h string) string {
	b, err := hex.DecodeString(h)
	if err != nil {
		return h
	}
	return string(b)
}

// countGroups writes one record per run of entries in one window cell: the
// cell's sum, and its entries' counts for the rare batch in which some of
// them turn out to be duplicates.
func (l *argv) countGroups() int {
	pl, ord, n := l.pl, l.pl.order, len(l.pl.order)
	wins, fields := l.wins, l.fields
	groups := 0
	var cb []byte
	for i := 0; i < n; {
		c := ord[i]
		j := i + 1
		for j < n && wins[ord[j]] == wins[c] && fields[ord[j]] == fields[c] {
			j++
		}
		l.expire(wins[c], window.WindowExpireAt(pl.entries[c].Minute, l.p.retention))
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
		r := l.record(countFixed)
		r[countKey], r[countField], r[countFirst], r[countLen], r[countSum] = wins[c], fields[c], i+1, j-i, sum
		if j-i > 1 {
			l.args = append(l.args, string(cb))
		}
		groups++
		i = j
	}
	return groups
}

// sampleGroups writes one record per (keyword, host, tag) series with
// samples: each series' newest samples of the batch, in stream order so the
// newest is pushed last and ends up first. Lists are per series so that a
// busy host cannot push a quiet one's lines out. A batch adds at most a
// quarter of the cap to a list, so it spans several batches rather than one
// burst, and a backlog does not push samples only to trim them.
func (l *argv) sampleGroups() int {
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
	// A series is one sample list: its key, the samples it may still take
	// from this batch, and its index among the batch's sample keys (-1 until
	// its first entry in stream order). The series' key is the keyword's and
	// the cell's field (see window.Keys.Samples): looked up once per entry
	// by that pair, made once per series.
	type series struct {
		key     string
		left, k int
	}
	var ser []series
	sid := make([]int, n) // series of each entry with samples
	made := make(map[[2]string]int, 64)
	byKey := make(map[string]int, 64) // made's pairs giving one key share a series
	takes := 0
	for e := n - 1; e >= 0; e-- {
		en := &pl.entries[e]
		if len(en.Samples) == 0 {
			continue
		}
		s, ok := made[[2]string{kwIDs[e], l.fields[e]}]
		if !ok {
			sk := l.p.keys.Samples(kwIDs[e], en.Host, en.Tag, en.Labels...)
			if s, ok = byKey[sk]; !ok {
				s = len(ser)
				byKey[sk] = s
				ser = append(ser, series{key: sk, left: perBatch, k: -1})
			}
			made[[2]string{kwIDs[e], l.fields[e]}] = s
		}
		sid[e] = s
		if q := ser[s].left; q > 0 {
			take[e] = min(q, len(en.Samples))
			ser[s].left = q - take[e]
			takes += take[e]
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
	picks := make([]pick, 0, takes)
	var perKey []int // picks of each sample key
	buf := make([]byte, 0, size)
	for e := range pl.entries {
		if take[e] == 0 {
			continue
		}
		en := &pl.entries[e]
		sr := &ser[sid[e]]
		if sr.k < 0 {
			sr.k = len(sampleKeys)
			sampleKeys = append(sampleKeys, sr.key)
			perKey = append(perKey, 0)
		}
		k := sr.k
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
	grouped := make([]pick, len(picks))
	for _, pk := range picks {
		grouped[at[pk.key]] = pk
		at[pk.key]++
	}
	// buf is not written again: the strings may share its bytes.
	all := unsafe.String(unsafe.SliceData(buf), len(buf))
	next := 0
	var nums []byte
	for k, sk := range sampleKeys {
		picks := grouped[next : next+perKey[k]]
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

// deadEntries writes the entries bound for the dead-letter stream.
func (l *argv) deadEntries() {
	for _, d := range l.pl.dead {
		r := l.record(deadWidth)
		r[deadID], r[deadReason], r[deadFields] = d.id, d.reason, d.fields
		if d.check {
			r[deadCheck] = "1"
		} else {
			r[deadCheck] = ""
		}
	}
}

// expirePairs writes the expiry of every window and seen set touched.
func (l *argv) expirePairs() {
	for _, x := range l.expires {
		r := l.record(expireWidth)
		r[expireKey], r[expireAt] = x.key, x.at
	}
}

// ackOnly writes the ids acknowledged without counting: too old, or a
// dedup id repeated within the batch.
func (l *argv) ackOnly() {
	for _, id := range l.pl.expired {
		l.args = append(l.args, id)
	}
	for _, id := range l.pl.repeats {
		l.args = append(l.args, id)
	}
}

// order returns the entry indexes sorted by version (1 and 2 first), event
// hour, then window cell, each in order of first appearance, stream order
// within.
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
		slices.SortStableFunc(ord, func(x, y int) int {
			if hr[x] != hr[y] {
				return cmp.Compare(hr[x], hr[y])
			}
			return cmp.Compare(cr[x], cr[y])
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
	overflow   map[string]int64 // window key -> entries counted in its overflow series
	applied    []stream.Entry
	duplicates int
	stale      int       // entries another consumer had taken over
	failed     []failure // entries that could not be counted (still pending)
	deadFailed []failure // dead entries that could not be written (still pending)
	deadStale  []int     // dead entries no longer this consumer's: not written
	// lost: in cursor mode, failed entries whose dead letter could not be
	// written either (the cursor moved past them).
	lost []failure
}

type failure struct {
	index int
	err   string
}

func parseResult(pl *plan, v any) (result, error) {
	var r result
	arr, ok := v.([]any)
	if !ok || len(arr) < 2 {
		return r, fmt.Errorf("apply script returned %T, want a 2- or 3-element array", v)
	}
	if len(arr) > 2 {
		ov, _ := arr[2].([]any)
		for j := 0; j+1 < len(ov); j += 2 {
			k, _ := ov[j].(string)
			n, _ := ov[j+1].(int64)
			if r.overflow == nil {
				r.overflow = map[string]int64{}
			}
			r.overflow[k] += n
		}
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
		case 'o':
			r.stale++
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
		if d, ok := strings.CutPrefix(k, "l"); ok {
			if n, _ := strconv.Atoi(d); n >= 1 && n <= len(pl.order) {
				r.lost = append(r.lost, failure{pl.order[n-1], msg})
			}
			continue
		}
		if d, ok := strings.CutPrefix(k, "s"); ok {
			n, _ := strconv.Atoi(d)
			r.deadStale = append(r.deadStale, n-1)
			continue
		}
		n, _ := strconv.Atoi(k)
		if n >= 1 && n <= len(pl.order) {
			r.failed = append(r.failed, failure{pl.order[n-1], msg})
		}
	}
	return r, nil
}

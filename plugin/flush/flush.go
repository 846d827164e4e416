// Package flush turns one Fluent Bit chunk into stream entries: it reads the
// chunk in place (package chunk), finds the keywords in the configured record
// values (package match) and counts them per keyword, series (host, tag and
// labels) and event minute (package aggregate). It does no I/O; the caller
// publishes the entries.
//
// Host and label values are read (package accessor, one walk per top-level
// key) only from records that contain a keyword, and sanitized
// (stream.SanitizeValue) so that no control byte, invalid UTF-8 or over-long
// value reaches the stream. A record whose top-level values were met earlier
// in the chunk reuses their host and label set. Labels from the tag
// (TagRegex) are computed once per chunk, as the tag is the chunk's.
//
// Per-flush state is pooled, so concurrent flushes (Fluent Bit `workers N`)
// each get their own and the steady state allocates nothing per record.
package flush

import (
	"hash/maphash"
	"regexp"
	"slices"
	"sync"

	"github.com/keyalert/keyalert/pkg/match"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/accessor"
	"github.com/keyalert/keyalert/plugin/aggregate"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// maxDepth bounds how deep `Keys *` descends into nested maps and arrays.
const maxDepth = 32

// Options are the parts of an instance's configuration the flush path uses.
type Options struct {
	// Keys are the top-level record keys whose str/bin values are scanned.
	Keys []string
	// AllKeys scans every str/bin value at any depth instead.
	AllKeys bool
	// HostnameKey reads the host from each record; when it reads nothing
	// (absent, empty or not a string), Hostname is used. Both are sanitized
	// (stream.SanitizeValue), as are the tag and the label values.
	HostnameKey accessor.Accessor
	Hostname    string
	// Samples is how many matching lines to keep per (keyword, host,
	// labels) per flush; SamplesPerFlush bounds them over the whole flush (0:
	// aggregate.DefaultSamplesPerFlush).
	Samples         int
	SamplesPerFlush int
	// Identity is the instance identity batch ids and the entries' producer
	// id (stream.ProducerID) are derived from.
	Identity string
	// Labels are read from each matching record (Label_Keys).
	Labels []Label
	// NoTag leaves the series' tag empty (Tag_Label off).
	NoTag bool
	// TagRegex's named groups are labels read from the chunk's tag; a tag it
	// does not match gives empty values.
	TagRegex *regexp.Regexp
	// MaxSeries bounds the distinct series per keyword per flush (0:
	// aggregate.DefaultMaxSeries); past it counts go to the overflow series.
	MaxSeries int
}

// Label is one label read from each record.
type Label struct {
	Name string
	Path accessor.Accessor
}

// Result is what one chunk produced.
type Result struct {
	// Batch is the chunk's batch id (stream.BatchID); it is computed only when
	// there are entries or a decode error, as nothing else needs it.
	Batch string
	// Entries are the counted series, sorted by keyword ID, host, label set, minute.
	Entries []stream.Entry
	// Events is the number of well-formed events read.
	Events int
	// Matched is how many of them contained at least one keyword.
	Matched int
	// Skipped counts events with intact framing but the wrong shape.
	Skipped int
	// Markers counts Fluent Bit group start/end markers passed over.
	Markers int
	// Err is the *chunk.DecodeError that stopped decoding, or nil. Entries
	// then count only the events before the break.
	Err error
	// Overflow is how many counts went to the overflow series because their
	// keyword had MaxSeries series already; OverflowKeywords are those
	// keywords' IDs.
	Overflow         int64
	OverflowKeywords []string
}

// Flusher processes chunks for one instance. It is safe for concurrent use.
type Flusher struct {
	opt     Options
	eager   bool // frame each record before walking it (Reader.Next); tests compare
	forget  bool // read every matching record's host and labels afresh (no state.seen); tests compare
	oneSlot bool // state.seen has one slot, so that every new value meets another; tests compare

	producer string // stream.ProducerID(opt.Identity)
	hostname string // opt.Hostname sanitized
	// names are every label's name, sorted (stream order); tagGroup[i] is
	// the TagRegex group of names[i], or -1 for a record label.
	names    []string
	tagGroup []int
	// tops are the distinct top-level keys the host and the record labels
	// start with, each with the tree of paths read under it. Every path
	// has a slot in state.raw: top i's paths fill the slots from
	// tops[i].slot on, in tree order.
	tops []top
	// slots is the number of paths; hostSlot is the host's slot (-1 without
	// Hostname_Key), labelSlot[pos] the slot of names[pos] (-1 for a
	// TagRegex label).
	slots     int
	hostSlot  int
	labelSlot []int
	// want are the top-level keys the record walk looks for, each once:
	// those of tops, and the Keys scanned (without AllKeys). wantLens has
	// bit min(len(key), 63) set for each.
	want     []wantKey
	wantLens uint64
	pool     sync.Pool
}

// wantKey is a top-level key the record walk looks for: tops[top] (-1:
// none) starts with it, and scan says its value is scanned.
type wantKey struct {
	key  string
	top  int
	scan bool
}

// top is one top-level record key and the paths read under it.
type top struct {
	key  string
	tree *accessor.Tree
	slot int
}

// New returns a flusher. Label names must be valid and unique (package
// config checks them).
func New(opt Options) *Flusher {
	if opt.SamplesPerFlush <= 0 {
		opt.SamplesPerFlush = aggregate.DefaultSamplesPerFlush
	}
	if opt.MaxSeries <= 0 {
		opt.MaxSeries = aggregate.DefaultMaxSeries
	}
	f := &Flusher{opt: opt, producer: stream.ProducerID(opt.Identity),
		hostname: string(stream.SanitizeValue(nil, []byte(opt.Hostname)))}

	type named struct {
		name  string
		group int
		path  accessor.Accessor
	}
	var all []named
	for _, l := range opt.Labels {
		all = append(all, named{name: l.Name, group: -1, path: l.Path})
	}
	if opt.TagRegex != nil {
		for g, n := range opt.TagRegex.SubexpNames() {
			if n != "" {
				all = append(all, named{name: n, group: g})
			}
		}
	}
	slices.SortFunc(all, func(a, b named) int { return cmpString(a.name, b.name) })
	// Group the paths by top-level key, the host's first; each read's
	// index in its group is its slot's offset.
	type read struct {
		pos  int // position in names, -1 for the host
		path accessor.Accessor
	}
	var groups [][]read
	add := func(r read) {
		for i, g := range groups {
			if g[0].path.Top() == r.path.Top() {
				groups[i] = append(g, r)
				return
			}
		}
		groups = append(groups, []read{r})
	}
	if !opt.HostnameKey.IsZero() {
		add(read{pos: -1, path: opt.HostnameKey})
	}
	for pos, n := range all {
		f.names = append(f.names, n.name)
		f.tagGroup = append(f.tagGroup, n.group)
		if n.group < 0 && !n.path.IsZero() { // a zero path reads nothing: an empty value
			add(read{pos: pos, path: n.path})
		}
	}
	f.hostSlot = -1
	f.labelSlot = make([]int, len(f.names))
	for i := range f.labelSlot {
		f.labelSlot[i] = -1
	}
	for _, g := range groups {
		paths := make([]accessor.Accessor, len(g))
		for j, r := range g {
			paths[j] = r.path
			if r.pos < 0 {
				f.hostSlot = f.slots + j
			} else {
				f.labelSlot[r.pos] = f.slots + j
			}
		}
		tree, err := accessor.NewTree(paths)
		if err != nil {
			// At most stream.MaxLabels labels and a host, all under g's key.
			panic("flush: " + err.Error())
		}
		f.tops = append(f.tops, top{key: g[0].path.Top(), tree: tree, slot: f.slots})
		f.slots += len(g)
	}
	wanted := func(key string) *wantKey {
		for i := range f.want {
			if f.want[i].key == key {
				return &f.want[i]
			}
		}
		f.want = append(f.want, wantKey{key: key, top: -1})
		f.wantLens |= 1 << min(len(key), 63)
		return &f.want[len(f.want)-1]
	}
	for i, t := range f.tops {
		if w := wanted(t.key); w.top < 0 { // the first, as the walk took
			w.top = i
		}
	}
	if !opt.AllKeys {
		for _, k := range opt.Keys {
			wanted(k).scan = true
		}
	}
	f.pool.New = func() any {
		a := aggregate.New()
		a.SetLabelNames(f.names)
		a.SetMaxSeries(opt.MaxSeries)
		return &state{agg: a, tagVals: make([][]byte, len(f.names)),
			topVals: make([][]byte, len(f.tops)), raw: make([][]byte, f.slots),
			seen: make([][]byte, seenSlots*len(f.tops)), like: make([][]byte, likePairs),
			hashed: make([][]byte, len(f.tops)), hashes: make([]uint64, len(f.tops))}
	}
	return f
}

// LabelNames are the names of every label of the flusher's series, sorted.
func (f *Flusher) LabelNames() []string { return slices.Clone(f.names) }

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// hit is a keyword found in a record, with the value it was first found in.
type hit struct {
	kw   int
	line []byte
}

// state is one flush's working memory, reused through the pool.
type state struct {
	f       *Flusher
	m       *match.Matcher
	scratch *match.Scratch
	agg     *aggregate.Aggregator
	r       chunk.Reader
	hits    []hit
	// tagVals are the sanitized TagRegex values of the chunk, by position
	// in Flusher.names; key and host are scratch for the sanitized label
	// set key and host.
	tagVals [][]byte
	key     []byte
	host    []byte
	// topVals[i] is the record's value under Flusher.tops[i], nil if absent.
	topVals [][]byte
	// raw are the host and record label values of the matching record at
	// hand, in place (nil when absent), by slot (see Flusher.slots).
	raw [][]byte
	// seen remembers the host and label set of the values under the tops
	// met in this chunk: slot i holds values seen[i*len(tops):][:len(tops)]
	// (nil: absent) and ids seenIDs[i], when seenIDs[i].ok. A matching
	// record with the same values as a slot reuses its ids instead of
	// walking, sanitizing and interning them again: a chunk holds one
	// container's lines (the tail input's tag is its file), so its
	// kubernetes maps are the same bytes all through.
	seen    [][]byte
	seenIDs [seenSlots]seenID
	// like[i] is the value of the last record's i-th top-level pair (see
	// chunk.Map.NextLike), for its first len(like) pairs.
	like [][]byte
	// hashes[i] is the fingerprint of hashed[i], the last value under
	// tops[i] that dims hashed.
	hashed [][]byte
	hashes []uint64
}

// likePairs is how many of a record's top-level pairs (in order) are
// compared with the last record's: the kubernetes filter's map comes fifth.
const likePairs = 16

// seenSlots is the size of state.seen, a direct-mapped cache indexed by a
// hash of the values: enough for the pods times levels of a chunk that
// mixes many.
const seenSlots = 256

type seenID struct {
	host, labels int32
	ok           bool
}

// seed is the hash seed of state.seen.
var seed = maphash.MakeSeed()

// Process counts the keywords of m in the chunk data, tagged tag. data is only
// read during the call; nothing in the result aliases it.
func (f *Flusher) Process(m *match.Matcher, data []byte, tag string) Result {
	var res Result
	if m == nil || m.Len() == 0 {
		return res
	}
	s := f.pool.Get().(*state)
	defer func() {
		// Drop every reference into data before the state is pooled.
		s.r.Reset(nil)
		clear(s.topVals)
		clear(s.raw)
		clear(s.seen)
		clear(s.like)
		clear(s.hashed)
		clear(s.seenIDs[:])
		clear(s.hits[:cap(s.hits)])
		s.agg.Reset(0, 0)
		f.pool.Put(s)
	}()
	s.f = f
	if s.m != m {
		s.m, s.scratch = m, m.NewScratch()
	}
	s.agg.Reset(f.opt.Samples, f.opt.SamplesPerFlush)
	defaultHost := s.agg.HostString(f.hostname)
	s.chunkLabels(tag)

	s.r.Reset(data)
	var ev chunk.Event
	for s.next(&ev) {
		matched, whole := s.record(&ev, defaultHost)
		if !whole {
			continue // broken framing: the reader reports it, nothing is counted
		}
		res.Events++
		if matched {
			res.Matched++
		}
	}
	res.Skipped, res.Markers, res.Err = s.r.Skipped(), s.r.Markers(), s.r.Err()
	if s.agg.Len() > 0 || res.Err != nil {
		res.Batch = stream.BatchID(f.opt.Identity, data)
		res.Entries = s.agg.Entries(m, res.Batch, f.seriesTag(tag), nil)
		for i := range res.Entries {
			res.Entries[i].Producer = f.producer
		}
	}
	if n, kws := s.agg.Overflowed(); n > 0 {
		res.Overflow = n
		for _, kw := range kws {
			res.OverflowKeywords = append(res.OverflowKeywords, m.Spec(int(kw)).ID())
		}
	}
	return res
}

// seriesTag is the tag of the chunk's series: empty with NoTag, else the
// tag sanitized.
func (f *Flusher) seriesTag(tag string) string {
	if f.opt.NoTag {
		return ""
	}
	if stream.ValidValue(tag) == nil {
		return tag
	}
	return string(stream.SanitizeValue(nil, []byte(tag)))
}

// chunkLabels sets the TagRegex labels of a chunk tagged tag.
func (s *state) chunkLabels(tag string) {
	re := s.f.opt.TagRegex
	if re == nil {
		return
	}
	m := re.FindStringSubmatchIndex(tag)
	for pos, g := range s.f.tagGroup {
		s.tagVals[pos] = s.tagVals[pos][:0]
		if g < 0 || m == nil || m[2*g] < 0 {
			continue
		}
		s.tagVals[pos] = stream.SanitizeValue(s.tagVals[pos], []byte(tag[m[2*g]:m[2*g+1]]))
	}
}

// next reads the next event: lazily, as the record walk finds each
// record's end, unless the flusher is eager (tests compare the two).
func (s *state) next(ev *chunk.Event) bool {
	if s.f.eager {
		return s.r.Next(ev)
	}
	return s.r.NextLazy(ev)
}

// record scans one event and counts its keywords; it reports whether any was
// found, and whether the record's framing is whole (walked to its end, which
// settles it in the reader): a broken record counts nothing.
func (s *state) record(ev *chunk.Event, defaultHost int32) (matched, whole bool) {
	s.scratch.Reset()
	s.hits = s.hits[:0]
	mp, err := chunk.NewMap(ev.Record)
	if err != nil {
		return false, false
	}
	opt := &s.f.opt
	tops, topVals := s.f.tops, s.topVals
	want, wantLens := s.f.want, s.f.wantLens
	clear(topVals)
	// The last record's value at the same place is the likely value here
	// (the kubernetes map of a container's lines), found by comparing bytes
	// instead of walking it.
	likes, forget := s.like, s.f.forget
	for pos := 0; ; pos++ {
		var like []byte
		if pos < len(likes) && !forget {
			like = likes[pos]
		}
		k, v, same, ok := mp.NextLike(like)
		if !ok {
			break
		}
		if same {
			// The same bytes: keep the run's first copy, so that dims
			// knows the value by its address.
			v = like
		}
		if pos < len(likes) {
			likes[pos] = v
		}
		// Remember where the host and labels start, so a matching record is
		// not walked again (the values are followed only if it matches),
		// and scan the Keys. Most keys are neither: their length says so.
		if wantLens&(1<<min(len(k), 63)) != 0 {
			for i := range want {
				w := &want[i]
				if string(k) != w.key {
					continue
				}
				if w.top >= 0 {
					topVals[w.top] = v
				}
				if w.scan {
					if t, ok := chunk.Text(v); ok {
						s.scan(t)
					}
				}
				break
			}
		}
		if opt.AllKeys {
			s.scanAll(v, 0)
		}
	}
	rest, whole := mp.Rest()
	if !whole {
		return false, false
	}
	s.r.Settle(len(ev.Record) - len(rest))
	if len(s.hits) == 0 {
		return false, true
	}
	hostID, labels := defaultHost, int32(0)
	if len(tops) > 0 || len(s.f.names) > 0 {
		hostID, labels = s.dims(defaultHost)
	}
	minute := ev.Minute()
	for _, h := range s.hits {
		s.agg.Add(h.kw, hostID, labels, minute, h.line)
	}
	return true, true
}

// dims reads a matching record's host and label set from the values under
// the top-level keys the record walk remembered (topVals): one walk of each
// for every path under it (accessor.Tree).
func (s *state) dims(defaultHost int32) (host, labels int32) {
	f := s.f
	n := len(f.tops)
	var seen [][]byte
	var slot *seenID
	if n > 0 && !f.forget {
		h := uint64(0)
		for j, v := range s.topVals {
			// A run of records with the same value shares its first copy
			// (see record): hash it once.
			if len(v) == 0 || len(v) != len(s.hashed[j]) || &v[0] != &s.hashed[j][0] {
				s.hashed[j], s.hashes[j] = v, fingerprint(v)
			}
			h = h*31 + s.hashes[j]
		}
		i := int(h % seenSlots)
		if f.oneSlot {
			i = 0
		}
		seen, slot = s.seen[i*n:(i+1)*n], &s.seenIDs[i]
		if slot.ok && sameValues(seen, s.topVals) {
			return slot.host, slot.labels
		}
	}
	clear(s.raw)
	for i := range f.tops {
		if v := s.topVals[i]; v != nil {
			t := &f.tops[i]
			t.tree.In(v, s.raw[t.slot:t.slot+t.tree.Len()])
		}
	}
	host = defaultHost
	if f.hostSlot >= 0 && len(s.raw[f.hostSlot]) > 0 {
		s.host = sanitize(s.host[:0], s.raw[f.hostSlot])
		host = s.agg.Host(s.host)
	}
	if len(f.names) > 0 {
		s.key = s.key[:0]
		for pos, at := range f.labelSlot {
			if pos > 0 {
				s.key = append(s.key, aggregate.LabelSep)
			}
			if at < 0 {
				s.key = append(s.key, s.tagVals[pos]...)
			} else {
				s.key = sanitize(s.key, s.raw[at])
			}
		}
		labels = s.agg.LabelSet(s.key)
	}
	if slot != nil {
		copy(seen, s.topVals)
		*slot = seenID{host: host, labels: labels, ok: true}
	}
	return host, labels
}

// fingerprint picks v's slot in state.seen: a hash of its length and its
// first 64 and last 32 bytes, not of all of it (hashing a 500-byte
// kubernetes map costs about as much as walking it; its pod and namespace
// names come first). Values that differ only in between share a slot and
// take turns in it: slower, never wrong, as a hit compares every byte.
func fingerprint(v []byte) uint64 {
	const head, tail = 64, 32
	if len(v) <= head+tail {
		return maphash.Bytes(seed, v)
	}
	return maphash.Bytes(seed, v[:head]) ^ maphash.Bytes(seed, v[len(v)-tail:])*31 ^ uint64(len(v))
}

// sameValues reports whether a and b hold the same bytes slot by slot; the
// same slice (a run of records with the same value shares its first copy,
// see record) is not compared.
func sameValues(a, b [][]byte) bool {
	for i := range a {
		if len(a[i]) != len(b[i]) || len(a[i]) > 0 && &a[i][0] != &b[i][0] && string(a[i]) != string(b[i]) {
			return false
		}
	}
	return true
}

// scan matches one value; keywords new to this record remember it as their line.
func (s *state) scan(text []byte) {
	before := len(s.scratch.Found())
	s.m.Scan(text, s.scratch)
	for _, kw := range s.scratch.Found()[before:] {
		s.hits = append(s.hits, hit{kw: kw, line: text})
	}
}

// scanAll scans every str/bin value in v, descending into maps and arrays.
func (s *state) scanAll(v []byte, depth int) {
	if t, ok := chunk.Text(v); ok {
		s.scan(t)
		return
	}
	if depth >= maxDepth {
		return
	}
	if mp, err := chunk.NewMap(v); err == nil {
		for {
			_, val, ok := mp.Next()
			if !ok {
				return
			}
			s.scanAll(val, depth+1)
		}
	}
	if a, ok := chunk.NewArray(v); ok {
		for {
			e, ok := a.Next()
			if !ok {
				return
			}
			s.scanAll(e, depth+1)
		}
	}
}

// sanitize is stream.SanitizeValue with a fast path for the common value:
// printable ASCII within the length limit, appended as it is.
func sanitize(dst, raw []byte) []byte {
	if len(raw) <= stream.MaxLabelValueBytes {
		clean := true
		for _, c := range raw {
			if c < 0x20 || c >= 0x7f {
				clean = false
				break
			}
		}
		if clean {
			return append(dst, raw...)
		}
	}
	return stream.SanitizeValue(dst, raw)
}

// Package aggregate counts one flush's keyword hits per (keyword, host,
// labels, event minute) series and keeps the first sample lines of each
// (keyword, host, labels) group, so every series of a chunk gets its own (the
// tag is the chunk's). An Aggregator is reused flush after flush, so
// steady-state counting allocates nothing: hosts and label sets are interned
// once, series live in a reused slice and index.
//
// A keyword's distinct series per flush are bounded (SetMaxSeries): past the
// bound its counts go to the overflow series, whose host, tag and every
// label are stream.OverflowValue, and Overflow counts them.
package aggregate

import (
	"cmp"
	"math/bits"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
)

// Specs gives a keyword's canonical spec by index; *match.Matcher is one.
type Specs interface {
	Len() int
	Spec(i int) keyword.Spec
}

// maxInternedHosts bounds the host table kept between flushes, so a
// Hostname_Key with ever-changing values cannot grow it without limit; the
// label set table has the same bound.
const maxInternedHosts = 4096

// DefaultSamplesPerFlush and MaxSamplesPerFlush bound the sample lines one
// flush keeps over all its series: with samples per (keyword, host), a chunk
// of many hosts would otherwise copy up to hosts × keywords × 512 bytes.
const (
	DefaultSamplesPerFlush = 1000
	MaxSamplesPerFlush     = 100000
)

// DefaultMaxSeries and MaxMaxSeries bound the distinct series (host, tag,
// labels) one keyword may have in one flush (the plugin's Max_Series).
const (
	DefaultMaxSeries = 1000
	MaxMaxSeries     = 100000
)

// Overflow is the host and label set id of the overflow series.
const Overflow int32 = -1

// LabelSep separates the values of a label set key (see LabelSet): sanitized
// values hold no control bytes, so it cannot occur inside one.
const LabelSep = '\x00'

// groupKey is what the Samples bound and the series limit apply to: one
// keyword in one series (host and labels; the tag is the chunk's).
type groupKey struct {
	kw     int32
	host   int32
	labels int32
}

type seriesKey struct {
	groupKey
	minute int64
}

type series struct {
	seriesKey
	count   int64
	group   int32    // index into Aggregator.taken
	samples [][]byte // alias the chunk until Entries copies them
}

// Aggregator collects the counts of one flush. It is not safe for concurrent
// use; each concurrent flush takes its own (see sync.Pool in package flush).
type Aggregator struct {
	samples   int
	perFlush  int // samples left for this flush over all groups
	maxSeries int // 0: unbounded
	hostIDs   map[string]int32
	hosts     []string
	names     []string // label names, sorted
	labelIDs  map[string]int32
	labelSets []string // LabelSep-joined values, in names' order
	// labelLists[id] is labelSets[id] as entry labels, built on the set's
	// first Entries and kept while the set is interned.
	labelLists [][]stream.Label
	overLabels []stream.Label // the overflow series' labels
	index      map[seriesKey]int32
	// recent[slot(k)] is 1 + the index of a series recently counted, so
	// that a record of a series just counted (the usual case: a chunk is
	// one container's lines, minute after minute) skips hashing the key
	// into index. A slot is trusted only when its series has key k.
	recent   [recentSlots]int32
	series   []series
	groups   map[groupKey]int32 // looked up only when a series is new
	taken    []int32            // samples taken per group this flush
	perKw    []int32            // groups per keyword this flush, overflow not counted
	overflow int64              // counts sent to the overflow series this flush
	overKw   []int32            // keywords that overflowed this flush, in order
	// Entries' scratch, kept between flushes: the series' sort keys, and
	// the rank of each keyword, host and label set (by index, id+1 for
	// hosts and sets so that Overflow is 0) in its order, -1 when unused.
	keys, sorted                  []sortKey
	packed                        []uint64
	kwRank, hostRank, labelRank   []int32
	kwIDs                         []string
	usedKw, usedHosts, usedLabels []int32
}

// sortKey orders a series by the ranks of its keyword ID, host and label
// set, then by minute: comparing small integers instead of the strings.
type sortKey struct {
	kw, host, labels int32
	i                int32 // index in series
	minute           int64
}

// New returns an empty aggregator without labels or series limit.
func New() *Aggregator {
	a := &Aggregator{hostIDs: map[string]int32{}, labelIDs: map[string]int32{}, index: map[seriesKey]int32{}, groups: map[groupKey]int32{}}
	a.LabelSetString("")
	return a
}

// SetLabelNames sets the names of the label sets' values, sorted by name
// (stream order); a label set key holds one value per name.
func (a *Aggregator) SetLabelNames(sorted []string) { a.names = sorted }

// SetMaxSeries bounds the distinct series per keyword per flush; 0 lifts it.
func (a *Aggregator) SetMaxSeries(n int) { a.maxSeries = n }

// Reset starts a flush, keeping up to samples lines per (keyword, host,
// labels) and up to perFlush lines in all. Interned hosts and label sets
// survive, so their strings are not built again.
func (a *Aggregator) Reset(samples, perFlush int) {
	a.samples, a.perFlush = samples, perFlush
	if len(a.hosts) > maxInternedHosts {
		clear(a.hostIDs)
		a.hosts = a.hosts[:0]
	}
	if len(a.labelSets) > maxInternedHosts {
		clear(a.labelIDs)
		a.labelSets = a.labelSets[:0]
		clear(a.labelLists)
		a.labelLists = a.labelLists[:0]
		a.LabelSetString("") // id 0 stays the empty set
	}
	clear(a.index)
	clear(a.recent[:])
	for i := range a.series {
		clear(a.series[i].samples) // drop references into the last chunk
		a.series[i].samples = a.series[i].samples[:0]
	}
	a.series = a.series[:0]
	clear(a.groups)
	a.taken = a.taken[:0]
	clear(a.perKw)
	a.overflow = 0
	a.overKw = a.overKw[:0]
}

// Host returns the id of a host name, interning it on first sight. The lookup
// with string(name) does not allocate.
func (a *Aggregator) Host(name []byte) int32 {
	if id, ok := a.hostIDs[string(name)]; ok {
		return id
	}
	return a.HostString(string(name))
}

// HostString is Host for a string name.
func (a *Aggregator) HostString(name string) int32 {
	if id, ok := a.hostIDs[name]; ok {
		return id
	}
	id := int32(len(a.hosts))
	a.hosts = append(a.hosts, name)
	a.hostIDs[name] = id
	return id
}

// LabelSet returns the id of a label set, interning it on first sight: key
// is the sanitized values in the order of the names, joined by LabelSep.
// Id 0 is the set whose key is "" (no labels, or one empty value).
func (a *Aggregator) LabelSet(key []byte) int32 {
	if id, ok := a.labelIDs[string(key)]; ok {
		return id
	}
	return a.LabelSetString(string(key))
}

// LabelSetString is LabelSet for a string key.
func (a *Aggregator) LabelSetString(key string) int32 {
	if id, ok := a.labelIDs[key]; ok {
		return id
	}
	id := int32(len(a.labelSets))
	a.labelSets = append(a.labelSets, key)
	a.labelLists = append(a.labelLists, nil)
	a.labelIDs[key] = id
	return id
}

// Add counts one record containing keyword kw, from host with label set
// labels, in the minute starting at minute (Unix seconds). line is the value
// the keyword was found in; it is kept as a sample while its series' group
// has fewer than the configured samples and the flush's bound is not
// reached, and must stay valid until Entries. A new series past the
// keyword's limit is counted in the overflow series instead.
func (a *Aggregator) Add(kw int, host, labels int32, minute int64, line []byte) {
	k := seriesKey{groupKey: groupKey{kw: int32(kw), host: host, labels: labels}, minute: minute}
	slot := k.slot()
	i := a.recent[slot] - 1
	if i < 0 || int(i) >= len(a.series) || a.series[i].seriesKey != k {
		var ok bool
		if i, ok = a.index[k]; !ok {
			i = a.newSeries(k)
		}
		a.recent[slot] = i + 1
	}
	s := &a.series[i]
	s.count++
	if a.perFlush > 0 && int(a.taken[s.group]) < a.samples {
		a.taken[s.group]++
		a.perFlush--
		s.samples = append(s.samples, line)
	}
}

// recentSlots is the size of Aggregator.recent.
const (
	recentBits  = 8
	recentSlots = 1 << recentBits
)

// slot picks k's slot in Aggregator.recent: a multiplicative hash of its
// fields.
func (k seriesKey) slot() int {
	h := uint64(uint32(k.kw)) | uint64(uint32(k.host))<<32
	h = (h ^ uint64(uint32(k.labels))*0x9e3779b97f4a7c15 ^ uint64(k.minute)) * 0xbf58476d1ce4e5b9
	return int(h >> (64 - recentBits))
}

// newSeries adds the series k, found in its group (a series per minute shares
// the group's sample budget), reusing the slices of earlier flushes. A group
// new to a keyword at its limit becomes the overflow group.
func (a *Aggregator) newSeries(k seriesKey) int32 {
	g, ok := a.groups[k.groupKey]
	if !ok && a.maxSeries > 0 && k.host != Overflow {
		for int(k.kw) >= len(a.perKw) {
			a.perKw = append(a.perKw, 0)
		}
		if int(a.perKw[k.kw]) >= a.maxSeries {
			return a.overflowSeries(k)
		}
		a.perKw[k.kw]++
	}
	if !ok {
		g = int32(len(a.taken))
		a.taken = append(a.taken, 0)
		a.groups[k.groupKey] = g
	}
	i := int32(len(a.series))
	if len(a.series) < cap(a.series) {
		a.series = a.series[:i+1]
		a.series[i].seriesKey = k
		a.series[i].count = 0
	} else {
		a.series = append(a.series, series{seriesKey: k})
	}
	a.series[i].group = g
	a.index[k] = i
	return i
}

// overflowSeries returns the overflow series of k's keyword and minute,
// counting the diverted record.
func (a *Aggregator) overflowSeries(k seriesKey) int32 {
	if a.overflow == 0 || !containsKw(a.overKw, k.kw) {
		a.overKw = append(a.overKw, k.kw)
	}
	a.overflow++
	k.host, k.labels = Overflow, Overflow
	if i, ok := a.index[k]; ok {
		return i
	}
	return a.newSeries(k)
}

func containsKw(kws []int32, kw int32) bool {
	for _, k := range kws {
		if k == kw {
			return true
		}
	}
	return false
}

// Len is the number of series counted so far.
func (a *Aggregator) Len() int { return len(a.series) }

// Overflowed is how many counts of this flush went to the overflow series,
// and the keywords (by index) they belong to, in the order they overflowed.
func (a *Aggregator) Overflowed() (int64, []int32) { return a.overflow, a.overKw }

// Entries appends one entry per series to dst, sorted by keyword ID, host,
// labels and minute, with samples cut to stream.MaxSampleBytes and copied out
// of the chunk. Labels with an empty value are left out of an entry. The
// overflow series has host, tag and every label stream.OverflowValue.
// Entries of one label set share its Labels slice, also with later flushes:
// they are read-only.
func (a *Aggregator) Entries(specs Specs, batch, tag string, dst []stream.Entry) []stream.Entry {
	if len(a.series) == 0 {
		return dst
	}
	// Rank every keyword ID, host and label set the series use, then sort
	// small integer keys and build the entries in that order: a flush
	// with labels may have thousands of series, and comparing their
	// strings, or moving whole entries while sorting, cost more than
	// building them.
	a.usedKw, a.usedHosts, a.usedLabels = a.usedKw[:0], a.usedHosts[:0], a.usedLabels[:0]
	for i := range a.series {
		s := &a.series[i]
		a.kwRank = mark(a.kwRank, s.kw, &a.usedKw)
		a.hostRank = mark(a.hostRank, s.host+1, &a.usedHosts)
		a.labelRank = mark(a.labelRank, s.labels+1, &a.usedLabels)
	}
	for len(a.kwIDs) < len(a.kwRank) {
		a.kwIDs = append(a.kwIDs, "")
	}
	for _, kw := range a.usedKw {
		a.kwIDs[kw] = specs.Spec(int(kw)).ID()
	}
	rank(a.usedKw, a.kwRank, func(kw int32) string { return a.kwIDs[kw] })
	rank(a.usedHosts, a.hostRank, a.hostName)
	rank(a.usedLabels, a.labelRank, a.labelSetKey)
	keys := a.keys[:0]
	for i := range a.series {
		s := &a.series[i]
		keys = append(keys, sortKey{kw: a.kwRank[s.kw], host: a.hostRank[s.host+1], labels: a.labelRank[s.labels+1], i: int32(i), minute: s.minute})
	}
	keys, a.sorted, a.packed = sortKeys(keys, a.sorted, a.packed)
	a.keys = keys
	defer func() {
		for _, kw := range a.usedKw {
			a.kwRank[kw], a.kwIDs[kw] = -1, ""
		}
		for _, h := range a.usedHosts {
			a.hostRank[h] = -1
		}
		for _, l := range a.usedLabels {
			a.labelRank[l] = -1
		}
	}()
	// Every sample of the flush is cut into one string and every entry's
	// Samples into one slice, so that a flush of many series costs a few
	// allocations, not two per series.
	nSamples, nBytes := 0, 0
	for i := range a.series {
		for _, l := range a.series[i].samples {
			nSamples++
			nBytes += cutLen(l)
		}
	}
	var text strings.Builder
	text.Grow(nBytes)
	for _, k := range keys {
		for _, l := range a.series[k.i].samples {
			text.Write(l[:cutLen(l)])
		}
	}
	all, allSamples, off := text.String(), make([]string, nSamples), 0
	dst = slices.Grow(dst, len(keys))
	for _, k := range keys {
		s := &a.series[k.i]
		e := stream.Entry{
			Batch:   batch,
			Keyword: specs.Spec(int(s.kw)),
			Tag:     tag,
			Host:    a.hostName(s.host + 1),
			Minute:  s.minute,
			Count:   s.count,
			Labels:  a.labels(s.labels),
		}
		if s.host == Overflow {
			e.Tag = stream.OverflowValue
		}
		if n := len(s.samples); n > 0 {
			e.Samples, allSamples = allSamples[:n:n], allSamples[n:]
			for j, l := range s.samples {
				c := cutLen(l)
				e.Samples[j] = all[off : off+c]
				off += c
			}
		}
		dst = append(dst, e)
	}
	return dst
}

func cmpKeys(x, y sortKey) int {
	if c := cmp.Compare(x.kw, y.kw); c != 0 {
		return c
	}
	if c := cmp.Compare(x.host, y.host); c != 0 {
		return c
	}
	if c := cmp.Compare(x.labels, y.labels); c != 0 {
		return c
	}
	return cmp.Compare(x.minute, y.minute)
}

// sortKeys returns keys (keys[i].i == i) sorted by cmpKeys, in keys or in
// buf; the other is returned as the next call's buf. Its ranks and indexes
// are below len(keys), so when four of them fit in 64 bits it sorts one
// integer per series (ranks, then index) and then each run of series that
// differ only in their minute, instead of calling cmpKeys a few thousand
// times.
func sortKeys(keys, buf []sortKey, packed []uint64) (sorted, spare []sortKey, _ []uint64) {
	b := bits.Len(uint(len(keys)))
	if 4*b > 64 {
		slices.SortFunc(keys, cmpKeys)
		return keys, buf, packed
	}
	packed = packed[:0]
	for _, k := range keys {
		packed = append(packed, uint64(k.kw)<<(3*b)|uint64(k.host)<<(2*b)|uint64(k.labels)<<b|uint64(k.i))
	}
	slices.Sort(packed)
	buf = buf[:0]
	mask := uint64(1)<<b - 1
	for _, p := range packed {
		buf = append(buf, keys[p&mask])
	}
	for start := 0; start < len(packed); {
		end := start + 1
		for end < len(packed) && packed[end]>>b == packed[start]>>b {
			end++
		}
		if end-start > 1 {
			slices.SortFunc(buf[start:end], func(x, y sortKey) int { return cmp.Compare(x.minute, y.minute) })
		}
		start = end
	}
	return buf, keys, packed
}

// mark notes index i (from 0) as used, growing ranks (unused: -1) to hold
// it; used lists each index once.
func mark(ranks []int32, i int32, used *[]int32) []int32 {
	for int(i) >= len(ranks) {
		ranks = append(ranks, -1)
	}
	if ranks[i] == -1 {
		ranks[i] = -2
		*used = append(*used, i)
	}
	return ranks
}

// rank sorts used by name and sets ranks[i] to each one's place, equal
// names ranking equal (so the order is the names' order, as if sorting
// the strings themselves).
func rank(used, ranks []int32, name func(int32) string) {
	slices.SortFunc(used, func(x, y int32) int { return strings.Compare(name(x), name(y)) })
	r := int32(0)
	for j, i := range used {
		if j > 0 && name(i) != name(used[j-1]) {
			r++
		}
		ranks[i] = r
	}
}

// hostName is the name of host id h-1: stream.OverflowValue for Overflow.
func (a *Aggregator) hostName(h int32) string {
	if h == 0 {
		return stream.OverflowValue
	}
	return a.hosts[h-1]
}

// labelSetKey is the key of label set id l-1 to sort by: Overflow after
// every real set (sanitized values are UTF-8, without byte 0xff).
func (a *Aggregator) labelSetKey(l int32) string {
	if l == 0 {
		return "\xff"
	}
	return a.labelSets[l-1]
}

// cutLen is the length stream.CutSample cuts line to: at most
// stream.MaxSampleBytes, not splitting a UTF-8 sequence.
func cutLen(line []byte) int {
	if len(line) <= stream.MaxSampleBytes {
		return len(line)
	}
	n := stream.MaxSampleBytes
	for n > 0 && !utf8.RuneStart(line[n]) {
		n--
	}
	return n
}

// labels returns label set id as entry labels, empty values left out; nil
// when it has none. Built once per interned set.
func (a *Aggregator) labels(id int32) []stream.Label {
	if len(a.names) == 0 {
		return nil
	}
	if id == Overflow {
		if a.overLabels == nil {
			for _, n := range a.names {
				a.overLabels = append(a.overLabels, stream.Label{Name: n, Value: stream.OverflowValue})
			}
		}
		return a.overLabels
	}
	if l := a.labelLists[id]; l != nil || a.labelSets[id] == "" {
		if len(l) == 0 {
			return nil
		}
		return l
	}
	var out []stream.Label
	rest := a.labelSets[id]
	for _, n := range a.names {
		v, after, _ := strings.Cut(rest, string(rune(LabelSep)))
		if v != "" {
			out = append(out, stream.Label{Name: n, Value: v})
		}
		rest = after
	}
	// A set of empty values only has no labels; cache it as empty, not nil.
	if out == nil {
		out = []stream.Label{}
	}
	a.labelLists[id] = out
	if len(out) == 0 {
		return nil
	}
	return out
}

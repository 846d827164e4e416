// Package aggregate counts one flush's keyword hits per (keyword, host, event
// minute) series and keeps the first sample lines of each (keyword, host)
// group, so every host of a chunk gets its own (the tag is the chunk's). An
// Aggregator is reused flush after flush, so steady-state counting allocates
// nothing: hosts are interned once, series live in a reused slice and index.
package aggregate

import (
	"sort"

	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
)

// Specs gives a keyword's canonical spec by index; *match.Matcher is one.
type Specs interface {
	Len() int
	Spec(i int) keyword.Spec
}

// maxInternedHosts bounds the host table kept between flushes, so a
// Hostname_Key with ever-changing values cannot grow it without limit.
const maxInternedHosts = 4096

// DefaultSamplesPerFlush and MaxSamplesPerFlush bound the sample lines one
// flush keeps over all its series: with samples per (keyword, host), a chunk
// of many hosts would otherwise copy up to hosts × keywords × 512 bytes.
const (
	DefaultSamplesPerFlush = 1000
	MaxSamplesPerFlush     = 100000
)

// groupKey is what the Samples bound applies to: one keyword on one host.
type groupKey struct {
	kw   int32
	host int32
}

type seriesKey struct {
	kw     int32
	host   int32
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
	samples  int
	perFlush int // samples left for this flush over all groups
	hostIDs  map[string]int32
	hosts    []string
	index    map[seriesKey]int32
	series   []series
	groups   map[groupKey]int32 // looked up only when a series is new
	taken    []int32            // samples taken per group this flush
}

// New returns an empty aggregator.
func New() *Aggregator {
	return &Aggregator{hostIDs: map[string]int32{}, index: map[seriesKey]int32{}, groups: map[groupKey]int32{}}
}

// Reset starts a flush, keeping up to samples lines per (keyword, host) and
// up to perFlush lines in all. Interned hosts survive, so their strings are
// not built again.
func (a *Aggregator) Reset(samples, perFlush int) {
	a.samples, a.perFlush = samples, perFlush
	if len(a.hosts) > maxInternedHosts {
		clear(a.hostIDs)
		a.hosts = a.hosts[:0]
	}
	clear(a.index)
	for i := range a.series {
		clear(a.series[i].samples) // drop references into the last chunk
		a.series[i].samples = a.series[i].samples[:0]
	}
	a.series = a.series[:0]
	clear(a.groups)
	a.taken = a.taken[:0]
}

// Host returns the id of a host name, interning it on first sight. The lookup
// with string(name) does not allocate.
func (a *Aggregator) Host(name []byte) int32 {
	if id, ok := a.hostIDs[string(name)]; ok {
		return id
	}
	id := int32(len(a.hosts))
	s := string(name)
	a.hosts = append(a.hosts, s)
	a.hostIDs[s] = id
	return id
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

// Add counts one record containing keyword kw, from host, in the minute
// starting at minute (Unix seconds). line is the value the keyword was found
// in; it is kept as a sample while its (keyword, host) group has fewer than
// the configured samples and the flush's bound is not reached, and must stay
// valid until Entries.
func (a *Aggregator) Add(kw int, host int32, minute int64, line []byte) {
	k := seriesKey{kw: int32(kw), host: host, minute: minute}
	i, ok := a.index[k]
	if !ok {
		i = a.newSeries(k)
	}
	s := &a.series[i]
	s.count++
	if a.perFlush > 0 && int(a.taken[s.group]) < a.samples {
		a.taken[s.group]++
		a.perFlush--
		s.samples = append(s.samples, line)
	}
}

// newSeries adds the series k, found in its group (a series per minute shares
// the group's sample budget), reusing the slices of earlier flushes.
func (a *Aggregator) newSeries(k seriesKey) int32 {
	gk := groupKey{kw: k.kw, host: k.host}
	g, ok := a.groups[gk]
	if !ok {
		g = int32(len(a.taken))
		a.taken = append(a.taken, 0)
		a.groups[gk] = g
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

// Len is the number of series counted so far.
func (a *Aggregator) Len() int { return len(a.series) }

// Entries appends one entry per series to dst, sorted by keyword ID, host and
// minute, with samples cut to stream.MaxSampleBytes and copied out of the chunk.
func (a *Aggregator) Entries(specs Specs, batch, tag string, dst []stream.Entry) []stream.Entry {
	if len(a.series) == 0 {
		return dst
	}
	type keyed struct {
		id string
		e  stream.Entry
	}
	ids := make(map[int32]string)
	out := make([]keyed, len(a.series))
	for i := range a.series {
		s := &a.series[i]
		id, ok := ids[s.kw]
		if !ok {
			id = specs.Spec(int(s.kw)).ID()
			ids[s.kw] = id
		}
		out[i] = keyed{id: id, e: stream.Entry{
			Batch:   batch,
			Keyword: specs.Spec(int(s.kw)),
			Tag:     tag,
			Host:    a.hosts[s.host],
			Minute:  s.minute,
			Count:   s.count,
		}}
		if len(s.samples) > 0 {
			out[i].e.Samples = make([]string, len(s.samples))
			for j, l := range s.samples {
				out[i].e.Samples[j] = stream.CutSample(l)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		x, y := &out[i], &out[j]
		if x.id != y.id {
			return x.id < y.id
		}
		if x.e.Host != y.e.Host {
			return x.e.Host < y.e.Host
		}
		return x.e.Minute < y.e.Minute
	})
	for i := range out {
		dst = append(dst, out[i].e)
	}
	return dst
}

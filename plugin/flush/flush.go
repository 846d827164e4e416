// Package flush turns one Fluent Bit chunk into stream entries: it reads the
// chunk in place (package chunk), finds the keywords in the configured record
// values (package match) and counts them per keyword, host and event minute
// (package aggregate). It does no I/O; the caller publishes the entries.
//
// Per-flush state is pooled, so concurrent flushes (Fluent Bit `workers N`)
// each get their own and the steady state allocates nothing per record.
package flush

import (
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
	// (absent, empty or not a string), Hostname is used.
	HostnameKey accessor.Accessor
	Hostname    string
	// Samples is how many matching lines to keep per (keyword, host) per
	// flush; SamplesPerFlush bounds them over the whole flush (0:
	// aggregate.DefaultSamplesPerFlush).
	Samples         int
	SamplesPerFlush int
	// Identity is the instance identity batch ids and the entries' producer
	// id (stream.ProducerID) are derived from.
	Identity string
}

// Result is what one chunk produced.
type Result struct {
	// Batch is the chunk's batch id (stream.BatchID); it is computed only when
	// there are entries or a decode error, as nothing else needs it.
	Batch string
	// Entries are the counted series, sorted by keyword ID, host, minute.
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
}

// Flusher processes chunks for one instance. It is safe for concurrent use.
type Flusher struct {
	opt      Options
	producer string // stream.ProducerID(opt.Identity)
	pool     sync.Pool
}

// New returns a flusher.
func New(opt Options) *Flusher {
	if opt.SamplesPerFlush <= 0 {
		opt.SamplesPerFlush = aggregate.DefaultSamplesPerFlush
	}
	f := &Flusher{opt: opt, producer: stream.ProducerID(opt.Identity)}
	f.pool.New = func() any { return &state{agg: aggregate.New()} }
	return f
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
}

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
		clear(s.hits[:cap(s.hits)])
		s.agg.Reset(0, 0)
		f.pool.Put(s)
	}()
	s.f = f
	if s.m != m {
		s.m, s.scratch = m, m.NewScratch()
	}
	s.agg.Reset(f.opt.Samples, f.opt.SamplesPerFlush)
	defaultHost := s.agg.HostString(f.opt.Hostname)

	s.r.Reset(data)
	var ev chunk.Event
	for s.r.Next(&ev) {
		res.Events++
		if s.record(&ev, defaultHost) {
			res.Matched++
		}
	}
	res.Skipped, res.Markers, res.Err = s.r.Skipped(), s.r.Markers(), s.r.Err()
	if s.agg.Len() > 0 || res.Err != nil {
		res.Batch = stream.BatchID(f.opt.Identity, data)
		res.Entries = s.agg.Entries(m, res.Batch, tag, nil)
		for i := range res.Entries {
			res.Entries[i].Producer = f.producer
		}
	}
	return res
}

// record scans one event and counts its keywords; it reports whether any was found.
func (s *state) record(ev *chunk.Event, defaultHost int32) bool {
	s.scratch.Reset()
	s.hits = s.hits[:0]
	mp, err := chunk.NewMap(ev.Record)
	if err != nil {
		return false
	}
	opt := &s.f.opt
	hostTop := opt.HostnameKey.Top()
	var host []byte
	for {
		k, v, ok := mp.Next()
		if !ok {
			break
		}
		if hostTop != "" && string(k) == hostTop {
			if t, ok := opt.HostnameKey.In(v); ok {
				host = t
			}
		}
		if opt.AllKeys {
			s.scanAll(v, 0)
			continue
		}
		for _, key := range opt.Keys {
			if string(k) == key {
				if t, ok := chunk.Text(v); ok {
					s.scan(t)
				}
				break
			}
		}
	}
	if len(s.hits) == 0 {
		return false
	}
	hostID := defaultHost
	if len(host) > 0 {
		hostID = s.agg.Host(host)
	}
	minute := ev.Minute()
	for _, h := range s.hits {
		s.agg.Add(h.kw, hostID, minute, h.line)
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

// Package window owns the Redis layout of keyalertd's per-minute counts and
// reads it back. All keys of one stream carry the stream's cluster hash tag, so
// the ingest script can touch them with the stream in one slot:
//
//	ka:{tag}:w:<keywordID>:<minute>   HASH  Field (host, tag, labels) -> count
//	ka:{tag}:w:<keywordID>:<minute>\x00P<i>  HASH  the same, piece i of a minute past HostSumsMax cells (Keys.Piece)
//	ka:{tag}:s:<keywordID>\x00<field>  LIST  sample JSON of one series, newest first, capped
//	ka:{tag}:p:<producer>             HASH  g, t, n, s, q: a producer's current dedup generation, its start, its chunks, shards of g and g-1
//	ka:{tag}:p:<producer>:<g>[:<s>]   HASH  chunk (16 raw bytes) -> attempt (8 raw bytes), generation g (shard s)
//	ka:{tag}:seen:<hour>              SET   dedup ids of version 1 and 2 entries, by event hour
//	ka:{tag}:fence:<group>            STRING  counter bumped before every read that delivers entries again
//
// <minute> is Unix seconds of the minute start, <hour> is minute/3600. Window
// hashes expire Retention after their minute ends. A keyword-minute's cells
// are one hash while it has at most HostSumsMax of them (Redis keeps it a
// compact listpack, ~20-40 bytes a cell, where a larger hash is a hashtable
// at ~72-88); past that the ingest script moves them, once, into pieces by
// host (PieceOf: all cells of a host in one piece), whose number the
// minute's host sums record (PiecesField), and the window hash is gone
// unless a replica of an earlier version writes to it again. Every reader
// of cells reads the window hash and the pieces; pieces expire with the
// minute. Sample lists are per
// (keyword, host, tag) series, so a busy host cannot push a quiet one's lines
// out; they expire Retention after their last write. The dedup keys are kept
// for the dedup window only (package ingest says how): their size depends
// on the producers and the window, not on the entries or the retention.
package window

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/pkg/streamshard"
	"github.com/redis/go-redis/v9"
)

// MaxMinutes bounds one query: 31 days of minutes.
const MaxMinutes = 31 * 24 * 60

// DefaultRetention is how long counts are kept, and so how far back they can
// be read: ingest writes with it, the API bounds queries by it.
const DefaultRetention = 7 * 24 * time.Hour

// Keys names the keys belonging to one stream.
type Keys struct {
	prefix string // "ka:{tag}:"
}

// NewKeys returns the key names for streamKey.
func NewKeys(streamKey string) Keys {
	return Keys{prefix: "ka:" + stream.HashTag(streamKey) + ":"}
}

// Window is the hash of one keyword's counts in one minute.
func (k Keys) Window(kwID string, minute int64) string {
	return k.prefix + "w:" + kwID + ":" + strconv.FormatInt(minute, 10)
}

// Samples is the list of one (keyword, host, tag, labels) series' recent
// sample lines. NUL separates the parts because a keyword ID may hold ':'
// and a host cannot hold NUL (see Field), so no two series share a key.
func (k Keys) Samples(kwID, host, tag string, labels ...stream.Label) string {
	return k.prefix + "s:" + kwID + "\x00" + Field(host, tag, labels...)
}

// Seen is the set of dedup ids applied for version 1 and 2 entries of
// minute's hour.
func (k Keys) Seen(minute int64) string {
	return k.prefix + "seen:" + strconv.FormatInt(floorDiv(minute, 3600), 10)
}

// Fence is the counter a consumer group bumps before re-reading or
// claiming pending entries: a batch read while it did not move is still
// wholly its reader's.
func (k Keys) Fence(group string) string {
	return k.prefix + "fence:" + group
}

// Producer is the hash holding one producer's dedup state (generation,
// start, size, shard counts); its generations are the hashes
// Producer(id) + ":" + g, or, cut into shards, Producer(id) + ":" + g + ":" + shard.
func (k Keys) Producer(id string) string {
	return k.prefix + "p:" + id
}

// Hour is the seen-set bucket of minute: minute/3600, floored.
func Hour(minute int64) int64 { return floorDiv(minute, 3600) }

// WindowExpireAt is when the window hash of minute expires (Unix seconds).
func WindowExpireAt(minute int64, retention time.Duration) int64 {
	return minute + 60 + int64(retention/time.Second)
}

// Field is the hash field of one series: "<host>\x00<tag>" for a
// label-free series (the encoding from before labels, so existing windows
// stay valid) and "<host>\x00<tag>\x00<name>=<value>\x00…" with labels, in
// the order given (entries carry them sorted by name). Stored values hold no
// NUL (stream.SanitizeValue) and names hold no '=' (stream.ValidLabelName),
// so SplitField gets every part back.
func Field(host, tag string, labels ...stream.Label) string {
	if len(labels) == 0 {
		return host + "\x00" + tag
	}
	n := len(host) + 1 + len(tag)
	for _, l := range labels {
		n += 2 + len(l.Name) + len(l.Value)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(host)
	b.WriteByte(0)
	b.WriteString(tag)
	for _, l := range labels {
		b.WriteByte(0)
		b.WriteString(l.Name)
		b.WriteByte('=')
		b.WriteString(l.Value)
	}
	return b.String()
}

// SplitField is the inverse of Field. A field whose parts after the tag are
// not all "<label name>=<value>" is a tag holding NUL, written before
// entries were sanitized: the tag is then everything after the first NUL,
// as it was read before labels.
func SplitField(f string) (host, tag string, labels []stream.Label) {
	host, rest, _ := strings.Cut(f, "\x00")
	tag, ls, ok := strings.Cut(rest, "\x00")
	if !ok {
		return host, rest, nil
	}
	parts := strings.Split(ls, "\x00")
	labels = make([]stream.Label, 0, len(parts))
	for _, part := range parts {
		name, value, ok := strings.Cut(part, "=")
		if !ok || stream.ValidLabelName(name) != nil {
			return host, rest, nil
		}
		labels = append(labels, stream.Label{Name: name, Value: value})
	}
	return host, tag, labels
}

// LabelValue is the value of label name in labels; "" when absent (a series
// lacking a label has the empty value for it).
func LabelValue(labels []stream.Label, name string) string {
	for _, l := range labels {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// Dimension is the value of one dimension of a series: its host, its tag
// or one of its labels.
func Dimension(host, tag string, labels []stream.Label, name string) string {
	switch name {
	case stream.LabelHost:
		return host
	case stream.LabelTag:
		return tag
	}
	return LabelValue(labels, name)
}

// Cell is one (minute, host, tag, labels) count of a keyword.
type Cell struct {
	Minute    int64 // Unix seconds, minute start
	Host, Tag string
	Labels    []stream.Label // sorted by name; nil for a label-free series
	Count     int64
}

// Dim is the value of dimension name (host, tag or a label) of c.
func (c *Cell) Dim(name string) string { return Dimension(c.Host, c.Tag, c.Labels, name) }

// Sample is one stored sample line.
type Sample struct {
	Minute int64  `json:"minute"`
	Host   string `json:"host"`
	Tag    string `json:"tag"`
	// Labels are the series' labels; absent for a label-free series.
	Labels map[string]string `json:"labels,omitempty"`
	Line   string            `json:"line"`
}

// EncodeSample is the stored form of a sample, the JSON of Sample. It is
// written by hand because it runs for every stored sample; decoding it with
// encoding/json gives back s (invalid UTF-8 becomes U+FFFD, as with
// json.Marshal).
func EncodeSample(s Sample) string {
	var labels []stream.Label
	if len(s.Labels) > 0 {
		labels = make([]stream.Label, 0, len(s.Labels))
		for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
			labels = append(labels, stream.Label{Name: k, Value: s.Labels[k]})
		}
	}
	return string(AppendSample(make([]byte, 0, 48+len(s.Host)+len(s.Tag)+len(s.Line)), s.Minute, s.Host, s.Tag, labels, s.Line))
}

// AppendSample appends EncodeSample of the sample with these parts to b.
// labels must be sorted by name, names unique, as a stream.Entry's are:
// the ingest writes a batch's samples from its entries without a map each.
func AppendSample(b []byte, minute int64, host, tag string, labels []stream.Label, line string) []byte {
	b = append(b, `{"minute":`...)
	b = strconv.AppendInt(b, minute, 10)
	b = append(b, `,"host":`...)
	b = stream.AppendJSONString(b, host)
	b = append(b, `,"tag":`...)
	b = stream.AppendJSONString(b, tag)
	if len(labels) > 0 {
		b = append(b, `,"labels":{`...)
		for i, l := range labels {
			if i > 0 {
				b = append(b, ',')
			}
			b = stream.AppendJSONString(b, l.Name)
			b = append(b, ':')
			b = stream.AppendJSONString(b, l.Value)
		}
		b = append(b, '}')
	}
	b = append(b, `,"line":`...)
	b = stream.AppendJSONString(b, line)
	return append(b, '}')
}

// Store reads windows and samples.
//
// A sharded store (NewShardedStore) reads the windows of every stream shard
// (package streamshard) and sums them: the reads of Cells, CellsMany,
// Samples, Counts, CountsTiered, Top and TopTiered are made once per shard,
// all in the same pipeline, which go-redis sends per node, so a read costs
// one round trip per node holding a shard and N times the commands of one
// shard. A host's cells are in one shard for a given shard count; after a
// change of it a minute may hold a host's cells in two, and the sums add
// them. The other methods (the roll-up's) work on shard 0's keys only: each
// shard is rolled up by a store of its own.
type Store struct {
	rdb    redis.UniversalClient
	keys   Keys
	stream string
	width  func() int // shards read; nil: 1
}

// NewStore reads the windows of streamKey through rdb.
func NewStore(rdb redis.UniversalClient, streamKey string) *Store {
	return &Store{rdb: rdb, keys: NewKeys(streamKey), stream: streamKey}
}

// NewShardedStore reads the windows of the first width() shards of
// streamKey and sums them; width is asked at every read.
func NewShardedStore(rdb redis.UniversalClient, streamKey string, width func() int) *Store {
	return &Store{rdb: rdb, keys: NewKeys(streamKey), stream: streamKey, width: width}
}

// shards lists the keys of the shards a read covers, shard 0 first.
func (s *Store) shards() []Keys {
	n := 1
	if s.width != nil {
		n = min(max(s.width(), 1), streamshard.Max)
	}
	if n == 1 {
		return []Keys{s.keys}
	}
	ks := make([]Keys, n)
	for i := range ks {
		ks[i] = NewKeys(streamshard.Key(s.stream, i))
	}
	return ks
}

// Keys returns the store's key names.
func (s *Store) Keys() Keys { return s.keys }

// Cells returns kwID's cells for minutes in [from, to) (Unix seconds), ordered
// by minute, host, tag. One pipelined round trip.
func (s *Store) Cells(ctx context.Context, kwID string, from, to int64) ([]Cell, error) {
	m, err := s.CellsMany(ctx, []string{kwID}, from, to)
	if err != nil {
		return nil, err
	}
	return m[kwID], nil
}

// CellsMany returns the cells of several keywords for minutes in [from, to),
// keyed by keyword ID (absent when a keyword has none), in one pipelined round
// trip.
func (s *Store) CellsMany(ctx context.Context, kwIDs []string, from, to int64) (map[string][]Cell, error) {
	first := ceilDiv(from, 60) * 60
	n := (to - first + 59) / 60
	if n <= 0 || len(kwIDs) == 0 {
		return map[string][]Cell{}, nil
	}
	if n > MaxMinutes {
		return nil, fmt.Errorf("cells: %d minutes requested, over the limit of %d", n, MaxMinutes)
	}
	type ask struct {
		kw     string
		minute int64
		last   bool // the last shard of (kw, minute)
		cmd    *redis.MapStringStringCmd
		pieces *redis.StringCmd            // the minute's pieces (PiecesField)
		more   []*redis.MapStringStringCmd // its pieces' cells
	}
	shards := s.shards()
	asks := make([]ask, 0, int(n)*len(kwIDs)*len(shards))
	pipe := s.rdb.Pipeline()
	for _, kw := range kwIDs {
		for m := first; m < to; m += 60 {
			for i, k := range shards {
				asks = append(asks, ask{kw: kw, minute: m, last: i == len(shards)-1,
					cmd: pipe.HGetAll(ctx, k.Window(kw, m)), pieces: pipe.HGet(ctx, k.HostSums(kw, m), PiecesField)})
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("cells of %d keywords over %d minutes: %w", len(kwIDs), n, err)
	}
	// Minutes whose cells are in pieces: a second round.
	pipe = s.rdb.Pipeline()
	pieced := false
	for j := range asks {
		a := &asks[j]
		p, _ := strconv.Atoi(a.pieces.Val())
		for i := range p {
			a.more = append(a.more, pipe.HGetAll(ctx, pieceKey(a.cmd.Args()[1].(string), i)))
			pieced = true
		}
	}
	if pieced {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("cells of %d keywords over %d minutes: pieces: %w", len(kwIDs), n, err)
		}
	}
	out := make(map[string][]Cell, len(kwIDs))
	start := 0 // where the cells of the current (kw, minute) begin
	for j, a := range asks {
		if j == 0 || asks[j-1].last {
			start = len(out[a.kw])
		}
		for _, cmd := range append([]*redis.MapStringStringCmd{a.cmd}, a.more...) {
			for f, v := range cmd.Val() {
				c, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("window %s field %q: count %q is not an integer", cmd.Args()[1], f, v)
				}
				host, tag, labels := SplitField(f)
				out[a.kw] = append(out[a.kw], Cell{Minute: a.minute, Host: host, Tag: tag, Labels: labels, Count: c})
			}
		}
		if !a.last || len(out[a.kw]) == start {
			continue
		}
		cells := out[a.kw][start:]
		sort.Slice(cells, func(i, j int) bool {
			if cells[i].Host != cells[j].Host {
				return cells[i].Host < cells[j].Host
			}
			if cells[i].Tag != cells[j].Tag {
				return cells[i].Tag < cells[j].Tag
			}
			return LabelsLess(cells[i].Labels, cells[j].Labels)
		})
		if len(shards) > 1 || len(a.more) > 0 {
			// A cell found in two shards (the shard count changed within
			// the minute), or in the window hash and a piece (written by
			// two versions), is one cell: add them.
			merged := cells[:1]
			for _, c := range cells[1:] {
				if l := &merged[len(merged)-1]; l.Host == c.Host && l.Tag == c.Tag && !LabelsLess(l.Labels, c.Labels) && !LabelsLess(c.Labels, l.Labels) {
					l.Count += c.Count
				} else {
					merged = append(merged, c)
				}
			}
			out[a.kw] = out[a.kw][:start+len(merged)]
		}
	}
	return out, nil
}

// Series names one (keyword, host, tag, labels) series.
type Series struct {
	KeywordID, Host, Tag string
	Labels               []stream.Label
}

// LabelsLess orders label lists: by their Field encoding, label-free first.
func LabelsLess(a, b []stream.Label) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i].Name != b[i].Name {
			return a[i].Name < b[i].Name
		}
		if a[i].Value != b[i].Value {
			return a[i].Value < b[i].Value
		}
	}
	return len(a) < len(b)
}

// MaxSampleSeries bounds the series one Samples call reads, so a caller
// cannot turn it into a scan of a fleet.
const MaxSampleSeries = 1000

// Samples returns up to n of the most recent samples of the given series,
// newest first: by event minute, then by each list's own order (newest
// pushed first). It reads at most n from each list, in one pipelined round
// trip; entries that do not decode are skipped.
func (s *Store) Samples(ctx context.Context, series []Series, n int) ([]Sample, error) {
	if n <= 0 || len(series) == 0 {
		return nil, nil
	}
	if len(series) > MaxSampleSeries {
		return nil, fmt.Errorf("samples: %d series requested, over the limit of %d", len(series), MaxSampleSeries)
	}
	pipe := s.rdb.Pipeline()
	shards := s.shards()
	// A series' list is in its host's shard; after a change of the shard
	// count, in two. Lists are numbered series-major so that the order of
	// the series given still breaks ties.
	cmds := make([]*redis.StringSliceCmd, 0, len(series)*len(shards))
	for _, sr := range series {
		for _, k := range shards {
			cmds = append(cmds, pipe.LRange(ctx, k.Samples(sr.KeywordID, sr.Host, sr.Tag, sr.Labels...), 0, int64(n-1)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("samples of %d series: %w", len(series), err)
	}
	type ranked struct {
		Sample
		list, pos int
	}
	var all []ranked
	for i, c := range cmds {
		for j, r := range c.Val() {
			var sm Sample
			if json.Unmarshal([]byte(r), &sm) == nil {
				all = append(all, ranked{sm, i, j})
			}
		}
	}
	// Lists are newest first already; a stable merge by minute keeps that
	// order within a minute, and the series order given across lists.
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].Minute != all[j].Minute {
			return all[i].Minute > all[j].Minute
		}
		if all[i].pos != all[j].pos {
			return all[i].pos < all[j].pos
		}
		return all[i].list < all[j].list
	})
	out := make([]Sample, 0, min(n, len(all)))
	for _, r := range all[:min(n, len(all))] {
		out = append(out, r.Sample)
	}
	return out, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

// LabelMap is labels as an object (name -> value); nil for none.
func LabelMap(labels []stream.Label) map[string]string {
	if len(labels) == 0 {
		return nil
	}
	m := make(map[string]string, len(labels))
	for _, l := range labels {
		m[l.Name] = l.Value
	}
	return m
}

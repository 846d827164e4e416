package window

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// Bounded reads for the counts API. A window hash holds one field per
// series (host, tag, labels), so with a large fleet reading it whole costs
// memory and time in the number of cells. The ingest script therefore keeps
// rollups of every window hash, in the same slot and with the same expiry:
//
//	<window key>\x00H         HASH  host -> count, plus field "\x00" -> the minute's total
//	                                and field "\x00l" -> the count of labelled series
//	<window key>\x00t         ZSET  tag -> count
//	<window key>\x00l:<name>  ZSET  value of label name -> count, plus member "\x00" -> the
//	                                count of the series carrying the label
//
// The host sums are a hash while the minute has at most HostSumsMax
// hosts: Redis keeps a hash of up to 512 fields (hash-max-listpack-entries)
// as a listpack, about 13 bytes a host, where a zset past 128 members is a
// skiplist, about 100. Past that the ingest script moves them into the zset
//
//	<window key>\x00h         ZSET  the same members and fields, as scores
//
// (a hash that large is a hashtable anyway, and a top sums zsets fastest),
// which minutes written before the hash existed (and hours rolled before
// the hourly tier took this layout) hold too. An hour (hourly.go) is laid
// out and read as a minute. Readers read both and add them up, so a minute
// written partly before an upgrade and partly after is read whole.
//
// A minute of one tag (the common case) has no tag rollup: its host sums
// hold the tag as SingleTagField, and the tag's count is the minute's
// total. The ingest script writes the tag rollup, with what the field stood
// for, once a second tag comes or the host sums move into the zset.
//
// A minute whose series all have that one tag and no labels (a fleet of
// hosts without Kubernetes labels) is host-keyed: its cells are
// Field(host, tag), one per host, so per-host sums would repeat them. Its
// host sums hold only the total, SingleTagField and the marker CellHosts; a
// count of a host reads the host's cell (a second pipelined round for such
// minutes), a top by host sums the cells by host in the top script. The
// ingest script writes the host sums from the cells, once, when a second
// tag, a labelled series or the overflow series comes; the minute is then
// laid out as any other.
//
// A series lacking a label has the empty value for it: a top by a label
// adds the minute's total minus the label's "\x00" to the empty value. A
// label filter (a glob) reads the cells of each minute (HSCAN, ScanPage at a
// time), charged against the caller's cell limit: at most
// KEYALERT_MAX_SERIES_PER_MINUTE (+ overflow) cells per keyword and minute.
//
// A count of one host, tag or the whole minute is then one HMGET and
// ZMSCORE (or HGET) per minute, and a top-N is summed in Redis (ZUNIONSTORE
// of the zsets, ZINCRBY of the host hashes' fields) of which only N members
// come back. Minutes counted before the rollups existed (a window hash
// without a total in "\x00H" or "\x00h") are read by streaming their cells in pages of
// ScanPage fields and are charged against the caller's cell limit.

// SingleTagField is the field of a minute's host sums that names its tag
// while it has only one: its count is then the minute's total, and the
// minute has no tag rollup (TagTotals). The ingest script writes the tag
// rollup, with what the field stood for, once a second tag comes or the host
// sums move into the zset.
const SingleTagField = "\x00T"

// CellHosts is the field of a minute's host sums that marks it host-keyed:
// every series of the minute has its tag (SingleTagField) and no labels, so
// its cells are Field(host, tag) and the host sums hold no host; a host's
// count is its cell. The ingest script writes the host sums from the cells
// and drops the field once a second tag, a labelled series or the overflow
// series comes.
const CellHosts = "\x00C"

// PiecesField is the field of a minute's host sums holding the number of
// pieces its cells were moved into (see Keys.Piece); PieceCellsField holds
// how many cells the pieces hold.
const (
	PiecesField     = "\x00P"
	PieceCellsField = "\x00N"
)

// Piece is piece i of the window hash of (kwID, minute): once a minute has
// more than HostSumsMax cells the ingest script moves them into pieces by
// host (PieceOf), each small enough for Redis to keep compact, and writes
// the minute's further cells there. The window hash itself then holds only
// cells a replica of an earlier version wrote.
func (k Keys) Piece(kwID string, minute int64, i int) string {
	return pieceKey(k.Window(kwID, minute), i)
}

func pieceKey(w string, i int) string { return w + "\x00P" + strconv.Itoa(i) }

// PieceOf is the piece holding the cells of host among pieces: djb2 of the
// host's bytes, mod 2^32 (what the ingest script computes in Lua), mod
// pieces.
func PieceOf(host string, pieces int) int {
	h := uint32(5381)
	for i := 0; i < len(host); i++ {
		h = h*33 + uint32(host[i])
	}
	return int(h % uint32(pieces))
}

// HostSumsMax is the most fields a host sums hash holds: Redis's default
// hash-max-listpack-entries, up to which it keeps the hash compact.
const HostSumsMax = 512

// TotalMember is the member of a host rollup holding the minute's total;
// a host name cannot hold NUL.
const TotalMember = "\x00"

// ScanPage is the HSCAN COUNT of the fallback scan of a minute without
// rollups: the most cells one reply holds in memory.
const ScanPage = 1000

// HostTotals is the rollup zset of the window hash of (kwID, minute) by
// host as written before HostSums. No window key ends in NUL and a letter,
// so rollup keys never collide with one.
func (k Keys) HostTotals(kwID string, minute int64) string {
	return k.Window(kwID, minute) + "\x00h"
}

// HostSums is the rollup hash of the window hash of (kwID, minute) by host,
// while it has at most HostSumsMax fields; past that the ingest script
// moves it into HostTotals, which takes the minute's further counts.
// Minutes written before it have HostTotals only.
func (k Keys) HostSums(kwID string, minute int64) string {
	return k.Window(kwID, minute) + "\x00H"
}

// TagTotals is the rollup of the window hash of (kwID, minute) by tag.
func (k Keys) TagTotals(kwID string, minute int64) string {
	return k.Window(kwID, minute) + "\x00t"
}

// LabelTotals is the rollup of the window hash of (kwID, minute) by the
// value of label name.
func (k Keys) LabelTotals(kwID string, minute int64, name string) string {
	return k.Window(kwID, minute) + "\x00l:" + name
}

// LabelledMember is the member of a host rollup counting the labelled
// series of the minute: without it every count of a (host, tag) pair is in
// the one label-free cell.
const LabelledMember = "\x00l"

// Filter selects the cells a count covers; an unset part matches all.
type Filter struct {
	Host, Tag       string
	HostSet, TagSet bool
	// Series, when set, further selects cells by all their dimensions (the
	// API's label globs). Rollups cannot answer it: the cells are read.
	Series func(host, tag string, labels []stream.Label) bool
}

func (f Filter) match(host, tag string, labels []stream.Label) bool {
	return (!f.HostSet || host == f.Host) && (!f.TagSet || tag == f.Tag) && (f.Series == nil || f.Series(host, tag, labels))
}

// MinuteCount is the count of one minute.
type MinuteCount struct {
	Minute int64 // Unix seconds, minute start
	Count  int64
}

// LimitError says a read would touch more cells than allowed.
type LimitError struct {
	Cells, Max int64
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("the query would read %d cells, over the limit of %d (KEYALERT_MAX_CELLS_PER_QUERY); narrow the range or the window", e.Cells, e.Max)
}

// minutes lists the minute starts in [from, to).
func minutes(from, to int64) ([]int64, error) {
	first := ceilDiv(from, 60) * 60
	n := (to - first + 59) / 60
	if n <= 0 {
		return nil, nil
	}
	if n > MaxMinutes {
		return nil, fmt.Errorf("%d minutes requested, over the limit of %d", n, MaxMinutes)
	}
	ms := make([]int64, 0, n)
	for m := first; m < to; m += 60 {
		ms = append(ms, m)
	}
	return ms, nil
}

// Counts returns kwID's per-minute counts of the cells f selects, for the
// minutes in [from, to) that have one, ascending. Memory and Redis work are
// O(minutes) for minutes with rollups; minutes without are scanned, at most
// maxCells cells in all (else *LimitError), ScanPage at a time.
func (s *Store) Counts(ctx context.Context, kwID string, from, to int64, f Filter, maxCells int64) ([]MinuteCount, error) {
	ms, err := minutes(from, to)
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	var bks []bucket
	for i, k := range s.shards() {
		for _, m := range ms {
			b := minuteBucket(k, kwID, m)
			b.shard, b.k = i, k
			bks = append(bks, b)
		}
	}
	ps, err := s.countsOf(ctx, kwID, bks, f, maxCells)
	if err != nil {
		return nil, err
	}
	out := make([]MinuteCount, len(ps))
	for i, p := range ps {
		out[i] = MinuteCount{p.Start, p.Count}
	}
	return out, nil
}

// Point is one bucket of a read through both tiers: a minute (Step 60) or
// an hour (Step 3600) starting at Start (Unix seconds).
type Point struct {
	Start, Step, Count int64
}

// bucket is one minute or hour of a keyword in one stream shard: its cells
// hash and rollups.
type bucket struct {
	start, step int64
	w, h, t     string
	hs          string // the host sums hash (an hour rolled before it has none)
	pieces      int    // the pieces of the bucket's cells, when known (PiecesField)
	shard       int
	k           Keys // the shard's keys
}

// label is the bucket's rollup by label name (its hash key + "\x00l:" + name,
// for both tiers).
func (b bucket) label(name string) string { return b.w + "\x00l:" + name }

func minuteBucket(k Keys, kwID string, m int64) bucket {
	return bucket{start: m, step: 60, w: k.Window(kwID, m), h: k.HostTotals(kwID, m), hs: k.HostSums(kwID, m), t: k.TagTotals(kwID, m)}
}

func hourBucket(k Keys, kwID string, h int64) bucket {
	return bucket{start: h, step: 3600, w: k.HourWindow(kwID, h), h: k.HourHostTotals(kwID, h), hs: k.HourHostSums(kwID, h), t: k.HourTagTotals(kwID, h)}
}

// buckets covers [from, to): the whole hours before split (an hour start)
// from the hourly tier, the first of them the one holding from, and the
// minutes from max(from, split) on from the minute tier. split <= from
// reads minutes only. With shards, the buckets of each shard follow those
// of the one before.
func (s *Store) buckets(kwID string, from, to, split int64) ([]bucket, error) {
	var bks []bucket
	for i, k := range s.shards() {
		from := from
		if from < split {
			end := min(split, to)
			first := HourStart(from)
			if n := (end - first + 3599) / 3600; n > MaxHours {
				return nil, fmt.Errorf("%d hours requested, over the limit of %d", n, MaxHours)
			}
			for h := first; h < end; h += 3600 {
				b := hourBucket(k, kwID, h)
				b.shard, b.k = i, k
				bks = append(bks, b)
			}
			from = split
		}
		ms, err := minutes(from, to)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			b := minuteBucket(k, kwID, m)
			b.shard, b.k = i, k
			bks = append(bks, b)
		}
	}
	return bks, nil
}

// sharded says bks span more than one stream shard (their points of one
// bucket start are then summed).
func sharded(bks []bucket) bool { return len(bks) > 0 && bks[len(bks)-1].shard > 0 }

// CountsTiered is Counts through both tiers: the hours before split (an
// hour start, see buckets) come from the hourly tier as points of Step 3600,
// the rest as minutes. Each hour read counts as one cell against maxCells,
// beside the cells scanned of minutes without rollups.
func (s *Store) CountsTiered(ctx context.Context, kwID string, from, to, split int64, f Filter, maxCells int64) ([]Point, error) {
	bks, err := s.buckets(kwID, from, to, split)
	if err != nil || len(bks) == 0 {
		return nil, err
	}
	return s.countsOf(ctx, kwID, bks, f, maxCells)
}

func (s *Store) countsOf(ctx context.Context, kwID string, bks []bucket, f Filter, maxCells int64) ([]Point, error) {
	type ask struct {
		cell     *redis.StringCmd     // host and tag given: the label-free cell
		labelled *redis.FloatSliceCmd // host and tag given: the labelled count
		scores   *redis.FloatSliceCmd // host rollup: [host,] total
		sums     *redis.SliceCmd      // host sums of a minute: labelled, or [host,] total
		tag      *redis.FloatSliceCmd // tag rollup: tag
		cells    *redis.IntCmd        // HLEN of the window: cells to scan without rollup
	}
	if f.Series != nil {
		return s.scanCounts(ctx, kwID, bks, f, maxCells)
	}
	var hours int64
	for _, b := range bks {
		if b.step == 3600 {
			hours++
		}
	}
	if hours > maxCells {
		return nil, &LimitError{Cells: hours, Max: maxCells}
	}
	asks := make([]ask, len(bks))
	pipe := s.rdb.Pipeline()
	for i, b := range bks {
		if f.HostSet && f.TagSet {
			asks[i].cell = pipe.HGet(ctx, b.w, Field(f.Host, f.Tag))
			asks[i].labelled = pipe.ZMScore(ctx, b.h, LabelledMember)
			if b.hs != "" {
				asks[i].sums = pipe.HMGet(ctx, b.hs, LabelledMember, PiecesField, PieceCellsField)
			}
			asks[i].cells = pipe.HLen(ctx, b.w)
			continue
		}
		members := []string{TotalMember}
		if f.HostSet {
			members = []string{f.Host, TotalMember}
		}
		asks[i].scores = pipe.ZMScore(ctx, b.h, members...)
		switch {
		case b.hs != "" && f.TagSet:
			// and the minute's one tag, if it has only one
			asks[i].sums = pipe.HMGet(ctx, b.hs, append(members, SingleTagField)...)
		case b.hs != "" && f.HostSet:
			// and whether the minute is host-keyed: the host's count is
			// then its cell, Field(host, the one tag)
			asks[i].sums = pipe.HMGet(ctx, b.hs, append(members, SingleTagField, CellHosts, PiecesField, PieceCellsField)...)
		case b.hs != "":
			asks[i].sums = pipe.HMGet(ctx, b.hs, members...)
		}
		if f.TagSet {
			asks[i].tag = pipe.ZMScore(ctx, b.t, f.Tag)
		}
		asks[i].cells = pipe.HLen(ctx, b.w)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("counts of %s over %d buckets: %w", kwID, len(bks), err)
	}
	out := make([]Point, 0, len(bks))
	var legacy []bucket
	legacyCells := hours
	type keyedAsk struct {
		b     bucket
		field string
		keys  []string // where the cell is: the window hash and/or its piece
		n     int64    // counted so far (the window hash's part)
	}
	var keyed []keyedAsk // cells read in a second round: host-keyed minutes, pieces
	for i, a := range asks {
		b := bks[i]
		var n int64
		switch {
		case a.cell != nil:
			vals := sumVals(a.sums)
			var inPieces int64
			if len(vals) == 3 {
				b.pieces, inPieces = pieceState(vals[1], vals[2])
				vals = vals[:1]
			}
			l, err := addSums(a.labelled.Val(), vals, b.hs)
			if err != nil {
				return nil, err
			}
			if len(l) == 1 && l[0] != 0 {
				// Labelled series of the pair are cells of their own.
				legacy = append(legacy, b)
				legacyCells += a.cells.Val() + inPieces
				continue
			}
			v, err := a.cell.Result()
			if err == nil {
				if n, err = strconv.ParseInt(v, 10, 64); err != nil {
					return nil, fmt.Errorf("window %s field of %q/%q: count %q is not an integer", b.w, f.Host, f.Tag, v)
				}
			}
			if b.pieces > 0 {
				field := Field(f.Host, f.Tag)
				keyed = append(keyed, keyedAsk{b, field, []string{pieceKey(b.w, PieceOf(f.Host, b.pieces))}, n})
				continue
			}
			if n == 0 {
				continue
			}
		default:
			vals := sumVals(a.sums)
			if f.HostSet && !f.TagSet && len(vals) == 6 {
				var inPieces int64
				b.pieces, inPieces = pieceState(vals[4], vals[5])
				if _, ok := vals[3].(string); ok {
					// Host-keyed: the host's count is its cell. Host
					// fields here would be a replica of an earlier
					// version's, whose cells hold the same counts.
					tag, ok := vals[2].(string)
					if !ok {
						// no tag to name the cell: scanned
						legacy = append(legacy, b)
						legacyCells += a.cells.Val() + inPieces
						continue
					}
					if sc, err := addSums(nil, vals[1:2], b.hs); err != nil {
						return nil, err
					} else if t := a.scores.Val(); sc[0] != 0 || (len(t) == 2 && t[1] != 0) {
						keys := []string{b.w}
						if b.pieces > 0 {
							// and in the window hash, cells a replica of
							// an earlier version wrote after the move
							keys = append(keys, pieceKey(b.w, PieceOf(f.Host, b.pieces)))
						}
						keyed = append(keyed, keyedAsk{b: b, field: Field(f.Host, tag), keys: keys})
					}
					continue
				}
				vals = vals[:2]
			}
			single, isSingle := "", false
			var singleCount int64 // the host sums' total: what the one tag counted
			if f.TagSet && len(vals) == 2 {
				if single, isSingle = vals[1].(string); isSingle {
					if v, ok := vals[0].(string); ok {
						n, err := strconv.ParseInt(v, 10, 64)
						if err != nil {
							return nil, fmt.Errorf("host sums %s: total %q is not an integer", b.hs, v)
						}
						singleCount = n
					}
				}
				vals = vals[:1]
			}
			sc, err := addSums(a.scores.Val(), vals, b.hs)
			if err != nil {
				return nil, err
			}
			if len(sc) == 0 || sc[len(sc)-1] == 0 {
				// No total: no rollup. Cells there predate it (or a
				// rollup write failed) and are scanned below.
				if c := a.cells.Val(); c > 0 {
					legacy = append(legacy, b)
					legacyCells += c
				}
				continue
			}
			switch {
			case f.TagSet:
				if t := a.tag.Val(); len(t) == 1 {
					n = int64(t[0])
				}
				// Only the host sums' part: counts in the host zset too (a
				// replica of an earlier version writing the same minute)
				// are in the tag rollup.
				if isSingle && single == f.Tag {
					n += singleCount
				}
			default:
				n = int64(sc[0])
			}
		}
		if n != 0 {
			out = append(out, Point{b.start, b.step, n})
		}
	}
	if len(keyed) > 0 {
		pipe := s.rdb.Pipeline()
		cmds := make([][]*redis.StringCmd, len(keyed))
		for i, k := range keyed {
			for _, key := range k.keys {
				cmds[i] = append(cmds[i], pipe.HGet(ctx, key, k.field))
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("counts of %s: cells of %d host-keyed buckets: %w", kwID, len(keyed), err)
		}
		for i, k := range keyed {
			n := k.n
			for j, cmd := range cmds[i] {
				if v, err := cmd.Result(); err == nil {
					c, err := strconv.ParseInt(v, 10, 64)
					if err != nil {
						return nil, fmt.Errorf("window %s field %q: count %q is not an integer", k.keys[j], k.field, v)
					}
					n += c
				}
			}
			if n != 0 {
				out = append(out, Point{k.b.start, k.b.step, n})
			}
		}
		sort.SliceStable(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	}
	if len(legacy) > 0 {
		if legacyCells > maxCells {
			return nil, &LimitError{Cells: legacyCells, Max: maxCells}
		}
		for _, b := range legacy {
			var n int64
			err := s.scanCells(ctx, b.w, b.pieces, f, func(_, _ string, _ []stream.Label, c int64) { n += c })
			if err != nil {
				return nil, err
			}
			if n != 0 {
				out = append(out, Point{b.start, b.step, n})
			}
		}
		sort.SliceStable(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	}
	if sharded(bks) {
		out = sumShards(out)
	}
	return out, nil
}

// addSums adds a minute's host sums (HMGET of key, nil for an hour) to the
// scores of the same members in its host rollup zset: a minute written
// before the sums existed has only the zset, one written after only the
// sums, one written across an upgrade both.
func addSums(scores []float64, vals []any, key string) ([]float64, error) {
	if vals == nil {
		return scores, nil
	}
	if len(scores) != len(vals) {
		scores = make([]float64, len(vals))
	}
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("host sums %s: %q is not an integer", key, s)
		}
		scores[i] += float64(n)
	}
	return scores, nil
}

// pieceState is the pieces and the cells in them of a minute, from its host
// sums' PiecesField and PieceCellsField (HMGET values; nil when absent).
func pieceState(p, n any) (pieces int, cells int64) {
	if v, ok := p.(string); ok {
		pieces, _ = strconv.Atoi(v)
	}
	if v, ok := n.(string); ok {
		cells, _ = strconv.ParseInt(v, 10, 64)
	}
	return max(pieces, 0), max(cells, 0)
}

// bucketSizes is the cells of each bucket (HLEN of its hash and the cells
// in its pieces) and the pieces, in one pipelined round; it fails with
// *LimitError when the cells add up to more than maxCells.
func (s *Store) bucketSizes(ctx context.Context, kwID string, bks []bucket, maxCells int64) ([]int64, error) {
	pipe := s.rdb.Pipeline()
	lens := make([]*redis.IntCmd, len(bks))
	state := make([]*redis.SliceCmd, len(bks))
	for i, b := range bks {
		lens[i] = pipe.HLen(ctx, b.w)
		if b.hs != "" {
			state[i] = pipe.HMGet(ctx, b.hs, PiecesField, PieceCellsField)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("cells of %s over %d buckets: %w", kwID, len(bks), err)
	}
	sizes := make([]int64, len(bks))
	var cells int64
	for i := range bks {
		sizes[i] = lens[i].Val()
		if vals := sumVals(state[i]); len(vals) == 2 {
			var n int64
			bks[i].pieces, n = pieceState(vals[0], vals[1])
			sizes[i] += n
		}
		cells += sizes[i]
	}
	if cells > maxCells {
		return nil, &LimitError{Cells: cells, Max: maxCells}
	}
	return sizes, nil
}

// sumVals is the reply of an HMGET of host sums; nil for none asked.
func sumVals(c *redis.SliceCmd) []any {
	if c == nil {
		return nil
	}
	return c.Val()
}

// sumShards adds up the points of several shards that cover the same
// bucket, in bucket order.
func sumShards(ps []Point) []Point {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Start < ps[j].Start })
	out := ps[:0]
	for _, p := range ps {
		if l := len(out) - 1; l >= 0 && out[l].Start == p.Start && out[l].Step == p.Step {
			out[l].Count += p.Count
			continue
		}
		out = append(out, p)
	}
	return out
}

// scanCounts answers a filter rollups cannot (label globs) by reading the
// buckets' cells, at most maxCells in all (checked with bucketSizes
// before any is read), ScanPage at a time.
func (s *Store) scanCounts(ctx context.Context, kwID string, bks []bucket, f Filter, maxCells int64) ([]Point, error) {
	lens, err := s.bucketSizes(ctx, kwID, bks, maxCells)
	if err != nil {
		return nil, err
	}
	var out []Point
	for i, b := range bks {
		if lens[i] == 0 {
			continue
		}
		var n int64
		err := s.scanCells(ctx, b.w, b.pieces, f, func(_, _ string, _ []stream.Label, c int64) { n += c })
		if err != nil {
			return nil, err
		}
		if n != 0 {
			out = append(out, Point{b.start, b.step, n})
		}
	}
	if sharded(bks) {
		out = sumShards(out)
	}
	return out, nil
}

// DimSeries is the counts of one value of a dimension (host, tag or a
// label) over a range: a series of a counts answer split by that dimension.
type DimSeries struct {
	Value  string
	Points []Point // ascending
	Total  int64
}

// SplitTiered is CountsTiered split by dimension by: the limit values with
// the most matches (ties by value), each with its points. It reads the
// buckets' cells (rollups hold no per-minute split by two dimensions): at
// most maxCells in all, checked with bucketSizes before any is read;
// memory is O(cells read).
func (s *Store) SplitTiered(ctx context.Context, kwID string, from, to, split int64, by string, f Filter, limit int, maxCells int64) ([]DimSeries, error) {
	bks, err := s.buckets(kwID, from, to, split)
	if err != nil || len(bks) == 0 || limit <= 0 {
		return nil, err
	}
	lens, err := s.bucketSizes(ctx, kwID, bks, maxCells)
	if err != nil {
		return nil, err
	}
	byValue := map[string]*DimSeries{}
	for i, b := range bks {
		if lens[i] == 0 {
			continue
		}
		err := s.scanCells(ctx, b.w, b.pieces, f, func(host, tag string, labels []stream.Label, n int64) {
			v := Dimension(host, tag, labels, by)
			d := byValue[v]
			if d == nil {
				d = &DimSeries{Value: v}
				byValue[v] = d
			}
			if k := len(d.Points); k > 0 && d.Points[k-1].Start == b.start {
				d.Points[k-1].Count += n
			} else {
				d.Points = append(d.Points, Point{b.start, b.step, n})
			}
			d.Total += n
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]DimSeries, 0, len(byValue))
	for _, d := range byValue {
		if sharded(bks) {
			d.Points = sumShards(d.Points)
		}
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Total != out[j].Total {
			return out[i].Total > out[j].Total
		}
		return out[i].Value < out[j].Value
	})
	return out[:min(limit, len(out))], nil
}

func (s *Store) scanTop(ctx context.Context, kwID string, bks []bucket, by string, f Filter, limit int, maxCells int64) ([]Group, int64, error) {
	lens, err := s.bucketSizes(ctx, kwID, bks, maxCells)
	if err != nil {
		return nil, 0, err
	}
	sums := map[string]int64{}
	var total int64
	for i, b := range bks {
		if lens[i] == 0 {
			continue
		}
		err := s.scanCells(ctx, b.w, b.pieces, f, func(host, tag string, labels []stream.Label, n int64) {
			sums[Dimension(host, tag, labels, by)] += n
			total += n
		})
		if err != nil {
			return nil, 0, err
		}
	}
	out := make([]Group, 0, len(sums))
	for v, n := range sums {
		out = append(out, Group{v, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Value < out[j].Value
	})
	return out[:min(limit, len(out))], total, nil
}

// globEscape quotes the glob specials of s for HSCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// scanCells streams the cells of one window hash and its pieces (if any)
// that f selects, ScanPage fields per reply, to fn. A host filter is a
// MATCH prefix so that Redis drops the other hosts before replying, and
// reads only the host's piece.
func (s *Store) scanCells(ctx context.Context, key string, pieces int, f Filter, fn func(host, tag string, labels []stream.Label, n int64)) error {
	if err := s.scanHash(ctx, key, f, fn); err != nil {
		return err
	}
	for i := range pieces {
		if f.HostSet && i != PieceOf(f.Host, pieces) {
			continue
		}
		if err := s.scanHash(ctx, pieceKey(key, i), f, fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) scanHash(ctx context.Context, key string, f Filter, fn func(host, tag string, labels []stream.Label, n int64)) error {
	match := ""
	if f.HostSet {
		match = globEscape(f.Host) + "\x00*"
	}
	var cursor uint64
	for {
		kvs, next, err := s.rdb.HScan(ctx, key, cursor, match, ScanPage).Result()
		if err != nil {
			return fmt.Errorf("scan of %s: %w", key, err)
		}
		for i := 0; i+1 < len(kvs); i += 2 {
			host, tag, labels := SplitField(kvs[i])
			if !f.match(host, tag, labels) {
				continue
			}
			n, err := strconv.ParseInt(kvs[i+1], 10, 64)
			if err != nil {
				return fmt.Errorf("window %s field %q: count %q is not an integer", key, kvs[i], kvs[i+1])
			}
			fn(host, tag, labels, n)
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// Group is one value of a top answer's dimension (host, tag or label).
type Group struct {
	Value string
	Count int64
}

// topScript sums the rollups KEYS[2..] into KEYS[1] (which may already hold
// the sums of scanned minutes; the minutes' totals are dropped when ARGV[2]
// is 1) and returns the top ARGV[1] members, highest first and equal counts
// by value ascending, as member, score pairs. Only those come back: Redis
// holds the union for the call, keyalertd holds limit members. The first
// ARGV[4] rollups are zsets, summed by ZUNIONSTORE; the next ARGV[5] are
// host sums hashes and the last ARGV[6] are the cells hashes of host-keyed
// minutes (CellHosts), summed by host; each has one ARGV after ARGV[6]: its
// count of pieces (0: the cells are all in the hash). Hashes are summed by HGETALL
// into a Lua table (Redis's memory: one entry per host summed, like the
// union) and added to the union as one zset. The ARGV after the pieces are
// tag, count pairs added last (minutes of one tag, which have no tag rollup).
//
// For a label (ARGV[2] is 'l'), the rollups' "\x00" members sum the counts
// of series carrying the label; ARGV[3] - that sum (ARGV[3]: the rollup
// minutes' total) is the count of series lacking it, which have the empty
// value.
var topScript = redis.NewScript(`
local dst, limit, nz = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[4])
local nh, nc = tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('ZUNIONSTORE', dst, nz + 1, unpack(KEYS, 1, nz + 1))
-- Host sums hashes (a minute's hosts while they are few) and cells of
-- host-keyed minutes are summed in a table, which is added to dst as one
-- zset: far cheaper than a zset per hash when minutes share their hosts.
local acc, nacc = {}, 0
local function add(m, n)
  local v = acc[m]
  if v then
    acc[m] = v + n
  else
    acc[m] = n
    nacc = nacc + 1
  end
end
for k = nz + 2, nz + 1 + nh do
  local kv = redis.call('HGETALL', KEYS[k])
  for j = 1, #kv, 2 do
    local m = kv[j]
    -- not the one tag (SingleTagField), the host-keyed marker or a piece
    -- count: fields of NUL and a letter other than the labelled count
    if string.byte(m, 1) ~= 0 or #m == 1 or m == '\0l' then
      add(m, tonumber(kv[j + 1]))
    end
  end
end
-- Cells are summed by field first: minutes share their cells' fields, so
-- the host is cut out of each distinct field once, not of every cell.
local cells = {}
local function addCells(key)
  local kv = redis.call('HGETALL', key)
  for j = 1, #kv, 2 do
    local f = kv[j]
    cells[f] = (cells[f] or 0) + tonumber(kv[j + 1])
  end
end
for c = 1, nc do
  local key = KEYS[nz + 1 + nh + c]
  addCells(key)
  for x = 0, tonumber(ARGV[6 + c]) - 1 do
    addCells(key .. '\0P' .. x)
  end
end
for f, n in pairs(cells) do
  local p = string.find(f, '\0', 1, true)
  if p then
    add(string.sub(f, 1, p - 1), n)
  end
end
cells = nil
if nacc > 0 then
  -- ZADD 1,000 pairs at a time: unpack is bounded by Lua's C stack.
  local t, z = dst .. ':h', {}
  for m, v in pairs(acc) do
    z[#z + 1] = v
    z[#z + 1] = m
    if #z >= 2000 then
      redis.call('ZADD', t, unpack(z))
      z = {}
    end
  end
  if #z > 0 then
    redis.call('ZADD', t, unpack(z))
  end
  redis.call('ZUNIONSTORE', dst, 2, dst, t)
  redis.call('DEL', t)
end
-- Tags of minutes that had one: tag, count pairs.
for j = 7 + nc, #ARGV, 2 do
  redis.call('ZINCRBY', dst, ARGV[j + 1], ARGV[j])
end
if ARGV[2] == '1' then
  redis.call('ZREM', dst, '\0', '\0l')
elseif ARGV[2] == 'l' then
  local covered = tonumber(redis.call('ZSCORE', dst, '\0') or '0')
  redis.call('ZREM', dst, '\0')
  local missing = tonumber(ARGV[3]) - covered
  if missing > 0 then
    redis.call('ZINCRBY', dst, missing, '')
  end
end
local out = {}
local top = redis.call('ZRANGE', dst, 0, limit - 1, 'REV', 'WITHSCORES')
if #top == 0 then
  redis.call('DEL', dst)
  return out
end
-- ZRANGE REV orders equal scores by value descending: take the members
-- above the lowest score shown, then that score's first ones by value.
local last = top[#top]
for j = 1, #top, 2 do
  if top[j + 1] ~= last then
    out[#out + 1] = top[j]
    out[#out + 1] = top[j + 1]
  end
end
local rest = redis.call('ZRANGE', dst, last, last, 'BYSCORE', 'LIMIT', 0, limit - #out / 2, 'WITHSCORES')
for j = 1, #rest do
  out[#out + 1] = rest[j]
end
redis.call('DEL', dst)
return out
`)

// cellsKey is the cells hash of a host-keyed minute and its pieces, as the
// top script sums it by host.
type cellsKey struct {
	key    string
	pieces int
}

// Top returns the limit hosts (by "host"), tags (by "tag") or values of a
// label (by its name) of kwID with the most matches over the minutes in
// [from, to), and the total over all of them. Redis sums the minutes' rollups; at most limit groups come back. The
// groups summed, a minute's hosts or tags counted once per minute, and the
// cells of minutes without rollups together must not exceed maxCells, else
// *LimitError (checked with O(1) calls per minute before any sum).
func (s *Store) Top(ctx context.Context, kwID string, from, to int64, by string, limit int, maxCells int64) ([]Group, int64, error) {
	return s.TopTiered(ctx, kwID, from, to, from, by, limit, maxCells)
}

// TopTiered is Top through both tiers: the hours before split (an hour
// start) are summed from the hourly rollups, the first of them the hour
// holding from; each hourly host or tag counts as one cell against maxCells.
func (s *Store) TopTiered(ctx context.Context, kwID string, from, to, split int64, by string, limit int, maxCells int64) ([]Group, int64, error) {
	return s.TopFiltered(ctx, kwID, from, to, split, by, Filter{}, limit, maxCells)
}

// TopFiltered is TopTiered over the cells f selects. Rollups cannot answer
// a filter: with one, the buckets' cells are read (at most maxCells, checked
// with bucketSizes first) and summed by group in memory, which holds
// at most as many groups as cells read.
func (s *Store) TopFiltered(ctx context.Context, kwID string, from, to, split int64, by string, f Filter, limit int, maxCells int64) ([]Group, int64, error) {
	bks, err := s.buckets(kwID, from, to, split)
	if err != nil || len(bks) == 0 || limit <= 0 {
		return nil, 0, err
	}
	if f.HostSet || f.TagSet || f.Series != nil {
		return s.scanTop(ctx, kwID, bks, by, f, limit, maxCells)
	}
	roll := func(b bucket) string { return b.h }
	switch by {
	case stream.LabelHost:
	case stream.LabelTag:
		roll = func(b bucket) string { return b.t }
	default:
		roll = func(b bucket) string { return b.label(by) }
	}
	type ask struct {
		members *redis.IntCmd
		total   *redis.FloatCmd
		cells   *redis.IntCmd
		// A minute's host sums hash: its fields (by host); its total, one
		// tag (SingleTagField) and host-keyed marker (CellHosts).
		sumFields *redis.IntCmd
		sums      *redis.SliceCmd
	}
	asks := make([]ask, len(bks))
	pipe := s.rdb.Pipeline()
	for i, b := range bks {
		asks[i] = ask{
			members: pipe.ZCard(ctx, roll(b)),
			total:   pipe.ZScore(ctx, b.h, TotalMember),
			cells:   pipe.HLen(ctx, b.w),
		}
		if b.hs != "" {
			asks[i].sums = pipe.HMGet(ctx, b.hs, TotalMember, SingleTagField, CellHosts, PiecesField, PieceCellsField)
			if by == stream.LabelHost {
				asks[i].sumFields = pipe.HLen(ctx, b.hs)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("top of %s over %d buckets: %w", kwID, len(bks), err)
	}
	// Per shard: the rollups to sum (and their totals), the minutes without
	// rollups to scan.
	nshards := bks[len(bks)-1].shard + 1
	keys, legacy := make([][]string, nshards), make([][]cellsKey, nshards)
	hashes := make([][]string, nshards)          // host sums hashes, by host
	cellKeys := make([][]cellsKey, nshards)      // by host: cells of host-keyed minutes
	singles := make([]map[string]int64, nshards) // by tag: minutes of one tag
	rolled := make([]int64, nshards)
	shardKeys := make([]Keys, nshards)
	var cells, total int64
	for i, a := range asks {
		sh := bks[i].shard
		shardKeys[sh] = bks[i].k
		t, _ := a.total.Result()
		var hashTotal, inPieces int64
		var single string
		isSingle, keyed, pieces := false, false, 0
		if vals := sumVals(a.sums); len(vals) == 5 {
			pieces, inPieces = pieceState(vals[3], vals[4])
			if v, ok := vals[0].(string); ok {
				n, perr := strconv.ParseInt(v, 10, 64)
				if perr != nil {
					return nil, 0, fmt.Errorf("top of %s: host sums %s: total %q is not an integer", kwID, bks[i].hs, v)
				}
				t += float64(n)
				hashTotal = n
			}
			single, isSingle = vals[1].(string)
			_, keyed = vals[2].(string)
		}
		if t != 0 {
			if by == stream.LabelTag && isSingle {
				if singles[sh] == nil {
					singles[sh] = map[string]int64{}
				}
				singles[sh][single] += hashTotal
				cells++
			}
			if m := a.members.Val(); m > 0 {
				keys[sh] = append(keys[sh], roll(bks[i]))
				cells += m
				if by == stream.LabelHost {
					cells-- // the total member
				}
			}
			if keyed && by == stream.LabelHost {
				// Host-keyed: the hosts are the cells. Host fields in
				// the hash would be a replica of an earlier version's,
				// whose cells hold the same counts.
				cellKeys[sh] = append(cellKeys[sh], cellsKey{bks[i].w, pieces})
				cells += a.cells.Val() + inPieces
			} else if a.sumFields != nil {
				if m := a.sumFields.Val(); m > 0 {
					hashes[sh] = append(hashes[sh], bks[i].hs)
					cells += m - 1 // the total field
				}
			}
			total += int64(t)
			rolled[sh] += int64(t)
		} else if c := a.cells.Val() + inPieces; c > 0 {
			legacy[sh] = append(legacy[sh], cellsKey{bks[i].w, pieces})
			cells += c
		}
	}
	if cells > maxCells {
		return nil, 0, &LimitError{Cells: cells, Max: maxCells}
	}
	// With one shard Redis returns the top limit. With several, a group
	// (a tag, a label value, or a host after a change of the shard count)
	// can have counts in more than one: each shard returns all its groups,
	// at most the cells counted above, and they are summed here.
	each := limit
	if nshards > 1 {
		each = int(min(max(cells, 1), int64(math.MaxInt32)))
	}
	sums := map[string]int64{}
	var out []Group
	for sh := range nshards {
		if len(keys[sh]) == 0 && len(hashes[sh]) == 0 && len(cellKeys[sh]) == 0 && len(singles[sh]) == 0 && len(legacy[sh]) == 0 {
			continue
		}
		gs, n, err := s.topOfShard(ctx, kwID, shardKeys[sh], keys[sh], hashes[sh], cellKeys[sh], singles[sh], legacy[sh], by, each, rolled[sh])
		if err != nil {
			return nil, 0, err
		}
		total += n
		if nshards == 1 {
			out = gs
			break
		}
		for _, g := range gs {
			sums[g.Value] += g.Count
		}
	}
	if nshards > 1 {
		out = make([]Group, 0, len(sums))
		for v, n := range sums {
			out = append(out, Group{v, n})
		}
	}
	if out == nil {
		return []Group{}, total, nil
	}
	// Equal counts above the cut come back by value descending too.
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Value < out[j].Value
	})
	return out[:min(len(out), limit)], total, nil
}

// topOfShard sums one shard's rollups (keys, zsets, and hashes, host sums
// hashes; their totals add up to rolled), the cells of host-keyed minutes
// by host (cells), the counts of tags of minutes
// that had only one (singles) and scanned minutes (legacy) in Redis and
// returns its top limit groups, and the total of the scanned minutes (the
// rollups' totals are known to the caller).
func (s *Store) topOfShard(ctx context.Context, kwID string, k Keys, keys, hashes []string, cells []cellsKey, singles map[string]int64, legacy []cellsKey, by string, limit int, rolled int64) ([]Group, int64, error) {
	var total int64
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	dst := k.prefix + "top:" + hex.EncodeToString(rnd[:])
	// Minutes without rollups: their cells are summed by group a page at a
	// time into the destination, which the script then adds the rollups to.
	for _, w := range legacy {
		page := make(map[string]int64, ScanPage)
		flush := func() error {
			if len(page) == 0 {
				return nil
			}
			p := s.rdb.Pipeline()
			for g, n := range page {
				p.ZIncrBy(ctx, dst, float64(n), g)
			}
			p.Expire(ctx, dst, 60e9)
			clear(page)
			if _, err := p.Exec(ctx); err != nil {
				return fmt.Errorf("top of %s: summing %s: %w", kwID, w.key, err)
			}
			return nil
		}
		var ferr error
		err := s.scanCells(ctx, w.key, w.pieces, Filter{}, func(host, tag string, labels []stream.Label, n int64) {
			g := Dimension(host, tag, labels, by)
			page[g] += n
			total += n
			if len(page) >= ScanPage && ferr == nil {
				ferr = flush()
			}
		})
		if err == nil {
			err = ferr
		}
		if err == nil {
			err = flush()
		}
		if err != nil {
			s.rdb.Del(context.WithoutCancel(ctx), dst)
			return nil, 0, err
		}
	}
	mode := "0"
	switch by {
	case stream.LabelHost:
		mode = "1"
	case stream.LabelTag:
	default:
		mode = "l"
	}
	all := append(append([]string{dst}, keys...), hashes...)
	args := make([]any, 0, 6+len(cells)+2*len(singles))
	args = append(args, limit, mode, rolled, len(keys), len(hashes), len(cells))
	for _, c := range cells {
		all = append(all, c.key)
		args = append(args, c.pieces)
	}
	for tag, n := range singles {
		args = append(args, tag, n)
	}
	res, err := topScript.Run(ctx, s.rdb, all, args...).Slice()
	if err != nil {
		s.rdb.Del(context.WithoutCancel(ctx), dst)
		return nil, 0, fmt.Errorf("top of %s over %d buckets: %w", kwID, len(keys)+len(hashes)+len(cells)+len(legacy), err)
	}
	out := make([]Group, 0, len(res)/2)
	for j := 0; j+1 < len(res); j += 2 {
		name, _ := res[j].(string)
		sc, _ := res[j+1].(string)
		n, err := strconv.ParseFloat(sc, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("top of %s: score %q of %q: %w", kwID, sc, name, err)
		}
		out = append(out, Group{name, int64(n)})
	}
	return out, total, nil
}

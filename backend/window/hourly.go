package window

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/pkg/sendonce"
	"github.com/redis/go-redis/v9"
)

// The hourly tier keeps counts past the minute retention, per keyword and
// hour with the same identity (host, tag, labels) as the minute windows,
// laid out as a minute is (see reads.go) so that the minutes' reads apply
// and an hour of a fleet stays in Redis's compact encodings:
//
//	ka:{tag}:hw:<keywordID>:<hour start>                HASH  Field (host, tag, labels) -> count, while at most HostSumsMax cells
//	ka:{tag}:hw:<keywordID>:<hour start>\x00P<i>        HASH  the same past HostSumsMax cells: piece i (PieceOf the host)
//	ka:{tag}:hw:<keywordID>:<hour start>\x00H           HASH  "\x00" total, SingleTagField, CellHosts, PiecesField and
//	                                                          PieceCellsField, and host -> count while they fit
//	ka:{tag}:hw:<keywordID>:<hour start>\x00h           ZSET  host -> count, "\x00" total, "\x00l" labelled count,
//	                                                          past HostSumsMax host sums fields
//	ka:{tag}:hw:<keywordID>:<hour start>\x00t           ZSET  tag -> count, for several tags or hosts in the zset
//	ka:{tag}:hw:<keywordID>:<hour start>\x00n           SET   the label names with a rollup
//	ka:{tag}:hw:<keywordID>:<hour start>\x00l:<name>    ZSET  label value -> count, "\x00" -> the labelled count
//
// An hour whose cells all have one tag and no labels is host-keyed: its
// host sums hash holds the total, the tag and CellHosts only, whatever its
// hosts (a fleet's hour: ~44 B a series-hour, where the cells hashtable and
// host skiplist written before were ~207). Hours rolled before this layout
// have the cells hash, the host zset and the tag zset, and no host sums
// hash; readers read both layouts.
//
// They are written only by RollHour (package rollup schedules it), never by
// ingest, and expire HourlyRetention after their hour ends.

// DefaultHourlyRetention is how long hourly counts are kept.
const DefaultHourlyRetention = 90 * 24 * time.Hour

// MaxHours bounds the hours one read spans: ten years.
const MaxHours = 3660 * 24

// HourWindow is the hash of one keyword's counts in the hour starting at
// hour (Unix seconds, a multiple of 3600).
func (k Keys) HourWindow(kwID string, hour int64) string {
	return k.prefix + "hw:" + kwID + ":" + strconv.FormatInt(hour, 10)
}

// HourHostTotals is the rollup of HourWindow by host, with the hour's total
// under TotalMember.
func (k Keys) HourHostTotals(kwID string, hour int64) string {
	return k.HourWindow(kwID, hour) + "\x00h"
}

// HourHostSums is the host sums hash of the hour (Keys.HostSums of a
// minute): its total, one tag, host-keyed marker and pieces, and its hosts
// while they fit.
func (k Keys) HourHostSums(kwID string, hour int64) string {
	return k.HourWindow(kwID, hour) + "\x00H"
}

// HourTagTotals is the rollup of HourWindow by tag.
func (k Keys) HourTagTotals(kwID string, hour int64) string {
	return k.HourWindow(kwID, hour) + "\x00t"
}

// RollupState is the hash where the roller keeps its cursors.
func (k Keys) RollupState() string { return k.prefix + "rollup" }

// RollupLease is the key of the lease under which one replica rolls up.
func (k Keys) RollupLease() string { return k.prefix + "rollup:lease" }

// parseWindow returns the keyword ID and minute of a minute window key or
// of one of its pieces (a minute whose cells moved into pieces has no
// window hash left), or false for any other key (rollups, hourly keys). A
// keyword ID may hold ':' so the minute is after the last one.
func (k Keys) parseWindow(key string) (kwID string, minute int64, ok bool) {
	rest, found := strings.CutPrefix(key, k.prefix+"w:")
	if !found {
		return "", 0, false
	}
	if i := strings.IndexByte(rest, 0); i >= 0 {
		p, isPiece := strings.CutPrefix(rest[i:], "\x00P")
		if _, err := strconv.Atoi(p); !isPiece || err != nil { // a rollup
			return "", 0, false
		}
		rest = rest[:i]
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 {
		return "", 0, false
	}
	m, err := strconv.ParseInt(rest[i+1:], 10, 64)
	if err != nil || m%60 != 0 {
		return "", 0, false
	}
	return rest[:i], m, true
}

// HourLabelNames is the set of label names the hour has rollups of, so
// that a re-run of RollHour finds the old ones without scanning keys.
func (k Keys) HourLabelNames(kwID string, hour int64) string {
	return k.HourWindow(kwID, hour) + "\x00n"
}

// HourStart is the start of the hour holding t (Unix seconds).
func HourStart(t int64) int64 { return floorDiv(t, 3600) * 3600 }

// HourlyExpireAt is when the hourly keys of hour expire (Unix seconds).
func HourlyExpireAt(hour int64, hourlyRetention time.Duration) int64 {
	return hour + 3600 + int64(hourlyRetention/time.Second)
}

// ScanPageKeys is the SCAN COUNT of KeywordsByHour.
const ScanPageKeys = 1000

// KeywordsByHour lists, for each hour start in [lo, hi) that has at least
// one minute window, the keyword IDs with one in that hour, sorted. It walks the keyspace
// with SCAN (ScanPageKeys keys per reply, so Redis never blocks for long);
// in a Redis Cluster it walks the node holding the stream's slot.
func (s *Store) KeywordsByHour(ctx context.Context, lo, hi int64) (map[int64][]string, error) {
	want := map[int64]map[string]bool{}
	var scanner interface {
		Scan(ctx context.Context, cursor uint64, match string, count int64) *redis.ScanCmd
	} = s.rdb
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, s.keys.prefix)
		if err != nil {
			return nil, fmt.Errorf("scan windows: node of %s: %w", s.keys.prefix, err)
		}
		scanner = node
	}
	match := globEscape(s.keys.prefix+"w:") + "*"
	var cursor uint64
	for {
		keys, next, err := scanner.Scan(ctx, cursor, match, ScanPageKeys).Result()
		if err != nil {
			return nil, fmt.Errorf("scan windows %s: %w", match, err)
		}
		for _, key := range keys {
			kw, m, ok := s.keys.parseWindow(key)
			if !ok {
				continue
			}
			h := HourStart(m)
			if h < lo || h >= hi {
				continue
			}
			if want[h] == nil {
				want[h] = map[string]bool{}
			}
			want[h][kw] = true
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	out := make(map[int64][]string, len(want))
	for h, set := range want {
		kws := make([]string, 0, len(set))
		for kw := range set {
			kws = append(kws, kw)
		}
		sort.Strings(kws)
		out[h] = kws
	}
	return out, nil
}

// rollAddScript adds sums to one of a roll's temporary keys, KEYS[1]:
// ARGV[1] is the TTL (seconds) it gets, ARGV[2] 'h' (a hash: HINCRBY) or
// 'z' (a zset: ZINCRBY), then field, increment pairs.
var rollAddScript = redis.NewScript(`
local key, z = KEYS[1], ARGV[2] == 'z'
for i = 3, #ARGV, 2 do
  if z then
    redis.call('ZINCRBY', key, ARGV[i + 1], ARGV[i])
  else
    redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
  end
end
redis.call('EXPIRE', key, ARGV[1])
return 0
`)

// writePage is how many sums one script call of RollHour adds: Redis serves
// others between calls.
const writePage = 1000

// DefaultRollMaxCells is RollHour's bound on the sums it holds in memory.
const DefaultRollMaxCells = 250000

// hourPieces is the pieces of an hour of cells cells: the ingest script's
// count for a minute of that many cells at most (about 400 cells a piece,
// at least 16, at most 256 pieces), so that each stays a listpack.
func hourPieces(cells int) int {
	return min(256, max(16, (cells+399)/400))
}

// RollHour is RollHourBounded with DefaultRollMaxCells.
func (s *Store) RollHour(ctx context.Context, kwID string, hour, expireAt int64) (cells int, total int64, err error) {
	return s.RollHourBounded(ctx, kwID, hour, expireAt, DefaultRollMaxCells)
}

// RollHourBounded overwrites the hourly keys of (kwID, hour) with the sum of
// the hour's minute windows, expiring at expireAt (Unix seconds), in the
// layout of a minute (see the top of this file). It is idempotent: a re-run
// computes the same sums from the same minutes, and one that sees late
// entries replaces the hour with the larger sums.
//
// It reads the minutes ScanPage cells at a time and sums them in memory by
// cell, host, tag and label value; whenever those sums reach maxCells
// entries they are added (HINCRBY, ZINCRBY, writePage a script call) to keys
// of the roll's own in Redis and dropped. keyalertd's memory is then
// O(maxCells + ScanPage), whatever the hosts and minutes of the hour; an
// hour of fewer distinct sums is written once, a larger one costs Redis one
// increment per sum per flush. An hour flushed before its end has its
// cells in pieces (their count from its largest minute and the cells held
// then), since the hash's limit may be passed later. The keys are renamed
// over the hourly keys in one transaction, which deletes the keys of an
// earlier roll the new one does not have, so a reader sees the old hour or
// the new one and a crash leaves the old one (the temporary keys expire by
// themselves). If the hour has no cells the hourly keys are deleted. It
// returns the cells (host, tag, labels) and the total written.
func (s *Store) RollHourBounded(ctx context.Context, kwID string, hour, expireAt int64, maxCells int) (cells int, total int64, err error) {
	if hour%3600 != 0 {
		return 0, 0, fmt.Errorf("roll %s: hour %d is not an hour start", kwID, hour)
	}
	if maxCells <= 0 {
		maxCells = DefaultRollMaxCells
	}
	hw := s.keys.HourWindow(kwID, hour)
	hsKey := s.keys.HourHostSums(kwID, hour)
	// What an earlier run wrote: its label rollups (listed in the hour's
	// label set) and pieces, replaced or deleted.
	pipe := s.rdb.Pipeline()
	namesCmd := pipe.SMembers(ctx, s.keys.HourLabelNames(kwID, hour))
	oldPiecesCmd := pipe.HGet(ctx, hsKey, PiecesField)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, fmt.Errorf("roll %s hour %d: earlier roll: %w", kwID, hour, err)
	}
	old := []string{hw, hsKey, s.keys.HourHostTotals(kwID, hour), s.keys.HourTagTotals(kwID, hour), s.keys.HourLabelNames(kwID, hour)}
	for _, n := range namesCmd.Val() {
		old = append(old, hw+"\x00l:"+n)
	}
	oldPieces, _ := strconv.Atoi(oldPiecesCmd.Val())
	for i := range oldPieces {
		old = append(old, pieceKey(hw, i))
	}

	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmpBase := s.keys.prefix + "rolltmp:" + hex.EncodeToString(rnd[:])
	tmpHosts, tmpTags, tmpSums := tmpBase+"\x00h", tmpBase+"\x00t", tmpBase+"\x00H"
	labelNames := map[string]bool{} // every label seen: its sums are in Redis or below
	labelKey := func(name string) string { return tmpBase + "\x00l:" + name }
	pieces := -1                      // the hour's pieces, once the first flush decided (0: one hash)
	written := map[int]bool{}         // the pieces holding cells
	hostsOut, tagsOut := false, false // host, tag sums flushed to tmpHosts, tmpTags
	tmpKeys := func() []string {
		keys := []string{tmpBase, tmpHosts, tmpTags, tmpSums}
		for i := range written {
			keys = append(keys, pieceKey(tmpBase, i))
		}
		for n := range labelNames {
			keys = append(keys, labelKey(n))
		}
		return keys
	}
	cleanup := func() { s.rdb.Del(context.WithoutCancel(ctx), tmpKeys()...) }
	fail := func(what string, err error) (int, int64, error) {
		cleanup()
		return 0, 0, fmt.Errorf("roll %s hour %d: %s: %w", kwID, hour, what, err)
	}
	// A crash between here and the rename leaves the temporary keys: they
	// expire on their own, tmpTTL after the flush that wrote them last.
	// Flushes send EVALSHA in a pipeline, which does not load the script.
	if err := rollAddScript.Load(ctx, s.rdb).Err(); err != nil {
		return 0, 0, fmt.Errorf("roll %s hour %d: load script: %w", kwID, hour, err)
	}
	const tmpTTL = 10 * time.Minute
	ttl := int64(tmpTTL / time.Second)
	// The sums held: by cell, host, tag and label value; held counts them.
	sums, hosts, tags := map[string]int64{}, map[string]int64{}, map[string]int64{}
	byLabel := map[string]map[string]int64{}
	held, read := 0, 0
	// Whether the hour is host-keyed: one tag, no labelled series.
	oneTag, manyTags, labelled := "", false, false
	minuteMax := 0 // the most cells of one of the hour's minutes
	add := func(pipe redis.Pipeliner, key string, kind string, m map[string]int64) {
		pairs := make([]any, 0, 2+2*min(len(m), writePage))
		send := func() {
			// Sent once: a pipeline go-redis replayed after a timeout
			// would add these sums twice; a failed flush fails the
			// roll, which starts again from empty keys.
			sendonce.Eval(ctx, pipe, "evalsha", rollAddScript.Hash(), []string{key}, pairs)
			pairs = append(pairs[:0], ttl, kind)
		}
		pairs = append(pairs, ttl, kind)
		for g, c := range m {
			if pairs = append(pairs, g, c); len(pairs) == 2+2*writePage {
				send()
			}
		}
		if len(pairs) > 2 {
			send()
		}
	}
	// flush adds the cells and label sums held to the temporary keys, and
	// the host and tag sums unless this is the last flush (final), whose
	// host and tag sums the end of the roll writes as the hour's layout
	// needs.
	flush := func(final bool) error {
		if pieces < 0 {
			switch n := len(sums); {
			case !final:
				pieces = hourPieces(max(n, minuteMax, HostSumsMax+1))
			case n > HostSumsMax:
				pieces = hourPieces(n)
			default:
				pieces = 0
			}
		}
		pipe := s.rdb.Pipeline()
		if pieces == 0 {
			add(pipe, tmpBase, "h", sums)
		} else {
			by := map[int]map[string]int64{}
			for f, c := range sums {
				host, _, _ := strings.Cut(f, "\x00")
				i := PieceOf(host, pieces)
				if by[i] == nil {
					by[i] = map[string]int64{}
				}
				by[i][f] = c
			}
			for i, m := range by {
				add(pipe, pieceKey(tmpBase, i), "h", m)
				written[i] = true
			}
		}
		clear(sums)
		if !final {
			add(pipe, tmpHosts, "z", hosts)
			add(pipe, tmpTags, "z", tags)
			hostsOut = hostsOut || len(hosts) > 0
			tagsOut = tagsOut || len(tags) > 0
			clear(hosts)
			clear(tags)
		}
		for name, lv := range byLabel {
			add(pipe, labelKey(name), "z", lv)
		}
		clear(byLabel)
		// Every key of the roll lives as long as the roll goes on, though
		// this flush may not have touched it.
		for _, k := range tmpKeys() {
			pipe.Expire(ctx, k, tmpTTL)
		}
		held = 0
		_, err := pipe.Exec(ctx)
		return err
	}
	// The minutes' cells: each window hash, then its pieces (if any).
	var hashes []string
	for m := hour; m < hour+3600; m += 60 {
		hashes = append(hashes, s.keys.Window(kwID, m))
	}
	pipe = s.rdb.Pipeline()
	state := make([]*redis.SliceCmd, len(hashes))
	lens := make([]*redis.IntCmd, len(hashes))
	for i := range hashes {
		state[i] = pipe.HMGet(ctx, s.keys.HostSums(kwID, hour+int64(i)*60), PiecesField, PieceCellsField)
		lens[i] = pipe.HLen(ctx, hashes[i])
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fail("pieces", err)
	}
	for i, c := range state {
		p, n := 0, int64(0)
		if vals := c.Val(); len(vals) == 2 {
			p, n = pieceState(vals[0], vals[1])
		}
		minuteMax = max(minuteMax, int(lens[i].Val()+n))
		for x := range p {
			hashes = append(hashes, pieceKey(s.keys.Window(kwID, hour+int64(i)*60), x))
		}
	}
	for _, key := range hashes {
		var cursor uint64
		for {
			kvs, next, err := s.rdb.HScan(ctx, key, cursor, "", ScanPage).Result()
			if err != nil {
				return fail("scan of "+key, err)
			}
			for i := 0; i+1 < len(kvs); i += 2 {
				n, err := strconv.ParseInt(kvs[i+1], 10, 64)
				if err != nil {
					cleanup()
					return 0, 0, fmt.Errorf("roll %s hour %d: window %s field %q: count %q is not an integer", kwID, hour, key, kvs[i], kvs[i+1])
				}
				// Field(SplitField(f)) is f: the cell is summed as read.
				host, tag, labels := SplitField(kvs[i])
				held += bump(sums, kvs[i], n) + bump(hosts, host, n) + bump(tags, tag, n)
				total += n
				read++
				if read == 1 {
					oneTag = tag
				} else if tag != oneTag {
					manyTags = true
				}
				if len(labels) > 0 {
					labelled = true
					held += bump(hosts, LabelledMember, n)
				}
				for _, l := range labels {
					lv := byLabel[l.Name]
					if lv == nil {
						lv = map[string]int64{}
						byLabel[l.Name] = lv
						labelNames[l.Name] = true
					}
					held += bump(lv, l.Value, n) + bump(lv, TotalMember, n)
				}
			}
			if held >= maxCells {
				if err := flush(false); err != nil {
					return fail("sums", err)
				}
			}
			if next == 0 {
				break
			}
			cursor = next
		}
	}
	if read == 0 {
		cleanup()
		if err := s.rdb.Del(ctx, old...).Err(); err != nil {
			return 0, 0, fmt.Errorf("roll %s hour %d: del: %w", kwID, hour, err)
		}
		return 0, 0, nil
	}
	if err := flush(true); err != nil {
		return fail("sums", err)
	}
	// The host sums, as a minute has them: host-keyed (the hour's total,
	// its tag and the marker), else per host in the hash while it fits,
	// else in the zset, with the tag zset.
	keyed := !manyTags && !labelled
	meta := map[string]any{TotalMember: total}
	if pieces > 0 {
		meta[PiecesField] = pieces
	}
	hostsZset := false
	if !keyed {
		fields := len(meta) // and SingleTagField, the pieces' cells
		if !manyTags {
			fields++
		}
		if pieces > 0 {
			fields++
		}
		if hostsOut {
			// Flushed earlier: the hosts are counted in Redis, read back
			// only if they fit in the hash (at most HostSumsMax).
			pipe := s.rdb.Pipeline()
			add(pipe, tmpHosts, "z", hosts)
			clear(hosts)
			card := pipe.ZCard(ctx, tmpHosts)
			if _, err := pipe.Exec(ctx); err != nil {
				return fail("host sums", err)
			}
			if hostsZset = int(card.Val())+fields > HostSumsMax; !hostsZset {
				zs, err := s.rdb.ZRangeWithScores(ctx, tmpHosts, 0, -1).Result()
				if err != nil {
					return fail("host sums", err)
				}
				for _, z := range zs {
					hosts[z.Member.(string)] = int64(z.Score)
				}
			}
		} else {
			hostsZset = len(hosts)+fields > HostSumsMax
		}
		if hostsZset {
			// The total is the zset's: readers add up both.
			delete(meta, TotalMember)
			hosts[TotalMember] = total
			pipe := s.rdb.Pipeline()
			add(pipe, tmpHosts, "z", hosts)
			if _, err := pipe.Exec(ctx); err != nil {
				return fail("host sums", err)
			}
		} else {
			for h, n := range hosts {
				meta[h] = n
			}
		}
	}
	tagsZset := !keyed && (manyTags || hostsZset)
	if tagsZset {
		pipe := s.rdb.Pipeline()
		add(pipe, tmpTags, "z", tags)
		if _, err := pipe.Exec(ctx); err != nil {
			return fail("tag sums", err)
		}
	} else {
		meta[SingleTagField] = oneTag
		if keyed {
			meta[CellHosts] = 1
		}
	}
	var cellCmds []*redis.IntCmd
	pipe = s.rdb.Pipeline()
	if pieces == 0 {
		cellCmds = append(cellCmds, pipe.HLen(ctx, tmpBase))
	}
	for i := range written {
		cellCmds = append(cellCmds, pipe.HLen(ctx, pieceKey(tmpBase, i)))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fail("cells", err)
	}
	for _, c := range cellCmds {
		cells += int(c.Val())
	}
	if pieces > 0 {
		meta[PieceCellsField] = cells
	}
	// The renames, and the keys of an earlier roll they leave over.
	type rename struct{ from, to string }
	renames := []rename{{tmpSums, hsKey}}
	if pieces == 0 {
		renames = append(renames, rename{tmpBase, hw})
	}
	for _, i := range slices.Sorted(maps.Keys(written)) {
		renames = append(renames, rename{pieceKey(tmpBase, i), pieceKey(hw, i)})
	}
	if hostsZset {
		renames = append(renames, rename{tmpHosts, s.keys.HourHostTotals(kwID, hour)})
	}
	if tagsZset {
		renames = append(renames, rename{tmpTags, s.keys.HourTagTotals(kwID, hour)})
	}
	sorted := slices.Sorted(maps.Keys(labelNames))
	for _, name := range sorted {
		renames = append(renames, rename{labelKey(name), hw + "\x00l:" + name})
	}
	tx := s.rdb.TxPipeline()
	tx.Del(ctx, tmpSums)
	tx.HSet(ctx, tmpSums, meta)
	for _, k := range old {
		if !slices.ContainsFunc(renames, func(r rename) bool { return r.to == k }) {
			tx.Del(ctx, k)
		}
	}
	if len(sorted) > 0 {
		nk := s.keys.HourLabelNames(kwID, hour)
		members := make([]any, 0, len(sorted))
		for _, n := range sorted {
			members = append(members, n)
		}
		tx.SAdd(ctx, nk, members...)
		tx.ExpireAt(ctx, nk, time.Unix(expireAt, 0))
	}
	for _, r := range renames {
		tx.Rename(ctx, r.from, r.to)
		tx.ExpireAt(ctx, r.to, time.Unix(expireAt, 0))
	}
	if _, err := tx.Exec(ctx); err != nil {
		return fail("rename", err)
	}
	// The temporary host and tag sums of an hour that needs none.
	if !hostsZset && hostsOut || !tagsZset && tagsOut {
		s.rdb.Del(context.WithoutCancel(ctx), tmpHosts, tmpTags)
	}
	return cells, total, nil
}

// bump adds n to m[k] and says whether that made a new entry (1) or not (0).
func bump(m map[string]int64, k string, n int64) int {
	v, ok := m[k]
	m[k] = v + n
	if ok {
		return 0
	}
	return 1
}

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

// The hourly tier keeps counts past the minute retention, one hash per
// keyword and hour with the same identity as the minute windows, and the same
// rollups so that reads of a host, a tag, a label or a top stay O(hours):
//
//	ka:{tag}:hw:<keywordID>:<hour start>                HASH  Field (host, tag, labels) -> count
//	ka:{tag}:hw:<keywordID>:<hour start>\x00h           ZSET  host -> count, "\x00" -> the hour's total,
//	                                                          "\x00l" -> the labelled series' count
//	ka:{tag}:hw:<keywordID>:<hour start>\x00n           SET   the label names with a rollup
//	ka:{tag}:hw:<keywordID>:<hour start>\x00t           ZSET  tag -> count
//	ka:{tag}:hw:<keywordID>:<hour start>\x00l:<name>    ZSET  label value -> count, "\x00" -> the labelled count
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

// rollAddScript adds sums to a roll's temporary keys: KEYS are the cells
// hash, then zsets (host, tag or label sums); ARGV the TTL (seconds) every
// key gets, the cells (m, then m field, count pairs), then for each zset m
// and m member, increment pairs.
var rollAddScript = redis.NewScript(`
local ttl, i = ARGV[1], 2
local m = tonumber(ARGV[i])
i = i + 1
for j = 1, m do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('EXPIRE', KEYS[1], ttl)
for k = 2, #KEYS do
  m = tonumber(ARGV[i])
  i = i + 1
  for j = 1, m do
    redis.call('ZINCRBY', KEYS[k], ARGV[i + 1], ARGV[i])
    i = i + 2
  end
  redis.call('EXPIRE', KEYS[k], ttl)
end
return 0
`)

// writePage is how many sums one script call of RollHour adds: Redis serves
// others between calls.
const writePage = 1000

// DefaultRollMaxCells is RollHour's bound on the sums it holds in memory.
const DefaultRollMaxCells = 250000

// RollHour is RollHourBounded with DefaultRollMaxCells.
func (s *Store) RollHour(ctx context.Context, kwID string, hour, expireAt int64) (cells int, total int64, err error) {
	return s.RollHourBounded(ctx, kwID, hour, expireAt, DefaultRollMaxCells)
}

// RollHourBounded overwrites the hourly keys of (kwID, hour) with the sum of
// the hour's minute windows, expiring at expireAt (Unix seconds). It is
// idempotent: a re-run computes the same sums from the same minutes, and
// one that sees late entries replaces the hour with the larger sums.
//
// It reads the minutes ScanPage cells at a time and sums them in memory by
// cell, host, tag and label value; whenever those sums reach maxCells
// entries they are added (HINCRBY, ZINCRBY, writePage a script call) to keys
// of the roll's own in Redis and dropped. keyalertd's memory is then
// O(maxCells + ScanPage), whatever the hosts and minutes of the hour; an
// hour of fewer distinct sums is written once, a larger one costs Redis one
// increment per sum per flush. The keys are renamed over the hourly keys in
// one transaction, so a reader sees the old hour or the new one and a crash
// leaves the old one (the temporary keys expire by themselves). If the hour
// has no cells the hourly keys are deleted. It returns the cells (host, tag,
// labels) and the total written.
func (s *Store) RollHourBounded(ctx context.Context, kwID string, hour, expireAt int64, maxCells int) (cells int, total int64, err error) {
	if hour%3600 != 0 {
		return 0, 0, fmt.Errorf("roll %s: hour %d is not an hour start", kwID, hour)
	}
	if maxCells <= 0 {
		maxCells = DefaultRollMaxCells
	}
	hw := s.keys.HourWindow(kwID, hour)
	dst := []string{hw, s.keys.HourHostTotals(kwID, hour), s.keys.HourTagTotals(kwID, hour)}
	// The label rollups an earlier run wrote, listed in the hour's label
	// set: replaced, or deleted when the hour no longer has the label.
	names, err := s.rdb.SMembers(ctx, s.keys.HourLabelNames(kwID, hour)).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("roll %s hour %d: label rollups: %w", kwID, hour, err)
	}
	old := make([]string, 0, len(names)+1)
	for _, n := range names {
		old = append(old, hw+"\x00l:"+n)
	}
	old = append(old, s.keys.HourLabelNames(kwID, hour))

	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmpBase := s.keys.prefix + "rolltmp:" + hex.EncodeToString(rnd[:])
	tmp := []string{tmpBase, tmpBase + "\x00h", tmpBase + "\x00t"}
	labelNames := map[string]bool{} // every label seen: its sums are in Redis or below
	labelKey := func(name string) string { return tmpBase + "\x00l:" + name }
	cleanup := func() {
		keys := slices.Clone(tmp)
		for n := range labelNames {
			keys = append(keys, labelKey(n))
		}
		s.rdb.Del(context.WithoutCancel(ctx), keys...)
	}
	// A crash between here and the rename leaves the temporary keys: they
	// expire on their own, tmpTTL after the flush that wrote them last.
	if err := s.rdb.Del(ctx, tmp...).Err(); err != nil {
		return 0, 0, fmt.Errorf("roll %s hour %d: del: %w", kwID, hour, err)
	}
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
	flush := func() error {
		pipe := s.rdb.Pipeline()
		add := func(key string, zset bool, m map[string]int64) {
			pairs := make([]any, 0, 2*min(len(m), writePage))
			send := func() {
				keys, args := []string{tmp[0]}, []any{ttl}
				if zset {
					keys, args = append(keys, key), append(args, 0) // no cells
				}
				args = append(append(args, len(pairs)/2), pairs...)
				// Sent once: a pipeline go-redis replayed after a timeout
				// would add these sums twice; a failed flush fails the
				// roll, which starts again from empty keys.
				sendonce.Eval(ctx, pipe, "evalsha", rollAddScript.Hash(), keys, args)
				pairs = pairs[:0]
			}
			for g, c := range m {
				if pairs = append(pairs, g, c); len(pairs) == 2*writePage {
					send()
				}
			}
			if len(pairs) > 0 {
				send()
			}
			clear(m)
		}
		add(tmp[0], false, sums)
		add(tmp[1], true, hosts)
		add(tmp[2], true, tags)
		for name, lv := range byLabel {
			add(labelKey(name), true, lv)
		}
		clear(byLabel)
		// Every key of the roll lives as long as the roll goes on, though
		// this flush may not have touched it.
		for _, k := range tmp {
			pipe.Expire(ctx, k, tmpTTL)
		}
		for name := range labelNames {
			pipe.Expire(ctx, labelKey(name), tmpTTL)
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
	pipe := s.rdb.Pipeline()
	pieces := make([]*redis.StringCmd, len(hashes))
	for i := range hashes {
		pieces[i] = pipe.HGet(ctx, s.keys.HostSums(kwID, hour+int64(i)*60), PiecesField)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		cleanup()
		return 0, 0, fmt.Errorf("roll %s hour %d: pieces: %w", kwID, hour, err)
	}
	for i, c := range pieces {
		p, _ := strconv.Atoi(c.Val())
		for x := range p {
			hashes = append(hashes, pieceKey(s.keys.Window(kwID, hour+int64(i)*60), x))
		}
	}
	for _, key := range hashes {
		var cursor uint64
		for {
			kvs, next, err := s.rdb.HScan(ctx, key, cursor, "", ScanPage).Result()
			if err != nil {
				cleanup()
				return 0, 0, fmt.Errorf("roll %s hour %d: scan of %s: %w", kwID, hour, key, err)
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
				if len(labels) > 0 {
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
				if err := flush(); err != nil {
					cleanup()
					return 0, 0, fmt.Errorf("roll %s hour %d: sums: %w", kwID, hour, err)
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
		if err := s.rdb.Del(ctx, append(dst, old...)...).Err(); err != nil {
			return 0, 0, fmt.Errorf("roll %s hour %d: del: %w", kwID, hour, err)
		}
		return 0, 0, nil
	}
	hosts[TotalMember] += total
	if err := flush(); err != nil {
		cleanup()
		return 0, 0, fmt.Errorf("roll %s hour %d: sums: %w", kwID, hour, err)
	}
	hlen, err := s.rdb.HLen(ctx, tmp[0]).Result()
	if err != nil {
		cleanup()
		return 0, 0, fmt.Errorf("roll %s hour %d: cells: %w", kwID, hour, err)
	}
	sorted := slices.Sorted(maps.Keys(labelNames))
	for _, name := range sorted {
		tmp = append(tmp, labelKey(name))
		dst = append(dst, hw+"\x00l:"+name)
	}
	tx := s.rdb.TxPipeline()
	for _, k := range old {
		if !slices.Contains(dst, k) {
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
	for i := range tmp {
		tx.Rename(ctx, tmp[i], dst[i])
		tx.ExpireAt(ctx, dst[i], time.Unix(expireAt, 0))
	}
	if _, err := tx.Exec(ctx); err != nil {
		cleanup()
		return 0, 0, fmt.Errorf("roll %s hour %d: rename: %w", kwID, hour, err)
	}
	return int(hlen), total, nil
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

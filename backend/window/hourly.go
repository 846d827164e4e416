package window

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keyalert/keyalert/pkg/stream"
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

// parseWindow returns the keyword ID and minute of a minute window key, or
// false for any other key (rollups, hourly keys). A keyword ID may hold ':'
// so the minute is after the last one.
func (k Keys) parseWindow(key string) (kwID string, minute int64, ok bool) {
	rest, found := strings.CutPrefix(key, k.prefix+"w:")
	if !found || strings.IndexByte(rest, 0) >= 0 { // a rollup

		return "", 0, false
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

// writePage is how many fields one HSET or ZADD of RollHour carries.
const writePage = 1000

// RollHour overwrites the hourly keys of (kwID, hour) with the sum of the
// hour's minute windows, expiring at expireAt (Unix seconds). It is
// idempotent: a re-run computes the same sums from the same minutes, and
// one that sees late entries replaces the hour with the larger sums.
//
// The sums are built in keys of their own and renamed over the hourly keys
// in one transaction, so a reader sees the old hour or the new one and a
// crash leaves the old one (the temporary keys expire by themselves). If
// the hour has no cells the hourly keys are deleted. It returns the cells
// (host, tag pairs) and the total written. Memory is O(cells of the hour).
func (s *Store) RollHour(ctx context.Context, kwID string, hour, expireAt int64) (cells int, total int64, err error) {
	if hour%3600 != 0 {
		return 0, 0, fmt.Errorf("roll %s: hour %d is not an hour start", kwID, hour)
	}
	sums := map[string]int64{}
	for m := hour; m < hour+3600; m += 60 {
		err := s.scanCells(ctx, s.keys.Window(kwID, m), Filter{}, func(host, tag string, labels []stream.Label, n int64) {
			sums[Field(host, tag, labels...)] += n
		})
		if err != nil {
			return 0, 0, fmt.Errorf("roll %s hour %d: %w", kwID, hour, err)
		}
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
	if len(sums) == 0 {
		if err := s.rdb.Del(ctx, append(dst, old...)...).Err(); err != nil {
			return 0, 0, fmt.Errorf("roll %s hour %d: del: %w", kwID, hour, err)
		}
		return 0, 0, nil
	}
	hosts, tags := map[string]int64{}, map[string]int64{}
	byLabel := map[string]map[string]int64{}
	for f, n := range sums {
		h, t, labels := SplitField(f)
		hosts[h] += n
		tags[t] += n
		total += n
		if len(labels) > 0 {
			hosts[LabelledMember] += n
		}
		for _, l := range labels {
			m := byLabel[l.Name]
			if m == nil {
				m = map[string]int64{}
				byLabel[l.Name] = m
			}
			m[l.Value] += n
			m[TotalMember] += n
		}
	}
	hosts[TotalMember] = total

	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmpBase := s.keys.prefix + "rolltmp:" + hex.EncodeToString(rnd[:])
	tmp := []string{tmpBase, tmpBase + "\x00h", tmpBase + "\x00t"}
	groups := []map[string]int64{hosts, tags}
	for _, name := range slices.Sorted(maps.Keys(byLabel)) {
		tmp = append(tmp, tmpBase+"\x00l:"+name)
		dst = append(dst, hw+"\x00l:"+name)
		groups = append(groups, byLabel[name])
	}
	cleanup := func() { s.rdb.Del(context.WithoutCancel(ctx), tmp...) }

	pipe := s.rdb.Pipeline()
	flushIfFull := func(force bool) error {
		if pipe.Len() == 0 || (!force && pipe.Len() < 16) {
			return nil
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	// A crash between here and the rename leaves the temporary keys: they
	// expire on their own.
	for _, k := range tmp {
		pipe.Del(ctx, k)
	}
	args := make([]any, 0, 2*writePage)
	for f, n := range sums {
		args = append(args, f, n)
		if len(args) == 2*writePage {
			pipe.HSet(ctx, tmp[0], args...)
			pipe.Expire(ctx, tmp[0], 10*time.Minute)
			args = make([]any, 0, 2*writePage)
			if err := flushIfFull(false); err != nil {
				cleanup()
				return 0, 0, fmt.Errorf("roll %s hour %d: hset: %w", kwID, hour, err)
			}
		}
	}
	if len(args) > 0 {
		pipe.HSet(ctx, tmp[0], args...)
		pipe.Expire(ctx, tmp[0], 10*time.Minute)
	}
	for i, group := range groups {
		zs := make([]redis.Z, 0, min(len(group), writePage))
		for g, n := range group {
			zs = append(zs, redis.Z{Score: float64(n), Member: g})
			if len(zs) == writePage {
				pipe.ZAdd(ctx, tmp[i+1], zs...)
				pipe.Expire(ctx, tmp[i+1], 10*time.Minute)
				zs = make([]redis.Z, 0, writePage)
				if err := flushIfFull(false); err != nil {
					cleanup()
					return 0, 0, fmt.Errorf("roll %s hour %d: zadd: %w", kwID, hour, err)
				}
			}
		}
		if len(zs) > 0 {
			pipe.ZAdd(ctx, tmp[i+1], zs...)
			pipe.Expire(ctx, tmp[i+1], 10*time.Minute)
		}
	}
	if err := flushIfFull(true); err != nil {
		cleanup()
		return 0, 0, fmt.Errorf("roll %s hour %d: write: %w", kwID, hour, err)
	}
	tx := s.rdb.TxPipeline()
	for _, k := range old {
		if !slices.Contains(dst, k) {
			tx.Del(ctx, k)
		}
	}
	if len(byLabel) > 0 {
		nk := s.keys.HourLabelNames(kwID, hour)
		members := make([]any, 0, len(byLabel))
		for n := range byLabel {
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
	return len(sums), total, nil
}

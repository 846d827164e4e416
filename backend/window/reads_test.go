package window

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// fleet is a deterministic keyword history: hosts × minutes cells, each
// host on one of three tags.
type fleet struct {
	hosts, minutes int
	base           int64
	// zsetHosts writes the host rollup as the zset of versions before the
	// host sums hash (HostTotals). Without it the rollup is laid out as the
	// ingest script does: the hash up to HostSumsMax hosts, else the zset.
	zsetHosts bool
	// keyed gives every host one tag and lays the minutes out host-keyed
	// (CellHosts), as the ingest script does for such minutes.
	keyed bool
	// pieces writes the cells into that many pieces (Keys.Piece), as the
	// ingest script does past HostSumsMax cells, whatever the hosts.
	pieces int
}

func (f fleet) host(h int) string { return fmt.Sprintf("web-%05d", h) }
func (f fleet) tag(h int) string {
	if f.keyed {
		return "tag-0"
	}
	return "tag-" + strconv.Itoa(h%3)
}
func (f fleet) count(h, m int) int64 {
	return int64((h*7+m*13)%101 + 1)
}

// write stores the fleet's window hashes with pipelined HSETs and, with
// rollups, the rollups the ingest script keeps beside them.
func (f fleet) write(tb testing.TB, rdb redis.UniversalClient, k Keys, kwID string, rollups bool) {
	tb.Helper()
	ctx := context.Background()
	const chunk = 1000
	if f.hosts > HostSumsMax && !f.keyed {
		f.zsetHosts = true
	}
	for m := 0; m < f.minutes; m++ {
		minute := f.base + int64(m)*60
		pipe := rdb.Pipeline()
		tags := map[string]int64{}
		var total int64
		for h0 := 0; h0 < f.hosts; h0 += chunk {
			cells := make([]any, 0, 2*chunk)
			hosts := make([]redis.Z, 0, chunk)
			sums := make([]any, 0, 2*chunk)
			for h := h0; h < min(h0+chunk, f.hosts); h++ {
				n := f.count(h, m)
				cells = append(cells, Field(f.host(h), f.tag(h)), n)
				hosts = append(hosts, redis.Z{Score: float64(n), Member: f.host(h)})
				sums = append(sums, f.host(h), n)
				tags[f.tag(h)] += n
				total += n
			}
			if f.pieces > 0 {
				by := map[int][]any{}
				for j := 0; j < len(cells); j += 2 {
					host, _, _ := SplitField(cells[j].(string))
					p := PieceOf(host, f.pieces)
					by[p] = append(by[p], cells[j], cells[j+1])
				}
				for p, kv := range by {
					pipe.HSet(ctx, k.Piece(kwID, minute, p), kv...)
				}
			} else {
				pipe.HSet(ctx, k.Window(kwID, minute), cells...)
			}
			switch {
			case rollups && f.keyed:
			case rollups && f.zsetHosts:
				pipe.ZAdd(ctx, k.HostTotals(kwID, minute), hosts...)
			case rollups:
				pipe.HSet(ctx, k.HostSums(kwID, minute), sums...)
			}
		}
		switch {
		case rollups && f.keyed:
			pipe.HSet(ctx, k.HostSums(kwID, minute), TotalMember, total, SingleTagField, f.tag(0), CellHosts, 1)
		case rollups && f.zsetHosts:
			pipe.ZAdd(ctx, k.HostTotals(kwID, minute), redis.Z{Score: float64(total), Member: TotalMember})
		case rollups:
			pipe.HSet(ctx, k.HostSums(kwID, minute), TotalMember, total)
		}
		if f.pieces > 0 {
			pipe.HSet(ctx, k.HostSums(kwID, minute), PiecesField, f.pieces, PieceCellsField, f.hosts)
		}
		if rollups && !f.keyed {
			for t, n := range tags {
				pipe.ZAdd(ctx, k.TagTotals(kwID, minute), redis.Z{Score: float64(n), Member: t})
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			tb.Fatalf("writing minute %d of the fleet: %v", m, err)
		}
	}
}

// counts is the expected per-minute count of the cells f selects.
func (fl fleet) counts(f Filter) []MinuteCount {
	var out []MinuteCount
	for m := 0; m < fl.minutes; m++ {
		var n int64
		for h := 0; h < fl.hosts; h++ {
			if f.match(fl.host(h), fl.tag(h), nil) {
				n += fl.count(h, m)
			}
		}
		if n != 0 {
			out = append(out, MinuteCount{fl.base + int64(m)*60, n})
		}
	}
	return out
}

// top is the expected top by host or tag over the whole fleet history.
func (fl fleet) top(by string, limit int) ([]Group, int64) {
	sums := map[string]int64{}
	var total int64
	for m := 0; m < fl.minutes; m++ {
		for h := 0; h < fl.hosts; h++ {
			g := fl.host(h)
			if by == "tag" {
				g = fl.tag(h)
			}
			sums[g] += fl.count(h, m)
			total += fl.count(h, m)
		}
	}
	out := make([]Group, 0, len(sums))
	for g, n := range sums {
		out = append(out, Group{g, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Value < out[j].Value
	})
	return out[:min(limit, len(out))], total
}

// commandCalls returns the calls per command since the last CONFIG RESETSTAT.
func commandCalls(t *testing.T, rdb *redis.Client) map[string]int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out
}

// heapGrowth runs fn and returns how much it grew the live heap and how much
// it allocated in all, which bounds the heap growth of any one call.
func heapGrowth(fn func()) (inuse int64, alloc uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return int64(after.HeapInuse) - int64(before.HeapInuse), after.TotalAlloc - before.TotalAlloc
}

// Bounds of one read of a 20,000-host fleet, whatever the fleet size: the
// rollup reads hold O(minutes + limit) values.
const (
	maxCallAlloc  = 1 << 20
	maxHeapGrowth = 4 << 20
)

func TestCountsOfAFleetReadOnlyTheRollupsAndStayBounded(t *testing.T) {
	rdb := redistest.Start(t).Client()
	s := NewStore(rdb, stream.DefaultStream)
	fl := fleet{hosts: 20000, minutes: 20, base: 1714557600}
	fl.write(t, rdb, s.Keys(), "substring:x", true)
	keyed := fleet{hosts: 20000, minutes: 20, base: 1714557600, keyed: true}
	keyed.write(t, rdb, s.Keys(), "substring:keyed", true)
	pieced := fleet{hosts: 20000, minutes: 20, base: 1714557600, keyed: true, pieces: 64}
	pieced.write(t, rdb, s.Keys(), "substring:pieced", true)
	tests := []struct {
		name   string
		filter Filter
		calls  map[string]int // Redis commands the call may make
		// and on host-keyed minutes: a host's count is its cell, one HGET
		// per minute in a second round
		keyedCalls map[string]int
		// and on host-keyed minutes in pieces: a host and tag's cell is
		// in the window hash (written by an earlier version) and the
		// host's piece, another HGET in a second round
		piecedCalls map[string]int
	}{
		// Each minute's host rollup is read twice: the host sums hash
		// (HMGET) and the zset of minutes written before it (ZMSCORE).
		{"host alone is one HMGET and ZMSCORE of two members per minute", Filter{Host: fl.host(4321), HostSet: true},
			map[string]int{"hmget": 20, "zmscore": 20, "hlen": 20}, map[string]int{"hmget": 20, "zmscore": 20, "hlen": 20, "hget": 20},
			map[string]int{"hmget": 20, "zmscore": 20, "hlen": 20, "hget": 40}},
		{"tag alone is a ZMSCORE on the tag rollup per minute, and the total", Filter{Tag: fl.tag(2), TagSet: true},
			map[string]int{"hmget": 20, "zmscore": 40, "hlen": 20}, nil, nil},
		{"host and tag is one HGET per minute (and whether the minute has labelled cells)", Filter{Host: fl.host(17), HostSet: true, Tag: fl.tag(17), TagSet: true},
			map[string]int{"hget": 20, "hmget": 20, "zmscore": 20, "hlen": 20}, nil, map[string]int{"hget": 40, "hmget": 20, "zmscore": 20, "hlen": 20}},
		{"no filter reads each minute's total", Filter{}, map[string]int{"hmget": 20, "zmscore": 20, "hlen": 20}, nil, nil},
		{"an unknown host counts nothing", Filter{Host: "nobody", HostSet: true},
			map[string]int{"hmget": 20, "zmscore": 20, "hlen": 20}, map[string]int{"hmget": 20, "zmscore": 20, "hlen": 20, "hget": 20},
			map[string]int{"hmget": 20, "zmscore": 20, "hlen": 20, "hget": 40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { countsBounded(t, rdb, s, fl, "substring:x", tt.filter, tt.calls) })
		// Each layout's calls default to the previous one's.
		calls := tt.calls
		for _, v := range []struct {
			suffix, kw string
			fl         fleet
			calls      map[string]int
		}{{", host-keyed", "substring:keyed", keyed, tt.keyedCalls}, {", host-keyed in pieces", "substring:pieced", pieced, tt.piecedCalls}} {
			if v.calls != nil {
				calls = v.calls
			}
			f, want := tt.filter, calls
			if f.TagSet {
				f.Tag = v.fl.tag(0)
			}
			t.Run(tt.name+v.suffix, func(t *testing.T) { countsBounded(t, rdb, s, v.fl, v.kw, f, want) })
		}
	}
}

// countsBounded checks one Counts call over fleet fl (written as kw)
// against the fleet, the Redis commands it makes and its allocations.
func countsBounded(t *testing.T, rdb *redis.Client, s *Store, fl fleet, kw string, f Filter, want map[string]int) {
	t.Helper()
	ctx := context.Background()
	from, to := fl.base, fl.base+int64(fl.minutes)*60
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	var got []MinuteCount
	var err error
	inuse, alloc := heapGrowth(func() { got, err = s.Counts(ctx, kw, from, to, f, 1000) })
	if err != nil {
		t.Fatal(err)
	}
	if want := fl.counts(f); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("Counts = %v, want %v", got, want)
	}
	calls := commandCalls(t, rdb)
	delete(calls, "config|resetstat")
	delete(calls, "config")
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("commands %v, want %v", calls, want)
	}
	if alloc > maxCallAlloc || inuse > maxHeapGrowth {
		t.Errorf("one call allocated %d bytes and grew the heap by %d, want at most %d and %d", alloc, inuse, maxCallAlloc, maxHeapGrowth)
	}
}

func TestTopOfAFleetReturnsOnlyLimitGroups(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	fl := fleet{hosts: 20000, minutes: 20, base: 1714557600}
	fl.write(t, rdb, s.Keys(), "substring:x", true)
	fl.write(t, rdb, s.Keys(), "substring:old", false) // counted before rollups
	keyed := fleet{hosts: 20000, minutes: 20, base: 1714557600, keyed: true}
	keyed.write(t, rdb, s.Keys(), "substring:keyed", true)
	fleet{hosts: 20000, minutes: 20, base: 1714557600, keyed: true, pieces: 64}.write(t, rdb, s.Keys(), "substring:pieced", true)
	from, to := fl.base, fl.base+int64(fl.minutes)*60
	tests := []struct {
		name, kw, by string
		limit        int
		maxCells     int64
		bounded      bool // the call's memory does not grow with the fleet
	}{
		{"top hosts from rollups", "substring:x", "host", 10, 1_000_000, true},
		{"top tags from rollups", "substring:x", "tag", 2, 1_000_000, true},
		{"the whole limit of hosts", "substring:x", "host", 1000, 1_000_000, true},
		{"top hosts of minutes without rollups", "substring:old", "host", 10, 1_000_000, true},
		{"top tags of minutes without rollups", "substring:old", "tag", 3, 1_000_000, true},
		{"top hosts of host-keyed minutes (their cells)", "substring:keyed", "host", 10, 1_000_000, true},
		{"top tags of host-keyed minutes", "substring:keyed", "tag", 3, 1_000_000, true},
		{"top hosts of host-keyed minutes in pieces", "substring:pieced", "host", 10, 1_000_000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []Group
			var total int64
			var err error
			inuse, alloc := heapGrowth(func() { got, total, err = s.Top(ctx, tt.kw, from, to, tt.by, tt.limit, tt.maxCells) })
			if err != nil {
				t.Fatal(err)
			}
			want, wantTotal := fl.top(tt.by, tt.limit)
			if tt.kw == "substring:keyed" || tt.kw == "substring:pieced" {
				want, wantTotal = keyed.top(tt.by, tt.limit)
			}
			if !reflect.DeepEqual(got, want) || total != wantTotal {
				t.Errorf("Top = %v total %d, want %v total %d", got, total, want, wantTotal)
			}
			// Scanned minutes allocate per page, not per fleet: bound the
			// live heap, not the bytes that passed through.
			if inuse > maxHeapGrowth || (tt.kw != "substring:old" && alloc > maxCallAlloc) {
				t.Errorf("one call allocated %d bytes and grew the heap by %d, want at most %d (rollups) and %d", alloc, inuse, maxCallAlloc, maxHeapGrowth)
			}
			if n, _ := rdb.Keys(ctx, "ka:*top:*").Result(); len(n) != 0 {
				t.Errorf("temporary keys left: %v", n)
			}
		})
	}
}

func TestReadsOverTheCellLimitFailNamingIt(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	fl := fleet{hosts: 2000, minutes: 5, base: 1714557600}
	fl.write(t, rdb, s.Keys(), "substring:x", true)
	fl.write(t, rdb, s.Keys(), "substring:old", false)
	from, to := fl.base, fl.base+int64(fl.minutes)*60
	tests := []struct {
		name string
		read func() error
	}{
		{"top by host sums 5 × 2000 hosts", func() error {
			_, _, err := s.Top(ctx, "substring:x", from, to, "host", 10, 9999)
			return err
		}},
		{"top of minutes without rollups", func() error {
			_, _, err := s.Top(ctx, "substring:old", from, to, "tag", 10, 9999)
			return err
		}},
		{"counts of minutes without rollups", func() error {
			_, err := s.Counts(ctx, "substring:old", from, to, Filter{}, 9999)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.read()
			var le *LimitError
			if !errors.As(err, &le) || le.Cells != 10000 || le.Max != 9999 {
				t.Fatalf("err = %v, want a LimitError of 10000 cells over 9999", err)
			}
			if !strings.Contains(err.Error(), "KEYALERT_MAX_CELLS_PER_QUERY") {
				t.Errorf("error %q does not name the setting", err)
			}
		})
	}
	// Rollups make counts independent of the fleet: no limit applies.
	if _, err := s.Counts(ctx, "substring:x", from, to, Filter{}, 1); err != nil {
		t.Errorf("counts from rollups with a limit of 1: %v", err)
	}
}

func TestCountsWithoutRollupsEqualCountsWithThem(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	fl := fleet{hosts: 300, minutes: 4, base: 1714557600}
	fl.write(t, rdb, s.Keys(), "substring:x", true)
	fl.write(t, rdb, s.Keys(), "substring:old", false)
	// A host name with glob specials is matched literally.
	if err := rdb.HSet(ctx, s.Keys().Window("substring:glob", fl.base), Field("w*b[1]", "t"), 5).Err(); err != nil {
		t.Fatal(err)
	}
	from, to := fl.base, fl.base+int64(fl.minutes)*60
	for _, f := range []Filter{{}, {Host: fl.host(3), HostSet: true}, {Tag: fl.tag(1), TagSet: true},
		{Host: fl.host(4), HostSet: true, Tag: fl.tag(4), TagSet: true}} {
		a, err := s.Counts(ctx, "substring:x", from, to, f, 1e6)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Counts(ctx, "substring:old", from, to, f, 1e6)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(a, fl.counts(f)) {
			t.Errorf("filter %+v: with rollups %v, without %v, want %v", f, a, b, fl.counts(f))
		}
	}
	if err := rdb.HSet(ctx, s.Keys().Window("substring:glob", fl.base), Field("wxb1", "t"), 7).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := s.Counts(ctx, "substring:glob", from, to, Filter{Host: "w*b[1]", HostSet: true}, 1e6)
	if err != nil || !reflect.DeepEqual(got, []MinuteCount{{fl.base, 5}}) {
		t.Errorf("host with glob specials: %v, %v", got, err)
	}
}

// Minutes whose host rollup is the zset of earlier versions (HostTotals)
// are read like those with the host sums hash, and a minute holding both
// (written across an upgrade) is read as their sum; host-keyed minutes
// (CellHosts) beside them, one of them with host fields a replica of the
// version before wrote too (its cells hold those counts): counts and tops
// equal the cells.
func TestMinutesWithTheHostRollupOfEarlierVersionsAreRead(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	const base int64 = 1714557600
	// Minutes 0-3 old layout, 4-7 new; minute 8 half of its hosts in each.
	old := fleet{hosts: 300, minutes: 4, base: base, zsetHosts: true}
	old.write(t, rdb, s.Keys(), "substring:x", true)
	cur := fleet{hosts: 300, minutes: 4, base: base + 4*60}
	cur.write(t, rdb, s.Keys(), "substring:x", true)
	mixed := base + 8*60
	k := s.Keys()
	for h := range 300 {
		n := int64(h%5 + 1)
		rdb.HIncrBy(ctx, k.Window("substring:x", mixed), Field(fmt.Sprintf("web-%05d", h), "tag-0"), n)
		rdb.ZIncrBy(ctx, k.TagTotals("substring:x", mixed), float64(n), "tag-0")
		if h%2 == 0 {
			rdb.ZIncrBy(ctx, k.HostTotals("substring:x", mixed), float64(n), fmt.Sprintf("web-%05d", h))
			rdb.ZIncrBy(ctx, k.HostTotals("substring:x", mixed), float64(n), TotalMember)
		} else {
			rdb.HIncrBy(ctx, k.HostSums("substring:x", mixed), fmt.Sprintf("web-%05d", h), n)
			rdb.HIncrBy(ctx, k.HostSums("substring:x", mixed), TotalMember, n)
		}
	}
	keyed := fleet{hosts: 300, minutes: 4, base: mixed + 60, keyed: true}
	keyed.write(t, rdb, s.Keys(), "substring:x", true)
	last := keyed.base + 3*60
	rdb.HSet(ctx, k.HostSums("substring:x", last), keyed.host(7), 1, keyed.host(8), 2) // partial, as an old replica adds
	// Host-keyed minutes in pieces, the last with cells a replica of an
	// earlier version wrote to the window hash after the move (its host
	// fields in the host sums are in those cells too).
	pieced := fleet{hosts: 300, minutes: 3, base: last + 60, keyed: true, pieces: 7}
	pieced.write(t, rdb, s.Keys(), "substring:x", true)
	last = pieced.base + 2*60
	for h := range 20 {
		rdb.HIncrBy(ctx, k.Window("substring:x", last), Field(pieced.host(h), pieced.tag(h)), 3)
		rdb.HIncrBy(ctx, k.HostSums("substring:x", last), pieced.host(h), 3)
		rdb.HIncrBy(ctx, k.HostSums("substring:x", last), TotalMember, 3)
	}
	end := last + 60
	cells, err := s.Cells(ctx, "substring:x", base, end)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []Filter{{}, {Host: "web-00007", HostSet: true}, {Host: "web-00008", HostSet: true}, {Tag: "tag-0", TagSet: true}} {
		want := map[int64]int64{}
		for _, c := range cells {
			if f.match(c.Host, c.Tag, c.Labels) {
				want[c.Minute] += c.Count
			}
		}
		got, err := s.Counts(ctx, "substring:x", base, end, f, 1) // rollups only
		if err != nil {
			t.Fatalf("filter %+v: %v", f, err)
		}
		if len(got) != len(want) {
			t.Errorf("filter %+v: %v, want %v", f, got, want)
		}
		for _, mc := range got {
			if want[mc.Minute] != mc.Count {
				t.Errorf("filter %+v minute %d: rollup %d, cells %d", f, mc.Minute, mc.Count, want[mc.Minute])
			}
		}
	}
	sums, wantTotal := map[string]int64{}, int64(0)
	for _, c := range cells {
		sums[c.Host] += c.Count
		wantTotal += c.Count
	}
	var want []Group
	for h, n := range sums {
		want = append(want, Group{h, n})
	}
	sort.Slice(want, func(i, j int) bool {
		if want[i].Count != want[j].Count {
			return want[i].Count > want[j].Count
		}
		return want[i].Value < want[j].Value
	})
	got, gotTotal, err := s.Top(ctx, "substring:x", base, end, "host", 20, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want[:20]) || gotTotal != wantTotal {
		t.Errorf("Top = %v total %d, want %v total %d", got, gotTotal, want[:20], wantTotal)
	}
}

// One ingest batch can take a minute's host sums hash past HostSumsMax
// before it is moved into the zset: a top still sums all of it.
func TestTopSumsAHostSumsHashPastItsLimit(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	const kw, m, hosts = "substring:x", 1714557600, 3 * HostSumsMax
	fields := []any{TotalMember, 0}
	var total int64
	for h := range hosts {
		fields = append(fields, fmt.Sprintf("web-%05d", h), h+1)
		total += int64(h + 1)
	}
	fields[1] = total
	rdb.HSet(ctx, s.keys.HostSums(kw, m), fields...)
	rdb.HSet(ctx, s.keys.Window(kw, m), Field("x", "y"), 1) // the minute exists
	got, n, err := s.Top(ctx, kw, m, m+60, "host", 2, 1_000_000)
	want := []Group{{fmt.Sprintf("web-%05d", hosts-1), hosts}, {fmt.Sprintf("web-%05d", hosts-2), hosts - 1}}
	if err != nil || n != total || !reflect.DeepEqual(got, want) {
		t.Errorf("Top = %v total %d %v, want %v total %d", got, n, err, want, total)
	}
}

// During a rolling upgrade a replica of the version before (host zset, tag
// zset) and one of this version (host sums naming the minute's one tag) can
// write the same minute: each part is counted once.
func TestAMinuteWrittenByTwoVersionsCountsEachPartOnce(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	s := NewStore(rdb, stream.DefaultStream)
	const m int64 = 1714557600
	k, id := s.Keys(), "substring:x"
	rdb.HSet(ctx, k.Window(id, m), Field("web-1", "app"), 3, Field("web-2", "app"), 2, Field("web-2", "nginx"), 3)
	rdb.HSet(ctx, k.HostSums(id, m), "web-1", 3, TotalMember, 3, SingleTagField, "app") // this version
	rdb.ZAdd(ctx, k.HostTotals(id, m), redis.Z{Score: 5, Member: "web-2"}, redis.Z{Score: 5, Member: TotalMember})
	rdb.ZAdd(ctx, k.TagTotals(id, m), redis.Z{Score: 2, Member: "app"}, redis.Z{Score: 3, Member: "nginx"})
	for _, c := range []struct {
		f    Filter
		want int64
	}{
		{Filter{}, 8},
		{Filter{Tag: "app", TagSet: true}, 5},
		{Filter{Tag: "nginx", TagSet: true}, 3},
		{Filter{Host: "web-2", HostSet: true}, 5},
	} {
		got, err := s.Counts(ctx, id, m, m+60, c.f, 1)
		if err != nil || len(got) != 1 || got[0].Count != c.want {
			t.Errorf("filter %+v: %v %v, want %d", c.f, got, err, c.want)
		}
	}
	for _, c := range []struct {
		by   string
		want []Group
	}{
		{"tag", []Group{{"app", 5}, {"nginx", 3}}},
		{"host", []Group{{"web-2", 5}, {"web-1", 3}}},
	} {
		got, total, err := s.Top(ctx, id, m, m+60, c.by, 10, 1000)
		if err != nil || total != 8 || !reflect.DeepEqual(got, c.want) {
			t.Errorf("top by %s: %v total %d %v, want %v total 8", c.by, got, total, err, c.want)
		}
	}
}

package ingest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
)

// The counts API reads the rollups the script keeps instead of the cells:
// they must say what the cells say, duplicates included, and expire with
// them.
func TestRollupsAgreeWithTheCellsAndExpireWithThem(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	now := nowMinute()
	var es []stream.Entry
	for b := 0; b < 30; b++ {
		es = append(es, entry(b, "Exception", fmt.Sprintf("web-%d", b%5), []string{"app", "nginx"}[b%2], now-int64(b%3)*60, int64(1+b%4)))
	}
	xadd(t, rdb, es...)
	xadd(t, rdb, es[:10]...) // plugin retries: counted once
	start(t, Options{Client: rdb, BatchSize: 7, Retention: time.Hour})
	drained(t, rdb, "keyalertd")

	s := window.NewStore(rdb, testStream)
	kw := "substring:Exception"
	from, to := now-3*60, now+60
	cells, err := s.Cells(ctx, kw, from, to)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []window.Filter{{}, {Host: "web-3", HostSet: true}, {Tag: "nginx", TagSet: true}} {
		want := map[int64]int64{}
		for _, c := range cells {
			if (!f.HostSet || c.Host == f.Host) && (!f.TagSet || c.Tag == f.Tag) {
				want[c.Minute] += c.Count
			}
		}
		got, err := s.Counts(ctx, kw, from, to, f, 1) // a limit of 1: rollups only, no cell scan
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
	k := s.Keys()
	for _, key := range []string{k.HostSums(kw, now), k.TagTotals(kw, now)} {
		ttl, err := rdb.TTL(ctx, key).Result()
		if err != nil || ttl <= 0 || ttl > time.Hour+2*time.Minute {
			t.Errorf("%q: TTL %v, %v; want the window's expiry", key, ttl, err)
		}
	}
}

// A minute's host sums are a hash while it has at most window.HostSumsMax
// hosts; past that they move into the host zset, which takes the minute's
// further counts: counts and tops read from either agree with the cells,
// and the zset expires with the window. (Two tags: a minute of one tag is
// host-keyed and has no host sums to move.)
func TestHostSumsMoveToTheZsetPastTheirLimit(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	now := nowMinute()
	const hosts = window.HostSumsMax + 100
	var es []stream.Entry
	for b := range hosts {
		es = append(es, entry(b, "Exception", fmt.Sprintf("web-%04d", b), []string{"app", "nginx"}[b%2], now, int64(1+b%4)))
	}
	es = append(es, entry(hosts, "Exception", "web-0007", "nginx", now, 5)) // after the move
	xadd(t, rdb, es...)
	start(t, Options{Client: rdb, BatchSize: 100, Retention: time.Hour})
	drained(t, rdb, "keyalertd")

	s := window.NewStore(rdb, testStream)
	k := s.Keys()
	kw := "substring:Exception"
	// (It keeps the state of the cells' pieces only.)
	if got := rdb.HKeys(ctx, k.HostSums(kw, now)).Val(); len(got) != 2 || !slices.Contains(got, window.PiecesField) || !slices.Contains(got, window.PieceCellsField) {
		t.Errorf("the host sums hash holds %q past %d hosts, want the pieces' state only", got, window.HostSumsMax)
	}
	if n := rdb.ZCard(ctx, k.HostTotals(kw, now)).Val(); n != hosts+1 {
		t.Errorf("host zset has %d members, want %d hosts and the total", n, hosts)
	}
	if ttl := rdb.TTL(ctx, k.HostTotals(kw, now)).Val(); ttl <= 0 || ttl > time.Hour+2*time.Minute {
		t.Errorf("host zset TTL %v, want the window's expiry", ttl)
	}
	cells, err := s.Cells(ctx, kw, now, now+60)
	if err != nil {
		t.Fatal(err)
	}
	var total, web7 int64
	for _, c := range cells {
		total += c.Count
		if c.Host == "web-0007" {
			web7 += c.Count
		}
	}
	for _, c := range []struct {
		f    window.Filter
		want int64
	}{{window.Filter{}, total}, {window.Filter{Host: "web-0007", HostSet: true}, web7}} {
		got, err := s.Counts(ctx, kw, now, now+60, c.f, 1)
		if err != nil || len(got) != 1 || got[0].Count != c.want {
			t.Errorf("filter %+v: %v %v, want %d", c.f, got, err, c.want)
		}
	}
	top, n, err := s.Top(ctx, kw, now, now+60, "host", 1, 1_000_000)
	if err != nil || n != total || len(top) != 1 || top[0] != (window.Group{Value: "web-0007", Count: web7}) {
		t.Errorf("top host %v total %d %v, want web-0007 %d total %d", top, n, err, web7, total)
	}
}

// A minute with one tag keeps no tag rollup: its tag is the host sums'
// window.SingleTagField and its count the minute's total. A second tag, in
// a later batch or the same, writes the tag rollup with what the field
// stood for; so does the move of the host sums into the zset. Counts by
// tag and tops by tag and host agree with the cells throughout.
func TestMinutesOfOneTagKeepNoTagRollup(t *testing.T) {
	kw := "substring:Exception"
	tests := []struct {
		name    string
		batches [][]string // per batch, each entry's tag (hosts web-<i>)
		hosts   int        // entries per listed tag
		zset    bool       // the tag rollup is expected
	}{
		{"one tag", [][]string{{"app"}, {"app"}}, 3, false},
		{"a second tag in a later batch", [][]string{{"app"}, {"app", "nginx"}}, 3, true},
		{"two tags in one batch", [][]string{{"app", "nginx"}}, 3, true},
		{"one tag past the host sums' limit (host-keyed)", [][]string{{"app"}, {"app"}}, window.HostSumsMax/2 + 10, false},
		{"a second tag past the host sums' limit", [][]string{{"app"}, {"app", "nginx"}}, window.HostSumsMax/2 + 10, true},
		{"tag holding digits", [][]string{{"123"}}, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := redistest.Start(t).Client()
			ctx := context.Background()
			now := nowMinute()
			r := start(t, Options{Client: rdb, BatchSize: 5000, Retention: time.Hour})
			b := 0
			for _, tags := range tt.batches {
				var es []stream.Entry
				for _, tag := range tags {
					for h := range tt.hosts {
						es = append(es, entry(b, "Exception", fmt.Sprintf("web-%04d", b), tag, now, int64(1+h%3)))
						b++
					}
				}
				xadd(t, rdb, es...)
				drained(t, rdb, "keyalertd")
			}
			r.stop()
			s := window.NewStore(rdb, testStream)
			k := s.Keys()
			if got := rdb.Exists(ctx, k.TagTotals(kw, now)).Val() == 1; got != tt.zset {
				t.Errorf("tag rollup exists: %v, want %v", got, tt.zset)
			}
			cells, err := s.Cells(ctx, kw, now, now+60)
			if err != nil {
				t.Fatal(err)
			}
			byTag, byHost := map[string]int64{}, map[string]int64{}
			var total int64
			for _, c := range cells {
				byTag[c.Tag] += c.Count
				byHost[c.Host] += c.Count
				total += c.Count
			}
			for _, tag := range []string{"app", "nginx", "123", "other"} {
				got, err := s.Counts(ctx, kw, now, now+60, window.Filter{Tag: tag, TagSet: true}, 1)
				var n int64
				if len(got) == 1 {
					n = got[0].Count
				}
				if err != nil || n != byTag[tag] {
					t.Errorf("count of tag %q = %v %v, want %d", tag, got, err, byTag[tag])
				}
			}
			tops, n, err := s.Top(ctx, kw, now, now+60, "tag", 10, 1_000_000)
			gotTags := map[string]int64{}
			for _, g := range tops {
				gotTags[g.Value] = g.Count
			}
			if err != nil || n != total || !reflect.DeepEqual(gotTags, byTag) {
				t.Errorf("top by tag %v total %d %v, want %v total %d", gotTags, n, err, byTag, total)
			}
			hosts, n, err := s.Top(ctx, kw, now, now+60, "host", 1000, 1_000_000)
			gotHosts := map[string]int64{}
			for _, g := range hosts {
				gotHosts[g.Value] = g.Count
			}
			if err != nil || n != total || !reflect.DeepEqual(gotHosts, byHost) {
				t.Errorf("top by host: %d hosts total %d %v, want %d hosts total %d", len(gotHosts), n, err, len(byHost), total)
			}
		})
	}
}

// The host zset takes a batch's sums per host in one read and one write
// (apply.lua's zincrAll): members it holds and new ones, many per batch,
// end up with the sums of their cells, and the total member with the
// minute's total. (Two tags, so that the minute is not host-keyed.)
func TestHostTotalsAddManyHostsPerBatchToWhatTheyHold(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	now := nowMinute()
	const hosts = window.HostSumsMax + 100
	var es []stream.Entry
	for round := range 3 { // the move, then every host again, twice
		for h := range hosts {
			b := round*hosts + h
			es = append(es, entry(b, "Exception", fmt.Sprintf("web-%04d", h), []string{"app", "nginx"}[h%2], now, int64(1+b%7)))
		}
	}
	xadd(t, rdb, es...)
	start(t, Options{Client: rdb, BatchSize: 250, Retention: time.Hour})
	drained(t, rdb, "keyalertd")

	s := window.NewStore(rdb, testStream)
	k := s.Keys()
	kw := "substring:Exception"
	cells, err := s.Cells(ctx, kw, now, now+60)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{}
	var total float64
	for _, c := range cells {
		want[c.Host] += float64(c.Count)
		total += float64(c.Count)
	}
	want[window.TotalMember] = total
	got, err := rdb.ZRangeWithScores(ctx, k.HostTotals(kw, now), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("host zset has %d members, want %d", len(got), len(want))
	}
	for _, z := range got {
		if m, _ := z.Member.(string); want[m] != z.Score {
			t.Errorf("host zset %q = %v, want %v", m, z.Score, want[m])
		}
	}
}

package ingest

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// goldenBatch is a fixed batch touching every section of the protocol: two
// event hours, a cell of several entries, samples over the per-batch quota,
// entries dead-lettered for each reason known before the script runs, one
// too old and one repeated, all of version 2; then version 3 entries of two
// producers, one chunk of two entries and one written twice (a retry) in
// the same cell as a version 2 entry; then version 4 entries with labels
// (Kubernetes-shaped) in a cell of their own beside the same host's
// label-free cell.
func goldenBatch() ([]message, map[string]int64, time.Time) {
	now := time.Unix(1714561800, 0) // 2024-05-01 11:10:00 UTC
	m := now.Unix() - 120           // 11:08, hour 476267
	prev := m - 3600                // 10:08, hour 476266
	with := func(e stream.Entry, samples ...string) stream.Entry { e.Samples = samples; return e }
	es := []stream.Entry{
		with(entry(1, "err", "web-1", "app", m, 3), "err one", "err two"),
		with(entry(1, "err", "web-1", "app", prev, 2), "err old"),
		entry(2, "err", "web-1", "app", m, 4),
		with(entry(2, "timeout", "web-2", "nginx", m, 1), "timeout a", "timeout b", "timeout c"),
		entry(3, "err", "web-2", "app", m, 7),
		entry(1, "err", "web-1", "app", m, 3),                 // repeat of the first
		entry(4, "err", "web-1", "app", now.Unix()-4*3600, 1), // older than retention
		entry(5, "err", "web-1", "app", m, 1),                 // delivered too often
		v3(entry(6, "err", "web-1", "app", m, 2), 1, 1),       // with the first's cell
		v3(entry(6, "timeout", "web-1", "app", m, 1), 1, 1),   // same chunk
		v3(entry(7, "err", "web-3", "app", m, 5), 2, 1),       // another producer
		v3(entry(7, "err", "web-3", "app", m, 5), 2, 2),       // its retry
		with(v3(labelled(entry(8, "err", "web-1", "app", m, 2), "app", "shop", "namespace", "prod"), 3, 1), "err k8s"),
		v3(labelled(entry(8, "err", "web-1", "app", m, 1), "app", "shop", "namespace", "prod"), 3, 1), // same cell
	}
	var msgs []message
	for i, e := range es {
		var kv []string
		for _, v := range e.AppendValues(nil) {
			kv = append(kv, v.(string))
		}
		msgs = append(msgs, message{id: fmt.Sprintf("1714561100000-%d", i), kv: kv})
	}
	msgs = append(msgs,
		message{id: "1714561100000-14", kv: []string{"v", "2", "count", "x"}}, // does not parse
		message{id: "1714561100000-15"},                                       // deleted
	)
	return msgs, map[string]int64{"1714561100000-7": 6}, now
}

// labelled gives e the labels of name, value pairs (sorted by name).
func labelled(e stream.Entry, pairs ...string) stream.Entry {
	for i := 0; i+1 < len(pairs); i += 2 {
		e.Labels = append(e.Labels, stream.Label{Name: pairs[i], Value: pairs[i+1]})
	}
	return e
}

// v3 gives e producer p's id and attempt a's.
func v3(e stream.Entry, p, a int) stream.Entry {
	e.Producer, e.Attempt = fmt.Sprintf("%016x", 0xb0+p), fmt.Sprintf("%016x", 0xa0+a)
	return e
}

func TestLayoutMatchesGolden(t *testing.T) {
	msgs, deliveries, now := goldenBatch()
	p := planner{keys: window.NewKeys(testStream), stream: testStream, dead: DeadStream(testStream), group: "keyalertd",
		consumer: "c1", window: time.Hour, maxPerProd: 100, pendingMax: 1000,
		retention: 2 * time.Hour, sampleCap: 8, sampleTTL: 7200, deadMaxLen: 1000, maxDeliv: 5, maxSeries: 100}
	got := renderPlan(p.build("new", msgs, deliveries, now, "3"))
	path := filepath.Join("testdata", "layout.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestLayoutMatchesGolden -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("script arguments differ from %s (go test -run TestLayoutMatchesGolden -update rewrites it):\n%s", path, got)
	}
}

// The golden batch runs as laid out: the script counts each cell's sum
// (without the retry) and dead-letters the three dead entries. The fence is
// unknown, so the script lists the consumer's pending entries: the batch's
// ids are pending for it. (Retention is long here so that the windows of the
// fixed clock's past do not expire at once.)
func TestGoldenBatchApplies(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	msgs, deliveries, now := goldenBatch()
	if err := rdb.XGroupCreateMkStream(ctx, testStream, "keyalertd", "0").Err(); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: testStream, ID: m.id, Values: []any{"x", "1"}})
	}
	rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "keyalertd", Consumer: "c1", Streams: []string{testStream, ">"}})
	p := planner{keys: window.NewKeys(testStream), stream: testStream, dead: DeadStream(testStream), group: "keyalertd",
		consumer: "c1", window: time.Hour, maxPerProd: 100, pendingMax: 1000,
		retention: 20 * 365 * 24 * time.Hour, sampleCap: 8, sampleTTL: 7200, deadMaxLen: 1000, maxDeliv: 5, maxSeries: 100}
	pl := p.build("new", msgs, deliveries, now, "")
	v, err := applyScript.Run(ctx, rdb, pl.keys, pl.args...).Result()
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseResult(pl, v)
	if err != nil || len(r.applied) != len(pl.entries)-1 || r.duplicates != 1 || len(r.failed)+len(r.deadFailed) != 0 {
		t.Fatalf("result %+v, %v; want all %d entries but the retry applied", r, err, len(pl.entries))
	}
	if n := rdb.XLen(ctx, DeadStream(testStream)).Val(); n != 3 {
		t.Errorf("dead-letter stream holds %d entries, want 3", n)
	}
	m := now.Unix() - 120
	for _, c := range []struct {
		host   string
		want   string
		labels []stream.Label
	}{{"web-1", "9", nil}, {"web-3", "5", nil}, {"web-1", "3", labelled(stream.Entry{}, "app", "shop", "namespace", "prod").Labels}} {
		if got := rdb.HGet(ctx, p.keys.Window("substring:err", m), window.Field(c.host, "app", c.labels...)).Val(); got != c.want {
			t.Errorf("cell err/%s%v = %q, want %s", c.host, c.labels, got, c.want)
		}
	}
	if got := rdb.ZMScore(ctx, p.keys.LabelTotals("substring:err", m, "namespace"), "prod", "\x00").Val(); !slices.Equal(got, []float64{3, 3}) {
		t.Errorf("namespace rollup prod, labelled = %v, want 3, 3", got)
	}
	if pending := rdb.XPending(ctx, testStream, "keyalertd").Val(); pending.Count != 0 {
		t.Errorf("%d entries still pending, want every one acknowledged", pending.Count)
	}
}

// renderPlan prints a plan's KEYS and ARGV one slot a line, with the Lua
// index and what protocol.go says the slot holds.
func renderPlan(pl *plan) string {
	var b strings.Builder
	b.WriteString("KEYS\n")
	for i, k := range pl.keys {
		fmt.Fprintf(&b, "%4d  %s\n", i+1, k)
	}
	a := pl.args
	i := 0
	line := func(label, v string) {
		fmt.Fprintf(&b, "%4d  %-13s %s\n", i+1, label, v)
		i++
	}
	slot := func(label string) { line(label, fmt.Sprintf("%#v", a[i])) }
	// rec prints a record's fixed fields, labelled by their offsets.
	rec := func(width int, labels map[int]string) (base int) {
		base = i
		for k := range width {
			slot(labels[k])
		}
		return base
	}
	num := func(at int) int { return a[at].(int) }

	b.WriteString("ARGV header\n")
	rec(argHeader, map[int]string{argGroup: "group", argConsumer: "consumer", argFence: "fence",
		argFirstID: "first id", argLastID: "last id", argPendingMax: "pending max", argEntries: "entries", argSeenGroups: "seen groups",
		argProducers: "producers", argNow: "now", argDedupWindow: "dedup window", argDedupMax: "dedup max", argDedupShards: "dedup shards",
		argCountGroups: "count groups", argSampleGroups: "sample groups", argDead: "dead", argExpires: "expires",
		argAckOnly: "ack-only", argSampleCap: "sample cap", argSampleTTL: "sample ttl", argDeadMaxLen: "dead maxlen", argMaxSeries: "max series"})
	b.WriteString("entry ids\n")
	for k := range num(argEntries) {
		slot(fmt.Sprintf("entry %d", k+1))
	}
	for g := range num(argSeenGroups) {
		fmt.Fprintf(&b, "seen group %d\n", g+1)
		r := rec(seenFixed, map[int]string{seenKey: "key", seenLen: "m"})
		for range num(r + seenLen) {
			line("dedup id", hex.EncodeToString([]byte(a[i].(string))))
		}
	}
	for g := range num(argProducers) {
		fmt.Fprintf(&b, "producer %d\n", g+1)
		r := rec(prodFixed, map[int]string{prodKey: "key", prodLen: "m"})
		for range num(r + prodLen) {
			line("  chunk", hex.EncodeToString([]byte(a[i].(string))))
			line("  attempt", hex.EncodeToString([]byte(a[i].(string))))
			slot("  entries")
		}
	}
	for g := range num(argCountGroups) {
		fmt.Fprintf(&b, "count group %d\n", g+1)
		r := rec(countFixed, map[int]string{countKey: "key", countField: "field", countFirst: "first entry", countLen: "m", countSum: "sum"})
		if num(r+countLen) > 1 {
			slot("counts")
		}
	}
	for g := range num(argSampleGroups) {
		fmt.Fprintf(&b, "sample group %d\n", g+1)
		r := rec(sampleFixed, map[int]string{sampleKey: "key", sampleLen: "m", sampleEntries: "entries"})
		for range num(r + sampleLen) {
			slot("  sample")
		}
	}
	for d := range num(argDead) {
		fmt.Fprintf(&b, "dead %d\n", d+1)
		rec(deadWidth, map[int]string{deadID: "id", deadReason: "reason", deadFields: "fields", deadCheck: "check"})
	}
	for x := range num(argExpires) {
		fmt.Fprintf(&b, "expire %d\n", x+1)
		rec(expireWidth, map[int]string{expireKey: "key", expireAt: "at"})
	}
	b.WriteString("ack-only ids\n")
	for range num(argAckOnly) {
		slot("id")
	}
	if i != len(a) {
		fmt.Fprintf(&b, "!! %d slots read, %d sent\n", i, len(a))
	}
	return b.String()
}

// TestScriptNamesEverySlot keeps apply.lua free of slot numbers: every KEYS
// and ARGV index is a protocol constant or a running position, and every
// constant the prelude defines is one the script uses.
func TestScriptNamesEverySlot(t *testing.T) {
	if m := regexp.MustCompile(`(KEYS|ARGV)\[\s*\d`).FindAllString(applyBody, -1); m != nil {
		t.Errorf("apply.lua indexes by number: %q", m)
	}
	if m := regexp.MustCompile(`(KEYS|ARGV)\[[^\]]*\+\s*\d`).FindAllString(applyBody, -1); m != nil {
		t.Errorf("apply.lua offsets by number: %q", m)
	}
	defined := map[string]bool{}
	for _, c := range protocol {
		if defined[c.name] {
			t.Errorf("%s defined twice", c.name)
		}
		defined[c.name] = true
		if !regexp.MustCompile(`\b` + c.name + `\b`).MatchString(applyBody) {
			t.Errorf("%s is defined but apply.lua does not use it", c.name)
		}
	}
	for _, name := range regexp.MustCompile(`\b(?:KEY|ARG|SEEN|PROD|CHUNK|COUNT|SAMPLE|PICK|DEAD|EXPIRE)_[A-Z_]+\b`).FindAllString(applyBody, -1) {
		if !defined[name] {
			t.Errorf("apply.lua uses %s, which protocol.go does not define", name)
		}
	}
	if !strings.HasPrefix(applySource, luaPrelude()) || strings.Count(luaPrelude(), "\n") != 1 {
		t.Errorf("the script does not start with a one-line prelude:\n%s", luaPrelude())
	}
}

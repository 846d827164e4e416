package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// BenchmarkFleet is issue #11's fleet measurement: a simulated fleet
// (FLEET_HOSTS hosts, 1,000 by default, × 32 keywords, every keyword in
// every flush) through the built keyalertd, with event time compressed:
// FLEET_MINUTES event minutes (15) of an hour three hours back, each host
// flushing FLEET_FLUSHES chunks per event minute (2), written as fast as
// keyalertd applies them. A chunk is what the plugin publishes for one
// flush of one host: 32 entries (one per keyword; one producer per host;
// one sample line each, as `Samples 1`), each an `XADD MAXLEN ~ 100000`
// (the plugin's Max_Len, lowered so that the stream stays small; the
// writer pipelines them without the plugin's MULTI/EXEC). The writer keeps
// at most FLEET_BACKLOG entries (20,000) written and not yet applied (by
// keyalertd's counter), so keyalertd always has work and trimming never
// drops an unread entry. The run fails unless every entry is applied and
// one keyword's total from the counts API is what was written.
//
// It reports applied entries/s (median of the per-second rates over the
// load, from keyalertd's metric), keyalertd's and Redis's CPU per entry,
// Redis memory by kind of key (MEMORY USAGE of every key) and the
// used_memory growth of the minute tier (without the stream and the sample
// lists), the cost of a dedup chunk id at one flush per second per host (a
// producer's 3,600 chunk ids of the 1 h dedup window), the cost of a
// series-hour in the hourly tier (a second keyalertd rolls the simulated
// hour up: the first one runs with KEYALERT_ROLLUP_DELAY 4h so that the
// hour is not due for it), and alert latency: a threshold rule on one
// keyword (group_by host, count 5 in 5m) while the fleet load runs, a probe
// entry crossing it for a new host every 250 ms, timed from its XADD's
// reply to pdreceiver receiving the trigger. The stream is FIFO, so a probe
// waits behind up to FLEET_BACKLOG entries. FLEET_LISTPACK=n sets Redis's
// hash- and zset-max-listpack-entries; FLEET_STALL=d stops keyalertd
// (SIGSTOP) for d, 3 s into the load, and then reports only what was lost
// to the trimming (with FLEET_BACKLOG above the trimming, so that the
// writer runs past it); FLEET_REPORT=file writes the report
// (also logged; -v keeps go test from cutting the log to 10 lines) to a
// file. bench/fleet.md has the figures.
//
//	make backend
//	KEYALERT_BUILD=$PWD/build go test -v -run '^$' -bench BenchmarkFleet -benchtime 1x -timeout 10m ./cmd/keyalertd
func BenchmarkFleet(b *testing.B) {
	const keywords = 32
	hosts := envInt(b, "FLEET_HOSTS", 1000)
	minutes := envInt(b, "FLEET_MINUTES", 15)
	flushes := envInt(b, "FLEET_FLUSHES", 2)
	backlog := envInt(b, "FLEET_BACKLOG", 20000)
	var stall time.Duration
	if v := os.Getenv("FLEET_STALL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("FLEET_STALL=%q: want a positive duration", v)
		}
		stall = d
	}
	if minutes < 1 || minutes > 60 {
		b.Fatalf("FLEET_MINUTES %d: want 1 to 60 (the minutes lie in one hour)", minutes)
	}
	ctx := context.Background()
	loadStart := loadAvg()
	rs := redistest.Start(b)
	rs.SetAOF("everysec") // the recommended production setting
	rdb := rs.Client()
	// FLEET_LISTPACK raises Redis's listpack limits for hashes and sorted
	// sets (512 and 128 by default): with 1,000 hosts a keyword-minute's
	// hash and host rollup are past both.
	listpack := 0
	if os.Getenv("FLEET_LISTPACK") != "" {
		listpack = envInt(b, "FLEET_LISTPACK", 0)
		for _, k := range []string{"hash-max-listpack-entries", "zset-max-listpack-entries"} {
			if err := rdb.ConfigSet(ctx, k, strconv.Itoa(listpack)).Err(); err != nil {
				b.Fatal(err)
			}
		}
	}
	recv := pdreceiver.Start(b)
	now := time.Now()
	hour := now.Unix()/3600*3600 - 3*3600 // the simulated hour's start
	// keyalertd's defaults (not baseEnv's test settings: 1 s claims, 100 ms
	// reads) but for what the measurement needs. FLEET_CLAIM_IDLE sets
	// KEYALERT_CLAIM_IDLE (and a 200ms KEYALERT_CLAIM_INTERVAL).
	env := map[string]string{
		"KEYALERT_REDIS_URL":  rs.URL(),
		"KEYALERT_LISTEN":     "127.0.0.1:0",
		"KEYALERT_API_TOKENS": token,
		"KEYALERT_LOG_FORMAT": "json",
	}
	claimIdle := os.Getenv("FLEET_CLAIM_IDLE")
	if claimIdle != "" {
		env["KEYALERT_CLAIM_IDLE"] = claimIdle
		env["KEYALERT_CLAIM_INTERVAL"] = "200ms"
	}
	env["KEYALERT_PAGERDUTY_URL"] = recv.URL
	// A new alert every 250 ms to one routing key: unpaced, so the figure
	// stays keyalert's latency (as BenchmarkAlertLatency).
	env["KEYALERT_PAGERDUTY_EVENTS_PER_MINUTE"] = "1000000"
	env["KEYALERT_LEASE_TTL"] = "1s"
	env["KEYALERT_ROLLUP_INTERVAL"] = "1s"
	// The simulated hour ended 2 h ago at most: not due for a first pass
	// before 4 h, so this process leaves it to the roll-up measurement.
	env["KEYALERT_ROLLUP_DELAY"] = "4h"
	p := start(b, env)
	rule := createRule(b, p.addr, fmt.Sprintf(`{"name": "fleet probe", "keywords": ["fleet-probe"], "group_by": "host",
		"condition": {"type": "threshold", "count": 5, "window": "5m"}, "pagerduty": {"routing_key": %q}}`, routingKey))
	// The engine learns new rules on its tick; wait for two.
	ticks, _ := metricValue(b, p.addr, "keyalert_alert_evaluations_total")
	eventually(b, 30*time.Second, "keyalertd did not tick", func() bool {
		v, _ := metricValue(b, p.addr, "keyalert_alert_evaluations_total")
		return v >= ticks+2
	})

	w := newFleetWriter(b, rs.Addr(), hosts, keywords)
	mem0 := usedMemory(b, rdb)
	// What one scrape of /metrics costs keyalertd, to take the writer's
	// scrapes (below) out of its CPU per entry.
	const calib = 200
	c0 := procCPU(b, p.cmd.Process.Pid)
	for range calib {
		if _, err := appliedTotal(p.addr); err != nil {
			b.Fatal(err)
		}
	}
	perScrape := (procCPU(b, p.cmd.Process.Pid) - c0) / calib
	var scrapes atomic.Int64
	cpuK0 := procCPU(b, p.cmd.Process.Pid)
	cpuR0 := redistest.CPU(b, rdb)
	applied0, _ := metricValue(b, p.addr, "keyalert_ingest_entries_applied_total")

	// The outstanding entries (written, not yet applied), polled for the
	// writer from keyalertd's applied counter every 25 ms: exact, where
	// XINFO GROUPS' lag may be unknown to Redis (nil) once the stream is
	// trimmed, and a writer running past the trimming would lose entries.
	var outstanding, repliesAtPoll atomic.Int64
	stopPoll := make(chan struct{})
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		for {
			select {
			case <-stopPoll:
				return
			case <-time.After(25 * time.Millisecond):
			}
			r := w.replies.Load()
			a, err := appliedTotal(p.addr)
			if err != nil {
				continue
			}
			scrapes.Add(1)
			outstanding.Store(r - int64(a-applied0))
			repliesAtPoll.Store(r)
		}
	}()

	// Applied entries per second, from keyalertd's counter.
	var rates []float64
	stopRate := make(chan struct{})
	rateDone := make(chan struct{})
	go func() {
		defer close(rateDone)
		last, err := appliedTotal(p.addr)
		if err != nil {
			b.Error(err)
			return
		}
		lastT := time.Now()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopRate:
				return
			case <-tick.C:
			}
			v, err := appliedTotal(p.addr)
			if err != nil { // keyalertd stopped (FLEET_STALL): no sample
				continue
			}
			t := time.Now()
			rates = append(rates, (v-last)/t.Sub(lastT).Seconds())
			last, lastT = v, t
		}
	}()

	// Alert probes: one entry crossing the rule's threshold for a new host
	// every 250 ms, on its own connection.
	type probe struct {
		key     string
		sent    time.Time
		backlog int64 // entries ahead of it, about
	}
	var (
		probesMu sync.Mutex
		probes   []probe
	)
	stopProbe := make(chan struct{})
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		pc := rs.Client()
		defer pc.Close()
		producer := stream.ProducerID("fleet-probe")
		for i := 0; ; i++ {
			select {
			case <-stopProbe:
				return
			case <-time.After(250 * time.Millisecond):
			}
			host := fmt.Sprintf("probe-%04d", i)
			ahead := outstanding.Load() + w.written.Load() - repliesAtPoll.Load()
			t := time.Now()
			e := stream.Entry{Batch: fmt.Sprintf("%032x", 1<<40+i), Keyword: keyword.Spec{Text: "fleet-probe"},
				Tag: "app.log", Host: host, Minute: t.Unix() / 60 * 60, Count: 5,
				Samples: []string{"request 42 failed: fleet-probe after 3 retries"}, SentMs: t.UnixMilli(),
				Producer: producer, Attempt: stream.NewAttempt()}
			if err := pc.XAdd(ctx, &redis.XAddArgs{Stream: stream.DefaultStream, Values: e.AppendValues(nil)}).Err(); err != nil {
				b.Errorf("probe: %v", err)
				return
			}
			sent := time.Now()
			probesMu.Lock()
			probes = append(probes, probe{alert.DedupKey(alert.ID(rule.ID, host)), sent, ahead})
			probesMu.Unlock()
		}
	}()

	// The goroutines stop before keyalertd and Redis do, also when the
	// benchmark fails.
	stopAll := sync.OnceFunc(func() {
		close(stopProbe)
		<-probeDone
		close(stopRate)
		<-rateDone
		close(stopPoll)
		<-pollDone
	})
	b.Cleanup(stopAll)

	if stall > 0 {
		// keyalertd stopped (SIGSTOP) for the stall, 3 s into the load,
		// while the writer goes on: a consumer falling behind the trimming.
		stallDone := make(chan struct{})
		go func() {
			defer close(stallDone)
			time.Sleep(3 * time.Second)
			p.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(stall)
			p.cmd.Process.Signal(syscall.SIGCONT)
		}()
		b.Cleanup(func() { <-stallDone })
	}

	b.ResetTimer()
	t0 := time.Now()
	var seq uint64
	var buf []byte
	for m := range minutes {
		minute := hour + int64(m)*60
		for range flushes {
			for h := range hosts {
				buf = w.appendChunk(buf, h, minute, seq)
				seq++
				if len(buf) < 256<<10 {
					continue
				}
				for waited := time.Now(); ; {
					inFlight := w.written.Load() - repliesAtPoll.Load()
					if outstanding.Load()+inFlight < int64(backlog) {
						break
					}
					if time.Since(waited) > time.Minute {
						b.Fatalf("keyalertd applied nothing for a minute; its log:\n%s", p.log())
					}
					time.Sleep(time.Millisecond)
				}
				w.write(buf)
				buf = buf[:0]
			}
		}
	}
	w.write(buf)
	// Drained: every entry written applied, nothing pending.
	total := int64(hosts) * int64(keywords) * int64(minutes) * int64(flushes)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		probesMu.Lock()
		n := total + int64(len(probes))
		probesMu.Unlock()
		a, err := appliedTotal(p.addr)
		gs, gerr := rdb.XInfoGroups(ctx, stream.DefaultStream).Result()
		if err == nil && gerr == nil && int64(a-applied0) >= n && len(gs) == 1 && gs[0].Pending == 0 && gs[0].Lag <= 0 {
			break
		}
		if stall > 0 && err == nil && gerr == nil && len(gs) == 1 && gs[0].Pending == 0 {
			// Entries trimmed unread never come: caught up is having
			// read the stream's last entry.
			st, serr := rdb.XInfoStream(ctx, stream.DefaultStream).Result()
			if serr == nil && st.LastGeneratedID == gs[0].LastDeliveredID {
				break
			}
		}
		if time.Now().After(deadline) {
			st, _ := rdb.XInfoStream(ctx, stream.DefaultStream).Result()
			b.Fatalf("2 min after the last write keyalertd has applied %.0f of %d entries (%d replies to the writer); group %+v (%v); stream: %d entries, %d added, first %s, max deleted %s; ingest counters: %s; keyalertd's warnings:\n%s",
				a-applied0, n, w.replies.Load(), gs, gerr, st.Length, st.EntriesAdded, st.FirstEntry.ID, st.MaxDeletedEntryID,
				ingestCounters(b, p.addr), warnings(p.log()))
		}
	}
	loadDur := time.Since(t0)
	b.StopTimer()
	stopAll()

	if got := w.written.Load(); got != total {
		b.Fatalf("wrote %d entries, want %d", got, total)
	}
	applied1, _ := metricValue(b, p.addr, "keyalert_ingest_entries_applied_total")
	if stall > 0 {
		probesMu.Lock()
		nProbes := len(probes)
		probesMu.Unlock()
		fleetStallReport(b, p, rdb, hour, minutes, hosts, flushes, stall, total, nProbes, applied1-applied0)
		return
	}
	cpuK := procCPU(b, p.cmd.Process.Pid) - cpuK0
	cpuR := redistest.CPU(b, rdb) - cpuR0
	if n := int64(applied1 - applied0); n < total {
		b.Fatalf("keyalertd applied %d entries, the fleet wrote %d", n, total)
	}
	ingest := ingestCounters(b, p.addr)
	if err := checkFleetTotal(b, p.addr, hour, minutes, hosts, flushes); err != nil {
		b.Fatalf("%v; keyalertd's ingest counters: %s; its warnings:\n%s", err, ingest, warnings(p.log()))
	}

	// Every probe paged.
	probesMu.Lock()
	sent := slices.Clone(probes)
	probesMu.Unlock()
	// The first trigger of each probe's alert (a trigger whose outcome
	// keyalertd did not learn is sent again later).
	triggers := func(evs []pdreceiver.Event) map[string]time.Time {
		m := map[string]time.Time{}
		for _, e := range evs {
			if _, seen := m[e.DedupKey]; !seen && e.Action == "trigger" {
				m[e.DedupKey] = e.Received
			}
		}
		return m
	}
	allPaged := func(evs []pdreceiver.Event) bool {
		m := triggers(evs)
		for _, pr := range sent {
			if _, ok := m[pr.key]; !ok {
				return false
			}
		}
		return true
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	evs, err := recv.WaitFor(wctx, allPaged)
	cancel()
	if err != nil {
		b.Fatalf("%d probes, %d events, %d alerts triggered after 30 s: %v", len(sent), len(evs), len(triggers(evs)), err)
	}
	noRejections(b, recv)
	received := triggers(evs)
	var lat []time.Duration
	var ahead []float64
	for _, pr := range sent {
		ahead = append(ahead, float64(pr.backlog))
		lat = append(lat, received[pr.key].Sub(pr.sent))
	}
	slices.Sort(lat)

	// Memory with the stream, by kind of key.
	mem1 := usedMemory(b, rdb)
	kinds := keyKinds(b, rdb)
	streamBytes := kinds[stream.DefaultStream].bytes
	streamLen, err := rdb.XLen(ctx, stream.DefaultStream).Result()
	if err != nil {
		b.Fatal(err)
	}
	// Without the stream (the plugin's Max_Len bounds it in production).
	// keyalertd goes first: deleting its stream under it is not the point.
	p.kill()
	if err := rdb.Del(ctx, stream.DefaultStream).Err(); err != nil {
		b.Fatal(err)
	}
	mem2 := usedMemory(b, rdb)
	// And without the sample lists, which do not grow with time (at most
	// KEYALERT_SAMPLES lines per series): what is left is the minute tier,
	// plus small kinds measured by MEMORY USAGE (dedup, alerts, rules).
	sampleKeys := scanKeys(b, rdb, "ka:{*}:s:*")
	for i := 0; i < len(sampleKeys); i += 1000 {
		if err := rdb.Unlink(ctx, sampleKeys[i:min(i+1000, len(sampleKeys))]...).Err(); err != nil {
			b.Fatal(err)
		}
	}
	mem3 := usedMemory(b, rdb)

	// A second keyalertd rolls the simulated hour up, and measures a dedup
	// chunk id at one flush a second: 3,600 chunks of one producer.
	env["KEYALERT_ROLLUP_DELAY"] = "1m"
	p2 := start(b, env)
	eventually(b, 60*time.Second, "the simulated hour rolled up", func() bool {
		v, _ := metricSum(b, p2.addr, "keyalert_rollup_hours_total", `pass="first"`)
		return v >= 1
	})
	const probeChunks = 3600
	dedupProducer := stream.ProducerID("fleet-dedup-probe")
	dw := newFleetWriter(b, rs.Addr(), 1, 1)
	dw.producers[0] = dedupProducer
	dw.retemplate()
	buf = buf[:0]
	for i := range probeChunks {
		buf = dw.appendChunk(buf, 0, hour, uint64(1<<41+i))
	}
	dw.write(buf)
	eventually(b, 30*time.Second, "dedup probe written", func() bool { return dw.replies.Load() == probeChunks })
	drained(b, rdb, time.Minute)
	var dedupBytes int64
	for _, k := range scanKeys(b, rdb, "*"+dedupProducer+"*") {
		dedupBytes += memoryUsage(b, rdb, k)
	}
	kinds2 := keyKinds(b, rdb)

	// The report.
	series := float64(hosts * keywords)
	seriesMinutes := series * float64(minutes)
	sum := func(ks map[string]kindStat, pred func(string) bool) (n int, bytes int64) {
		for k, s := range ks {
			if pred(k) {
				n += s.keys
				bytes += s.bytes
			}
		}
		return
	}
	_, minuteB := sum(kinds, func(k string) bool { return k == "w" || strings.HasPrefix(k, "w\\0") })
	_, sampleB := sum(kinds, func(k string) bool { return k == "s" })
	_, prodB := sum(kinds, func(k string) bool { return k == "p" })
	_, hourB := sum(kinds2, func(k string) bool { return k == "hw" || strings.HasPrefix(k, "hw\\0") })
	_, allB := sum(kinds, func(string) bool { return true })
	// MEMORY USAGE of the kinds besides the minute tier, samples and stream.
	_, restB := sum(kinds, func(k string) bool {
		return k != "w" && !strings.HasPrefix(k, "w\\0") && k != "s" && k != stream.DefaultStream
	})
	usedMinuteB := mem3 - mem0 - restB
	rate := median(rates)
	entries := float64(applied1 - applied0)
	perSeriesMinute := float64(minuteB) / seriesMinutes
	usedPerSeriesMinute := float64(usedMinuteB) / seriesMinutes
	perSeriesHour := float64(hourB) / series
	perDedupID := float64(dedupBytes) / probeChunks
	perSample := float64(sampleB) / series

	b.ReportMetric(rate, "applied/s")
	b.ReportMetric(entries/loadDur.Seconds(), "applied/s-overall")
	// The writer's scrapes taken out; the rate's, one a second as a
	// Prometheus might, are left in.
	cpuKNet := cpuK - time.Duration(scrapes.Load())*perScrape
	b.ReportMetric(float64(cpuKNet.Microseconds())/entries, "keyalertd-cpu-µs/entry")
	b.ReportMetric(float64(cpuR.Microseconds())/entries, "redis-cpu-µs/entry")
	b.ReportMetric(perSeriesMinute, "B/series-minute")
	b.ReportMetric(usedPerSeriesMinute, "used-B/series-minute")
	b.ReportMetric(perSeriesHour, "B/series-hour")
	b.ReportMetric(perDedupID, "B/dedup-id")
	b.ReportMetric(perSample, "B/series-samples")
	b.ReportMetric(float64(streamBytes)/float64(streamLen), "B/stream-entry")
	if len(lat) == 0 {
		b.Log("no probe paged during the load (too short a load for alert latency): its figures are 0")
	}
	q := func(f float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "alert-p50-ms")
	b.ReportMetric(q(0.99), "alert-p99-ms")
	b.ReportMetric(float64(len(lat)), "alerts")

	var rep strings.Builder
	fmt.Fprintf(&rep, "%s; load average at the start %s, at the end %s\n", now.UTC().Format(time.RFC3339), loadStart, loadAvg())
	fmt.Fprintf(&rep, "fleet: %d hosts × %d keywords, %d event minutes × %d flushes per host: %d entries in %.1f s (%d chunks), backlog bound %d\n",
		hosts, keywords, minutes, flushes, total, loadDur.Seconds(), seq, backlog)
	fmt.Fprintf(&rep, "ingest counters: %s\n", ingest)
	if claimIdle != "" {
		fmt.Fprintf(&rep, "KEYALERT_CLAIM_IDLE %s, KEYALERT_CLAIM_INTERVAL 200ms\n", claimIdle)
	}
	if listpack > 0 {
		fmt.Fprintf(&rep, "hash-max-listpack-entries and zset-max-listpack-entries: %d\n", listpack)
	}
	fmt.Fprintf(&rep, "applied/s: median %.0f of %d per-second samples (min %.0f, max %.0f), overall %.0f\n",
		rate, len(rates), minOf(rates), maxOf(rates), entries/loadDur.Seconds())
	fmt.Fprintf(&rep, "CPU: keyalertd %.1f s, %.1f s without the writer's %d scrapes of /metrics (%.2f ms each): %.2f µs/entry; redis-server %.1f s (%.2f µs/entry), over %.1f s wall\n",
		cpuK.Seconds(), cpuKNet.Seconds(), scrapes.Load(), float64(perScrape.Microseconds())/1000, float64(cpuKNet.Microseconds())/entries, cpuR.Seconds(), float64(cpuR.Microseconds())/entries, loadDur.Seconds())
	fmt.Fprintf(&rep, "used_memory: before %.1f MB, after the load %.1f MB (stream %.1f MB by MEMORY USAGE: %d entries, %.0f B each), without the stream %.1f MB: growth %.1f MB = %.1f B per series-minute\n",
		mb(mem0), mb(mem1), mb(streamBytes), streamLen, float64(streamBytes)/float64(streamLen), mb(mem2), mb(mem2-mem0), float64(mem2-mem0)/seriesMinutes)
	fmt.Fprintf(&rep, "used_memory without the stream and the sample lists: %.1f MB; minus MEMORY USAGE of the kinds besides minutes (%.2f MB): %.1f MB for the minute tier = %.1f B per series-minute (MEMORY USAGE of its keys: %.1f B)\n",
		mb(mem3), mb(restB), mb(usedMinuteB), usedPerSeriesMinute, perSeriesMinute)
	fmt.Fprintf(&rep, "keys after the load (MEMORY USAGE SAMPLES 0; all %.1f MB):\n", mb(allB))
	writeKinds(&rep, kinds)
	fmt.Fprintf(&rep, "after the roll-up and the dedup probe:\n")
	writeKinds(&rep, kinds2)
	fmt.Fprintf(&rep, "per series-minute (minute windows and rollups): %.1f B; per series-hour (hourly tier): %.1f B; samples per series: %.0f B; dedup: %.1f B per chunk id (%d ids of one producer: %d B), fleet producers %.0f B each (%d ids)\n",
		perSeriesMinute, perSeriesHour, perSample, perDedupID, probeChunks, dedupBytes, float64(prodB)/float64(hosts), minutes*flushes)
	slices.Sort(ahead)
	fmt.Fprintf(&rep, "alert latency (XADD reply → trigger at pdreceiver), %d alerts: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms; entries ahead of a probe in the stream: median %.0f, max %.0f\n",
		len(lat), q(0.5), q(0.9), q(0.99), q(1), median(ahead), maxOf(ahead))
	// Projection per host (32 series), in MB: minutes for 7 days, hours for
	// 90, plus the state that does not grow with time.
	dayMin := 1440 * keywords * usedPerSeriesMinute
	dayHour := 24 * keywords * perSeriesHour
	dedupHost := 3600 * perDedupID
	samplesHost := keywords * perSample
	host := 7*dayMin + 90*dayHour + dedupHost + samplesHost
	fmt.Fprintf(&rep, "projection (minutes at the used_memory figure, dedup ids at one flush per second and host):\n")
	fmt.Fprintf(&rep, "per host: a day of minutes %.2f MB, a day of hours %.3f MB; dedup at one flush/s %.2f MB, samples %.3f MB (standing); 7 d minutes + 90 d hours + standing: %.1f MB; × %d hosts: %.1f GB\n",
		mb(int64(dayMin)), mb(int64(dayHour)), mb(int64(dedupHost)), mb(int64(samplesHost)), mb(int64(host)), 1000, float64(host)*1000/1e9)
	b.Log("\n" + rep.String())
	if out := os.Getenv("FLEET_REPORT"); out != "" {
		if err := os.WriteFile(out, []byte(rep.String()), 0o644); err != nil {
			b.Error(err)
		}
	}
}

// metricsClient gives up on a keyalertd that does not answer (stopped).
var metricsClient = &http.Client{Timeout: 2 * time.Second}

// appliedTotal reads keyalertd's applied-entries counter; unlike
// metricValue it may be called off the benchmark's goroutine.
func appliedTotal(addr string) (float64, error) {
	const name = "keyalert_ingest_entries_applied_total"
	resp, err := metricsClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/metrics has no %s", name)
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func minOf(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return slices.Min(v)
}

func maxOf(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return slices.Max(v)
}

// loadAvg is the 1, 5 and 15 minute load averages (the machine is shared).
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}

func mb(n int64) float64 { return float64(n) / 1e6 }

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// fleetStallReport reports what a stall of keyalertd longer than the
// stream's trimming cost: entries never applied, what Redis's group lag
// (keyalert_ingest_consumer_lag) says once keyalertd has caught up, and
// that no count went over what was written.
func fleetStallReport(b *testing.B, p *proc, rdb *redis.Client, hour int64, minutes, hosts, flushes int, stall time.Duration, total int64, probes int, applied float64) {
	b.Helper()
	ctx := context.Background()
	// keyalertd's gauge is refreshed on its own schedule: give it time.
	var gauge float64
	var lag int64
	eventually(b, 30*time.Second, "keyalert_ingest_consumer_lag refreshed", func() bool {
		gs, err := rdb.XInfoGroups(ctx, stream.DefaultStream).Result()
		if err != nil || len(gs) != 1 {
			return false
		}
		lag = gs[0].Lag
		gauge, _ = metricValue(b, p.addr, "keyalert_ingest_consumer_lag")
		return int64(gauge) == lag
	})
	got, want := fleetTotal(b, p.addr, hour, minutes, hosts, flushes)
	ingest := ingestCounters(b, p.addr)
	rep := fmt.Sprintf("stall of %v: %d entries written and %d probes, %.0f applied, %.0f never applied; caught up, the group's lag is %d and keyalert_ingest_consumer_lag %.0f; %s counted %d of %d written; ingest counters: %s",
		stall, total, probes, applied, float64(total)+float64(probes)-applied, lag, gauge, fleetKeyword(0), got, want, ingest)
	b.Log(rep)
	b.Logf("keyalertd's warnings and errors:\n%s", warnings(p.log()))
	if out := os.Getenv("FLEET_REPORT"); out != "" {
		if err := os.WriteFile(out, []byte(rep+"\n"), 0o644); err != nil {
			b.Error(err)
		}
	}
	if got > want {
		b.Errorf("%s counted %d, more than the %d written", fleetKeyword(0), got, want)
	}
}

// ingestCounters lists keyalertd's ingest counters that say an entry was
// read more than once or not applied.
func ingestCounters(b *testing.B, addr string) string {
	b.Helper()
	var out []string
	for _, m := range []string{"claimed", "stale", "duplicates", "expired", "dead_lettered", "trimmed_unread", "errors"} {
		v, _ := metricSum(b, addr, "keyalert_ingest_"+m+"_total")
		out = append(out, fmt.Sprintf("%s %.0f", m, v))
	}
	return strings.Join(out, ", ")
}

// warnings are the log lines of level WARN or ERROR.
func warnings(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
			out = append(out, l)
		}
	}
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("… %d more", len(out)-20))
	}
	return strings.Join(out, "\n")
}

// checkFleetTotal compares one keyword's total over the simulated minutes,
// read through the API, with what the fleet wrote.
func checkFleetTotal(b *testing.B, addr string, hour int64, minutes, hosts, flushes int) error {
	b.Helper()
	if got, want := fleetTotal(b, addr, hour, minutes, hosts, flushes); got != want {
		return fmt.Errorf("%s: counted %d, the fleet wrote %d", fleetKeyword(0), got, want)
	}
	return nil
}

// fleetTotal is one keyword's total over the simulated minutes, read
// through the API, and what the fleet wrote of it.
func fleetTotal(b *testing.B, addr string, hour int64, minutes, hosts, flushes int) (got, want int64) {
	b.Helper()
	for h := range hosts {
		want += fleetCount(h, 0) * int64(minutes*flushes)
	}
	q := url.Values{"keyword": {fleetKeyword(0)},
		"from": {time.Unix(hour, 0).UTC().Format(time.RFC3339)},
		"to":   {time.Unix(hour+int64(minutes)*60, 0).UTC().Format(time.RFC3339)}}
	var r struct{ Total int64 }
	apiJSON(b, addr, http.MethodGet, "/api/v1/counts?"+q.Encode(), nil, http.StatusOK, &r)
	return r.Total, want
}

func fleetKeyword(k int) string { return fmt.Sprintf("fleet-keyword-%02d", k) }

func fleetHost(h int) string { return fmt.Sprintf("host-%04d.example.internal", h) }

func fleetCount(h, k int) int64 { return int64(1 + (h*7+k*3)%20) }

// fleetWriter writes the fleet's chunks on its own connection speaking
// RESP: each entry is a pre-encoded XADD (one template per host and
// keyword) whose batch id, attempt id and minute are patched in place, so
// the writer costs a copy per entry, not an encoding.
type fleetWriter struct {
	b                         *testing.B
	conn                      net.Conn
	hosts, keywords           int
	producers                 []string
	tmpl                      [][]byte // host*keywords + keyword
	batchAt, attemptAt, minAt []int
	written, replies          atomic.Int64
	buffered                  int64 // entries appended since the last write
}

func newFleetWriter(b *testing.B, addr string, hosts, keywords int) *fleetWriter {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	w := &fleetWriter{b: b, conn: conn, hosts: hosts, keywords: keywords}
	for h := range hosts {
		w.producers = append(w.producers, stream.ProducerID("fleet-"+fleetHost(h)))
	}
	w.retemplate()
	go countReplies(b, "fleet writer", conn, &w.replies)
	return w
}

// Markers in the templates, patched per chunk.
var (
	fleetBatchMark   = strings.Repeat("Z", 32)
	fleetAttemptMark = strings.Repeat("Y", 16)
	fleetMinuteMark  = "9999999960" // 10 digits, as every minute until 2286
)

func (w *fleetWriter) retemplate() {
	n := w.hosts * w.keywords
	w.tmpl = make([][]byte, n)
	w.batchAt, w.attemptAt, w.minAt = make([]int, n), make([]int, n), make([]int, n)
	for h := range w.hosts {
		for k := range w.keywords {
			kw := fleetKeyword(k)
			e := stream.Entry{
				Batch:   fleetBatchMark,
				Keyword: keyword.Spec{Text: kw},
				Host:    fleetHost(h),
				Tag:     "app.log",
				Minute:  9999999960,
				Count:   fleetCount(h, k),
				// Samples 1 (the plugin's default): one matching line per
				// keyword and series in each flush.
				Samples:  []string{fmt.Sprintf("2026-12-01T05:40:00.123Z %s worker-7 request %d failed: %s after 3 retries (upstream timeout)", fleetHost(h), h*100+k, kw)},
				SentMs:   time.Now().UnixMilli(),
				Producer: w.producers[h],
				Attempt:  fleetAttemptMark,
			}
			args := append([]any{"XADD", stream.DefaultStream, "MAXLEN", "~", "100000", "*"}, e.AppendValues(nil)...)
			var sb strings.Builder
			fmt.Fprintf(&sb, "*%d\r\n", len(args))
			for _, a := range args {
				s := fmt.Sprint(a)
				fmt.Fprintf(&sb, "$%d\r\n%s\r\n", len(s), s)
			}
			s := sb.String()
			i := h*w.keywords + k
			w.tmpl[i] = []byte(s)
			w.batchAt[i] = strings.Index(s, fleetBatchMark)
			w.attemptAt[i] = strings.Index(s, fleetAttemptMark)
			w.minAt[i] = strings.Index(s, fleetMinuteMark)
			if w.batchAt[i] < 0 || w.attemptAt[i] < 0 || w.minAt[i] < 0 {
				w.b.Fatalf("template %d: a marker is missing in %q", i, s)
			}
		}
	}
}

// appendChunk appends host h's chunk number seq (unique per chunk) for
// minute: one entry per keyword.
func (w *fleetWriter) appendChunk(dst []byte, h int, minute int64, seq uint64) []byte {
	const hexd = "0123456789abcdef"
	ms := strconv.FormatInt(minute, 10)
	if len(ms) != len(fleetMinuteMark) {
		w.b.Fatalf("minute %d is not 10 digits", minute)
	}
	attemptX := seq * 0x9e3779b97f4a7c15
	w.buffered += int64(w.keywords)
	for k := range w.keywords {
		t := h*w.keywords + k
		start := len(dst)
		dst = append(dst, w.tmpl[t]...)
		batch := dst[start+w.batchAt[t] : start+w.batchAt[t]+32]
		for i, x := 31, seq; i >= 0; i, x = i-1, x>>4 {
			batch[i] = hexd[x&15]
		}
		attempt := dst[start+w.attemptAt[t] : start+w.attemptAt[t]+16]
		for i, x := 15, attemptX; i >= 0; i, x = i-1, x>>4 {
			attempt[i] = hexd[x&15]
		}
		copy(dst[start+w.minAt[t]:], ms)
	}
	return dst
}

func (w *fleetWriter) write(p []byte) {
	if len(p) == 0 {
		return
	}
	w.written.Add(w.buffered)
	w.buffered = 0
	if _, err := w.conn.Write(p); err != nil {
		w.b.Errorf("fleet writer: %v", err)
	}
}

func usedMemory(b *testing.B, rdb *redis.Client) int64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	return infoInt(b, info, "used_memory")
}

func infoInt(b *testing.B, info, field string) int64 {
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatalf("INFO %s: %q", field, v)
			}
			return n
		}
	}
	b.Fatalf("INFO has no %s", field)
	return 0
}

func scanKeys(b *testing.B, rdb *redis.Client, match string) []string {
	b.Helper()
	var keys []string
	iter := rdb.Scan(context.Background(), 0, match, 1000).Iterator()
	for iter.Next(context.Background()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		b.Fatal(err)
	}
	return keys
}

func memoryUsage(b *testing.B, rdb *redis.Client, key string) int64 {
	b.Helper()
	n, err := rdb.MemoryUsage(context.Background(), key, 0).Result()
	if err != nil && err != redis.Nil {
		b.Fatalf("MEMORY USAGE %q: %v", key, err)
	}
	return n
}

type kindStat struct {
	keys  int
	bytes int64
}

// keyKinds sums MEMORY USAGE (SAMPLES 0: every element) of every key by
// kind: the part of its name after the "ka:{…}:" prefix up to the next ':'
// or NUL, plus what follows a NUL's first character ("w\0h" is a minute's
// host rollup), so that the figures follow whatever the layout is. Keys
// outside the prefix (the stream) are their own kind.
func keyKinds(b *testing.B, rdb *redis.Client) map[string]kindStat {
	b.Helper()
	ctx := context.Background()
	keys := scanKeys(b, rdb, "*")
	out := map[string]kindStat{}
	for i := 0; i < len(keys); i += 1000 {
		batch := keys[i:min(i+1000, len(keys))]
		pipe := rdb.Pipeline()
		cmds := make([]*redis.IntCmd, len(batch))
		for j, k := range batch {
			cmds[j] = pipe.MemoryUsage(ctx, k, 0)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			b.Fatal(err)
		}
		for j, k := range batch {
			kind := keyKind(k)
			s := out[kind]
			s.keys++
			s.bytes += cmds[j].Val()
			out[kind] = s
		}
	}
	return out
}

func keyKind(k string) string {
	rest, ok := strings.CutPrefix(k, "ka:{")
	if !ok {
		return k
	}
	if i := strings.Index(rest, "}:"); i >= 0 {
		rest = rest[i+2:]
	}
	kind := rest
	if i := strings.IndexAny(rest, ":\x00"); i >= 0 {
		kind = rest[:i]
	}
	if i := strings.IndexByte(rest, 0); i >= 0 && i+1 < len(rest) && kind != "s" {
		kind += `\0` + rest[i+1:i+2]
	}
	return kind
}

func writeKinds(w *strings.Builder, kinds map[string]kindStat) {
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return kinds[names[i]].bytes > kinds[names[j]].bytes })
	for _, k := range names {
		s := kinds[k]
		fmt.Fprintf(w, "  %-22s %7d keys %10.2f MB %8.0f B/key\n", k, s.keys, mb(s.bytes), float64(s.bytes)/float64(s.keys))
	}
}

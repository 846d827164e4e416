package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/api"
	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/loghub"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// loghubTable reads the counts table of ../shared/loghub/README.md: per
// file, lines with "Exception", "ERROR", "WARN" and "error" in any case.
func loghubTable(t *testing.T) map[string][4]int64 {
	t.Helper()
	dir, ok := loghub.Dir()
	if !ok {
		t.Skipf("loghub samples not found (want ../shared/loghub next to the repository, looked in %q)", dir)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Skipf("loghub README: %v", err)
	}
	out := map[string][4]int64{}
	for _, line := range strings.Split(string(raw), "\n") {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 7 || !strings.HasSuffix(strings.TrimSpace(cells[0]), ".log") {
			continue
		}
		var row [4]int64
		for i := range row {
			n, err := strconv.ParseInt(strings.TrimSpace(cells[3+i]), 10, 64)
			if err != nil {
				t.Fatalf("loghub README row %q: column %d: %v", line, 4+i, err)
			}
			row[i] = n
		}
		out[strings.TrimSpace(cells[0])] = row
	}
	if len(out) == 0 {
		t.Fatalf("no counts table found in %s/README.md", dir)
	}
	return out
}

// Issue #3: every loghub sample goes through the real plugin — one instance
// with Exception, ERROR and WARN, one with "error" ignoring case — into
// Redis; keyalertd counts the stream, and its counts API gives exactly the
// totals of the loghub README, in all and per file (tag).
func TestLoghubThroughPluginCountsLikeTheReadme(t *testing.T) {
	files := loghub.Files(t)
	table := loghubTable(t)
	rs := redistest.Start(t)
	srv := startInProc(t, alertEnv(rs.URL(), "http://127.0.0.1:9/v2/enqueue"), nil)
	h := flbhost.StartForTest(t)
	pluginInstance(t, h, "cs", rs.URL(), map[string]string{"Keywords": "Exception,ERROR,WARN", "Rules_Key": "off"})
	pluginInstance(t, h, "ci", rs.URL(), map[string]string{"Keywords": "error", "Ignore_Case": "on", "Rules_Key": "off"})

	type series struct {
		kw         string
		ignoreCase bool
	}
	all := []series{{"Exception", false}, {"ERROR", false}, {"WARN", false}, {"error", true}}
	var totals [4]int64
	perFile := map[string][4]int64{}
	// One line a second, the files one after the other, ending well before
	// now: the tail input's shape, and inside the default retention.
	base := time.Now().UTC().Truncate(time.Minute).Add(-5 * time.Hour)
	at := base
	for _, f := range files {
		name := filepath.Base(f)
		row, ok := table[name]
		if !ok {
			t.Logf("%s is not in the loghub README table; not flushed", name)
			continue
		}
		lines := loghub.Read(t, name)
		tag := "loghub." + strings.TrimSuffix(name, ".log")
		for i := 0; i < len(lines); i += 500 {
			c := chunk.Lines(chunk.FormatV2, chunk.EventTime, at.Add(time.Duration(i)*time.Second), lines[i:min(i+500, len(lines))])
			flushOK(t, h, "cs", tag, c)
			flushOK(t, h, "ci", tag, c)
		}
		at = at.Add(time.Duration(len(lines)) * time.Second)
		for i := range totals {
			totals[i] += row[i]
		}
		perFile[tag] = row
	}
	drained(t, rs.Client(), 30*time.Second)

	count := func(s series, tag string) int64 {
		q := url.Values{"keyword": {s.kw}, "from": {base.Add(-time.Minute).Format(time.RFC3339)},
			"to": {at.Add(time.Minute).Format(time.RFC3339)}}
		if s.ignoreCase {
			q.Set("match", "substring")
			q.Set("ignore_case", "true")
		}
		if tag != "" {
			q.Set("tag", tag)
		}
		var r api.CountsResponse
		apiJSON(t, srv.addr, http.MethodGet, "/api/v1/counts?"+q.Encode(), nil, http.StatusOK, &r)
		return r.Total
	}
	for i, s := range all {
		if got := count(s, ""); got != totals[i] {
			t.Errorf("%q (ignore case %v): counted %d in all, the README's total is %d", s.kw, s.ignoreCase, got, totals[i])
		}
	}
	for tag, row := range perFile {
		for i, s := range all {
			if got := count(s, tag); got != row[i] {
				t.Errorf("%s %q (ignore case %v): counted %d, the README says %d", tag, s.kw, s.ignoreCase, got, row[i])
			}
		}
	}
	t.Logf("totals over %d files: Exception %d, ERROR %d, WARN %d, error (any case) %d", len(perFile), totals[0], totals[1], totals[2], totals[3])
}

// hadoopChunks turns the Hadoop sample into 500-line chunks whose events
// carry the lines' own timestamps ("2015-10-18 18:01:47,978", taken as UTC);
// a line without one takes the previous line's.
func hadoopChunks(t *testing.T, lines []string) [][]byte {
	t.Helper()
	var out [][]byte
	var cur []byte
	var ts time.Time
	for i, l := range lines {
		if len(l) >= 23 {
			if p, err := time.Parse("2006-01-02 15:04:05,000", l[:23]); err == nil {
				ts = p
			}
		}
		if ts.IsZero() {
			t.Fatalf("Hadoop_2k.log line %d has no timestamp and none came before it", i+1)
		}
		var err error
		if cur, err = chunk.AppendEvent(cur, chunk.FormatV2, ts, chunk.EventTime, map[string]any{"log": l}); err != nil {
			t.Fatal(err)
		}
		if (i+1)%500 == 0 || i == len(lines)-1 {
			out = append(out, cur)
			cur = nil
		}
	}
	return out
}

// Issue #4: the Hadoop sample goes through the real plugin, following the
// keyword set of a rule "Exception >= 5 in 5m, group by host" created over
// the API. All 8 Exception lines fall in 18:05–18:06, so exactly one
// trigger reaches PagerDuty, counting 8, with sample lines; once the clock
// has moved past the window and resolve_after, the resolve follows under
// the same dedup key.
func TestHadoopExceptionsPageOnceThenResolve(t *testing.T) {
	lines := loghub.Read(t, "Hadoop_2k.log")
	var exceptions []string
	for _, l := range lines {
		if strings.Contains(l, "Exception") {
			exceptions = append(exceptions, stream.CutSample([]byte(l)))
		}
	}
	if len(exceptions) != 8 {
		t.Fatalf("Hadoop_2k.log has %d Exception lines; the loghub README says 8", len(exceptions))
	}
	chunks := hadoopChunks(t, lines)

	rs := redistest.Start(t)
	recv := pdreceiver.Start(t)
	// The clock stands in the log's own time, just after the last Exception:
	// the window 18:02–18:06 holds every one (18:05:57 and 18:06:26–28), and
	// their minutes are not settled yet, so the page is on time. (At 18:08
	// they would come over eval_delay after their minutes: a late page.)
	clk := &clock{t: time.Date(2015, 10, 18, 18, 6, 30, 0, time.UTC)}
	env := alertEnv(rs.URL(), recv.URL)
	// Counts expire at their minute plus the retention on Redis's real
	// clock, so data from 2015 needs a retention reaching past today.
	env["KEYALERT_RETENTION"] = "1000000h"
	env["KEYALERT_PUBLIC_URL"] = "https://keyalert.example.com"
	// Batches commit in flush order, so the page counts all 8: with two
	// workers the 7 of 18:06 (third chunk) may commit before the one of
	// 18:05 (second chunk), and the alert would rightly fire at 7.
	env["KEYALERT_WORKERS"] = "1"
	srv := startInProc(t, env, clk.Now)
	h := flbhost.StartForTest(t)
	const host = "hadoop-node-1"
	mark := h.LogLen()
	pluginInstance(t, h, "hadoop", rs.URL(), map[string]string{"Hostname": host, "Samples": "5"})

	rule := createRule(t, srv.addr, `{"name": "hadoop exceptions", "keywords": ["Exception"],
		"condition": {"type": "threshold", "count": 5, "window": "5m"}, "group_by": "host",
		"severity": "critical", "pagerduty": {"routing_key": "`+routingKey+`"}}`)
	waitKeywords(t, h, mark, 1)
	for _, c := range chunks {
		flushOK(t, h, "hadoop", "hadoop.app", c)
	}

	id := alert.ID(rule.ID, host)
	evs := waitEvents(t, recv, 1, 15*time.Second)
	trig := evs[0]
	if trig.Action != "trigger" || trig.DedupKey != alert.DedupKey(id) || trig.RoutingKey != routingKey {
		t.Fatalf("first event: %s %s key %s…; want trigger %s", trig.Action, trig.DedupKey, trig.RoutingKey[:4], alert.DedupKey(id))
	}
	p := trig.Payload
	if p.Source != host || p.Severity != "critical" || p.Component != "hadoop.app" ||
		!strings.HasPrefix(p.Summary, "Exception seen 8 times in 5m on "+host) {
		t.Errorf("trigger payload: source %q severity %q component %q summary %q", p.Source, p.Severity, p.Component, p.Summary)
	}
	if trig.ClientURL != "https://keyalert.example.com/api/v1/alerts/"+id {
		t.Errorf("client_url %q", trig.ClientURL)
	}
	var cd customDetails
	if err := json.Unmarshal(p.CustomDetails, &cd); err != nil {
		t.Fatalf("custom_details: %v", err)
	}
	if cd.Count != 8 || cd.Window != "5m" || cd.Rule.ID != rule.ID {
		t.Errorf("custom_details: count %d window %q rule %q; want 8, 5m, %s", cd.Count, cd.Window, cd.Rule.ID, rule.ID)
	}
	if cd.CountsPerMinute["2015-10-18T18:05:00Z"] != 1 || cd.CountsPerMinute["2015-10-18T18:06:00Z"] != 7 {
		t.Errorf("counts_per_minute %v: want 1 at 18:05 and 7 at 18:06", cd.CountsPerMinute)
	}
	if len(cd.SampleLines) == 0 || len(cd.SampleLines) > 5 {
		t.Errorf("%d sample lines, want 1 to 5", len(cd.SampleLines))
	}
	for _, s := range cd.SampleLines {
		if !slices.Contains(exceptions, s) {
			t.Errorf("sample line %.100q is not one of the Exception lines", s)
		}
	}
	eventually(t, 5*time.Second, "keyalert_alerts{state=\"firing\"} did not reach 1", func() bool {
		v, _ := metricValue(t, srv.addr, `keyalert_alerts{state="firing"}`)
		return v == 1
	})

	// The window moves past the data: the condition turns false, then stays
	// false for resolve_after (the default 5m).
	clk.Set(time.Date(2015, 10, 18, 18, 14, 0, 0, time.UTC))
	var a alertDoc
	eventually(t, 10*time.Second, "the alert never saw its condition turn false", func() bool {
		apiJSON(t, srv.addr, http.MethodGet, "/api/v1/alerts/"+id, nil, http.StatusOK, &a)
		return !a.FalseSince.IsZero()
	})
	if len(recv.Events()) != 1 {
		t.Fatalf("events before resolve_after passed:%s", describe(recv.Events()))
	}
	clk.Set(a.FalseSince.Add(5*time.Minute + time.Second))
	evs = waitEvents(t, recv, 2, 10*time.Second)
	time.Sleep(600 * time.Millisecond) // three more ticks: nothing else may follow
	evs = recv.Events()
	if len(evs) != 2 || evs[1].Action != "resolve" || evs[1].DedupKey != trig.DedupKey || evs[1].RoutingKey != routingKey {
		t.Fatalf("want exactly trigger then resolve of %s; got%s", trig.DedupKey, describe(evs))
	}
	apiJSON(t, srv.addr, http.MethodGet, "/api/v1/alerts/"+id, nil, http.StatusOK, &a)
	if a.State != "resolved" || a.Count != 8 {
		t.Errorf("alert after resolve: state %s count %d", a.State, a.Count)
	}
	if v, _ := metricValue(t, srv.addr, `keyalert_alerts{state="firing"}`); v != 0 {
		t.Errorf(`keyalert_alerts{state="firing"} = %v after the resolve, want 0`, v)
	}
	if v, _ := metricSum(t, srv.addr, "keyalert_notifications_total", `integration="pagerduty"`, `result="sent"`); v != 2 {
		t.Errorf(`keyalert_notifications_total{integration="pagerduty",result="sent"} = %v, want 2`, v)
	}
	noRejections(t, recv)
}

// The receiver fails every request with 500 until each alert's trigger and
// resolve are both waiting in the outbox, then accepts: every event still
// arrives exactly once, each alert's trigger before its resolve, and the
// retries show in the metrics.
func TestPagerDutyFailuresDelayButNeitherLoseNorReorderEvents(t *testing.T) {
	rs := redistest.Start(t)
	recv := pdreceiver.Start(t)
	var failures atomic.Int64
	recv.OnFail(func(int) { failures.Add(1) })
	recv.FailNext(1_000_000, http.StatusInternalServerError)

	start := time.Now().UTC().Truncate(time.Minute).Add(10 * time.Second)
	clk := &clock{t: start}
	srv := startInProc(t, alertEnv(rs.URL(), recv.URL), clk.Now)
	h := flbhost.StartForTest(t)
	mark := h.LogLen()
	pluginInstance(t, h, "app", rs.URL(), map[string]string{"Hostname_Key": "host"})
	rule := createRule(t, srv.addr, `{"name": "state errors", "keywords": ["IllegalStateException"],
		"condition": {"type": "threshold", "count": 1, "window": "1m"}, "group_by": "host",
		"resolve_after": "1m", "pagerduty": {"routing_key": "`+routingKey+`"}}`)
	waitKeywords(t, h, mark, 1)

	hosts := []string{"web-1", "web-2", "web-3"}
	var c []byte
	for _, host := range hosts {
		var err error
		c, err = chunk.AppendEvent(c, chunk.FormatV2, start, chunk.EventTime,
			map[string]any{"log": "java.lang.IllegalStateException: pool closed on " + host, "host": host})
		if err != nil {
			t.Fatal(err)
		}
	}
	flushOK(t, h, "app", "app.log", c)

	type outboxDoc struct {
		Pending []struct {
			Key      string `json:"key"`
			Kind     string `json:"kind"`
			Attempts int    `json:"attempts"`
		} `json:"pending"`
		Failed []json.RawMessage `json:"failed"`
	}
	pending := func() outboxDoc {
		var d outboxDoc
		apiJSON(t, srv.addr, http.MethodGet, "/api/v1/outbox", nil, http.StatusOK, &d)
		return d
	}
	eventually(t, 10*time.Second, "the triggers were not all tried and failed", func() bool {
		d := pending()
		tried := 0
		for _, m := range d.Pending {
			if m.Kind == "trigger" && m.Attempts > 0 {
				tried++
			}
		}
		return tried == len(hosts)
	})
	// The window moves past the data and is settled (a complete minute, then
	// the 1m eval delay); the alerts see their condition false, then resolve
	// a minute later.
	clk.Set(start.Add(4 * time.Minute))
	eventually(t, 10*time.Second, "the alerts never saw their condition turn false", func() bool {
		var l struct{ Alerts []alertDoc }
		apiJSON(t, srv.addr, http.MethodGet, "/api/v1/alerts?state=firing", nil, http.StatusOK, &l)
		n := 0
		for _, a := range l.Alerts {
			if !a.FalseSince.IsZero() {
				n++
			}
		}
		return n == len(hosts)
	})
	clk.Set(start.Add(5*time.Minute + 2*time.Second))
	eventually(t, 10*time.Second, "the resolves were not queued behind the failing triggers", func() bool {
		return len(pending().Pending) == 2*len(hosts)
	})
	if n := len(recv.Events()); n != 0 {
		t.Fatalf("%d events accepted while the receiver fails everything", n)
	}
	recv.FailNext(0, 0)

	evs := waitEvents(t, recv, 2*len(hosts), 15*time.Second)
	time.Sleep(600 * time.Millisecond) // nothing else may follow
	evs = recv.Events()
	byKey := map[string][]string{}
	for _, e := range evs {
		byKey[e.DedupKey] = append(byKey[e.DedupKey], e.Action)
	}
	for _, host := range hosts {
		key := alert.DedupKey(alert.ID(rule.ID, host))
		if got := byKey[key]; !slices.Equal(got, []string{"trigger", "resolve"}) {
			t.Errorf("%s (%s): events %v, want [trigger resolve]", host, key, got)
		}
	}
	if len(evs) != 2*len(hosts) {
		t.Errorf("%d events, want %d:%s", len(evs), 2*len(hosts), describe(evs))
	}
	if got, want := recv.Attempts(), len(evs)+int(failures.Load()); got != want {
		t.Errorf("%d requests, want %d accepted + %d failed", got, len(evs), failures.Load())
	}
	eventually(t, 5*time.Second, "the outbox did not empty", func() bool {
		d := pending()
		return len(d.Pending) == 0 && len(d.Failed) == 0
	})
	retries, _ := metricSum(t, srv.addr, "keyalert_notifications_total", `result="retry"`)
	sent, _ := metricSum(t, srv.addr, "keyalert_notifications_total", `result="sent"`)
	failed, _ := metricSum(t, srv.addr, "keyalert_notifications_total", `result="rejected"`)
	if int64(retries) != failures.Load() || int(sent) != len(evs) || failed != 0 {
		t.Errorf("metrics: retries %v sent %v failed %v; want %d, %d, 0", retries, sent, failed, failures.Load(), len(evs))
	}
	t.Logf("%d failed attempts before the %d events went through", failures.Load(), len(evs))
	noRejections(t, recv)
}

// The API under /api/v1 wants a valid bearer token; routing keys only ever
// leave redacted; health and metrics stay open.
func TestAPIAuthAndRoutingKeyRedaction(t *testing.T) {
	rs := redistest.Start(t)
	srv := startInProc(t, alertEnv(rs.URL(), "http://127.0.0.1:9/v2/enqueue"), nil)
	ruleBody := `{"name": "x", "keywords": ["Exception"], "condition": {"type": "threshold", "count": 1, "window": "1m"},
		"pagerduty": {"routing_key": "` + routingKey + `"}}`

	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/rules"}, {http.MethodPost, "/api/v1/rules"}, {http.MethodGet, "/api/v1/alerts"},
		{http.MethodGet, "/api/v1/silences"}, {http.MethodGet, "/api/v1/outbox"},
		{http.MethodPost, "/api/v1/alerts/a0000000000000000/ack"},
		{http.MethodGet, "/api/v1/counts?keyword=Exception&from=2024-01-01T00:00:00Z&to=2024-01-01T01:00:00Z"},
	} {
		for _, auth := range []struct{ name, header string }{
			{"no header", ""}, {"wrong token", "Bearer not-" + token}, {"basic scheme", "Basic " + token},
			{"empty bearer", "Bearer "},
		} {
			t.Run(fmt.Sprintf("%s %s %s", tc.method, tc.path, auth.name), func(t *testing.T) {
				var body *strings.Reader
				if tc.method == http.MethodPost {
					body = strings.NewReader(ruleBody)
				} else {
					body = strings.NewReader("")
				}
				req, _ := http.NewRequest(tc.method, "http://"+srv.addr+tc.path, body)
				if auth.header != "" {
					req.Header.Set("Authorization", auth.header)
				}
				resp, err := apiClient(t).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("status %d, want 401", resp.StatusCode)
				}
			})
		}
	}
	var list struct{ Rules []ruleDoc }
	apiJSON(t, srv.addr, http.MethodGet, "/api/v1/rules", nil, http.StatusOK, &list)
	if len(list.Rules) != 0 {
		t.Fatalf("unauthenticated POSTs stored %d rules", len(list.Rules))
	}

	redacted := strings.Repeat("*", 28) + routingKey[28:]
	status, raw := call(t, srv.addr, token, http.MethodPost, "/api/v1/rules", ruleBody)
	if status != http.StatusCreated {
		t.Fatalf("create rule: %d %s", status, raw)
	}
	var r ruleDoc
	json.Unmarshal(raw, &r)
	for _, path := range []string{"/api/v1/rules", "/api/v1/rules/" + r.ID} {
		status, raw := call(t, srv.addr, token, http.MethodGet, path, nil)
		if status != http.StatusOK || strings.Contains(string(raw), routingKey) || !strings.Contains(string(raw), `"routing_key":"`+redacted+`"`) {
			t.Errorf("GET %s: %d %s; want the routing key redacted to %s", path, status, raw, redacted)
		}
	}
	if strings.Contains(srv.logs.String(), routingKey) {
		t.Errorf("the routing key appears in keyalertd's log")
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		if status, _ := call(t, srv.addr, "", http.MethodGet, path, nil); status != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200", path, status)
		}
	}
	for _, name := range []string{"keyalert_alerts", "keyalert_alert_evaluations_total", "keyalert_alert_evaluation_failures_total",
		"keyalert_alert_last_evaluation_duration_seconds", "keyalert_alert_episodes_total", "keyalert_alert_resolutions_total",
		"keyalert_notifications_total", "keyalert_notification_latency_seconds", "keyalert_outbox_pending",
		"keyalert_eval_shards_owned", "keyalert_outbox_sender", "keyalert_ingest_entries_applied_total"} {
		if _, ok := metricSum(t, srv.addr, name); !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/keyalert/keyalert/harness/browser"
	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/harness/pdreceiver"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/chunk"
	"github.com/redis/go-redis/v9"
)

// screenshotDir is where the console test writes its screenshots:
// $KEYALERT_BUILD/console (build/console under make).
func screenshotDir() string {
	if dir := os.Getenv("KEYALERT_BUILD"); dir != "" {
		return filepath.Join(dir, "console")
	}
	return filepath.Join("..", "..", "build", "console")
}

// TestConsole drives the web console in headless Chromium against a whole
// keyalertd (in-process), the real plugin in flbhost and the PagerDuty
// stand-in: sign-in, an alert appearing on the overview after a flush, its
// detail, Acknowledge reaching PagerDuty, Silence, a rule's field error, the
// series chart against /api/v1/counts, sign-out; no console errors or CSP
// violations on any page. It writes a screenshot of each page and logs the
// figures of bench/console.md.
func TestConsole(t *testing.T) {
	if _, err := browser.Binary(); err != nil && os.Getenv("KEYALERT_REQUIRE_CHROMIUM") != "1" {
		t.Skip(err)
	}
	rs := redistest.Start(t)
	recv := pdreceiver.Start(t)
	now := time.Now().UTC().Truncate(time.Minute)
	clk := &clock{t: now.Add(30 * time.Second)}
	srv := startInProc(t, alertEnv(rs.URL(), recv.URL), clk.Now)
	base := "http://" + srv.addr
	shots := screenshotDir()

	// A week of per-minute counts of one series, through the real ingest,
	// for the 7-day chart.
	weekly := keyword.Spec{Text: "Weekly"}
	feedWeek(t, rs.Client(), weekly, now)

	h := flbhost.StartForTest(t)
	mark := h.LogLen()
	pluginInstance(t, h, "console", rs.URL(), map[string]string{"Samples": "3"})
	rule := createRule(t, srv.addr, `{"name": "java exceptions", "keywords": ["Exception"],
		"condition": {"type": "threshold", "count": 3, "window": "5m"}, "group_by": "host",
		"severity": "critical", "pagerduty": {"routing_key": "`+routingKey+`"}}`)
	createRule(t, srv.addr, `{"name": "weekly", "keywords": ["Weekly"],
		"condition": {"type": "threshold", "count": 100000, "window": "5m"}, "severity": "info",
		"pagerduty": {"routing_key": "`+routingKey+`"}}`)
	waitKeywords(t, h, mark, 2)

	b := browser.Start(t, 1280, 900)
	noProblems := func(where string) {
		t.Helper()
		for _, p := range b.Problems() {
			t.Errorf("%s: %s", where, p)
		}
		b.IgnoreProblems()
		// Every control is labelled: a <label for>, aria-label, or (for
		// buttons and links) its text.
		unlabelled := browser.Eval[[]string](t, b, `Array.from(document.querySelectorAll('input, select, textarea, button, a[href]'))
			.filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
			.map(e => e.outerHTML.slice(0, 120))`)
		for _, u := range unlabelled {
			t.Errorf("%s: control without a label: %s", where, u)
		}
	}
	type sel = chromedp.CSS

	// Sign in.
	b.Do(t, "open the console", 10*time.Second, chromedp.Navigate(base+"/"), chromedp.WaitVisible(sel("#token")))
	label := browser.Eval[string](t, b, `document.querySelector('label[for=token]').textContent`)
	if label != "API token" {
		t.Fatalf("sign-in field label %q, want API token", label)
	}
	b.Screenshot(t, shots, "signin")
	b.Do(t, "sign in", 10*time.Second, chromedp.SendKeys(sel("#token"), token+"\r"), // Enter submits
		chromedp.WaitVisible(sel("#ingest .tiles")))
	if v := browser.Eval[string](t, b, `document.cookie`); v != "" {
		t.Errorf("document.cookie = %q: the session cookie must be HttpOnly", v)
	}
	if n := browser.Eval[int](t, b, `localStorage.length + sessionStorage.length`); n != 0 {
		t.Errorf("%d items in browser storage, want none", n)
	}
	noProblems("sign-in")

	// First load of the overview, signed in, nothing cached.
	b.ResetTransferred()
	start := time.Now()
	b.Do(t, "reload the overview", 10*time.Second, chromedp.Reload(), chromedp.WaitVisible(sel("#ingest .tiles")),
		chromedp.WaitVisible(sel("#busy table")))
	loaded := time.Since(start)
	b.Do(t, "sparklines drawn", 5*time.Second, chromedp.WaitReady(sel("#busy[data-drawn-at]")))
	t.Logf("FIGURE overview first load: %d bytes transferred (gzip, headers included); sparklines drawn %s ms after navigation start (in-page); %v wall until tiles and sparklines seen by the test",
		b.Transferred(), browser.Eval[string](t, b, `document.getElementById('busy').dataset.drawnAt`), loaded.Round(time.Millisecond))
	if got := b.Transferred(); got > 150<<10 {
		t.Errorf("overview first load transferred %d bytes, over the 150 KB budget", got)
	}

	// A flush makes an alert appear on the overview within 2 s.
	var c []byte
	for i := range 5 {
		var err error
		c, err = chunk.AppendEvent(c, chunk.FormatV2, now.Add(time.Duration(i)*time.Second), chunk.EventTime,
			map[string]any{"log": fmt.Sprintf("java.lang.IllegalStateException #%d at Foo.bar", i)})
		if err != nil {
			t.Fatal(err)
		}
	}
	flushed := time.Now()
	flushOK(t, h, "console", "app.web", c)
	b.Do(t, "an alert shows on the overview within 2s", 2*time.Second, chromedp.WaitVisible(sel("#alerts a.alert-link")))
	t.Logf("FIGURE flush → alert on the overview: %v", time.Since(flushed).Round(time.Millisecond))
	b.Screenshot(t, shots, "overview")
	noProblems("overview")

	// Alert detail: its chart (with the threshold) and sample lines.
	b.Do(t, "open the alert", 10*time.Second, chromedp.Click(sel("#alerts a.alert-link")),
		chromedp.WaitVisible(sel("#alert-chart canvas")), chromedp.WaitVisible(sel("#alert-samples li")))
	if s := browser.Eval[string](t, b, `document.getElementById('alert-samples').textContent`); !strings.Contains(s, "IllegalStateException") {
		t.Errorf("sample lines %q", s)
	}
	if s := browser.Eval[string](t, b, `document.querySelector('#alert-chart .u-legend').textContent`); !strings.Contains(s, "threshold 3") {
		t.Errorf("chart legend %q lacks the threshold", s)
	}
	b.Screenshot(t, shots, "alert")

	// Acknowledge reaches PagerDuty.
	// From the keyboard: focus the button, press Enter.
	b.Do(t, "acknowledge", 5*time.Second, chromedp.Focus(sel("#btn-ack")), chromedp.KeyEvent("\r"))
	evs := waitEvents(t, recv, 2, 10*time.Second)
	if evs[0].Action != "trigger" || evs[1].Action != "acknowledge" {
		t.Fatalf("events:%s\nwant trigger, acknowledge", describe(evs))
	}
	b.Do(t, "the alert shows acknowledged", 5*time.Second, chromedp.WaitVisible(sel("#alert-head .state-acknowledged")))
	noProblems("alert detail")

	// Silence: prefilled from the alert's labels, shown on the silences page.
	b.Do(t, "silence", 10*time.Second, chromedp.Click(sel("#btn-silence")), chromedp.WaitVisible(sel("#silence-form")))
	if v := browser.Eval[string](t, b, `document.getElementById('f-host').value + ' ' + document.getElementById('f-rule_id').value`); v != "e2e-host "+rule.ID {
		t.Errorf("silence form prefilled with %q, want host and rule id", v)
	}
	b.Screenshot(t, shots, "silence-new")
	b.Do(t, "create the silence", 10*time.Second, chromedp.Click(sel("#silence-save")),
		chromedp.WaitVisible(sel("#silences-active .silence-matchers")))
	if s := browser.Eval[string](t, b, `document.getElementById('silences-active').textContent`); !strings.Contains(s, "host=e2e-host") {
		t.Errorf("active silences %q", s)
	}
	b.Screenshot(t, shots, "silences")
	// Change its end (a new silence with the same matchers replaces it).
	var sils struct {
		Silences []struct {
			ID   string    `json:"id"`
			Host string    `json:"host"`
			End  time.Time `json:"end"`
		} `json:"silences"`
	}
	apiJSON(t, srv.addr, http.MethodGet, "/api/v1/silences?active=true", nil, http.StatusOK, &sils)
	if len(sils.Silences) != 1 {
		t.Fatalf("silences %+v, want one", sils.Silences)
	}
	oldID := sils.Silences[0].ID
	browser.Eval[bool](t, b, `(() => { const d = new Date(Date.now() + 3*3600e3); d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
		document.querySelector('#silences-active input[type=datetime-local]').value = d.toISOString().slice(0, 16); return true })()`)
	b.Do(t, "change the end", 5*time.Second, chromedp.Click(sel(`#silences-active button.secondary`)))
	eventually(t, 5*time.Second, "the silence replaced with a later end", func() bool {
		apiJSON(t, srv.addr, http.MethodGet, "/api/v1/silences?active=true", nil, http.StatusOK, &sils)
		return len(sils.Silences) == 1 && sils.Silences[0].ID != oldID && sils.Silences[0].Host == "e2e-host" &&
			time.Until(sils.Silences[0].End) > 150*time.Minute
	})
	noProblems("silences")

	// A rule with a bad regex: the API's error shows at the field.
	b.Do(t, "new rule", 10*time.Second, chromedp.Navigate(base+"/#/rules/new"), chromedp.WaitVisible(sel("#rule-form")),
		chromedp.SendKeys(sel("#f-name"), "bad regex"), chromedp.SendKeys(sel("#f-keywords"), "(unclosed"),
		chromedp.SetValue(sel("#f-match"), "regex"), chromedp.Click(sel("#rule-save")),
		chromedp.WaitVisible(sel("#f-keywords-err")))
	if s := browser.Eval[string](t, b, `document.getElementById('f-keywords-err').textContent`); !strings.Contains(s, "keywords[0]") {
		t.Errorf("keywords field error %q", s)
	}
	if v := browser.Eval[string](t, b, `document.getElementById('f-keywords').getAttribute('aria-invalid')`); v != "true" {
		t.Errorf("keywords aria-invalid = %q", v)
	}
	b.Screenshot(t, shots, "rule-error")
	// Fixed, the same form previews the last 24 hours over stored counts
	// (of keywords counted already: a preview cannot count anew).
	b.Do(t, "preview a rule", 10*time.Second, chromedp.SetValue(sel("#f-keywords"), "Exception"),
		chromedp.SetValue(sel("#f-match"), "substring"), chromedp.SetValue(sel("#f-count"), "3"),
		chromedp.Click(sel("#rule-preview-btn")), chromedp.WaitVisible(sel("#rule-preview h2")))
	if s := browser.Eval[string](t, b, `document.getElementById('rule-preview').textContent`); !strings.Contains(s, "trigger") {
		t.Errorf("preview %q, want a trigger", s)
	}
	if s := browser.Eval[string](t, b, `document.getElementById('f-keywords-err').textContent`); s != "" {
		t.Errorf("the field error stayed after a valid preview: %q", s)
	}
	b.Do(t, "rules", 10*time.Second, chromedp.Navigate(base+"/#/rules"), chromedp.WaitVisible(sel("#rules table")))
	b.Screenshot(t, shots, "rules")
	// Disable the weekly rule from the list.
	b.Do(t, "disable a rule", 10*time.Second, chromedp.Click(sel(`button[aria-label="Disable weekly"]`)),
		chromedp.WaitVisible(sel(`button[aria-label="Enable weekly"]`)))
	noProblems("rules")

	// Series explorer: the chart holds what /api/v1/counts answers.
	from, to := now.Add(-59*time.Minute), now.Add(time.Minute)
	b.Do(t, "series", 10*time.Second, chromedp.Navigate(base+"/#/series?keyword=Exception&range=1h&by=host&top=5"),
		chromedp.WaitVisible(sel("#series-chart canvas")))
	var counts struct {
		Points []struct {
			Minute time.Time `json:"minute"`
			Count  int64     `json:"count"`
		} `json:"points"`
	}
	apiJSON(t, srv.addr, http.MethodGet, "/api/v1/counts?keyword=Exception&from="+url.QueryEscape(from.Format(time.RFC3339))+"&to="+url.QueryEscape(to.Format(time.RFC3339)), nil, http.StatusOK, &counts)
	var want [][2]int64
	for _, p := range counts.Points {
		want = append(want, [2]int64{p.Minute.Unix(), p.Count})
	}
	var got [][2]int64
	if err := json.Unmarshal([]byte(browser.Eval[string](t, b, `document.getElementById('series-chart').dataset.nonzero`)), &got); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(want) == 0 {
		t.Errorf("series chart %v, /api/v1/counts %v", got, want)
	}
	b.Screenshot(t, shots, "series")
	noProblems("series")
	// The series page loaded afresh: navigation start → chart drawn.
	b.ResetTransferred()
	b.Do(t, "series, first load", 10*time.Second, chromedp.Reload(), chromedp.WaitReady(sel("#series-chart[data-drawn-at]")))
	t.Logf("FIGURE series page first load: chart drawn %s ms after navigation start (in-page), %d bytes transferred",
		browser.Eval[string](t, b, `document.getElementById('series-chart').dataset.drawnAt`), b.Transferred())

	// Labels: a silence from a labelled alert, the explorer by a label.
	consoleLabels(t, b, rs.Client(), srv.addr, base, shots, now, noProblems)

	// A 7-day per-minute chart of one series.
	b.Do(t, "7-day series", 20*time.Second, chromedp.Navigate(base+"/#/series?keyword=Weekly&range=7d"),
		chromedp.WaitReady(sel("#series-chart[data-draw-ms]")))
	pts := browser.Eval[string](t, b, `document.getElementById('series-chart').dataset.points`)
	drawMs := browser.Eval[string](t, b, `document.getElementById('series-chart').dataset.drawMs`)
	t.Logf("FIGURE 7-day chart: %s points drawn in %s ms (uPlot construction to the next frame, in Chromium)", pts, drawMs)
	if ms, err := strconv.ParseFloat(drawMs, 64); err != nil || ms <= 0 {
		t.Errorf("draw time %q", drawMs)
	}
	if pts != "10080" {
		t.Errorf("7-day chart has %s points, want 10080", pts)
	}
	b.Screenshot(t, shots, "series-7d")

	b.Do(t, "outbox", 10*time.Second, chromedp.Navigate(base+"/#/outbox"), chromedp.WaitVisible(sel("#outbox-failed-list")))
	b.Screenshot(t, shots, "outbox")
	noProblems("outbox")

	// Narrow and dark.
	b.Do(t, "390 px", 10*time.Second, chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/#/"), chromedp.WaitVisible(sel("#ingest .tiles")))
	if w := browser.Eval[int](t, b, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("overview at 390 px is %d px wide: it scrolls sideways", w)
	}
	b.Screenshot(t, shots, "overview-390")
	b.Do(t, "series with a label filter at 390 px", 10*time.Second, chromedp.Navigate(base+"/#/series?keyword=Labelled&range=1h&by=app&top=5&label.namespace=sh*"),
		chromedp.WaitVisible(sel("#series-chart canvas")))
	if w := browser.Eval[int](t, b, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("series explorer with a label filter at 390 px is %d px wide: it scrolls sideways", w)
	}
	b.Screenshot(t, shots, "series-labels-390")
	if _, err := chromedp.Call(b.Ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
		t.Fatal(err)
	}
	b.Do(t, "1280 px, dark", 10*time.Second, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(base+"/#/alerts/"+url.PathEscape(firstAlertID(t, srv.addr))),
		chromedp.WaitVisible(sel("#alert-chart canvas")))
	b.Screenshot(t, shots, "alert-dark")
	noProblems("narrow and dark")

	// Sign-out ends the session, in Redis as well as in the browser.
	b.Do(t, "sign out", 10*time.Second, chromedp.Click(sel("#signout")), chromedp.WaitVisible(sel("#token")))
	if st := browser.Eval[int](t, b, `fetch('/api/v1/alerts').then(r => r.status)`); st != http.StatusUnauthorized {
		t.Errorf("API after sign-out: %d, want 401", st)
	}
	if n := rs.Client().Keys(context.Background(), "ka:{sessions}:*").Val(); len(n) != 0 {
		t.Errorf("sessions left in Redis after sign-out: %v", n)
	}
	noProblems("sign-out")
	noRejections(t, recv)
}

// feedWeek XADDs one entry per minute of the week before now (less a few
// minutes inside the retention) for spec, through the stream the consumer
// reads, and waits until they are counted.
func feedWeek(t *testing.T, rdb *redis.Client, spec keyword.Spec, now time.Time) {
	t.Helper()
	ctx := context.Background()
	first := now.Add(-7*24*time.Hour + 10*time.Minute)
	rnd := rand.New(rand.NewPCG(1, 2))
	p := rdb.Pipeline()
	n := 0
	for m := first; m.Before(now); m = m.Add(time.Minute) {
		hour := float64(m.Hour())
		cnt := int64(20 + 15*sinApprox(hour/24) + float64(rnd.IntN(10)))
		e := stream.Entry{Batch: fmt.Sprintf("%032x", n), Keyword: spec, Tag: "app.batch", Host: fmt.Sprintf("batch-%d", n%3), Minute: m.Unix(), Count: cnt}
		p.XAdd(ctx, &redis.XAddArgs{Stream: stream.DefaultStream, Values: e.AppendValues(nil)})
		n++
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the week of entries counted", func() bool {
		info, err := rdb.XInfoGroups(ctx, stream.DefaultStream).Result()
		return err == nil && len(info) == 1 && info[0].Lag == 0 && info[0].Pending == 0
	})
}

// sinApprox is a cheap daily wave in [-1, 1] for x in [0, 1).
func sinApprox(x float64) float64 {
	x = x*2 - 1 // [-1, 1)
	return 4 * x * (1 - abs(x))
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func firstAlertID(t *testing.T, addr string) string {
	t.Helper()
	var out struct {
		Alerts []alertDoc `json:"alerts"`
	}
	apiJSON(t, addr, http.MethodGet, "/api/v1/alerts", nil, http.StatusOK, &out)
	if len(out.Alerts) == 0 {
		t.Fatal("no alerts")
	}
	return out.Alerts[0].ID
}

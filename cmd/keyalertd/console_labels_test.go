package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/keyalert/keyalert/harness/browser"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// consoleLabels is TestConsole's part about labels: an alert of a rule
// grouped by a label is silenced from its detail page with the label
// prefilled as a matcher, and the series explorer breaks a keyword down by a
// label and filters it by another, its chart matching /api/v1/counts.
func consoleLabels(t *testing.T, b *browser.Browser, rdb *redis.Client, addr, base, shots string, now time.Time, noProblems func(string)) {
	type sel = chromedp.CSS
	rule := createRule(t, addr, `{"name": "shop errors", "keywords": ["Labelled"],
		"condition": {"type": "threshold", "count": 3, "window": "5m"}, "group_by": "namespace",
		"severity": "warning", "pagerduty": {"routing_key": "`+routingKey+`"}}`)
	// Labelled entries are stream version 4 (with producer and attempt), as
	// the plugin writes them with Label_Keys.
	ctx := context.Background()
	for i, e := range []struct {
		host, app, ns string
		minute        time.Time
		count         int64
	}{
		{"k8s-1", "cart", "shop", now, 4},
		{"k8s-2", "cart", "shop", now.Add(-time.Minute), 2},
		{"k8s-1", "checkout", "pay", now, 1},
	} {
		en := stream.Entry{Batch: fmt.Sprintf("%032x", 0xabc0+i), Keyword: keyword.Spec{Text: "Labelled"}, Tag: "kube." + e.app, Host: e.host,
			Minute: e.minute.Unix(), Count: e.count, Producer: strings.Repeat("0f", 8), Attempt: fmt.Sprintf("%016x", 0xabc0+i),
			Labels: []stream.Label{{Name: "app", Value: e.app}, {Name: "namespace", Value: e.ns}}}
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream.DefaultStream, Values: en.AppendValues(nil)}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var alertID string
	eventually(t, 15*time.Second, "the shop alert fires", func() bool {
		var out struct {
			Alerts []struct {
				ID     string            `json:"id"`
				RuleID string            `json:"rule_id"`
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		apiJSON(t, addr, http.MethodGet, "/api/v1/alerts", nil, http.StatusOK, &out)
		for _, a := range out.Alerts {
			if a.RuleID == rule.ID && a.Labels["namespace"] == "shop" {
				alertID = a.ID
			}
		}
		return alertID != ""
	})

	// Silence from the alert: the form carries its label as a matcher.
	b.Do(t, "open the labelled alert", 10*time.Second, chromedp.Navigate(base+"/#/alerts/"+url.PathEscape(alertID)),
		chromedp.WaitVisible(sel("#btn-silence")), chromedp.Click(sel("#btn-silence")), chromedp.WaitVisible(sel("#silence-form")))
	prefill := browser.Eval[string](t, b, `Array.from(document.querySelectorAll('#f-lm-rows .label-row'))
		.map(r => r.querySelector('.label-name').value + '=' + r.querySelector('.label-glob').value).join(' ') + ' ' + document.getElementById('f-rule_id').value`)
	if prefill != "namespace=shop "+rule.ID {
		t.Errorf("silence form prefilled with %q, want the label matcher namespace=shop and the rule id", prefill)
	}
	if end := browser.Eval[string](t, b, `document.getElementById('f-end').value`); end == "" {
		t.Errorf("silence form has no end time")
	}
	b.Screenshot(t, shots, "silence-labels")
	b.Do(t, "create the label silence", 10*time.Second, chromedp.Click(sel("#silence-save")),
		chromedp.WaitVisible(sel("#silences-active .silence-matchers")))
	var sils struct {
		Silences []struct {
			RuleID string            `json:"rule_id"`
			Labels map[string]string `json:"labels"`
			End    time.Time         `json:"end"`
		} `json:"silences"`
	}
	apiJSON(t, addr, http.MethodGet, "/api/v1/silences?active=true", nil, http.StatusOK, &sils)
	found := false
	for _, s := range sils.Silences {
		if s.RuleID == rule.ID && fmt.Sprint(s.Labels) == "map[namespace:shop]" && time.Until(s.End) > time.Hour {
			found = true
		}
	}
	if !found {
		t.Errorf("silences %+v: none of the shop rule with labels namespace=shop ending in about 2 h", sils.Silences)
	}
	if s := browser.Eval[string](t, b, `document.getElementById('silences-active').textContent`); !strings.Contains(s, "namespace=shop") {
		t.Errorf("active silences %q lack the label matcher", s)
	}
	noProblems("label silence")

	// The explorer broken down by a label, then filtered by another.
	from, to := now.Add(-59*time.Minute), now.Add(time.Minute)
	rng := "&from=" + url.QueryEscape(from.Format(time.RFC3339)) + "&to=" + url.QueryEscape(to.Format(time.RFC3339))
	for _, tc := range []struct {
		name, hash, api string
		want            string // the breakdown's labels, sorted
	}{
		{"by namespace", "keyword=Labelled&range=1h&by=namespace&top=5", "keyword=Labelled&by=namespace&limit=5", "[all hosts and tags namespace=pay namespace=shop]"},
		{"by app, namespace sh*", "keyword=Labelled&range=1h&by=app&top=5&label.namespace=sh*", "keyword=Labelled&by=app&limit=5&label.namespace=" + url.QueryEscape("sh*"), "[app=cart filtered]"},
	} {
		b.Do(t, "series "+tc.name, 10*time.Second, chromedp.Navigate(base+"/#/series?"+tc.hash),
			chromedp.WaitVisible(sel("#series-chart canvas")), chromedp.WaitReady(sel("#series-form[data-label-names]")))
		var counts struct {
			Points []countPoint `json:"points"`
			Series []struct {
				Value  string       `json:"value"`
				Points []countPoint `json:"points"`
			} `json:"series"`
		}
		apiJSON(t, addr, http.MethodGet, "/api/v1/counts?"+tc.api+rng, nil, http.StatusOK, &counts)
		var got map[string][][2]int64
		if err := json.Unmarshal([]byte(browser.Eval[string](t, b, `document.getElementById('series-chart').dataset.series`)), &got); err != nil {
			t.Fatal(err)
		}
		var labels []string
		for l := range got {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		if fmt.Sprint(labels) != tc.want {
			t.Errorf("%s: chart series %v, want %s", tc.name, labels, tc.want)
		}
		by := strings.TrimPrefix(strings.Split(tc.api, "&")[1], "by=")
		for _, s := range counts.Series {
			if fmt.Sprint(got[by+"="+s.Value]) != fmt.Sprint(nonzero(s.Points)) {
				t.Errorf("%s: chart %s=%s %v, /api/v1/counts %v", tc.name, by, s.Value, got[by+"="+s.Value], nonzero(s.Points))
			}
		}
		var first [][2]int64
		_ = json.Unmarshal([]byte(browser.Eval[string](t, b, `document.getElementById('series-chart').dataset.nonzero`)), &first)
		if fmt.Sprint(first) != fmt.Sprint(nonzero(counts.Points)) || len(first) == 0 {
			t.Errorf("%s: chart total %v, /api/v1/counts %v", tc.name, first, nonzero(counts.Points))
		}
		if names := browser.Eval[string](t, b, `document.getElementById('series-form').dataset.labelNames`); names != "app,namespace" {
			t.Errorf("%s: label names offered %q, want app,namespace", tc.name, names)
		}
		if tc.name == "by namespace" {
			b.Screenshot(t, shots, "series-labels")
		}
	}
	if v := browser.Eval[string](t, b, `document.getElementById('f-lf-name-1').value + '=' + document.getElementById('f-lf-glob-1').value`); v != "namespace=sh*" {
		t.Errorf("label filter row %q, want namespace=sh*", v)
	}
	// From the keyboard: Enter on Add gives a new row, focused; Remove
	// hands focus back to Add.
	b.Do(t, "add a label filter row", 5*time.Second, chromedp.Focus(sel("#f-lf-add")), chromedp.KeyEvent("\r"))
	if id := browser.Eval[string](t, b, `document.activeElement.id`); id != "f-lf-name-2" {
		t.Errorf("focus after Add on %q, want the new row's name f-lf-name-2", id)
	}
	b.Do(t, "remove it", 5*time.Second, chromedp.Focus(sel(`button[aria-label="Remove label filter 2"]`)), chromedp.KeyEvent("\r"))
	if id := browser.Eval[string](t, b, `document.activeElement.id + ' ' + document.querySelectorAll('#f-lf-rows .label-row').length`); id != "f-lf-add 1" {
		t.Errorf("after Remove: focus and rows %q, want f-lf-add 1", id)
	}
	noProblems("series by label")
}

type countPoint struct {
	Minute time.Time `json:"minute"`
	Count  int64     `json:"count"`
}

// nonzero is points as the chart's data attributes hold them.
func nonzero(ps []countPoint) [][2]int64 {
	var out [][2]int64
	for _, p := range ps {
		if p.Count != 0 {
			out = append(out, [2]int64{p.Minute.Unix(), p.Count})
		}
	}
	return out
}

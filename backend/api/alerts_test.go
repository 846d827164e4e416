package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/alert"
	"github.com/keyalert/keyalert/backend/lease"
	"github.com/keyalert/keyalert/backend/outbox"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/silence"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/logbuf"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/redis/go-redis/v9"
)

const key = "R0123456789abcdef0123456789ABCDE"

var t0 = time.Date(2025, 3, 1, 12, 0, 30, 0, time.UTC)

type alertFixture struct {
	t    *testing.T
	url  string
	o    Options
	eng  *alert.Engine
	win  *window.Store
	logs *logbuf.Buffer
	rdb  *redis.Client
}

func newAlertFixture(t *testing.T, mutate func(o *Options)) *alertFixture {
	srv := redistest.Start(t)
	rdb := srv.Client()
	now := func() time.Time { return t0 }
	logs := &logbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := storeOptions(rdb, now, log)
	o.Tokens = []string{"tok-a"}
	if mutate != nil {
		mutate(&o)
	}
	shards := lease.NewShards(rdb, alert.LeasePrefix, "test", lease.Options{TTL: 5 * time.Second, Shards: 1}, log)
	if err := shards.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	eng := alert.New(alert.Config{Redis: rdb, Rules: o.Rules, Silences: o.Silences, Counts: o.Counts, Store: o.Alerts, Shards: shards,
		Now: now, Log: log})
	h, err := NewRouter(o)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(checked(t, h))
	t.Cleanup(ts.Close)
	return &alertFixture{t: t, url: ts.URL + "/api/v1", o: o, eng: eng, win: o.Counts, logs: logs, rdb: rdb}
}

func (f *alertFixture) do(method, path, body string) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer tok-a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}

const ruleBody = `{"name":"java exceptions","keywords":["Exception"],"ignore_case":false,"match":"substring",
	"condition":{"type":"threshold","count":5,"window":"5m"},"group_by":"host","filters":{"host":"web-*","tag":"app.*"},
	"severity":"critical","pagerduty":{"routing_key":"` + key + `"},"repeat_interval":"1h","resolve_after":"5m",
	"enabled":true,"runbook_url":"https://runbooks.example/java"}`

func TestRulesCRUDWithRedactedRoutingKey(t *testing.T) {
	f := newAlertFixture(t, nil)
	status, body := f.do("POST", "/rules", ruleBody)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, body)
	}
	created := decode[map[string]any](t, body)
	id, _ := created["id"].(string)
	if id == "" || created["pagerduty"].(map[string]any)["routing_key"] != rules.Secret(key).Redacted() {
		t.Fatalf("created %s", body)
	}
	status, body = f.do("GET", "/rules", "")
	if status != 200 || len(decode[map[string][]any](t, body)["rules"]) != 1 {
		t.Fatalf("list: %d %s", status, body)
	}
	if status, body = f.do("GET", "/rules/"+id, ""); status != 200 || !strings.Contains(body, `"name":"java exceptions"`) {
		t.Fatalf("get: %d %s", status, body)
	}

	// PUT the GET result back with a change: the redacted key keeps the real one.
	got := decode[map[string]any](t, body)
	got["severity"] = "warning"
	put, _ := json.Marshal(got)
	if status, body = f.do("PUT", "/rules/"+id, string(put)); status != 200 || !strings.Contains(body, `"severity":"warning"`) {
		t.Fatalf("put: %d %s", status, body)
	}
	stored, err := f.o.Rules.Get(context.Background(), id)
	if err != nil || stored.PagerDuty.RoutingKey.Reveal() != key {
		t.Fatalf("stored key after PUT of the redacted form: %v", err)
	}
	// The keyword set follows the rules.
	specs := publishedSet(t, f)
	if len(specs) != 1 || specs[0].ID() != "substring:Exception" {
		t.Fatalf("published %v", specs)
	}
	if status, _ = f.do("DELETE", "/rules/"+id, ""); status != http.StatusNoContent {
		t.Fatalf("delete: %d", status)
	}
	for _, m := range []string{"GET", "DELETE"} {
		if status, body = f.do(m, "/rules/"+id, ""); status != 404 || !strings.Contains(body, `"error"`) {
			t.Fatalf("%s deleted: %d %s", m, status, body)
		}
	}
	if status, _ = f.do("PUT", "/rules/"+id, ruleBody); status != 404 {
		t.Fatalf("put deleted: %d", status)
	}
	if strings.Contains(f.logs.String(), key) {
		t.Fatalf("routing key logged:\n%s", f.logs.String())
	}
}

func publishedSet(t *testing.T, f *alertFixture) []keyword.Spec {
	snap, err := f.o.Rules.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	doc, err := rules.KeywordSet(snap.Rules)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := keyword.DecodeSet(doc)
	if err != nil {
		t.Fatal(err)
	}
	return specs
}

func TestRuleValidationListsEachBadField(t *testing.T) {
	f := newAlertFixture(t, nil)
	mutate := func(fn func(m map[string]any)) string {
		var m map[string]any
		json.Unmarshal([]byte(ruleBody), &m)
		fn(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	tests := []struct {
		name   string
		body   string
		fields []string
	}{
		{"unknown fields", mutate(func(m map[string]any) { m["colour"] = 1; m["owner"] = "x" }), []string{"colour", "owner"}},
		{"empty keywords", mutate(func(m map[string]any) { m["keywords"] = []string{} }), []string{"keywords"}},
		{"regex that does not compile", mutate(func(m map[string]any) { m["match"] = "regex"; m["keywords"] = []string{"a(b"} }), []string{"keywords[0]"}},
		{"bad durations", mutate(func(m map[string]any) {
			m["repeat_interval"] = "often"
			m["resolve_after"] = "5"
			m["condition"].(map[string]any)["window"] = "5x"
		}), []string{"condition.window", "repeat_interval", "resolve_after"}},
		{"bad enums", mutate(func(m map[string]any) {
			m["match"] = "fuzzy"
			m["group_by"] = "data-center"
			m["severity"] = "high"
			m["condition"].(map[string]any)["type"] = "rate"
		}), []string{"condition.type", "group_by", "match", "severity"}},
		{"seasonal spike past the retention", mutate(func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "seasonal": map[string]any{"period": "1w"}}
		}), []string{"condition.seasonal.n"}},
		{"seasonal spike with a bad period", mutate(func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "seasonal": map[string]any{"period": "1h", "n": 9}}
		}), []string{"condition.seasonal.n", "condition.seasonal.period"}},
		{"bad routing key", mutate(func(m map[string]any) { m["pagerduty"] = map[string]any{"routing_key": "short"} }), []string{"pagerduty.routing_key"}},
		{"not JSON", `{"name":`, []string{"body"}},
		{"over the size limit", `{"name":"` + strings.Repeat("x", 70<<10) + `"}`, []string{"body"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, method := range []string{"POST"} {
				status, body := f.do(method, "/rules", tt.body)
				want := http.StatusBadRequest
				if tt.name == "over the size limit" {
					want = http.StatusRequestEntityTooLarge
				}
				if status != want {
					t.Fatalf("%d %s", status, body)
				}
				eb := decode[Error](t, body)
				var got []string
				for _, fe := range eb.Fields {
					got = append(got, fe.Field)
				}
				if strings.Join(got, ",") != strings.Join(tt.fields, ",") {
					t.Fatalf("fields %v, want %v (%s)", got, tt.fields, body)
				}
			}
		})
	}
	// The same validation guards PUT.
	_, body := f.do("POST", "/rules", ruleBody)
	id := decode[map[string]any](t, body)["id"].(string)
	if status, body := f.do("PUT", "/rules/"+id, `{"name":"x","keywords":[]}`); status != 400 || !strings.Contains(body, `"keywords"`) {
		t.Fatalf("put validation: %d %s", status, body)
	}
	if strings.Contains(f.logs.String(), key) {
		t.Fatal("routing key logged")
	}
}

func TestDefaultRoutingKeyMakesTheRulesKeyOptional(t *testing.T) {
	f := newAlertFixture(t, nil)
	body := `{"name":"n","keywords":["x"],"condition":{"type":"threshold","count":1,"window":"1m"}}`
	if status, _ := f.do("POST", "/rules", body); status != 400 {
		t.Fatalf("no key, no default: %d", status)
	}
	f = newAlertFixture(t, func(o *Options) { o.DefaultRoutingKey = true })
	if status, resp := f.do("POST", "/rules", body); status != 201 {
		t.Fatalf("with a default: %d %s", status, resp)
	}
}

func TestSilencesAPI(t *testing.T) {
	f := newAlertFixture(t, nil)
	status, body := f.do("POST", "/silences", `{"host":"web-*","start":"2025-03-01T12:00:00Z","end":"2025-03-01T14:00:00Z","author":"ana","comment":"deploy"}`)
	if status != 201 {
		t.Fatalf("create: %d %s", status, body)
	}
	id := decode[map[string]any](t, body)["id"].(string)
	if _, err := f.o.Silences.Create(context.Background(), silence.Silence{RuleID: "r", Start: t0.Add(time.Hour), End: t0.Add(2 * time.Hour), Author: "bo"}); err != nil {
		t.Fatal(err)
	}
	_, body = f.do("GET", "/silences?active=true", "")
	if list := decode[map[string][]map[string]any](t, body)["silences"]; len(list) != 1 || list[0]["id"] != id || list[0]["active"] != true {
		t.Fatalf("active silences: %s", body)
	}
	_, body = f.do("GET", "/silences", "")
	if list := decode[map[string][]map[string]any](t, body)["silences"]; len(list) != 2 {
		t.Fatalf("all silences: %s", body)
	}
	if status, body = f.do("GET", "/silences/"+id, ""); status != 200 || !strings.Contains(body, `"author":"ana"`) {
		t.Fatalf("get: %d %s", status, body)
	}
	if status, _ = f.do("DELETE", "/silences/"+id, ""); status != 204 {
		t.Fatalf("delete: %d", status)
	}
	if status, _ = f.do("DELETE", "/silences/"+id, ""); status != 404 {
		t.Fatalf("delete again: %d", status)
	}
	status, body = f.do("POST", "/silences", `{"end":"2025-03-01T11:00:00Z","colour":1}`)
	eb := decode[Error](t, body)
	if status != 400 || len(eb.Fields) != 4 {
		t.Fatalf("invalid silence: %d %s", status, body)
	}
	if status, _ = f.do("GET", "/silences?active=maybe", ""); status != 400 {
		t.Fatalf("bad query: %d", status)
	}
}

func TestAlertsAPI(t *testing.T) {
	f := newAlertFixture(t, nil)
	_, body := f.do("POST", "/rules", ruleBody)
	ruleID := decode[map[string]any](t, body)["id"].(string)
	ctx := context.Background()
	spec := keyword.Spec{Text: "Exception"}
	minute := t0.Unix() - t0.Unix()%60
	client := f.rdb
	client.HIncrBy(ctx, f.win.Keys().Window(spec.ID(), minute), window.Field("web-1", "app.web"), 9)
	client.HIncrBy(ctx, f.win.Keys().Window(spec.ID(), minute), window.Field("web-2", "app.web"), 9)
	client.LPush(ctx, f.win.Keys().Samples(spec.ID(), "web-1", "app.web"), window.EncodeSample(window.Sample{Minute: minute, Host: "web-1", Tag: "app.web", Line: "java.lang.Exception: boom"}))
	if err := f.eng.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	id1, id2 := alert.ID(ruleID, "web-1"), alert.ID(ruleID, "web-2")

	status, body := f.do("GET", "/alerts?state=firing", "")
	if list := decode[map[string][]alert.Alert](t, body)["alerts"]; status != 200 || len(list) != 2 {
		t.Fatalf("firing: %d %s", status, body)
	}
	status, body = f.do("GET", "/alerts/"+id1, "")
	d := decode[struct {
		alert.Alert
		CountsPerMinute map[string]int64 `json:"counts_per_minute"`
		SampleLines     []window.Sample  `json:"sample_lines"`
	}](t, body)
	if status != 200 || d.ID != id1 || d.CountsPerMinute["2025-03-01T12:00:00Z"] != 9 || len(d.SampleLines) != 1 || len(d.History) == 0 {
		t.Fatalf("detail: %d %s", status, body)
	}
	if status, body = f.do("POST", "/alerts/"+id1+"/ack", `{"by":"ana"}`); status != 200 || !strings.Contains(body, `"state":"acknowledged"`) {
		t.Fatalf("ack: %d %s", status, body)
	}
	if status, body = f.do("POST", "/alerts/"+id2+"/resolve", ""); status != 200 || !strings.Contains(body, `"state":"resolved"`) {
		t.Fatalf("resolve: %d %s", status, body)
	}
	if status, _ = f.do("POST", "/alerts/"+id2+"/ack", ""); status != http.StatusConflict {
		t.Fatalf("ack resolved: %d", status)
	}
	if status, _ = f.do("POST", "/alerts/"+id1+"/ack", `{"who":"x"}`); status != 400 {
		t.Fatalf("ack with unknown field: %d", status)
	}
	if status, _ = f.do("POST", "/alerts/nope/ack", ""); status != 404 {
		t.Fatalf("ack unknown: %d", status)
	}
	if status, _ = f.do("GET", "/alerts/nope", ""); status != 404 {
		t.Fatalf("get unknown: %d", status)
	}
	for q, want := range map[string]int{"state=firing": 0, "state=acknowledged": 1, "state=resolved": 1, "": 2} {
		_, body = f.do("GET", "/alerts?"+q, "")
		if n := len(decode[map[string][]alert.Alert](t, body)["alerts"]); n != want {
			t.Errorf("?%s: %d alerts, want %d", q, n, want)
		}
	}
	if status, body = f.do("GET", "/alerts?state=open&limit=0", ""); status != 400 || !strings.Contains(body, `"state"`) || !strings.Contains(body, `"limit"`) {
		t.Fatalf("bad query: %d %s", status, body)
	}
	// Trigger, ack and resolve wait in the outbox (no sender runs here).
	status, body = f.do("GET", "/outbox", "")
	ob := decode[struct {
		Pending []outbox.Pending `json:"pending"`
		Failed  []outbox.Failure `json:"failed"`
	}](t, body)
	if status != 200 || len(ob.Pending) != 4 || strings.Contains(body, key) {
		t.Fatalf("outbox: %d %s", status, body)
	}
	if strings.Contains(f.logs.String(), key) {
		t.Fatal("routing key logged")
	}
}

// A rule with "for" shows its alert as pending, through the API, before it
// pages; the rule's "for" round-trips.
func TestPendingAlertsAreListed(t *testing.T) {
	f := newAlertFixture(t, nil)
	status, body := f.do("POST", "/rules", strings.Replace(ruleBody, `"enabled":true`, `"enabled":true,"for":"2m"`, 1))
	created := decode[map[string]any](t, body)
	if status != 201 || created["for"] != "2m" {
		t.Fatalf("create: %d %s", status, body)
	}
	ctx := context.Background()
	spec := keyword.Spec{Text: "Exception"}
	minute := t0.Unix() - t0.Unix()%60
	f.rdb.HIncrBy(ctx, f.win.Keys().Window(spec.ID(), minute), window.Field("web-1", "app.web"), 9)
	if err := f.eng.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	id := alert.ID(created["id"].(string), "web-1")
	for q, want := range map[string]int{"state=pending": 1, "state=firing": 0, "": 1} {
		_, body = f.do("GET", "/alerts?"+q, "")
		if n := len(decode[map[string][]alert.Alert](t, body)["alerts"]); n != want {
			t.Errorf("?%s: %d alerts, want %d", q, n, want)
		}
	}
	status, body = f.do("GET", "/alerts/"+id, "")
	d := decode[alert.Alert](t, body)
	if status != 200 || d.State != alert.Pending || len(d.History) != 1 || d.History[0].Event != "pending" {
		t.Fatalf("detail: %d %s", status, body)
	}
	if status, _ = f.do("POST", "/alerts/"+id+"/ack", ""); status != http.StatusConflict {
		t.Fatalf("ack of a pending alert: %d", status)
	}
}
